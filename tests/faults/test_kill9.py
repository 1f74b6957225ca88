"""kill -9 at any moment: training resumes with the uninterrupted run's losses step for step
(with the weights' moving average on, and subword sampling where SentencePiece draws from the
seed alone: `Tokenizer.sampling_warning`), every checkpoint left loads, best.pt
agrees with the newest checkpoint, the final weights and their average are the uninterrupted
run's, and translate -o keeps the old file. Slow: `make test-faults`."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from nmt import checkpoint
from nmt.tokenizer import Tokenizer
from tests.test_training import TINY

pytestmark = pytest.mark.faults

ENV = os.environ | {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
STEPS = 24
ROOT = Path(__file__).resolve().parents[2]
# (kill spec for the driver, or a delay in seconds after training started for a random kill)
DELIBERATE = [
    "step:2:write",  # inside checkpoint.save: the temp file half written
    "best.pt:1:write",
    "step:1:rename",  # the temp file complete, not yet renamed into place
    "best.pt:1:rename",
    "last.pt:1:link",  # step-N.pt written, last.pt not yet pointing at it
    "last.pt:1:rename",
]
RANDOM_KILLS = 6


def train_args(data_dir, run: Path, resume: bool) -> list[str]:
    args = ["-o", str(run), "-q", f"data.dir={data_dir}", *TINY, f"train.max_steps={STEPS}"]
    args += ["train.valid_every=3", "train.keep_last=2", "train.valid_bleu=false"]
    args += ["train.best_metric=loss", "model.dropout=0.3"]
    args += ["train.ema_decay=0.9"]
    if Tokenizer.sampling_warning() is None:  # where SentencePiece draws from the seed alone
        args += ["train.subword_alpha=0.2"]
    return args + (["--resume"] if resume else [])


def driver(losses: Path, kill: str, args: list[str]) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "tests.faults.record_training", str(losses), kill, "--", *args]
    return subprocess.Popen(
        cmd, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def read_losses(path: Path) -> list[tuple[int, float]]:
    if not path.is_file():
        return []
    rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
    return [(int(s), float(v)) for s, v in rows]


def check_run_dir(run: Path) -> int:
    """Every checkpoint in the run dir loads, and best.pt holds the newest checkpoint's best
    (or is one improvement behind, which the next start repairs). Returns how many loaded."""
    pts = sorted(run.glob("*.pt"))
    for p in pts:
        checkpoint.load(p)
    return len(pts)


def best_agrees(run: Path) -> bool:
    last = checkpoint.load(run / "last.pt")["progress"]
    best = checkpoint.load(run / "best.pt")["progress"]
    return best["step"] == last["best_step"] and best["best"] == last["best"]


def test_kill9_anywhere_then_resume_reproduces_the_uninterrupted_run(toy_data_dir, tmp_path):
    ref_losses = tmp_path / "reference.txt"
    proc = driver(ref_losses, "none", train_args(toy_data_dir, tmp_path / "ref", False))
    assert proc.wait(timeout=900) == 0, proc.stderr.read().decode()[-3000:]
    reference = dict(read_losses(ref_losses))
    assert sorted(reference) == list(range(1, STEPS + 1))

    run, losses = tmp_path / "run", tmp_path / "losses.txt"
    rng = random.Random(int(os.environ.get("FAULTS_SEED", "15")))
    plan = DELIBERATE + [None] * RANDOM_KILLS
    kills = loaded = 0
    for spec in plan:
        resume = (run / "last.pt").is_file() or any(run.glob("step-*.pt"))
        before = len(read_losses(losses))
        proc = driver(losses, spec or "none", train_args(toy_data_dir, run, resume))
        if spec is None:  # a random moment after training has started
            deadline = time.time() + 300
            while time.time() < deadline and len(read_losses(losses)) <= before:
                if proc.poll() is not None:
                    break
                time.sleep(0.05)
            time.sleep(rng.uniform(0.0, 2.0))
            proc.send_signal(signal.SIGKILL)
        code = proc.wait(timeout=900)
        if code == 0:  # the run finished before the kill came: nothing more to kill
            break
        assert code == -signal.SIGKILL, proc.stderr.read().decode()[-3000:]
        kills += 1
        loaded += check_run_dir(run)
    if not (run / "summary.json").is_file():
        proc = driver(losses, "none", train_args(toy_data_dir, run, True))
        assert proc.wait(timeout=900) == 0, proc.stderr.read().decode()[-3000:]
    assert not [p for p in run.iterdir() if ".tmp-" in p.name]  # the last start removed them
    loaded += check_run_dir(run)
    assert best_agrees(run)
    rows = read_losses(losses)
    assert {s for s, _ in rows} == set(reference)
    for step, loss in rows:  # every replayed step too
        assert loss == reference[step], f"step {step}: {loss} != {reference[step]}"
    ours, theirs = (checkpoint.read(r / "last.pt") for r in (run, tmp_path / "ref"))
    for k in theirs.model:
        assert torch.equal(ours.model[k], theirs.model[k]) and torch.equal(
            ours.ema[k], theirs.ema[k]
        )
    print(
        f"\nkill -9: {kills} kills survived, {loaded} checkpoints loaded, {len(rows)} step losses checked"
    )
    assert kills >= len(DELIBERATE)


def test_kill9_during_translate_o_keeps_the_old_file(tiny_checkpoint, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("red cat blue dog green tree\n" * 20000)
    out = tmp_path / "out.txt"
    out.write_text("old\n")
    cmd = [sys.executable, "-m", "nmt", "translate", "-c", str(tiny_checkpoint), "-q"]
    cmd += ["--beam", "1", "--batch-tokens", "200", str(src), "-o", str(out)]
    proc = subprocess.Popen(cmd, env=ENV, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    temps: list[Path] = []
    while time.time() < deadline and not temps and proc.poll() is None:
        temps = [p for p in tmp_path.iterdir() if p.name.startswith(".out.txt.tmp-")]
        time.sleep(0.05)
    assert temps, "translate did not start writing in time"
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    assert out.read_text() == "old\n"
    small = tmp_path / "small.txt"
    small.write_text("red cat\n\nblue dog\n")
    res = subprocess.run(cmd[:-3] + [str(small), "-o", str(out)], env=ENV, capture_output=True)
    assert res.returncode == 0, res.stderr.decode()[-2000:]
    assert out.read_text().count("\n") == 3
    assert not any(p.exists() for p in temps)  # the dead run's temp file is gone
