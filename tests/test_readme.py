"""Every command the README shows, run as written in a sandbox with small stand-in files.

Paths a command names (checkpoints, inputs, `../shared/data/multi30k`) are made by the fixture:
the checkpoint is the Transformer the CLI tests train, the corpus a random-word stand-in. Make
targets and the commands that cannot run here are checked as `HOW` says; a README command missing
from `HOW` fails the test, so the list cannot fall behind the README.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ENV

ROOT = Path(__file__).resolve().parents[1]
RUN, HELP, OPTIONS, MAKE_DRY, INTERRUPT = "run", "--help", "options", "make -n", "interrupt"
# How each README command is checked (in README order; the sandbox keeps what earlier ones made).
HOW = {
    "make demo": MAKE_DRY,  # trains for 3 minutes
    "make test": MAKE_DRY,  # this suite
    "make test-faults": MAKE_DRY,  # minutes of kills and hostile input
    "nmt preprocess": HELP,  # the command overview
    "nmt train": HELP,
    "nmt evaluate": HELP,
    "nmt translate": HELP,
    "nmt average": HELP,
    "nmt export": HELP,
    "nmt report": HELP,
    "nmt demo": HELP,
    "nmt preprocess --src de --tgt en --train-prefix ../shared/data/multi30k/train "
    "--valid-prefix ../shared/data/multi30k/val --test-prefix ../shared/data/multi30k/test_2016_flickr "
    "--vocab-size 8000 --out data-bin/multi30k-de-en": RUN,
    "nmt preprocess --pair en:de --pair en:fr --pair en:cs --train-prefix ../shared/data/multi30k/train "
    "--valid-prefix ../shared/data/multi30k/val --test-prefix ../shared/data/multi30k/test_2016_flickr "
    "--vocab-size 10000 --out data-bin/multi30k-multilingual": RUN,
    # a multilingual model: tests/test_multilingual.py trains one and translates with --tgt-lang
    "nmt translate -c runs/multi/best.pt --tgt-lang fr input.en": OPTIONS,
    # elided options ("..."), and a hub dataset that needs internet: their options must exist
    "nmt preprocess --src zh --tgt en --train-file train.tsv --src-column chinese "
    "--tgt-column english ...": OPTIONS,
    "nmt preprocess --src de --tgt en --hub bentrevett/multi30k --out data-bin/m30k-hub": OPTIONS,
    # a full-size Transformer: started as written, stopped with Ctrl-C once it trains
    "nmt train recipes/multi30k-de-en/transformer.yaml -o runs/deen train.lr=1e-3 model.dropout=0.2": INTERRUPT,
    # four processes: its options are checked; 2-process DDP runs in tests/test_training.py
    "torchrun --nproc_per_node 4 -m nmt train cfg.yaml -o runs/ddp": OPTIONS,
    "torchrun --standalone --nproc-per-node 4 -m nmt train cfg.yaml -o runs/ddp": OPTIONS,
    # two nodes: tests/test_training.py runs them behind make test-multinode
    "torchrun --nnodes 2 --node-rank 0 --nproc-per-node 8 --rdzv-backend c10d "
    "--rdzv-endpoint node0.example:29500 --rdzv-id deen -m nmt train cfg.yaml -o runs/deen": OPTIONS,
    "torchrun --nnodes 2 --node-rank 1 --nproc-per-node 8 --rdzv-backend c10d "
    "--rdzv-endpoint node0.example:29500 --rdzv-id deen -m nmt train cfg.yaml -o runs/deen": OPTIONS,
    "nmt train cfg.yaml -o runs/deen --resume": INTERRUPT,
    "nmt preprocess --src de --tgt en --train-prefix indomain/train --valid-prefix indomain/val "
    "--spm-model runs/deen/best.pt --out data-bin/indomain": RUN,
    # the recipe-size run above is not the stand-in checkpoint's model: tests/test_finetune.py
    # runs --init-from with extra_valid through the CLI
    "nmt train runs/deen/config.yaml --init-from runs/deen/best.pt -o runs/deen-ft "
    "data.dir=data-bin/indomain train.lr=2e-4 train.max_steps=2000 "
    "train.extra_valid=[data-bin/multi30k-de-en]": OPTIONS,
    "nmt translate -c runs/deen/best.pt input.de -o output.en": RUN,
    "cat input.de | nmt translate -c runs/deen/best.pt --beam 1 > out.en": RUN,
    "nmt translate -c best.pt --n-best 5 --beam 5 input.de": RUN,
    "nmt translate -c best.pt --sample --top-p 0.9 --temperature 0.8 mono.de": RUN,
    "nmt translate -c best.pt --alignment --attention-plot plots/ input.de": RUN,
    "nmt translate -c best.pt --flags flags.jsonl input.de": RUN,
    "nmt translate -c best.pt --attention-plot plots/ --attention-layer all --attention-heads all "
    "input.de": RUN,
    "nmt translate -c best.pt --attention-plot plots/ --attention-layer 1 --self-attention "
    "input.de": RUN,
    # run dirs of a recipe's three backends: its options are checked; tests/test_report.py runs it
    "nmt report runs/rnn runs/rnn_attention runs/transformer -o report/": OPTIONS,
    # run dirs and files of real runs: options checked; tests/test_report.py runs both forms
    "nmt report --compare runs/rnn_attention runs/transformer -o compare/": OPTIONS,
    "nmt report --compare out-a.en out-b.en --source test.de --reference test.en -o compare/": OPTIONS,
    "python": RUN,  # the Python block
    "nmt evaluate -c runs/deen/best.pt -d data-bin/multi30k-de-en --split test --json scores.json": RUN,
    "nmt evaluate --hypothesis out.en --reference ref.en --tgt-lang en": RUN,
    "nmt export runs/deen/best.pt -o runs/deen/ct2 --quantization int8": RUN,
    'echo "Ein Mann fährt Fahrrad." | nmt translate -c runs/deen/ct2': RUN,
    "nmt translate -c runs/deen/ct2 --buffer 1": RUN,
    "nmt evaluate -c runs/deen/ct2 -d data-bin/multi30k-de-en --split test": RUN,
    "nmt card runs/deen": RUN,
    "nmt score -c runs/deen/best.pt input.de output.en > scores.tsv": RUN,
    "paste input.de output.en | nmt score -c runs/deen/best.pt": RUN,
    "nmt translate -c runs/seed1/best.pt -c runs/seed2/best.pt input.de > ensemble.en": RUN,
    "nmt score -c runs/seed1/best.pt -c runs/seed2/best.pt input.de output.en": RUN,
    "nmt translate -c best.pt --constraints required.txt input.de": RUN,
    "nmt translate -c best.pt --glossary terms.tsv input.de": RUN,
    "make -C recipes/multi30k-de-en all": MAKE_DRY,
    "make -C recipes/iwslt14-de-en all": MAKE_DRY,
    'make -C recipes/iwslt14-de-en all DATA=/data/iwslt14 TRAIN_ARGS="train.max_time=120"': MAKE_DRY,
    'make -C recipes/multi30k-en-de train-transformer DATA=/path/to/multi30k TRAIN_ARGS="train.max_time=20"': MAKE_DRY,
    "make -C recipes/tatoeba-zh-en evaluate BEAM=5": MAKE_DRY,
    "make -C recipes/multi30k-de-en export": MAKE_DRY,
}


def readme_commands() -> list[str]:
    """Shell commands of the README's ```sh blocks (comments dropped), "python" for a block."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    cmds = []
    for lang, body in re.findall(r"```(sh|python)\n(.*?)```", text, re.S):
        if lang == "python":
            cmds.append("python")
            continue
        for line in body.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith("#"):
                cmds.append(re.sub(r"\s+", " ", line))
    return cmds


def python_block() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.search(r"```python\n(.*?)```", text, re.S).group(1)


def test_every_readme_command_is_covered():
    assert [c for c in readme_commands() if c not in HOW] == []


@pytest.fixture(scope="module")
def sandbox(trained, tmp_path_factory):
    """A project dir with the README's paths: stand-in corpus, checkpoints, inputs, recipes."""
    top = tmp_path_factory.mktemp("readme")
    proj = top / "proj"
    proj.mkdir()
    rng = random.Random(0)
    letters = "abcdefghijklmnopqrstuvwxyzäöü"

    def line():
        words = (
            "".join(rng.choices(letters, k=rng.randint(2, 9))) for _ in range(rng.randint(3, 12))
        )
        return " ".join(words) + "\n"

    corpus = top / "shared" / "data" / "multi30k"
    corpus.mkdir(parents=True)
    for split, n in (("train", 3000), ("val", 20), ("test_2016_flickr", 20)):
        for lang in ("de", "en", "fr", "cs"):  # rich enough for the README's vocabularies
            (corpus / f"{split}.{lang}").write_text("".join(line() for _ in range(n)))
    (proj / "recipes").symlink_to(ROOT / "recipes")
    from nmt import checkpoint

    stand_in = checkpoint.read(trained / "run" / "best.pt")  # runs/deen/best.pt: below
    stand_in.data |= {"src_lang": "de", "tgt_lang": "en"}  # as the README's data dir is
    checkpoint.save(stand_in, proj / "best.pt")
    src = (trained / "data" / "test.src").read_text().splitlines()[:4]
    for name in ("input.de", "mono.de"):
        (proj / name).write_text("\n".join(src) + "\n")
    (proj / "ref.en").write_text("\n".join(src) + "\n")
    for seed in ("seed1", "seed2"):  # an ensemble's members
        (proj / "runs" / seed).mkdir(parents=True)
        checkpoint.save(stand_in, proj / "runs" / seed / "best.pt")
    (proj / "indomain").mkdir()
    for split, n in (("train", 200), ("val", 10)):  # new data for the fine-tuning commands
        for lang in ("de", "en"):
            (proj / "indomain" / f"{split}.{lang}").write_text("".join(line() for _ in range(n)))
    (proj / "required.txt").write_text("red\n\nblue\tgreen\n\n")  # a line per input line
    (proj / "terms.tsv").write_text(f"{src[0].split()[0]}\tmoon\n")
    env = ENV | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{ENV['PATH']}"}
    return proj, env


def sh(cmd: str, cwd: Path, env: dict, input: str | None = None, check: bool = True):
    res = subprocess.run(
        cmd, shell=True, cwd=cwd, env=env, input=input, capture_output=True, text=True
    )
    if check:
        assert res.returncode == 0, f"{cmd}\n{res.stderr[-2000:]}"
    return res


def interrupt(cmd: str, cwd: Path, env: dict, run_dir: Path) -> None:
    """Start a training command, Ctrl-C it once its loop runs: it must save last.pt, exit 130."""
    proc = subprocess.Popen(  # exec: the exit status is nmt's, not that of a shell Ctrl-C killed
        f"exec {cmd}",
        shell=True,
        cwd=cwd,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 300
        log = run_dir / "train.log"
        while time.time() < deadline and proc.poll() is None:
            lines = log.read_text().splitlines() if log.is_file() else []
            if lines and "parameters" in lines[-1]:  # the file exists before its first line
                break
            time.sleep(0.5)
        assert proc.poll() is None, proc.stderr.read()[-2000:]
        os.killpg(proc.pid, signal.SIGINT)  # as Ctrl-C in a terminal: the whole process group
        assert proc.wait(timeout=300) == 130
        assert (run_dir / "last.pt").is_file()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def test_readme_commands_run_as_written(sandbox):
    proj, env = sandbox
    for cmd in readme_commands():
        how = HOW[cmd]
        if how == MAKE_DRY:
            cwd = ROOT if cmd.startswith("make") else proj
            sh(cmd.replace("make", "make -n", 1), cwd, env)
        elif how == HELP:
            assert "Usage" in sh(f"{cmd} --help", proj, env).stdout
        elif how == OPTIONS:  # cannot run here: every option it names must exist
            nmt_part = cmd.split(" -m ")[-1].split()
            helptext = sh(f"nmt {nmt_part[1]} --help", proj, env).stdout
            for opt in re.findall(r"(--[a-z-]+)", " ".join(nmt_part)):
                assert opt in helptext, (cmd, opt)
            assert shutil.which(cmd.split()[0], path=env["PATH"])
        elif how == INTERRUPT:
            run_dir = proj / cmd.split(" -o ")[1].split()[0]
            if "--resume" in cmd:  # cfg.yaml: the config of the run the command before started
                shutil.copyfile(run_dir / "config.yaml", proj / "cfg.yaml")
            interrupt(cmd, proj, env, run_dir)
        elif cmd == "python":
            sh(f"{sys.executable} -", proj, env, input=python_block())
        else:
            if "runs/deen/best.pt" in cmd:  # the stand-in checkpoint, beside the run trained above
                shutil.copyfile(proj / "best.pt", proj / "runs/deen/best.pt")
            sh(cmd, proj, env, input="xx yy\n" if "nmt translate" in cmd else None)
    assert (proj / "output.en").is_file() and (proj / "out.en").is_file()
    assert (proj / "runs/deen/ct2/nmt-export.json").is_file() and any((proj / "plots").iterdir())
