"""Token-bounded, length-bucketed batches: little compute goes to padding.

Training batches are reshuffled every epoch from (seed, epoch) alone, so the data order of a
resumed run is the data order of the uninterrupted one.
"""

from __future__ import annotations

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
    idx = rng.permutation(len(src_len)) if rng is not None else np.arange(len(src_len))
    idx = idx[np.lexsort((src_len[idx], tgt_len[idx], longest[idx]))]  # stable: random ties
    longest = longest[idx].tolist()
    batches, start, width = [], 0, 0
    for i, n in enumerate(longest):
        width = max(width, n)
        if width * (i - start + 1) > max_tokens and i > start:
            batches.append(idx[start:i])
            start, width = i, n
    if start < len(idx):
        batches.append(idx[start:])
    if rng is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


class TrainBatches:
    """Batches of an encoded split for one process of a (possibly distributed) run."""

    def __init__(self, ds, max_tokens: int, seed: int, rank: int = 0, world: int = 1):
        self.ds = ds
        self.src_len = np.asarray(ds["src_len"])
        self.tgt_len = np.asarray(ds["tgt_len"])
        self.max_tokens, self.seed, self.rank, self.world = max_tokens, seed, rank, world

    def epoch(self, epoch: int) -> list[np.ndarray]:
        """This rank's batches for `epoch`; every rank gets the same number."""
        rng = np.random.default_rng([self.seed, epoch])
        batches = bucket_batches(self.src_len, self.tgt_len, self.max_tokens, rng)
        n = len(batches) // self.world * self.world or len(batches)
        return batches[self.rank : n : self.world]

    def collate(self, idx: np.ndarray, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """src (B, S), tgt_in = BOS + y (B, T), tgt_out = y + EOS (B, T), padded with PAD."""
        rows = self.ds[idx.tolist()]
        return collate(rows["src_ids"], rows["tgt_ids"], device)


def pad(seqs, device) -> torch.Tensor:
    """(B, longest) int64 tensor of id sequences, padded with PAD_ID."""
    out = np.full((len(seqs), max(len(s) for s in seqs)), PAD_ID, dtype=np.int64)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s
    return torch.from_numpy(out).to(device)


def collate(src_ids: list[list[int]], tgt_ids: list[list[int]], device):
    """src (B, S), tgt_in = BOS + y (B, T), tgt_out = y + EOS (B, T), padded with PAD."""
    tgt_in = pad([[BOS_ID, *t] for t in tgt_ids], device)
    tgt_out = pad([[*t, EOS_ID] for t in tgt_ids], device)
    return pad(src_ids, device), tgt_in, tgt_out
