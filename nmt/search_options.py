"""Decode options: what a search is asked to do, with the one set of defaults that the CLI's
`translate` and `evaluate`, the Python API and validation during training share; and what a
search returns. Free of torch, so that the CTranslate2 runtime never imports it.

Each field's metadata names its command-line flag and help text (`nmt.cli` builds the flags of
both commands from it).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field, fields
from typing import Any

from nmt.errors import NMTError

BEAM = 5  # default beam size (1 when sampling)
SAMPLING_ONLY = ("temperature", "top_k", "top_p", "seed")  # fields that only sampling reads


def _flag(flag: str, help: str, short: str | None = None) -> dict:
    return {"flag": flag, "short": short, "help": help}


@dataclass(frozen=True)
class SearchOptions:
    beam: int | None = field(
        default=None,
        metadata=_flag(
            "--beam", f"Beam size (1: greedy) [default: {BEAM}; 1 with --sample].", "-b"
        ),
    )
    alpha: float = field(
        default=0.6, metadata=_flag("--length-penalty", "GNMT length penalty alpha (0: none).")
    )
    n_best: int = field(
        default=1, metadata=_flag("--n-best", "Hypotheses per line (tab-separated with scores).")
    )
    max_len_a: float = field(
        default=1.5, metadata=_flag("--max-len-a", "Max output length = a * source length + b.")
    )
    max_len_b: int = field(
        default=10, metadata=_flag("--max-len-b", "Max output length = a * source length + b.")
    )
    sample: bool = field(
        default=False, metadata=_flag("--sample", "Sample instead of searching (beam 1).")
    )
    temperature: float = field(
        default=1.0, metadata=_flag("--temperature", "Sampling temperature.")
    )
    top_k: int = field(
        default=0, metadata=_flag("--top-k", "Sample among the k best tokens (0: all).")
    )
    top_p: float = field(default=1.0, metadata=_flag("--top-p", "Nucleus sampling mass."))
    no_repeat_ngram: int = field(
        default=0, metadata=_flag("--no-repeat-ngram", "Block repeated n-grams of this size.")
    )
    batch_tokens: int = field(
        default=4000, metadata=_flag("--batch-tokens", "Source tokens per batch.")
    )
    seed: int = field(default=1, metadata=_flag("--seed", "Random seed for sampling."))
    attention: bool = False  # return attention weights of the chosen hypotheses
    # the language to write, for a multilingual model (its source tag; `translate --tgt-lang`)
    tgt_lang: str | None = None

    def __post_init__(self):
        if self.beam is None:
            object.__setattr__(self, "beam", 1 if self.sample else BEAM)
        if self.beam < 1 or self.n_best < 1:
            raise NMTError("beam and n-best must be >= 1")
        if self.n_best > self.beam and not self.sample:
            raise NMTError(f"n-best ({self.n_best}) cannot exceed the beam size ({self.beam})")
        if self.sample and self.n_best != 1:
            raise NMTError(
                f"sampling draws one hypothesis per sentence: --n-best {self.n_best} does not "
                "apply (leave --n-best out with --sample)"
            )
        if self.sample and self.beam != 1:
            raise NMTError(
                f"sampling draws one hypothesis per sentence: --beam {self.beam} does not apply "
                "(leave --beam out with --sample)"
            )
        if self.temperature <= 0 or not 0 < self.top_p <= 1 or self.top_k < 0:
            raise NMTError("need temperature > 0, 0 < top-p <= 1 and top-k >= 0")
        self._refuse_what_has_no_effect()
        if self.batch_tokens < 1:
            raise NMTError("--batch-tokens must be >= 1")

    def _refuse_what_has_no_effect(self) -> None:
        """Options that the chosen search would ignore are refused, naming why."""
        defaults = {f.name: f.default for f in fields(self)}
        if not self.sample:
            given = [f.metadata["flag"] for f in fields(self) if f.name in SAMPLING_ONLY
                     and getattr(self, f.name) != defaults[f.name]]  # fmt: skip
            if given:
                one = len(given) == 1
                raise NMTError(
                    f"{'/'.join(given)} only appl{'ies' if one else 'y'} to sampling: add "
                    f"--sample, or leave {'it' if one else 'them'} out"
                )
        if self.beam == 1 and self.alpha != defaults["alpha"]:
            raise NMTError(
                "--length-penalty ranks the finished hypotheses of beam search; greedy search "
                "and sampling (beam 1) keep one, so it has no effect there"
            )

    @property
    def rank_alpha(self) -> float:
        """The length penalty that ranks finished hypotheses: none where search keeps one
        (beam 1: greedy, or a constrained search of one beam)."""
        return self.alpha if self.beam > 1 else 0.0

    def budget(self) -> int:
        """Source tokens per search batch: beams multiply the work per sentence, so the batch
        shrinks with the beam to keep the search state a similar size."""
        return max(self.batch_tokens // max(1, self.beam // 2), 64)

    def length_limits(self, src_lens, max_len: int) -> list[int]:
        """Output tokens allowed per sentence (EOS included): a * len + b rounded in float32 as a
        float32 tensor computes it, capped by the model's `max_len` (no numpy: the CTranslate2
        path starts without it)."""
        a, b = _f32(self.max_len_a), _f32(self.max_len_b)
        return [min(max(int(_f32(_f32(a * n) + b)), 1), max_len) for n in src_lens]


def _f32(x: float) -> float:
    """`x` rounded to float32."""
    return struct.unpack("f", struct.pack("f", x))[0]


@dataclass
class Hypothesis:
    tokens: list[int]  # without BOS/EOS
    score: float  # log-probability (length-normalised in beam search)
    attention: Any = field(default=None, repr=False)  # (len(tokens) + 1, S): torch or numpy
    ended: bool = True  # False: stopped by the length limit before its end-of-sentence
    unmet: list[int] = field(default_factory=list)  # constraints it lacks (cut by the limit)


def length_penalty(length, alpha: float):
    """GNMT's ((5 + length) / 6) ** alpha; `length` counts EOS (an int or a tensor)."""
    return ((5.0 + length) / 6.0) ** alpha


def mean_logprob(h: Hypothesis, opts: SearchOptions) -> float:
    """The model's mean log-probability per output token (end of sentence included when the
    output ended): beam search scores are divided by the length penalty, undone here."""
    n = len(h.tokens) + h.ended
    total = h.score * length_penalty(n, opts.rank_alpha)
    return total / max(n, 1)
