"""Checkpoint files (`nmt/checkpoint.py`): averaging, and damaged or foreign files refused."""

from __future__ import annotations

import pytest
import torch

from nmt import checkpoint
from nmt.errors import NMTError
from tests.conftest import nmt, one_line_error, tiny_run


def test_average_checkpoints(trained):
    run = trained / "run"
    out = trained / "avg.pt"
    nmt("average", "--run-dir", run, "--last", "2", "-o", out)
    res = nmt("translate", "-c", out, "--beam", "1", input="dog bird\n")
    assert res.stdout.count("\n") == 1

    steps = sorted(run.glob("step-*.pt"), key=lambda p: int(p.stem[5:]))[-2:]
    a, b = (checkpoint.load(p)["model"] for p in steps)
    avg = checkpoint.load(out)["model"]
    name = next(k for k, v in avg.items() if v.is_floating_point() and not torch.equal(a[k], b[k]))
    torch.testing.assert_close(avg[name], (a[name] + b[name]) / 2)  # the mean, not a copy


def test_averaging_checkpoints_of_different_vocabularies_is_refused(
    toy_data_dir, other_vocab_data, tmp_path
):
    tiny_run(toy_data_dir, tmp_path / "a")
    tiny_run(other_vocab_data, tmp_path / "b")  # the same shapes: averaging would "work"
    paths = [tmp_path / "a" / "last.pt", tmp_path / "b" / "last.pt"]
    with pytest.raises(NMTError, match="vocabulary differs from that of"):
        checkpoint.average(paths, tmp_path / "avg.pt")
    assert not (tmp_path / "avg.pt").exists()


def test_bad_checkpoints_are_one_line_errors(trained, tmp_path):
    good = (trained / "run" / "best.pt").read_bytes()
    (tmp_path / "trunc.pt").write_bytes(good[: len(good) // 2])
    torch.save({"weight": torch.zeros(2)}, tmp_path / "plain.pt")
    (tmp_path / "text.pt").write_text("hello")

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"format": "nmt-checkpoint", "x": Evil()}, tmp_path / "evil.pt")
    out = tmp_path / "out.txt"
    out.write_text("precious\n")
    for name, needle in [
        ("missing.pt", "checkpoint not found"),
        ("trunc.pt", "not a valid checkpoint"),
        ("plain.pt", "not an nmt checkpoint"),
        ("text.pt", "not a valid checkpoint"),
        ("evil.pt", "needs to run code"),
    ]:
        res = nmt("translate", "-c", tmp_path / name, "-o", out, input="dog\n", check=False)
        one_line_error(res, needle)
        assert "pwned" not in res.stdout
        assert out.read_text() == "precious\n"  # never half-written or lost
