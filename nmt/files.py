"""Files that survive crashes and full disks: atomic writes, stale temp cleanup, run-dir locks,
UTF-8 line reading with file:line errors.

Every file nmt writes goes to `.NAME.tmp-PID` beside its final name and is renamed into place, so
a crash or a full disk leaves the old file or the new one, never half of one. Temp names carry
the writer's PID, so the next run can remove those of processes that are gone.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from nmt.errors import NMTError

DISK_FULL = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)  # EFBIG: a file size limit (ulimit -f)
_TEMP = re.compile(r"^\.(.+)\.(?:tmp|old)-(\d+)$")


def temp_name(path: Path) -> Path:
    """Where `path` is written before it is renamed into place."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def disk_error(e: BaseException | None, path: Path | str) -> NMTError | None:
    """A one-line error for a write that failed because the disk (or a size limit) is full.

    Looks through the exception's causes too: torch.save reports a failed write of its file
    object as a RuntimeError raised while handling the OSError, HF datasets wraps it in its own."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, OSError) and e.errno in DISK_FULL:
            return NMTError(f"{path}: no space left on device ({os.strerror(e.errno)})")
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


@contextmanager
def reporting_full_disk(path: Path | str):
    """Turn a full-disk OSError raised inside the block into a one-line error naming `path`."""
    try:
        yield
    except Exception as e:
        err = disk_error(e, path)
        if err is None:
            raise
        raise err from None


@contextmanager
def atomic_write(path: Path, mode: str = "w"):
    """Open a temp file beside `path` for writing; on success it is synced and renamed to `path`.

    On any failure the temp file is removed and `path` keeps its old content."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path)
    encoding = None if "b" in mode else "utf-8"
    try:
        with reporting_full_disk(path):
            with open(tmp, mode, encoding=encoding) as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: Path, text: str) -> None:
    """Replace `path` with `text` atomically."""
    with atomic_write(path) as f:
        f.write(text)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_temps(directory: Path, name: str | None = None) -> list[Path]:
    """Remove `.NAME.tmp-PID` / `.NAME.old-PID` files and dirs left in `directory` by dead
    processes (a kill -9, a power cut), only those of `name` if given; returns what went."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    removed = []
    for p in directory.iterdir():
        m = _TEMP.match(p.name)
        if m is None or (name is not None and m.group(1) != name):
            continue
        if int(m.group(2)) == os.getpid() or _alive(int(m.group(2))):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed.append(p)
    return removed


class DirLock:
    """An exclusive lock on a directory (`DIR/.lock`, holding the owner's PID).

    The kernel drops the lock when its holder dies, so a lock left by a killed process is taken
    over; a live holder makes `acquire` a one-line error naming its PID."""

    def __init__(self, directory: Path, what: str = "directory"):
        self.path = Path(directory) / ".lock"
        self.what = what
        self.fd: int | None = None

    def __enter__(self) -> DirLock:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise NMTError(
                f"{self.what} {self.path.parent} is in use by another nmt process (PID {holder})"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            os.close(self.fd)  # closing releases the flock
            self.fd = None


def read_lines(paths: Iterable[Path], stdin_if_none: bool = True) -> Iterator[str]:
    """Lines of the given files (stdin when none), newline kept, checked for UTF-8: a bad byte
    is an error naming the file and line. `.gz` files are read decompressed."""
    paths = list(paths)
    if not paths and stdin_if_none:
        if sys.stdin is None:  # started with file descriptor 0 closed
            raise NMTError("standard input is closed: give input files, or pipe the input in")
        yield from _decoded("<stdin>", sys.stdin.buffer)
        return
    for path in paths:
        if not Path(path).is_file():
            raise NMTError(f"file not found: {path}")
        try:
            f = open_bytes(Path(path))
        except OSError as e:
            raise NMTError(f"cannot read {path}: {e.strerror}") from None
        with f:
            yield from _decoded(str(path), f)


UTF8_BOM = b"\xef\xbb\xbf"  # a mark some editors put first in a UTF-8 file: never text


def open_bytes(path: Path):
    """A binary file object, decompressed when the name ends in .gz, past a leading UTF-8 BOM."""
    import gzip

    f = gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")
    if f.peek(len(UTF8_BOM))[: len(UTF8_BOM)] == UTF8_BOM:
        f.read(len(UTF8_BOM))
    return f


def _decoded(name: str, f) -> Iterator[str]:
    n = 0
    try:
        for n, raw in enumerate(f, start=1):
            if n == 1 and raw.startswith(UTF8_BOM):  # stdin (files skip it when opened)
                raw = raw[len(UTF8_BOM) :]
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise NMTError(
                    f"{name}:{n}: invalid UTF-8 ({e.reason} at byte {e.start})"
                ) from None
    except (OSError, EOFError) as e:  # e.g. a truncated .gz
        raise NMTError(f"cannot read {name} after line {n}: {e}") from None


_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def one_line(text: str) -> str:
    """`text` made safe to write as one line of a line-per-record file: line breaks inside it
    become spaces (a reader splits at newlines only; Unicode line separators stay text)."""
    return _LINE_BREAK.sub(" ", text) if "\n" in text or "\r" in text else text


def split_lines(text: str) -> list[str]:
    """The lines of a file's text, split at newlines only (\\n, \\r\\n), as `read_lines` reads
    them: `str.splitlines` would also split at form feeds and Unicode separators inside a line."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.rstrip("\r") for line in lines]


def read_text_lines(path: Path) -> list[str]:
    """All lines of one UTF-8 file, without line endings (\\n or \\r\\n)."""
    return [line.rstrip("\r\n") for line in read_lines([path], stdin_if_none=False)]
