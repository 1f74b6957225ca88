"""Artifacts written by an earlier nmt keep working: its data dirs, run dirs and checkpoints.

That version came before per-backend configs, the checkpoint module's `RunState` and
metrics.jsonl: tests/fixtures/legacy holds a tiny data dir, a Transformer run dir and an
rnn_attention checkpoint written by it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from nmt import checkpoint
from nmt.report import read_run, write_report
from tests.conftest import nmt, one_line_error

LEGACY = Path(__file__).parent / "fixtures" / "legacy"


@pytest.fixture
def legacy(tmp_path):
    """A writable copy of the fixtures (training and export write into them)."""
    shutil.copytree(LEGACY, tmp_path / "legacy")
    return tmp_path / "legacy"


def test_old_checkpoints_load_with_their_own_backend_config(legacy):
    for path, backend in ((legacy / "run" / "best.pt", "transformer"),
                          (legacy / "rnn_attention" / "best.pt", "rnn_attention")):  # fmt: skip
        model, tok, cfg = checkpoint.load_model(path)
        assert cfg.model.backend == backend and type(cfg.model).__name__ != "ModelConfig"
        assert not hasattr(cfg.model, "n_heads" if backend != "transformer" else "cell")
        assert tok.src_vocab_size == 36


@pytest.mark.parametrize("ckpt", ["run/best.pt", "run/last.pt", "rnn_attention/best.pt"])
def test_translate_and_evaluate_old_checkpoints(legacy, ckpt, tmp_path):
    src = (legacy / "data" / "test.src").read_text().splitlines()
    out = nmt("translate", "-c", legacy / ckpt, "--beam", "2", input="\n".join(src) + "\n")
    assert len(out.stdout.splitlines()) == len(src)
    flags = ["--beam", "2", "--max-len-a", "1.2", "--max-len-b", "4", "--no-repeat-ngram", "3"]
    res = nmt("evaluate", "-c", legacy / ckpt, "-d", legacy / "data", *flags)
    assert "BLEU" in res.stdout and f"{len(src)} sentences, beam 2" in res.stdout


def test_export_and_average_old_checkpoints(legacy, tmp_path):
    ckpt = legacy / "run" / "best.pt"
    nmt("export", ckpt, "-o", tmp_path / "ct2")
    lines = "red cat moon\nblue dog\n"
    torch_out = nmt("translate", "-c", ckpt, "--beam", "1", input=lines).stdout
    assert nmt("translate", "-c", tmp_path / "ct2", "--beam", "1", input=lines).stdout == torch_out
    nmt("average", "--run-dir", legacy / "run", "--last", "1", "-o", tmp_path / "avg.pt")
    nmt("average", ckpt, legacy / "run" / "last.pt", "-o", tmp_path / "avg2.pt")
    out = nmt("translate", "-c", tmp_path / "avg2.pt", input=lines).stdout
    assert len(out.splitlines()) == 2


def test_resume_an_old_run_with_its_own_config_yaml(legacy):
    run = legacy / "run"
    nmt("train", run / "config.yaml", "-o", run, "--resume",
        f"data.dir={legacy / 'data'}", "train.max_steps=6")  # fmt: skip
    assert checkpoint.read(run / "last.pt").progress["step"] == 6
    steps = [row["step"] for row in read_run(run).valid]
    assert steps == [2, 4, 6]  # the old sessions' rows, kept in metrics.jsonl, and the new one


def test_report_reads_old_run_dirs(legacy, tmp_path):
    page = write_report([legacy / "run", legacy / "rnn_attention"], tmp_path / "report")
    assert (tmp_path / "report" / "curves.png").is_file()
    text = page.read_text()
    assert "| run | transformer |" in text and "| rnn_attention | rnn_attention |" in text


def test_translate_with_an_old_export_dir(legacy):
    """An export dir written before the manifest's config was read as a typed `Config`."""
    lines = "red cat moon\nblue dog\n\nstar\n"
    want = nmt("translate", "-c", legacy / "run" / "best.pt", "--beam", "1", input=lines).stdout
    got = nmt("translate", "-c", legacy / "ct2", "--beam", "1", input=lines).stdout
    assert got == want and len(got.splitlines()) == 4


def test_evaluate_seeds_sampling_and_checks_the_device(legacy, tmp_path):
    ckpt, data = legacy / "run" / "best.pt", legacy / "data"
    for name in ("a", "b"):
        nmt("evaluate", "-c", ckpt, "-d", data, "--sample", "--seed", "3", "-o", tmp_path / name)
    assert (tmp_path / "a").read_text() == (tmp_path / "b").read_text()
    bad = nmt("translate", "-c", ckpt, "--device", "mps", input="red cat\n", check=False)
    one_line_error(bad, "--device must be cpu, cuda or cuda:N")
