"""`nmt score`: how likely a model finds given translations (forced decoding).

One output line per pair, tab-separated: the total log-probability (natural log, end of
sentence included, no label smoothing), its mean per target token, the target token count.
Pairs come from two files (SOURCE TARGET) or from two-column TSV lines on stdin. Used to filter
noisy parallel data, rerank n-best lists, or check a model.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from nmt.errors import NMTError
from nmt.files import read_lines, read_text_lines
from nmt.runtimes import open_translator
from nmt.search_options import DecodeFlags
from nmt.translate import Notes, _output
from nmt.translator import RuntimeOptions


def read_pairs(source: Path | None, target: Path | None) -> tuple[list[str], list[str]]:
    """The (source, target) pairs: two files of equal line counts, or TSV on stdin."""
    if (source is None) != (target is None):
        raise NMTError("give SOURCE and TARGET files, or neither (two-column TSV on stdin)")
    if source is not None:
        srcs, tgts = read_text_lines(source), read_text_lines(target)
        if len(srcs) != len(tgts):
            raise NMTError(f"{source} has {len(srcs)} lines, {target} has {len(tgts)}")
        return srcs, tgts
    srcs, tgts = [], []
    for n, line in enumerate(read_lines([]), 1):
        fields = line.rstrip("\r\n").split("\t")
        if len(fields) != 2:
            raise NMTError(
                f"<stdin>:{n}: {len(fields)} tab-separated fields, not 2 (source, target)"
            )
        srcs.append(fields[0])
        tgts.append(fields[1])
    return srcs, tgts


def run_scoring(
    ckpt: Path | list[Path],  # a list: an ensemble
    source: Path | None,
    target: Path | None,
    output: Path | None = None,
    runtime: RuntimeOptions = RuntimeOptions(),
    batch_tokens: int | None = None,  # default: the model's decode section's
    tgt_lang: str | None = None,  # the language of the targets (a multilingual model's tag)
    log: Callable[[str], None] = print,
) -> int:
    """Score every pair before writing anything (a truncated source or one with characters
    outside the vocabulary is a warning in `log`, as in translate); returns the number of
    pairs."""
    srcs, tgts = read_pairs(source, target)  # line counts checked before the model loads
    translator = open_translator(ckpt, runtime)
    budget = translator.options(DecodeFlags(batch_tokens=batch_tokens)).batch_tokens  # checked
    notes = Notes(log)
    scores = translator.score(srcs, tgts, budget, tgt_lang, notes) if srcs else []
    notes.close()
    with _output(output) as out:
        out.write("".join(s.line() + "\n" for s in scores))
    return len(scores)
