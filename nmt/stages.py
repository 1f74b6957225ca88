"""The streaming stages of `nmt preprocess`: every split flows through in chunks of pairs.

Memory stays flat in the corpus size: text is read, cleaned and encoded one chunk at a time,
and what is kept for the whole corpus is a few numbers per pair (the dedupe hashes, the keep
mask). Worker processes (`--num-proc`) clean and encode chunks while the main process reads
and writes them in order.
"""

from __future__ import annotations

import hashlib
import itertools
import multiprocessing
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa

from nmt import datadir
from nmt.signals import ignore_interrupts

PAIRS_PER_CHUNK = 20_000  # pairs per chunk: small enough for flat memory, big enough to amortise
BLOCK = 1 << 24  # bytes read at a time when checking a file


# ---------------------------------------------------------------------------------------------
# Progress: a bar with counts on a terminal, one summary line per stage always


class Stage:
    """Count the pairs of one stage; a tqdm bar on a terminal, one summary line at the end."""

    def __init__(self, name: str, total: int | None, log: Callable[[str], None], unit="pairs"):
        self.name, self.total, self.log, self.unit = name, total, log, unit
        self.n, self.t0, self.bar = 0, time.time(), None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=name, unit=f" {unit}", unit_scale=True, leave=False)

    def update(self, n: int) -> None:
        self.n += n
        if self.bar is not None:
            self.bar.update(n)

    def done(self, detail: str = "") -> None:
        if self.bar is not None:
            self.bar.close()
        dt = time.time() - self.t0
        rate = f" ({self.n / dt:,.0f} {self.unit}/s)" if dt > 0 and self.n else ""
        self.log(f"{self.name}: {self.n:,} {self.unit} in {dt:.1f}s{rate}{detail}")


# ---------------------------------------------------------------------------------------------
# Running chunk jobs in order, in this process or in a bounded pool of workers


class Workers:
    """Apply a picklable function to chunks, results in input order, at most a few in flight.

    `Pool.imap` would read the whole input ahead into its queue; a bounded window keeps memory
    flat however long the corpus is."""

    def __init__(self, num_proc: int):
        self.pool = None
        if num_proc > 1:
            ctx = multiprocessing.get_context("spawn")
            self.pool = ctx.Pool(num_proc, initializer=ignore_interrupts)
            self.window = 2 * num_proc

    def map(self, fn: Callable, tasks: Iterable) -> Iterator:
        if self.pool is None:
            yield from map(fn, tasks)
            return
        pending: deque = deque()
        for task in tasks:
            pending.append(self.pool.apply_async(fn, (task,)))
            if len(pending) >= self.window:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()
            self.pool = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ---------------------------------------------------------------------------------------------
# Cleaning: strip, drop empty pairs, hash for the dedupe


def clean_chunk(task: tuple[list, list, bool]) -> tuple[pa.RecordBatch, np.ndarray | None, int]:
    """Strip a chunk of pairs and drop empty ones; returns (batch, pair hashes or None, dropped)."""
    src, tgt, want_hashes = task
    src = [_text(x).strip() for x in src]
    tgt = [_text(x).strip() for x in tgt]
    keep = [i for i, (s, t) in enumerate(zip(src, tgt)) if s and t]
    if len(keep) < len(src):
        src, tgt = [src[i] for i in keep], [tgt[i] for i in keep]
    hashes = None
    if want_hashes:  # 64-bit pair hashes: a chance collision at 10M pairs is ~1e-6
        hashes = np.fromiter(
            (_pair_hash(s, t) for s, t in zip(src, tgt)), dtype=np.uint64, count=len(src)
        )
    batch = pa.record_batch(
        [pa.array(src, pa.string()), pa.array(tgt, pa.string())], ["src", "tgt"]
    )
    return batch, hashes, len(task[0]) - len(keep)


def _text(x) -> str:
    return x.decode("utf-8") if isinstance(x, bytes) else ("" if x is None else str(x))


def _pair_hash(s: str, t: str) -> int:
    """A pair's key for de-duplication; the source's length in front keeps ("a\\tb", "c") and
    ("a", "b\\tc") apart (a separator alone could occur inside the text)."""
    digest = hashlib.blake2b(f"{len(s)}:{s}\t{t}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def first_occurrences(hashes: np.ndarray) -> np.ndarray:
    """Boolean mask of the first occurrence of every distinct hash."""
    keep = np.zeros(len(hashes), dtype=bool)
    keep[np.unique(hashes, return_index=True)[1]] = True
    return keep


# ---------------------------------------------------------------------------------------------
# Encoding: SentencePiece ids as Arrow list arrays, lengths as numpy


_TOKENIZERS: dict = {}  # per process: model protos -> Tokenizer, built once


def _tokenizer(protos: tuple[bytes, bytes | None]):
    from nmt.tokenizer import Tokenizer

    if protos not in _TOKENIZERS:
        _TOKENIZERS.clear()
        _TOKENIZERS[protos] = Tokenizer(*protos)
    return _TOKENIZERS[protos]


def encode_chunk(task: tuple) -> tuple[pa.RecordBatch, dict]:
    """Encode a chunk of text pairs: src ids + EOS, tgt ids (BOS/EOS added at batching time),
    and the text itself (re-encoded by subword sampling during training).

    task = (batch of src/tgt text, tokenizer protos, max_len, max_ratio, target language,
    pair index). With `max_len` > 0, pairs longer than `max_len` or with a length ratio above
    `max_ratio` are dropped; returns the encoded batch and the drop counts. A multilingual
    vocabulary's sources start with the target language's tag."""
    batch, protos, max_len, max_ratio, tgt_lang, pair = task
    tok = _tokenizer(protos)
    src, src_len = _ids_array(tok.encode_src(batch.column(0).to_pylist(), tgt_lang))
    tgt, tgt_len = _ids_array(tok.encode_tgt(batch.column(1).to_pylist()))
    tgt_len = tgt_len + 1  # + EOS (or BOS on the input side)
    columns = [src, tgt, pa.array(src_len), pa.array(tgt_len), batch.column(0), batch.column(1)]
    pairs = pa.array(np.full(batch.num_rows, pair, dtype=np.int32))
    out = pa.record_batch(columns + [pairs], schema=datadir.encoded_schema())
    dropped = {"too_long": 0, "length_ratio": 0}
    if max_len > 0:
        too_long = (src_len > max_len) | (tgt_len > max_len)
        longer, shorter = np.maximum(src_len, tgt_len), np.minimum(src_len, tgt_len)
        bad_ratio = ~too_long & (longer > max_ratio * shorter) & (longer > 5)
        dropped = {"too_long": int(too_long.sum()), "length_ratio": int(bad_ratio.sum())}
        if dropped["too_long"] or dropped["length_ratio"]:
            out = out.filter(pa.array(~(too_long | bad_ratio)))
    return out, dropped


def _ids_array(ids: list[list[int]]) -> tuple[pa.ListArray, np.ndarray]:
    """A list<int32> array from lists of ids, and the int32 lengths."""
    lens = np.fromiter(map(len, ids), dtype=np.int32, count=len(ids))
    flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int32, count=int(lens.sum()))
    offsets = np.zeros(len(ids) + 1, dtype=np.int32)
    np.cumsum(lens, out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat)), lens


# ---------------------------------------------------------------------------------------------
# Arrow files written chunk by chunk and read back chunk by chunk (never all at once)


class ArrowStream:
    """An Arrow IPC stream file written one record batch at a time."""

    def __init__(self, path: Path, schema: pa.Schema):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.sink = pa.OSFile(str(self.path), "wb")
        self.writer = pa.ipc.new_stream(self.sink, schema)
        self.rows = 0

    def write(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows:
            self.writer.write_batch(batch)
            self.rows += batch.num_rows

    def close(self) -> None:
        self.writer.close()
        self.sink.close()


def read_batches(path: Path) -> Iterator[pa.RecordBatch]:
    """Record batches of an Arrow stream file, read (not memory-mapped) one at a time."""
    with pa.OSFile(str(path), "rb") as f:
        yield from pa.ipc.open_stream(f)


def masked(batches: Iterable[pa.RecordBatch], keep: np.ndarray | None) -> Iterator:
    """Batches with the rows where `keep` (one flag per row of the whole stream) is False removed."""
    start = 0
    for batch in batches:
        n = batch.num_rows
        if keep is not None:
            batch = batch.filter(pa.array(keep[start : start + n]))
        start += n
        yield batch


def sample_rows(path: Path, rows: np.ndarray, columns: list[str]) -> Iterator[str]:
    """Text of the given sorted row numbers of an Arrow stream file, in one pass; with several
    columns, row by row (src, tgt, src, tgt, ...)."""
    start, pos = 0, 0
    for batch in read_batches(path):
        end = start + batch.num_rows
        stop = int(np.searchsorted(rows, end))
        if stop > pos:
            take = pa.array(rows[pos:stop] - start)
            cols = [batch.column(c).take(take).to_pylist() for c in columns]
            for row in zip(*cols):
                yield from row
        pos, start = stop, end
