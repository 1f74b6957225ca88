"""Shared fixtures: tiny synthetic tasks that train in seconds on CPU."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import random
import shutil
import subprocess
import sys

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
# One intra-op thread, here and in the commands tests start: tiny models gain nothing from two,
# and on a machine where another job holds a core, two threads spin against each other.
if not os.environ.get("OMP_NUM_THREADS"):  # unset or empty (libgomp warns on an empty value)
    os.environ["OMP_NUM_THREADS"] = "1"

WORDS = "red blue green cat dog bird tree house river stone fish moon sun star cloud rain".split()


def model_config(backend: str, **kw):
    """A backend's config from keyword sizes; sizes it does not read (n_heads for an RNN) are
    dropped, so one set of sizes serves every backend."""
    from nmt.models import CONFIGS

    cls = CONFIGS[backend]
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in kw.items() if k in names})


def reverse_pairs(n: int, seed: int) -> list[tuple[str, str]]:
    """Word-reversal pairs: 'cat red moon' -> 'moon red cat'."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        words = rng.choices(WORDS, k=rng.randint(2, 6))
        pairs.append((" ".join(words), " ".join(reversed(words))))
    return pairs


def write_parallel(directory, prefix: str, pairs, src="src", tgt="tgt") -> str:
    directory.mkdir(parents=True, exist_ok=True)
    for side, lang in ((0, src), (1, tgt)):
        (directory / f"{prefix}.{lang}").write_text("".join(p[side] + "\n" for p in pairs))
    return str(directory / prefix)


@pytest.fixture(scope="session")
def toy_data_dir(tmp_path_factory):
    """A preprocessed data dir for a word-reversal task (joint 36-piece vocabulary)."""
    from nmt.preprocess import PreprocessOptions, preprocess
    from nmt.sources import Source

    raw = tmp_path_factory.mktemp("toy_raw")
    sources = {}
    for split, n, seed in (("train", 1500, 1), ("valid", 60, 2), ("test", 60, 3)):
        prefix = write_parallel(raw, split, reverse_pairs(n, seed))
        sources[split] = Source("plain", (f"{prefix}.src", f"{prefix}.tgt"))
    out = tmp_path_factory.mktemp("toy") / "data"
    opts = PreprocessOptions(src_lang="src", tgt_lang="tgt", vocab_size=36, sources=sources)
    preprocess(opts, out, log=lambda m: None)
    return out


# the sizes of `tiny_checkpoint`: a Transformer that trains its two steps in about a second
TINY_RUN = ["model.d_model=32", "model.n_heads=4", "model.d_ff=64", "model.encoder_layers=1"]
TINY_RUN += ["model.decoder_layers=1", "train.max_tokens=300", "train.valid_every=2"]
TINY_RUN += ["train.valid_bleu=false", "train.best_metric=loss"]


def tiny_run(data_dir, run, *extra, resume=False):
    """Train TINY_RUN for two steps (`extra` overrides either) into `run`; the run's summary."""
    from nmt.config import load_config
    from nmt.training import train

    cfg = load_config(None, [f"data.dir={data_dir}", *TINY_RUN, "train.max_steps=2", *extra])
    return train(cfg, run, resume=resume, quiet=True)


@pytest.fixture(scope="session")
def tiny_checkpoint(toy_data_dir, tmp_path_factory):
    """A tiny Transformer trained for two steps: a real checkpoint for translate tests."""
    run = tmp_path_factory.mktemp("tiny") / "run"
    tiny_run(toy_data_dir, run)
    return run / "best.pt"


@pytest.fixture(scope="session")
def other_vocab_data(tmp_path_factory):
    """A data dir of the toy task in capitals: another vocabulary of the same size as
    `toy_data_dir`'s (and languages xx -> yy)."""
    from nmt.preprocess import PreprocessOptions, preprocess
    from nmt.sources import Source

    raw = tmp_path_factory.mktemp("other_raw")
    sources = {}
    for split, n, seed in (("train", 800, 5), ("valid", 30, 6), ("test", 30, 7)):
        pairs = [(s.upper(), t.upper()) for s, t in reverse_pairs(n, seed)]
        prefix = write_parallel(raw, split, pairs, "xx", "yy")
        sources[split] = Source("plain", (f"{prefix}.xx", f"{prefix}.yy"))
    out = tmp_path_factory.mktemp("other") / "data"
    opts = PreprocessOptions(src_lang="xx", tgt_lang="yy", vocab_size=36, sources=sources)
    preprocess(opts, out, log=lambda m: None)
    return out


# fixtures that train a model through the CLI or for many steps: their tests are `slow`
SLOW_FIXTURES = {"trained", "multi", "toy", "two_models", "base_run"}


FIRST = ("test_readme.py",)  # the longest files start first, so that the workers end together


def pytest_collection_modifyitems(items):
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
    items.sort(key=lambda item: item.path.name not in FIRST)  # stable: the rest keep their order


DEVICES = ["cpu"] + (["cuda"] if __import__("torch").cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request):
    """Each device this machine has: tests using it run on the GPU too where there is one."""
    import torch

    return torch.device(request.param)


# --- the real CLI, and a Transformer trained through it (shared by the CLI and export tests) ---

ENV = os.environ | {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def nmt(*args, input=None, check=True, process=False, cwd=None):
    """Run `nmt ARGS` (in `cwd`): in this process through typer's CliRunner (no new torch
    import), or with `process=True` as a real process (signals, exit statuses under kill,
    torchrun, the README's commands). Either way: a result with `returncode`, `stdout` and
    `stderr`."""
    if process:
        res = _process(args, input, cwd)
    else:
        with contextlib.chdir(cwd or os.getcwd()):
            res = _in_process(args, input)
    if check:
        assert res.returncode == 0, res.stderr[-3000:]
    return res


def _process(args, input, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "nmt", *map(str, args)],
        capture_output=True,
        text=True,
        input=input,
        env=ENV,
        cwd=cwd,
        timeout=600,
    )


def _in_process(args, input):
    import torch
    from typer.testing import CliRunner

    from nmt.cli import app, exit_status

    threads = torch.get_num_threads()  # `--threads N` sets this process's
    result = CliRunner().invoke(app, [str(a) for a in args], input=input, prog_name="nmt")
    torch.set_num_threads(threads)
    code, stderr = result.exit_code, result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        with contextlib.redirect_stderr(io.StringIO()) as said:
            code = exit_status(result.exception)
        if code is None:  # a bug: its traceback, as a process would print it
            raise result.exception
        stderr += said.getvalue()
    return subprocess.CompletedProcess(["nmt", *args], code, result.stdout, stderr)


def one_line_error(res, *needles):
    assert res.returncode != 0
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nmt: error:"), res.stderr[-2000:]
    assert "Traceback" not in res.stderr
    for n in needles:
        assert n in lines[0]


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """preprocess -> train a small Transformer on word reversal through the CLI: built once per
    test run and shared by its workers (each test writes only names of its own beside it)."""
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the run's base dir, above each worker's own
    tmp = root / "e2e"
    with FileLock(str(root / "e2e.lock")):
        if not (tmp / "run" / "best.pt").is_file():  # a worker killed while building: again
            shutil.rmtree(tmp, ignore_errors=True)
            _train_e2e(tmp)
    return tmp


def _train_e2e(tmp):
    raw = tmp / "raw"
    for split, n, seed in (("train", 2000, 11), ("valid", 50, 12), ("test", 50, 13)):
        write_parallel(raw, split, reverse_pairs(n, seed), "xx", "yy")
    data = tmp / "data"
    nmt(
        "preprocess",
        "--src",
        "xx",
        "--tgt",
        "yy",
        "--train-prefix",
        raw / "train",
        "--valid-prefix",
        raw / "valid",
        "--test-prefix",
        raw / "test",
        "--vocab-size",
        "36",
        "--out",
        data,
    )
    cfg = tmp / "cfg.yaml"
    cfg.write_text(small_transformer(data))
    nmt("train", cfg, "-o", tmp / "run", "train.log_every=50")
    return tmp


def small_transformer(data) -> str:
    """The config of a Transformer that learns word reversal (and copying) in 500 CPU steps."""
    return (
        f"data:\n  dir: {data}\n"
        "model:\n  backend: transformer\n  d_model: 64\n  d_ff: 128\n  encoder_layers: 2\n"
        "  decoder_layers: 2\n  dropout: 0.0\n  attention_dropout: 0.0\n  max_len: 40\n"
        "train:\n  max_tokens: 1500\n  lr: 3e-3\n  warmup: 50\n  max_steps: 500\n  valid_every: 250\n"
    )
