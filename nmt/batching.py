"""Token-bounded, length-bucketed batches: little compute goes to padding.

Training batches are reshuffled every epoch from (seed, epoch) alone, so the data order of a
resumed run is the data order of the uninterrupted one. A background thread reads and pads the
next batches while the current step runs.
"""

from __future__ import annotations

import ctypes
import mmap
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from nmt.tokenizer import BOS_ID, EOS_ID, PAD_ID


def bucket_batches(
    src_len, tgt_len, max_tokens: int, rng: np.random.Generator | None = None
) -> list[np.ndarray]:
    """Sort by length (random order among equal lengths) and cut into batches whose padded size
    max(longest src, longest tgt) * count stays within `max_tokens`; shuffle the batches.

    The sort key is the one the budget is on, max(src, tgt), then target and source length:
    batches fill the budget and both sides stay tightly packed (95-96% real tokens on Multi30k)."""
    src_len, tgt_len = np.asarray(src_len), np.asarray(tgt_len)
    longest = np.maximum(src_len, tgt_len)
    n = len(src_len)
    idx = rng.permutation(n) if rng is not None else np.arange(n)
    if n < 2**31:
        idx = idx.astype(np.int32)  # the schedule holds every index: half the memory at 10M
    idx = idx[np.lexsort((src_len[idx], tgt_len[idx], longest[idx]))]  # stable: random ties
    bounds = _cut_points(longest[idx], max_tokens)
    batches = np.split(idx, bounds[1:-1])
    if rng is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def _cut_points(longest: np.ndarray, max_tokens: int) -> np.ndarray:
    """Batch boundaries over ascending lengths: a batch grows while its last (longest) length
    times its size fits `max_tokens` (a single longer pair is a batch of its own).

    One numpy search per batch, not a Python step per pair: ~0.1 s for 10M pairs."""
    n = len(longest)
    bounds = [0]
    start = 0
    while start < n:
        cap = max(1, max_tokens // max(int(longest[start]), 1))  # lengths only grow from here
        window = longest[start : start + cap + 1].astype(np.int64)
        over = window * np.arange(1, len(window) + 1) > max_tokens
        over[0] = False
        end = start + (int(over.argmax()) if over.any() else len(window))
        bounds.append(end)
        start = end
    return np.asarray(bounds)


def read_lengths(ds, name: str) -> np.ndarray:
    """One length column as a numpy array, straight from the memory-mapped Arrow table (no
    Python list of millions of ints)."""
    table = getattr(ds, "data", None)
    if table is not None and getattr(ds, "_indices", None) is None and hasattr(table, "column"):
        return table.column(name).to_numpy()
    return np.asarray(ds[name])


@dataclass(frozen=True)
class Sampling:
    """Subword regularisation of training batches (`Tokenizer.sample`): smoothing or dropout
    `alpha`, over the `nbest` best segmentations (-1: all); a sampled sentence longer than
    `max_len` tokens (with EOS) keeps its deterministic segmentation."""

    alpha: float
    nbest: int = -1
    max_len: int = 256


class PairSampling:
    """Temperature sampling of a multilingual corpus's pairs (Arivazhagan et al. 2019): each
    epoch draws as many rows as the corpus has, pair p's share ~ w_p n_p^(1/T) (weights w from
    `--data-spec`, 1 by default). A pair drawn more often than it has rows repeats all of them
    first; the rest are drawn without replacement."""

    def __init__(self, pair: np.ndarray, temperature: float, weights: list[float] | None = None):
        counts = np.bincount(pair)
        self.rows = [np.flatnonzero(pair == p).astype(np.int64) for p in range(len(counts))]
        share = counts.astype(np.float64) ** (1.0 / temperature)
        if weights is not None:
            share = share * np.asarray(weights[: len(counts)], dtype=np.float64)
        self.draws = np.round(share / share.sum() * len(pair)).astype(np.int64)

    @classmethod
    def of(cls, ds, temperature: float, weights=None) -> PairSampling | None:
        """For a split with several pairs; None for a bilingual one."""
        if "pair" not in getattr(ds, "column_names", ds):  # a dataset, or a dict of columns
            return None
        pair = read_lengths(ds, "pair")
        return cls(pair, temperature, weights) if len(pair) and pair.max() > 0 else None

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        parts = []
        for rows, m in zip(self.rows, self.draws):
            whole, rest = divmod(int(m), len(rows)) if len(rows) else (0, 0)
            parts += [rows] * whole + [rng.choice(rows, size=rest, replace=False)]
        return np.concatenate(parts)


@dataclass(frozen=True)
class BatchPlan:
    """How one process of a run cuts its training batches: the token budget, the seed of the
    epochs' order, its rank among `world` processes, subword `sampling` (with the `tokenizer`
    that samples), the pairs' sampling temperature and weights, and each pair's target-language
    tag id (a multilingual vocabulary)."""

    max_tokens: int
    seed: int
    rank: int = 0
    world: int = 1
    sampling: Sampling | None = None
    tokenizer: object = None
    pair_temperature: float = 1.0
    tags: list[int] | None = None
    pair_weights: list[float] | None = None


OVERSIZE = 1.1  # a sampled batch over max_tokens by more than this factor is split
RECUT_WINDOW = 128  # consecutive sampled batches pooled and cut again on their sampled lengths


class TrainBatches:
    """Batches of an encoded split for one process of a (possibly distributed) run.

    Only the lengths live in RAM; token ids are read from the memory-mapped split per batch.
    With `sampling`, a batch's text is read instead and segmented at random. Batches are cut on
    the stored (deterministic) lengths; sampled lengths spread wider (a third of the padded
    positions would be padding), so each `RECUT_WINDOW` consecutive batches are sampled
    together, pooled and cut again into as many batches on their sampled lengths (`recut`), and
    one still more than `OVERSIZE` times `max_tokens` is split in two (recursively). The draws
    of batch i of an epoch depend on (seed, epoch, i, side) alone, i counting the batches of
    every rank, and the recut on (seed, epoch, window): a resumed run samples what the
    uninterrupted one did and no two ranks or sides share their draws."""

    def __init__(self, ds, plan: BatchPlan):
        p = plan
        self.ds = ds
        self.src_len = read_lengths(ds, "src_len")
        self.tgt_len = read_lengths(ds, "tgt_len")
        self.pairs = PairSampling.of(ds, p.pair_temperature, p.pair_weights)
        # sampled sources start with their pair's target-language tag (multilingual vocabulary)
        self.tags = None if not p.tags else (np.asarray(p.tags), read_lengths(ds, "pair"))
        self.max_tokens, self.seed, self.rank, self.world = p.max_tokens, p.seed, p.rank, p.world
        self.sampling, self.tokenizer = p.sampling, p.tokenizer
        table = getattr(ds, "data", None)
        self.columns = None  # memory-mapped list<int32> columns, read chunk by chunk
        self.texts = None  # and the text columns, with sampling
        if table is not None and getattr(ds, "_indices", None) is None:
            self.columns = [ChunkedRows(table.table.column(n)) for n in ("src_ids", "tgt_ids")]
            if p.sampling is not None:
                self.texts = [TextRows(table.table.column(n)) for n in ("src_text", "tgt_text")]
        self.pages = MappedPages([f["filename"] for f in getattr(ds, "cache_files", [])])
        self.reads = 0
        self.schedule: tuple[int, list] | None = None  # (epoch, its batches): the last handed out
        self.window: tuple[tuple[int, int], list] | None = None  # ((epoch, first), recut pairs)

    def epoch(self, epoch: int) -> list[np.ndarray]:
        """This rank's batches for `epoch`; every rank gets the same number."""
        rng = np.random.default_rng([self.seed, epoch])
        if self.pairs is None:
            batches = bucket_batches(self.src_len, self.tgt_len, self.max_tokens, rng)
        else:  # the rows this epoch draws from each pair, then bucketed as one corpus
            rows = self.pairs.draw(rng)
            cut = bucket_batches(self.src_len[rows], self.tgt_len[rows], self.max_tokens, rng)
            batches = [rows[b] for b in cut]
        n = len(batches) // self.world * self.world or len(batches)
        mine = batches[self.rank : n : self.world]
        self.schedule = (epoch, mine)
        return mine

    def target_tokens(self, idx: np.ndarray) -> int:
        """Target tokens of a batch (EOS included): its tgt_out's non-pad positions."""
        return int(self.tgt_len[idx].sum())

    def read(self, idx: np.ndarray, key: tuple[int, int] = (0, 0)) -> tuple[list, int]:
        """The padded CPU tensors of one batch (several when a sampled batch is split) and
        their target tokens; `key` = (epoch, batch index) seeds the sampling."""
        self.reads += 1
        if self.reads % RELEASE_EVERY == 0:
            self.pages.release()
        if self.sampling is not None:
            return self._sampled(idx, key)
        if self.columns is None:
            rows = self.ds[idx.tolist()]
            return [collate(rows["src_ids"], rows["tgt_ids"], "cpu")], self.target_tokens(idx)
        src_vals, src_lens = self.columns[0].take(idx)
        tgt_vals, tgt_lens = self.columns[1].take(idx)
        return [_pad_flat(src_vals, src_lens, tgt_vals, tgt_lens)], self.target_tokens(idx)

    def _sampled(self, idx: np.ndarray, key: tuple[int, int]) -> tuple[list, int]:
        """Batch `key` of its recut window (`idx` is the schedule's batch there; the window
        is sampled and recut when its first batch is asked for, and again after a resume)."""
        epoch, i = key
        first = i - i % RECUT_WINDOW
        if self.window is None or self.window[0] != (epoch, first):
            if self.schedule is None or self.schedule[0] != epoch:
                self.epoch(epoch)
            schedule = self.schedule[1]
            if not np.array_equal(schedule[i], idx):
                raise RuntimeError(f"batch {i} of epoch {epoch} is not the schedule's")
            window = schedule[first : first + RECUT_WINDOW]
            pairs = [p for k, b in enumerate(window) for p in self._sample(b, epoch, first + k)]
            rng = np.random.default_rng([self.seed, epoch, first * self.world + self.rank, 1])
            self.window = ((epoch, first), recut(pairs, len(window), rng))
        pairs = self.window[1][i - first]
        parts = _split_oversize(pairs, int(OVERSIZE * self.max_tokens))
        batches = [collate([x for x, _ in p], [y for _, y in p], "cpu") for p in parts]
        return batches, sum(len(t) + 1 for _, t in pairs)

    def _sample(self, idx: np.ndarray, epoch: int, i: int) -> list[tuple[list, list]]:
        """(source, target) ids of batch i's pairs, each segmented at random."""
        if self.texts is not None:
            srcs, tgts = self.texts[0].take(idx), self.texts[1].take(idx)
        else:
            rows = self.ds[idx.tolist()]
            srcs, tgts = rows["src_text"], rows["tgt_text"]
        seeds = np.random.SeedSequence([self.seed, epoch, i * self.world + self.rank])
        sampling = self.sampling
        src, tgt = self.tokenizer.sample(
            srcs, tgts, sampling.alpha, sampling.nbest, seeds.generate_state(2)
        )
        if self.tags is not None:
            tags, pair = self.tags
            src = [[int(t)] + x for t, x in zip(tags[pair[idx]], src)]
        limit = sampling.max_len
        over = [k for k, (x, y) in enumerate(zip(src, tgt)) if max(len(x), len(y) + 1) > limit]
        if over:  # rare: these keep the stored segmentation, which fits
            stored = self.ds[idx[over].tolist()]
            for k, x, y in zip(over, stored["src_ids"], stored["tgt_ids"]):
                src[k], tgt[k] = x, y
        return list(zip(src, tgt))


def recut(pairs: list, k: int, rng: np.random.Generator) -> list[list]:
    """`pairs` (at least `k`) as `k` batches, in random order, of near-equal padded size:
    sorted by length as `bucket_batches` sorts and cut at the smallest budget that `k` batches
    allow (the greedy cut of sorted lengths needs the fewest batches for a budget), the largest
    halved while fewer than `k` come out."""
    src = np.fromiter((len(s) for s, _ in pairs), np.int64, len(pairs))
    tgt = np.fromiter((len(t) + 1 for _, t in pairs), np.int64, len(pairs))
    longest = np.maximum(src, tgt)
    order = np.lexsort((src, tgt, longest))
    lengths = longest[order]
    lo, hi = int(lengths[-1]), int(lengths[-1]) * len(pairs)
    while lo < hi:  # the smallest budget whose cut needs at most k batches
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if len(_cut_points(lengths, mid)) - 1 <= k else (mid + 1, hi)
    groups = np.split(order, _cut_points(lengths, lo)[1:-1])
    while len(groups) < k:
        big = max(range(len(groups)), key=lambda g: len(groups[g]))
        groups[big : big + 1] = np.array_split(groups[big], 2)
    return [[pairs[j] for j in groups[g]] for g in rng.permutation(k)]


def _split_oversize(pairs: list, limit: int) -> list[list]:
    """`pairs` as one batch, or halves (recursively) while the padded size is over `limit`."""
    size = len(pairs) * max(max(len(s), len(t) + 1) for s, t in pairs)
    if size <= limit or len(pairs) == 1:
        return [pairs]
    half = len(pairs) // 2
    return _split_oversize(pairs[:half], limit) + _split_oversize(pairs[half:], limit)


class TextRows:
    """Rows of a chunked string column by global index, taken chunk by chunk (as `ChunkedRows`:
    never the whole column at once)."""

    def __init__(self, column):
        self.chunks = column.chunks
        self.starts = np.cumsum([0] + [len(c) for c in self.chunks])

    def take(self, idx: np.ndarray) -> list[str]:
        chunk, local = locate(self.starts, np.asarray(idx, dtype=np.int64))
        out: list = [None] * len(idx)
        for c in np.unique(chunk):
            rows = np.flatnonzero(chunk == c)
            for r, text in zip(rows, self.chunks[c].take(local[rows]).to_pylist()):
                out[r] = text
        return out


def locate(starts: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The chunk of each global row index (`starts`: each chunk's first row, then the total)
    and the row's index within its chunk."""
    chunk = np.searchsorted(starts, idx, side="right") - 1
    return chunk, idx - starts[chunk]


class ChunkedRows:
    """Rows of a chunked list<int32> column by global index, gathered chunk by chunk.

    Arrow's `take` on a chunked list column concatenated the chunks first: on a memory-mapped
    10M-pair split, a copy of the columns in RAM (2.1 GB of anonymous memory at step 200, against
    0.9 GB now). Here each chunk's offsets and values stay zero-copy views of the mapped file, and
    a batch reads only its own rows."""

    def __init__(self, column):
        self.chunks = [(c.offsets.to_numpy(), c.values.to_numpy()) for c in column.chunks]
        self.starts = np.cumsum([0] + [len(o) - 1 for o, _ in self.chunks])

    def take(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The rows `idx` (in that order): their concatenated values and their lengths."""
        idx = np.asarray(idx, dtype=np.int64)
        chunk, local = locate(self.starts, idx)
        groups = [(self.chunks[c], chunk == c) for c in np.unique(chunk)]
        begin, lens = np.empty_like(idx), np.empty_like(idx)
        for (offsets, _), rows in groups:  # offsets index into the chunk's own values
            begin[rows] = offsets[local[rows]]
            lens[rows] = offsets[local[rows] + 1] - begin[rows]
        out_begin = np.cumsum(lens) - lens
        vals = np.empty(int(lens.sum()), dtype=np.int64)
        for (_, values), rows in groups:
            within = _cols(lens[rows])
            vals[np.repeat(out_begin[rows], lens[rows]) + within] = values[
                np.repeat(begin[rows], lens[rows]) + within
            ]
        return vals, lens


RELEASE_EVERY = 4  # batches read between two releases of the mapped pages


class MappedPages:
    """This process's read-only mappings of a split's Arrow files, found in /proc/self/maps.

    Random rows of a memory-mapped file each map the pages around them (the kernel's fault-
    around), so the file-backed part of RSS climbs to the size of the data dir within a few
    hundred batches: +1.6 GB after 200 batches of a 10M-pair split. That memory is page cache,
    shared and reclaimable, but schedulers that police RSS count it. `release` drops these
    mappings' pages from the process (MADV_DONTNEED: the file and the page cache are untouched,
    the next read faults them back in); a no-op where /proc or madvise is missing."""

    def __init__(self, files: list[str]):
        self.ranges: list[tuple[int, int]] = []
        names = {str(Path(f).resolve()) for f in files}
        self.advice = getattr(mmap, "MADV_DONTNEED", None)
        try:
            maps = Path("/proc/self/maps").read_text().splitlines()
            self.madvise = ctypes.CDLL(None, use_errno=True).madvise
        except (OSError, AttributeError, TypeError):
            return
        if self.advice is None:
            return
        self.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        for line in maps:
            parts = line.split(maxsplit=5)
            if len(parts) == 6 and parts[5] in names and "w" not in parts[1]:
                lo, hi = (int(x, 16) for x in parts[0].split("-"))
                self.ranges.append((lo, hi - lo))

    def release(self) -> None:
        for lo, n in self.ranges:
            self.madvise(lo, n, self.advice)


class Batch(NamedTuple):
    """One padded batch: src (B, S), tgt_in = BOS + y (B, T), tgt_out = y + EOS (B, T), and the
    sources' lengths (B,) on the host. The lengths stay a numpy array wherever the tensors go
    (DDP would move a tensor argument to the GPU): the model learns from them how the batch is
    padded without reading anything back from the device."""

    src: torch.Tensor
    tgt_in: torch.Tensor
    tgt_out: torch.Tensor
    src_lengths: np.ndarray

    def to(self, device, non_blocking: bool = False) -> Batch:
        move = [t.to(device, non_blocking=non_blocking) for t in self[:3]]
        return Batch(*move, self.src_lengths)

    def pin_memory(self) -> Batch:
        return Batch(*(t.pin_memory() for t in self[:3]), self.src_lengths)


def _pad_flat(src_vals, src_lens, tgt_vals, tgt_lens) -> Batch:
    """The `Batch` of flat ids and lengths, padded with PAD: every batch, training or
    decoding, is padded here."""
    B = len(src_lens)
    T = int(tgt_lens.max()) + 1 if B else 1
    src = _scatter(src_vals, src_lens, int(src_lens.max()) if B else 0)
    tgt_in = _scatter(tgt_vals, tgt_lens, T, offset=1)
    tgt_in[:, 0] = BOS_ID
    tgt_out = _scatter(tgt_vals, tgt_lens, T)
    tgt_out[np.arange(B), tgt_lens] = EOS_ID
    return Batch(*(torch.from_numpy(a) for a in (src, tgt_in, tgt_out)), np.asarray(src_lens))


def _scatter(vals: np.ndarray, lens: np.ndarray, width: int, offset: int = 0) -> np.ndarray:
    """A PAD-filled (len(lens), width) int64 array with row i's `lens[i]` values of the flat
    `vals` placed from column `offset` on."""
    out = np.full((len(lens), width), PAD_ID, dtype=np.int64)
    out[_rows(lens), _cols(lens) + offset] = vals
    return out


def _flat(seqs) -> tuple[np.ndarray, np.ndarray]:
    """Lists of ids as (concatenated values, lengths)."""
    lens = np.fromiter(map(len, seqs), dtype=np.int64, count=len(seqs))
    vals = np.fromiter((t for s in seqs for t in s), dtype=np.int64, count=int(lens.sum()))
    return vals, lens


def _rows(lens: np.ndarray) -> np.ndarray:
    return np.repeat(np.arange(len(lens)), lens)


def _cols(lens: np.ndarray) -> np.ndarray:
    starts = np.repeat(np.cumsum(lens) - lens, lens)
    return np.arange(int(lens.sum())) - starts


class Prefetcher:
    """Reads and pads the batches of an epoch in a background thread while the step runs.

    The schedule is fixed (`TrainBatches.epoch`); the prefetcher only runs ahead of the
    consumer by `depth` batches, so the data position a checkpoint stores (batches consumed)
    still decides the next batch exactly. On GPU the tensors are pinned and copied with
    `non_blocking`. `wait_seconds` is the time the consumer spent blocked on data."""

    def __init__(
        self, batches: TrainBatches, schedule, start: int, device, epoch: int = 0, depth: int = 4
    ):
        self.schedule, self.next_index, self.device = schedule, start, torch.device(device)
        self.epoch = epoch
        self.pin = self.device.type == "cuda"
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.stopped = threading.Event()
        self.wait_seconds = 0.0
        self.thread = threading.Thread(
            target=self._fill, args=(batches, start), daemon=True, name="nmt-prefetch"
        )
        self.thread.start()

    def _fill(self, batches: TrainBatches, start: int) -> None:
        for i in range(start, len(self.schedule)):
            try:
                parts, n_tokens = batches.read(self.schedule[i], (self.epoch, i))
                if self.pin:
                    parts = [part.pin_memory() for part in parts]
                item = (parts, n_tokens)
            except BaseException as e:  # handed to the consumer, raised there
                item = e
            while not self.stopped.is_set():
                try:
                    self.queue.put((i, item), timeout=0.1)
                    break
                except queue.Full:
                    continue
            if self.stopped.is_set() or isinstance(item, BaseException):
                return

    def take(self, idx: np.ndarray) -> tuple[list, int]:
        """The next batch of the schedule (which must be `idx`) on the device: its padded
        tensors (more than one when a sampled batch was split) and its target tokens."""
        t0 = time.perf_counter()
        i, item = self.queue.get()
        self.wait_seconds += time.perf_counter() - t0
        if isinstance(item, BaseException):
            raise item
        if i != self.next_index or self.schedule[i] is not idx:
            raise RuntimeError(f"prefetcher out of order: batch {i}, expected {self.next_index}")
        self.next_index += 1
        parts, n_tokens = item
        device = [p.to(self.device, non_blocking=self.pin) for p in parts]
        return device, n_tokens

    def close(self) -> float:
        """Stop the thread; returns the seconds the consumer waited for data."""
        self.stopped.set()
        self.thread.join()
        return self.wait_seconds


def pad(seqs, device) -> torch.Tensor:
    """(B, longest) int64 tensor of id sequences, padded with PAD_ID."""
    vals, lens = _flat(seqs)
    return torch.from_numpy(_scatter(vals, lens, int(lens.max()))).to(device)


def collate(src_ids: list[list[int]], tgt_ids: list[list[int]], device) -> Batch:
    """The `Batch` of these id lists on `device`: src (B, S), tgt_in = BOS + y (B, T),
    tgt_out = y + EOS (B, T), padded with PAD; the lengths stay on the host."""
    return _pad_flat(*_flat(src_ids), *_flat(tgt_ids)).to(device)
