"""The vocabulary of a data dir: SentencePiece trained on a sample of the cleaned training pairs
(one joint model or one per side; one over every language of a multilingual corpus), or an
existing model reused (`--spm-model`) with a report of how well it covers the new data.

`opts` below are the preprocess options (`nmt.preprocess.PreprocessOptions`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nmt import datadir
from nmt.errors import NMTError
from nmt.stages import Stage, sample_rows
from nmt.tokenizer import Tokenizer, tag, train_sentencepiece

MODEL_TYPES = ("unigram", "bpe")
UNK_WARN = 0.001  # more unknown pieces than this share: the vocabulary misses the new data
GROWTH_WARN = 1.5  # pieces per word this many times the original corpus's: it splits words apart

Protos = tuple[bytes, bytes | None]  # SentencePiece models: source (or joint), target or None


# ---------------------------------------------------------------------------------------------
# Training


def train_bilingual(clean: Path, keep, n_pairs: int, opts, coverage, work: Path, log) -> Protos:
    """Train the vocabulary (joint or one per side) on a random sample of the cleaned pairs
    (the Arrow file `clean`, rows where `keep` is true, or all when it is None)."""
    rows = np.flatnonzero(keep) if keep is not None else None
    per_pair = 2 if opts.joint else 1
    k = min(n_pairs, max(1, opts.input_sentence_size // per_pair))
    rng = np.random.default_rng(0)
    pick = np.sort(rng.choice(n_pairs, size=k, replace=False)) if k < n_pairs else None
    if pick is not None and rows is not None:
        pick = rows[pick]
    elif pick is None:
        pick = rows if rows is not None else np.arange(n_pairs)
    kw = _spm_options(opts, coverage)
    sides = [("joint", ["src", "tgt"])] if opts.joint else [("src", ["src"]), ("tgt", ["tgt"])]
    protos = []
    for side, columns in sides:
        stage = Stage("sentencepiece", k * len(columns), log, unit="sentences")
        path = datadir.spm_path(work, side, opts.joint)
        what = "the joint vocabulary" if opts.joint else f"{side} ({getattr(opts, side + '_lang')})"
        sentences = _counted(sample_rows(clean, pick, columns), stage)
        train_sentencepiece(sentences, path, what=what, **kw)
        protos.append(path.read_bytes())
        stage.done(
            f": {what}, {opts.vocab_size} pieces, trained on {stage.n:,} sentences "
            f"sampled from {n_pairs:,} pairs"
        )
    return (protos[0], None) if opts.joint else tuple(protos)


def train_multilingual(cleaned, opts, coverage, work: Path, log) -> Protos:
    """One joint vocabulary over every language of the pairs, each language sampled on its own
    (a share of `input_sentence_size`, so a big corpus does not crowd out a small one), with
    the target-language tags as user-defined pieces where there are several targets.
    `cleaned` holds each pair's (clean file, keep mask, drops, pairs kept)."""
    sides: dict[str, dict[str, tuple]] = {}  # language -> its text files, each counted once
    for pair, (clean, keep, _, kept) in zip(opts.pairs, cleaned):
        for column, lang, i in (("src", pair.src, 0), ("tgt", pair.tgt, 1)):
            key = pair.sources["train"].paths[i : i + 1] or (pair.name, column)  # a multi-way file
            sides.setdefault(lang, {}).setdefault(key, (clean, keep, kept, column))
    budget = max(1, opts.input_sentence_size // len(sides))
    rng = np.random.default_rng(0)
    parts, per_language = [], {}
    for lang, files in sides.items():
        total = sum(kept for _, _, kept, _ in files.values())
        for clean, keep, kept, column in files.values():
            k = min(kept, max(1, round(min(total, budget) * kept / total)))
            pick = np.sort(rng.choice(kept, size=k, replace=False))
            rows = np.flatnonzero(keep)[pick] if keep is not None else pick
            parts.append((clean, rows, column))
            per_language[lang] = per_language.get(lang, 0) + k
    stage = Stage("sentencepiece", sum(len(r) for _, r, _ in parts), log, unit="sentences")
    path = datadir.spm_path(work, "joint", True)
    tags = tuple(dict.fromkeys(tag(p.tgt) for p in opts.pairs)) if opts.tagged else ()
    sentences = (x for clean, rows, column in parts for x in sample_rows(clean, rows, [column]))
    what = f"the joint vocabulary of {', '.join(sides)}"
    kw = _spm_options(opts, coverage)
    train_sentencepiece(_counted(sentences, stage), path, what=what, user_symbols=tags, **kw)
    counts = ", ".join(f"{lang} {n:,}" for lang, n in per_language.items())
    stage.done(f": {what}, {opts.vocab_size} pieces, sentences per language: {counts}")
    return path.read_bytes(), None


def _spm_options(opts, coverage: float) -> dict:
    """The options of `train_sentencepiece` that `opts` set."""
    return dict(
        vocab_size=opts.vocab_size,
        model_type=opts.model_type,
        character_coverage=coverage,
        byte_fallback=opts.byte_fallback,
        input_sentence_size=opts.input_sentence_size,
        num_threads=max(2, opts.num_proc),
    )


def _counted(items, stage: Stage, every: int = 10_000):
    n = 0
    for item in items:
        yield item
        n += 1
        if n == every:
            stage.update(n)
            n = 0
    stage.update(n)


# ---------------------------------------------------------------------------------------------
# An existing SentencePiece model (`--spm-model`)


def read_spm_model(path: Path) -> tuple[Protos, dict | None]:
    """The SentencePiece model(s) of a data dir, a checkpoint or a `.model` file, as (source,
    target or None when joint) protos, and the coverage of the corpus they were trained on
    where it is known."""
    if path.is_dir():
        meta = datadir.read_meta(path)
        tok = datadir.load_tokenizer(path)
        reference = datadir.spm_reference(meta)
    elif path.suffix == ".pt":
        from nmt import checkpoint

        state = checkpoint.read(path)
        tok, reference = state.tokenizer, state.data.get("coverage")
    elif path.is_file():
        try:
            tok = Tokenizer(path.read_bytes())
        except NMTError:
            raise NMTError(f"--spm-model {path}: not a SentencePiece model") from None
        reference = None
    else:
        raise NMTError(f"--spm-model {path}: no such file or data dir")
    return (tok.src_proto, None if tok.joint else tok.tgt_proto), reference


def write_protos(work: Path, protos: Protos) -> None:
    """Write reused SentencePiece models into the data dir being built."""
    for side, proto in zip(("src", "tgt"), protos):
        if proto is not None:
            datadir.spm_path(work, side, protos[1] is None).write_bytes(proto)


def check_tags(tok: Tokenizer, opts) -> None:
    """A reused vocabulary for several targets must have their tags (else the model could
    not tell them apart)."""
    missing = [p.tgt for p in opts.all_pairs() if p.tgt not in tok.tags]
    if opts.tagged and missing:
        raise NMTError(
            f"--spm-model {opts.spm_model}: no target-language tag for {', '.join(missing)} "
            "in its vocabulary; several targets need one each (a multilingual model's)"
        )


def coverage_report(new: dict, reference: dict | None, where: str) -> list[str]:
    """Lines on how well a reused vocabulary covers the new training data, warnings included."""
    lines = []
    for side in ("src", "tgt"):
        n, ref = new[side], (reference or {}).get(side)
        line = (
            f"{side} with {where}'s vocabulary: {100 * n['unk_rate']:.3f}% unknown pieces, "
            f"{n['pieces_per_word']:.2f} pieces per word"
        )
        growth = n["pieces_per_word"] / ref["pieces_per_word"] if ref else None
        if ref:
            line += f" (original corpus: {ref['pieces_per_word']:.2f}, x{growth:.2f})"
        lines.append(line)
        if n["unk_rate"] > UNK_WARN:
            lines.append(
                f"warning: {100 * n['unk_rate']:.2f}% of the {side} pieces are unknown (over "
                f"{100 * UNK_WARN:g}%): the vocabulary misses characters of the new data"
            )
        if growth is not None and growth > GROWTH_WARN:
            lines.append(
                f"warning: the {side} side takes x{growth:.2f} the pieces per word of the "
                f"original corpus: the vocabulary splits the new data's words apart"
            )
    if reference is None:
        lines.append(f"no coverage figures of the corpus behind {where} to compare with")
    return lines
