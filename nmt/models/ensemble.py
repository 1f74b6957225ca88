"""An ensemble: several trained models behind the one backend contract, so that search, scoring
and every decode option work on it unchanged.

At each step every member decodes with its own cache and the ensemble's next-token
distribution is the mean of the members' probabilities (as in fairseq, Marian and Sockeye):

    p(y_t | y_<t, x) = 1/M * sum_m p_m(y_t | y_<t, x)

`decode` returns its logarithm in place of logits (already normalised, so search's
`log_softmax` leaves it unchanged and temperature and n-gram blocking act on the ensemble's
distribution). The members' `encoded` and `cache` dicts are merged into one flat dict under
"m.key" names, so beam reordering stays one `index_select` per tensor. The attention returned is
the mean over the members that have attention.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

from nmt.errors import NMTError
from nmt.models.base import Cache, Encoded, src_mask_of


def _merge(parts: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    """Members' flat dicts as one flat dict, keys prefixed with the member's index."""
    return {f"{m}.{k}": v for m, part in enumerate(parts) for k, v in part.items()}


def _split(merged: dict[str, Tensor], members: int) -> list[dict[str, Tensor]]:
    """The inverse of `_merge`."""
    parts: list[dict[str, Tensor]] = [{} for _ in range(members)]
    for key, v in merged.items():
        m, _, k = key.partition(".")
        parts[int(m)][k] = v
    return parts


class Ensemble(nn.Module):
    """Members that share one vocabulary, decoding as one model (mean of probabilities)."""

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        if not members:
            raise NMTError("an ensemble needs at least one model")
        self.members = nn.ModuleList(members)
        self.has_attention = any(m.has_attention for m in members)

    def encode(
        self, src: Tensor, src_mask: Tensor, src_lengths: np.ndarray | None = None
    ) -> Encoded:
        return _merge([m.encode(src, src_mask, src_lengths) for m in self.members])

    def init_cache(self, encoded: Encoded) -> Cache:
        parts = _split(encoded, len(self.members))
        return _merge([m.init_cache(e) for m, e in zip(self.members, parts)])

    def decode(
        self, tgt_in: Tensor, encoded: Encoded, cache: Cache | None = None
    ) -> tuple[Tensor, Tensor | None, Cache | None]:
        """Log of the members' mean probabilities (B, T, V), mean attention or None, cache."""
        M = len(self.members)
        parts = _split(encoded, M)
        caches = _split(cache, M) if cache is not None else [None] * M
        logps, attns, new_caches = [], [], []
        for m, e, c in zip(self.members, parts, caches):
            logits, attn, c = m.decode(tgt_in, e, c)
            logps.append(logits.float().log_softmax(-1))
            if attn is not None:
                attns.append(attn)
            new_caches.append(c)
        logp = torch.logsumexp(torch.stack(logps), 0) - math.log(M)  # (B, T, V)
        attn = torch.stack(attns).mean(0) if attns else None
        return logp, attn, (_merge(new_caches) if cache is not None else None)

    def forward(self, src: Tensor, tgt_in: Tensor) -> Tensor:
        """Teacher-forced log-probabilities (B, T, V) of the ensemble (used for scoring)."""
        logp, _, _ = self.decode(tgt_in, self.encode(src, src_mask_of(src)))
        return logp

    def attention_maps(self, src: Tensor, tgt_in: Tensor) -> dict[str, Tensor]:
        raise NMTError(
            "attention per layer and head is one model's: an ensemble draws only its members' "
            "mean attention (use --attention-plot without --attention-layer/-heads and "
            "--self-attention)"
        )
