"""Writes, locks and temp files under faults (`nmt/files.py`): full disks, stale locks and temps.

A second run into a busy run dir is refused; a kill while best.pt is saved is repaired.
"""

from __future__ import annotations

import os
import re
import resource
import signal
import subprocess
import sys

import pytest

from nmt import checkpoint
from nmt.errors import NMTError
from nmt.files import DirLock
from nmt.training import train
from tests.test_training import TINY, tiny_cfg

ENV = os.environ | {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def nmt(*args, limit: int | None = None, **kw):
    """Run the CLI; `limit` caps the size of any file it writes (RLIMIT_FSIZE), the way a full
    disk stops a write."""

    def cap():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    kw.setdefault("stdout", subprocess.PIPE)
    return subprocess.run(
        [sys.executable, "-m", "nmt", *map(str, args)],
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
        preexec_fn=cap if limit else None,
        timeout=600,
        **kw,
    )


STAGE_LINE = re.compile(
    r"^(read|clean|sentencepiece|encode|write): [\d,]+ (pairs|sentences) in "
    r"|^warning: line \d+: "  # per-line warnings of lines translated before the error
)


def one_line_error(res, *needles):
    """One error line, last; before it only the summary lines of finished preprocess stages or
    warnings about lines translated before the error."""
    assert res.returncode != 0
    *progress, line = res.stderr.strip().splitlines()
    assert line.startswith("nmt: error:"), res.stderr[-3000:]
    assert all(STAGE_LINE.match(p) for p in progress), res.stderr[-3000:]
    for n in needles:
        assert n in line, line


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


# --- full disks: one line naming the file; what was there before survives --------------------


@pytest.mark.slow
def test_full_disk_during_a_checkpoint_save_is_one_line(toy_data_dir, tmp_path):
    run = tmp_path / "run"
    args = ["train", "-o", run, "-q", f"data.dir={toy_data_dir}", *TINY]
    res = nmt(*args, "train.max_steps=2", "train.valid_every=2", limit=100_000)
    one_line_error(res, str(run / "step-2.pt"), "no space left on device")
    assert not [p for p in run.iterdir() if ".tmp-" in p.name]


@pytest.mark.slow
def test_full_disk_during_translate_keeps_the_old_output(tiny_checkpoint, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("red cat blue dog\n" * 1500)
    out = tmp_path / "out.txt"
    out.write_text("old\n")
    args = ["translate", "-c", tiny_checkpoint, "--beam", "1", "-q", src]
    res = nmt(*args, "-o", out, limit=1_000)
    one_line_error(res, str(out), "no space left on device")
    assert out.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt", "out.txt"]
    with open(tmp_path / "stdout.txt", "w") as f:
        res = nmt(*args, limit=1_000, stdout=f)
    one_line_error(res, "<stdout>", "no space left on device")


@pytest.mark.slow
def test_full_disk_during_preprocess_keeps_the_old_data_dir(tmp_path):
    from tests.conftest import reverse_pairs, write_parallel

    prefix = write_parallel(tmp_path / "raw", "train", reverse_pairs(1500, 1), "xx", "yy")
    out = tmp_path / "data"
    args = ["preprocess", "-s", "xx", "-t", "yy", "--train-prefix", prefix, "--vocab-size", 36]
    res = nmt(*args, "--out", out, limit=20_000)
    one_line_error(res, str(out), "no space left on device")
    assert not out.exists()
    out.mkdir()
    (out / "meta.json").write_text("{}")
    res = nmt(*args, "--out", out, "--force", limit=20_000)
    one_line_error(res, str(out), "no space left on device")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "raw"]
    assert (out / "meta.json").read_text() == "{}"


# --- the run dir: one run at a time; temp files of dead processes go ---------------------------


def test_a_second_run_into_a_busy_run_dir_is_refused(toy_data_dir, tmp_path):
    run = tmp_path / "run"
    with DirLock(run, "run dir"):  # held as a running `nmt train` holds it
        with pytest.raises(
            NMTError, match=f"in use by another nmt process \\(PID {os.getpid()}\\)"
        ):
            train(tiny_cfg(toy_data_dir, "train.max_steps=1"), run, quiet=True)
    assert not (run / "last.pt").exists()


def test_a_stale_lock_and_temp_files_of_dead_processes_are_taken_over(toy_data_dir, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    pid = dead_pid()
    (run / ".lock").write_text(f"{pid}\n")
    stale = [run / f".step-3.pt.tmp-{pid}", run / f".best.pt.tmp-{pid}"]
    for p in stale:
        p.write_bytes(b"half a checkpoint")
    live = run / f".last.pt.tmp-{os.getppid()}"  # a live process's temp file stays
    live.write_bytes(b"")
    train(tiny_cfg(toy_data_dir, "train.max_steps=2", "train.valid_every=2"), run, quiet=True)
    assert not any(p.exists() for p in stale) and live.exists()
    assert f"removed .step-3.pt.tmp-{pid}" in (run / "train.log").read_text()


def test_stale_temp_files_of_translate_and_preprocess_are_removed(tiny_checkpoint, tmp_path):
    from nmt.preprocess import PreprocessOptions, preprocess
    from nmt.search_options import DecodeFlags
    from nmt.sources import Source
    from nmt.translate import TranslateIO, run_translation
    from tests.conftest import reverse_pairs, write_parallel

    pid = dead_pid()
    out = tmp_path / "out.txt"
    stale_out = tmp_path / f".out.txt.tmp-{pid}"
    other = tmp_path / f".other.txt.tmp-{pid}"  # not ours to remove
    stale_out.write_text("half")
    other.write_text("someone else's")
    src = tmp_path / "in.txt"
    src.write_text("red cat\n")
    io, decode = TranslateIO([src], out), DecodeFlags(beam=1)
    run_translation(tiny_checkpoint, io, decode, log=lambda m: None)
    assert not stale_out.exists() and other.exists() and out.is_file()

    prefix = write_parallel(tmp_path / "raw", "train", reverse_pairs(200, 1))
    data = tmp_path / "data"
    stale_dir = tmp_path / f".data.tmp-{pid}"
    (stale_dir / "train").mkdir(parents=True)
    sources = {"train": Source("plain", (f"{prefix}.src", f"{prefix}.tgt"))}
    opts = PreprocessOptions(src_lang="src", tgt_lang="tgt", vocab_size=30, sources=sources)
    preprocess(opts, data, log=lambda m: None)
    assert not stale_dir.exists() and (data / "meta.json").is_file()


# --- best.pt agrees with the newest checkpoint, whatever moment a kill hits ----------------------


class Killed(BaseException):
    """Stands for a kill -9: nothing after it runs."""


def test_a_kill_while_best_pt_is_written_is_repaired_on_resume(toy_data_dir, tmp_path, monkeypatch):
    run = tmp_path / "run"
    common = ["train.valid_every=2", "train.valid_bleu=false", "train.best_metric=loss"]
    train(tiny_cfg(toy_data_dir, *common, "train.max_steps=2"), run, quiet=True)
    assert checkpoint.load(run / "best.pt")["progress"]["step"] == 2
    save = checkpoint.save

    def save_or_die(state, path):
        if path.name == "best.pt":
            raise Killed
        save(state, path)

    monkeypatch.setattr(checkpoint, "save", save_or_die)
    with pytest.raises(Killed):
        train(tiny_cfg(toy_data_dir, *common, "train.max_steps=4"), run, resume=True, quiet=True)
    monkeypatch.undo()
    last = checkpoint.load(run / "last.pt")["progress"]
    assert last["step"] == 4 and last["best_step"] == 4  # the loss fell: step 4 is the best
    assert checkpoint.load(run / "best.pt")["progress"]["step"] == 2  # what the kill left
    train(tiny_cfg(toy_data_dir, *common, "train.max_steps=4"), run, resume=True, quiet=True)
    best = checkpoint.load(run / "best.pt")
    assert best["progress"]["step"] == 4
    assert best["progress"]["best"] == last["best"]
    assert "best.pt rewritten" in (run / "train.log").read_text()


def test_a_bom_first_on_stdin_is_no_text(monkeypatch):
    import io

    from nmt.files import read_lines

    stdin = io.TextIOWrapper(io.BytesIO(b"\xef\xbb\xbfred cat\n\xef\xbb\xbfkept\n"))
    monkeypatch.setattr(sys, "stdin", stdin)
    assert list(read_lines([])) == ["red cat\n", "\ufeffkept\n"]  # first in the stream only
