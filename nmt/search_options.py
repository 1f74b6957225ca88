"""What a search is asked to do and what it returns, shared by the torch engine (`nmt.search`)
and the CTranslate2 path (`nmt.ct2`); free of torch so that the latter never imports it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nmt.config import BEAM, LENGTH_PENALTY
from nmt.errors import NMTError


@dataclass(frozen=True)
class SearchOptions:
    beam: int | None = None  # default: 1 when sampling, else BEAM
    alpha: float = LENGTH_PENALTY  # GNMT length penalty ((5 + len) / 6) ** alpha; 0: none
    n_best: int = 1
    max_len_a: float = 1.5  # max output length = a * src_len + b (capped by the model's limit)
    max_len_b: int = 10
    sample: bool = False  # sampling draws one hypothesis per sentence (beam 1)
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    no_repeat_ngram: int = 0
    attention: bool = False  # return attention weights of the chosen hypotheses

    def __post_init__(self):
        if self.beam is None:
            object.__setattr__(self, "beam", 1 if self.sample else BEAM)
        if self.beam < 1 or self.n_best < 1:
            raise NMTError("beam and n-best must be >= 1")
        if self.n_best > self.beam and not self.sample:
            raise NMTError(f"n-best ({self.n_best}) cannot exceed the beam size ({self.beam})")
        if self.sample and self.beam != 1:
            raise NMTError(
                f"sampling draws one hypothesis per sentence: --beam {self.beam} does not apply "
                "(leave --beam out with --sample)"
            )
        if self.temperature <= 0 or not 0 < self.top_p <= 1 or self.top_k < 0:
            raise NMTError("need temperature > 0, 0 < top-p <= 1 and top-k >= 0")


@dataclass
class Hypothesis:
    tokens: list[int]  # without BOS/EOS
    score: float  # log-probability (length-normalised in beam search)
    attention: Any = field(default=None, repr=False)  # (len(tokens) + 1, S): torch or numpy


def length_penalty(length, alpha: float):
    """GNMT's ((5 + length) / 6) ** alpha; `length` counts EOS (an int or a tensor)."""
    return ((5.0 + length) / 6.0) ** alpha
