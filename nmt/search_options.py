"""Decode options: what a search is asked to do, with the one set of defaults that the CLI's
`translate`, `evaluate` and `score`, the Python API, a config's `decode` section and validation
during training share; and what a search returns. Free of torch, so that the CTranslate2 runtime
never imports it.

Each field's metadata names its command-line flag and help text (`nmt.cli` builds the flags of
the commands from it). A model carries its `decode` section (`Config.decode`, saved in run dirs,
checkpoints and exports); `DecodeFlags` holds the options given explicitly (flags, an API call),
which override it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field, fields, make_dataclass
from typing import Any

from nmt.checks import flag as _flag
from nmt.errors import NMTError

BEAM = 5  # default beam size (1 when sampling)
BATCH_TOKENS = 4000  # source tokens per decoding (and scoring) batch
SAMPLING_ONLY = ("temperature", "top_k", "top_p", "seed")  # fields that only sampling reads


@dataclass(frozen=True)
class SearchOptions:
    beam: int | None = field(
        default=None,
        metadata=_flag("--beam", "Beam size (1: greedy; sampling draws with 1).", "-b", shown=BEAM),
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
        default=BATCH_TOKENS, metadata=_flag("--batch-tokens", "Source tokens per batch.")
    )
    seed: int = field(default=1, metadata=_flag("--seed", "Random seed for sampling."))
    attention: bool = False  # return attention weights of the chosen hypotheses (no flag)

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


FLAGGED = tuple(f.name for f in fields(SearchOptions) if "flag" in f.metadata)  # the options
_DEFAULTS = {f.name: f.default for f in fields(SearchOptions)}


def _over(self, base: SearchOptions) -> SearchOptions:
    """`base` (a model's decode section) with the options given here: a given option wins; a
    setting of the model's that the search asked for here would refuse (sampling settings under
    a search, a length penalty at beam 1, n-best beyond the beam) falls back to its default."""
    given = {k: getattr(self, k) for k in FLAGGED if getattr(self, k) is not None}
    values = {k: getattr(base, k) for k in FLAGGED} | given
    if "beam" in given and "sample" not in given:
        values["sample"] = False  # a beam asks for a search
    if "sample" in given and "beam" not in given:
        values["beam"] = None  # the mode's own beam
    beam = values["beam"] or (1 if values["sample"] else BEAM)
    for name in FLAGGED:
        refused = (
            (name in SAMPLING_ONLY and not values["sample"])
            or (name == "alpha" and beam == 1)
            or (name == "n_best" and (values["sample"] or values["n_best"] > beam))
        )
        if refused and name not in given:
            values[name] = _DEFAULTS[name]
    return SearchOptions(**values, attention=base.attention)


def _decode_flags_class():
    """`DecodeFlags`: every `SearchOptions` option as an optional field (None: not given), so a
    new option reaches the flags and the APIs built from this class without new code."""
    import typing

    hints = typing.get_type_hints(SearchOptions)
    cls = make_dataclass(
        "DecodeFlags",
        [(name, hints[name] | None, field(default=None)) for name in FLAGGED],
        frozen=True,
        namespace={"over": _over, "__module__": __name__},
    )
    cls.__doc__ = "Decode options given explicitly (None: not given); `over(base)` applies them."
    return cls


DecodeFlags = _decode_flags_class()


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
