"""Trust flags: cheap per-line checks that say which translations not to trust.

No second model: each check reads the source, the output and what the search already knows.
Two checks are calibrated on the model's validation split at training time (`Calibration`,
stored in checkpoints and carried by `nmt export`); a model without one skips them and says
`"calibrated": false`.

| check | fires when | catches | misses |
|---|---|---|---|
| loop | a span of 1-4 words comes 3 times in a row, or 1-8 letters 5 times in a row inside a word | outputs repeating a phrase or a subword until the length limit | loops with variations, repeats far apart |
| length_ratio | output/source pieces outside the validation references' range (0.5th-99.5th percentile) | dropped clauses, runaway outputs, one-word answers to long inputs | wrong content of a plausible length |
| copy | the output is a near-copy of the source (similarity >= 0.8, 3+ words) | untranslated lines, source echoed back | a partial copy inside a longer output; names and numbers |
| cut | the search stopped at the length limit before an end of sentence | unfinished outputs (often loops) | outputs that ended but are still wrong |
| low_confidence | mean log-probability per output token below the 5th percentile of the model's validation outputs | inputs unlike the training data, garbled inputs | fluent hallucinations the model is sure of |
"""

from __future__ import annotations

import difflib
import json
import math
import re
from dataclasses import asdict, dataclass, fields

CHECKS = ("loop", "length_ratio", "copy", "cut", "low_confidence")
CALIBRATED = ("length_ratio", "low_confidence")  # need a `Calibration`
LOOP_SPAN, LOOP_TIMES = 4, 3  # longest repeated span (words), repetitions in a row
COPY_SIMILARITY, COPY_MIN_WORDS = 0.8, 3
_LETTER_LOOP = re.compile(r"([^\W\d_]{1,8}?)\1{4,}")  # letters (no digits) 5+ times in a row
RATIO_PERCENTILES = (0.5, 99.5)  # of the validation references' length ratios
CONFIDENCE_PERCENTILE = 5.0  # of the validation outputs' mean token log-probabilities
MIN_LINES = 20  # validation lines a calibration needs


@dataclass(frozen=True)
class Calibration:
    """The thresholds of the calibrated checks, from a model's validation split."""

    ratio_low: float
    ratio_high: float
    min_mean_logprob: float
    lines: int  # validation lines they come from

    @classmethod
    def from_validation(cls, ref_ratios: list[float], mean_logprobs: list[float]):
        """From the references' output/source length ratios (pieces) and the model's mean
        token log-probabilities on its own validation outputs; None with fewer than
        MIN_LINES of either (percentiles of a handful of lines would flag half the outputs)."""
        if min(len(ref_ratios), len(mean_logprobs)) < MIN_LINES:
            return None
        low, high = (_percentile(ref_ratios, q) for q in RATIO_PERCENTILES)
        floor = _percentile(mean_logprobs, CONFIDENCE_PERCENTILE)
        return cls(round(low, 4), round(high, 4), round(floor, 4), len(mean_logprobs))

    @classmethod
    def from_dict(cls, d: dict | None) -> Calibration | None:
        """The saved thresholds (None: uncalibrated); a ValueError for anything else."""
        if not d:
            return None
        names = [f.name for f in fields(cls)]
        numbers = all(type(v) in (int, float) for v in d.values()) if isinstance(d, dict) else False
        if not numbers or sorted(d) != sorted(names):
            raise ValueError(f"calibration must hold the numbers {', '.join(names)}")
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)


def _percentile(values: list[float], q: float) -> float:
    """The q-th percentile (linear interpolation between the closest ranks)."""
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


@dataclass(frozen=True)
class LineFacts:
    """What the checks read about one translated line."""

    source: str
    output: str
    src_pieces: int  # without </s>
    out_pieces: int  # without </s>
    mean_logprob: float  # per output token, </s> included when the output ended
    ended: bool
    sampled: bool = False  # drawn by sampling: the confidence floor (of searched outputs) is moot


def check(facts: LineFacts, calibration: Calibration | None) -> dict:
    """The checks' values and which fired: {"flags": [...], "loop": ..., ..., "calibrated"}."""
    words = facts.output.split()
    loop = _loop(words)
    ratio = facts.out_pieces / max(facts.src_pieces, 1)
    similarity = _similarity(facts.source, facts.output)
    fired = {
        "loop": loop is not None,
        "copy": similarity >= COPY_SIMILARITY and len(words) >= COPY_MIN_WORDS,
        "cut": not facts.ended,
    }
    if calibration is not None:
        fired["length_ratio"] = not calibration.ratio_low <= ratio <= calibration.ratio_high
        fired["low_confidence"] = (
            not facts.sampled and facts.mean_logprob < calibration.min_mean_logprob
        )
    return {
        "flags": [c for c in CHECKS if fired.get(c)],
        "loop": loop,
        "length_ratio": round(ratio, 3),
        "copy": round(similarity, 3),
        "cut": not facts.ended,
        "mean_logprob": round(facts.mean_logprob, 4),
        "calibrated": calibration is not None,
    }


def _loop(words: list[str]) -> str | None:
    """The first span of 1..LOOP_SPAN words repeated LOOP_TIMES times in a row, else the first
    run of letters repeated inside a word (a subword loop), or None."""
    for n in range(1, LOOP_SPAN + 1):
        for i in range(len(words) - n * LOOP_TIMES + 1):
            span = words[i : i + n]
            if all(words[i + k * n : i + (k + 1) * n] == span for k in range(1, LOOP_TIMES)):
                return " ".join(span)
    m = _LETTER_LOOP.search(" ".join(words))
    return m[1] if m else None


def _similarity(source: str, output: str) -> float:
    if not source.strip() or not output.strip():
        return 0.0
    matcher = difflib.SequenceMatcher(None, source.lower(), output.lower(), autojunk=False)
    quick = matcher.quick_ratio()  # an upper bound, linear: the exact ratio only near the bar
    return matcher.ratio() if quick >= COPY_SIMILARITY else quick


def json_line(n: int, flags: dict | None) -> str:
    """Line n's checks as one JSON object (a blank input line has none)."""
    return json.dumps({"line": n, **(flags or {"flags": [], "blank": True})}, ensure_ascii=False)


def summary(flags: list[dict | None], hyps: list[str], refs: list[str], bleu) -> dict:
    """Lines per check, and the BLEU (`bleu(hyps, refs)`) of flagged and unflagged lines."""
    fired = [f["flags"] if f else [] for f in flags]
    out: dict = {
        "calibrated": any(f and f["calibrated"] for f in flags),
        "lines": {c: sum(c in f for f in fired) for c in CHECKS},
        "flagged": sum(bool(f) for f in fired),
    }
    for name, pick in (("flagged", True), ("unflagged", False)):
        idx = [i for i, f in enumerate(fired) if bool(f) == pick]
        out[f"bleu_{name}"] = (
            round(bleu([hyps[i] for i in idx], [refs[i] for i in idx]), 2) if idx else None
        )
    return out
