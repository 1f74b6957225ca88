"""`nmt preprocess`: read the corpora (`nmt.sources`), clean them, train or reuse the
vocabulary (`nmt.vocabulary`), encode, and write a data dir (`nmt.datadir` owns its layout) that
`nmt train` reads.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from nmt import datadir
from nmt.datadir import Meta, MetaPair
from nmt.errors import NMTError
from nmt.files import one_line, remove_stale_temps, reporting_full_disk, temp_name
from nmt.preprocess_options import VOCAB_SIZE, CorpusInputs, PreprocessSettings
from nmt.signals import sigterm_as_interrupt
from nmt.sources import Pair, Source, SplitInput, corpus_pairs, file_stamp, load_split, stamps
from nmt.stages import (
    ArrowStream,
    Stage,
    Workers,
    clean_chunk,
    encode_chunk,
    first_occurrences,
    masked,
    read_batches,
)
from nmt.tokenizer import SPM_SAMPLE_SENTENCES, UNK_ID, Tokenizer, default_character_coverage, tag
from nmt.vocabulary import (
    MODEL_TYPES,
    check_tags,
    coverage_report,
    read_spm_model,
    train_bilingual,
    train_multilingual,
    write_protos,
)

PARALLEL_MIN_PAIRS = 50_000  # worker processes only pay off on big corpora
CLEAN_SCHEMA = pa.schema([("src", pa.string()), ("tgt", pa.string())])
# the defaults of a new SentencePiece model's options (a reused one, `spm_model`, takes none)
VOCABULARY_DEFAULTS = {
    "vocab_size": VOCAB_SIZE,
    "model_type": "unigram",
    "joint": True,
    "character_coverage": None,  # chosen from the languages
    "byte_fallback": False,  # uncovered characters as UTF-8 byte pieces instead of <unk>
    "input_sentence_size": SPM_SAMPLE_SENTENCES,
}


@dataclass(frozen=True)
class PreprocessOptions(PreprocessSettings):
    """Everything a data dir is made from: the settings (keyword-only, as the flags give them)
    and the corpus, either one language pair with its `sources` or a multilingual `pairs`."""

    src_lang: str = ""  # a bilingual data dir's languages (with `sources`), or `pairs`
    tgt_lang: str = ""
    sources: dict[str, Source] = field(default_factory=dict)
    pairs: tuple[Pair, ...] = ()  # a multilingual data dir's pairs (instead of the above)

    def __post_init__(self):
        for name, default in VOCABULARY_DEFAULTS.items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, default)
        if self.spm_model is not None:  # as text: the fingerprint and the meta are JSON
            object.__setattr__(self, "spm_model", str(self.spm_model))
        if self.model_type not in MODEL_TYPES:
            raise NMTError(
                f"--model-type must be {' or '.join(MODEL_TYPES)}, not {self.model_type!r}"
            )
        names = [p.name for p in self.pairs]
        if len(set(names)) < len(names):
            twice = next(n for n in names if names.count(n) > 1)
            raise NMTError(f"--pair {twice.replace('-', ':', 1)} is listed twice")
        if any(p.src == p.tgt for p in self.pairs):
            raise NMTError("a --pair translates between two different languages")
        if self.pairs and not self.joint:
            raise NMTError("a multilingual data dir has one joint vocabulary: leave out --separate")

    @classmethod
    def from_inputs(cls, inputs: CorpusInputs, settings: PreprocessSettings) -> PreprocessOptions:
        """The options of `nmt preprocess`'s flags: the corpus `inputs` and the `settings`."""
        given = [k for k in VOCABULARY_DEFAULTS if getattr(settings, k) is not None]
        if settings.spm_model is not None and given:
            flags = ", ".join("--" + k.replace("_", "-") for k in given)
            raise NMTError(f"{flags}: options of a new SentencePiece model, not of --spm-model")
        pairs = corpus_pairs(inputs)
        one = None if inputs.multilingual else pairs[0]
        return cls(
            src_lang=one.src if one else "",
            tgt_lang=one.tgt if one else "",
            pairs=() if one else pairs,
            sources=one.sources if one else {},
            **{f.name: getattr(settings, f.name) for f in fields(settings)},
        )

    def all_pairs(self) -> tuple[Pair, ...]:
        """The language pairs: `pairs`, or the one of a bilingual data dir."""
        return self.pairs or (Pair(self.src_lang, self.tgt_lang, self.sources),)

    @property
    def tagged(self) -> bool:
        """Whether sources carry target-language tags: where there are several targets."""
        return len({p.tgt for p in self.all_pairs()}) > 1


# ---------------------------------------------------------------------------------------------
# The whole job


def fingerprint(opts: PreprocessOptions) -> str:
    """Hash of options and input file stamps: re-running with the same inputs reuses the output."""
    inputs = []
    for pair in opts.all_pairs():
        for split, source in sorted(pair.sources.items()):
            inputs.append([pair.name, pair.weight, split, *stamps(source)] if opts.pairs else
                          [split, *stamps(source)])  # fmt: skip
    body = {k: v for k, v in asdict(opts).items() if k not in ("sources", "num_proc", "pairs")}
    body = {k: v for k, v in body.items() if k != "spm_model" or v}  # as before the option
    if opts.spm_model:
        spm = Path(opts.spm_model)
        found = [spm] if spm.is_file() else sorted(spm.glob("*.model")) + sorted(spm.glob("*.json"))
        inputs.append(["spm_model", [file_stamp(str(p)) for p in found]])
    return hashlib.sha1(
        json.dumps([datadir.FORMAT_VERSION, body, inputs], sort_keys=True).encode()
    ).hexdigest()


def preprocess(opts: PreprocessOptions, out_dir: Path, force: bool = False, log=print) -> Meta:
    """Read, clean, train SentencePiece, encode and write a data dir; return its meta."""
    out_dir = Path(out_dir).resolve()
    fp = fingerprint(opts)
    if out_dir.exists() and any(out_dir.iterdir()):
        old = datadir.meta_if_any(out_dir) if not force else None
        if old is not None:
            if old.fingerprint == fp:
                log(f"{out_dir} is up to date (same inputs and options): reusing it")
                return old
        if not force:
            raise NMTError(
                f"output directory {out_dir} already exists: use --force or another --out"
            )
    for pair in opts.all_pairs():
        if "train" not in pair.sources:
            raise NMTError(f"no training data given for {pair.name}")

    t0 = time.time()
    for p in remove_stale_temps(out_dir.parent, out_dir.name):
        log(f"removed {p}, left by a process that no longer runs")
    work = temp_name(out_dir)
    shutil.rmtree(work, ignore_errors=True)
    try:
        with sigterm_as_interrupt(), reporting_full_disk(out_dir):
            work.mkdir(parents=True)
            meta = _build(opts, work, fp, log)
            _replace_dir(work, out_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log(f"wrote {out_dir} in {time.time() - t0:.1f}s")
    return meta


def _build(opts: PreprocessOptions, work: Path, fp: str, log) -> Meta:
    cache = work / ".cache"
    pairs = opts.all_pairs()
    reused = read_spm_model(Path(opts.spm_model)) if opts.spm_model else None
    if reused is not None:
        check_tags(Tokenizer(*reused[0]), opts)
    stage = Stage("read", None, log)
    inputs = [
        {s: load_split(src, cache, stage.update) for s, src in p.sources.items()} for p in pairs
    ]
    stage.done(" (" + "; ".join(_sizes(p, inp, opts) for p, inp in zip(pairs, inputs)) + ")")
    big = sum(inp["train"].n for inp in inputs) >= PARALLEL_MIN_PAIRS
    langs = [lang for p in pairs for lang in (p.src, p.tgt)]
    coverage = opts.character_coverage or default_character_coverage(*langs)
    with Workers(opts.num_proc if big else 1) as workers:
        cleaned = [
            _clean(inp["train"], opts, cache / f"clean-{k}.arrow", workers, log, p.sources)
            for k, (p, inp) in enumerate(zip(pairs, inputs))
        ]
        protos = _vocabulary(cleaned, reused, opts, coverage, work, log)
        per_pair = [{s: {"read": inp[s].n} for s in inp} for inp in inputs]
        _write_train(pairs, cleaned, protos, per_pair, opts, work, workers, log)
        shutil.rmtree(cache, ignore_errors=True)
        rows = _write_eval_splits(pairs, inputs, protos, per_pair, work, workers, log)

    tok = Tokenizer(*protos)
    counts = _total_counts(per_pair)
    datadir.write_meta(work, _meta(opts, tok, per_pair, counts, rows, coverage, reused, fp))
    meta = datadir.read_meta(work)
    _log_summary(opts, tok, per_pair, log)
    if reused is not None:
        for line in coverage_report(datadir.coverage(counts["train"]), reused[1], opts.spm_model):
            log(line)
    return meta


def _vocabulary(cleaned, reused, opts: PreprocessOptions, coverage: float, work: Path, log):
    """The SentencePiece protos: reused (`--spm-model`) or trained on the cleaned pairs."""
    if reused is not None:
        write_protos(work, reused[0])
        return reused[0]
    if opts.pairs:
        return train_multilingual(cleaned, opts, coverage, work, log)
    clean, keep, _, kept = cleaned[0]
    return train_bilingual(clean, keep, kept, opts, coverage, work, log)


def _write_train(pairs, cleaned, protos, per_pair, opts, work: Path, workers, log) -> None:
    """Encode the cleaned training pairs, pair after pair, into the train split; counts go into
    each pair's `per_pair` entry."""
    stage = Stage("encode", sum(c[3] for c in cleaned), log)
    with SplitWriter(work, "train") as out:
        for k, (p, (clean, keep, dropped, _)) in enumerate(zip(pairs, cleaned)):
            batches = masked(read_batches(clean), keep)
            tasks = ((b, protos, opts.max_len, opts.max_ratio, p.tgt, k) for b in batches)
            per_pair[k]["train"] |= _encode(tasks, workers, out, stage, dropped)
            per_pair[k]["train"]["dropped"] = dropped
            if per_pair[k]["train"]["kept"] == 0:
                raise NMTError(
                    f"training corpus{_of(p, opts)} is empty after length filtering: raise "
                    "--max-len"
                )
    stage.done()


def _meta(opts, tok: Tokenizer, per_pair, counts, rows, coverage, reused, fp: str) -> Meta:
    """What the data dir's meta records: languages, vocabulary, counts, options, inputs."""
    pairs = opts.all_pairs()
    return Meta(
        src_lang=_one({p.src for p in pairs}),
        tgt_lang=_one({p.tgt for p in pairs}),
        joint_vocab=tok.joint,
        src_vocab_size=tok.src_vocab_size,
        tgt_vocab_size=tok.tgt_vocab_size,
        counts=counts,
        options={k: v for k, v in asdict(opts).items() if k not in ("sources", "pairs")}
        | {"character_coverage": coverage},
        sources=_source_fields(opts.sources),
        fingerprint=fp,
        pairs=tuple(
            MetaPair(p.src, p.tgt, p.weight, c, _source_fields(p.sources))
            for p, c in zip(pairs, per_pair)
        )
        if opts.pairs
        else None,
        pair_rows=rows if opts.pairs else None,
        spm_model=opts.spm_model if reused is not None else None,
        spm_reference=reused[1] if reused is not None else None,
    )


def _source_fields(sources: dict[str, Source]) -> dict[str, dict]:
    return {split: asdict(source) for split, source in sources.items()}


def _log_summary(opts: PreprocessOptions, tok: Tokenizer, per_pair, log) -> None:
    for p, c in zip(opts.all_pairs(), per_pair):
        tr = c["train"]
        drops = ", ".join(f"{v} {k}" for k, v in tr["dropped"].items() if v) or "none"
        log(f"train{_of(p, opts)}: {tr['read']} pairs read, {tr['kept']} kept (dropped: {drops})")
        for split in ("valid", "test"):
            if split in c:
                log(f"{split}{_of(p, opts)}: {c[split]['kept']} pairs")
    log(
        f"vocab: src {tok.src_vocab_size}, tgt {tok.tgt_vocab_size} ({'joint' if tok.joint else 'separate'})"
        + (f", target tags {' '.join(tag(lang) for lang in tok.tags)}" if tok.tags else "")
    )


def _of(pair: Pair, opts: PreprocessOptions) -> str:
    """ " of en-de" in a multilingual data dir's messages; "" in a bilingual one's."""
    return f" of {pair.name}" if opts.pairs else ""


def _sizes(pair: Pair, inputs: dict, opts: PreprocessOptions) -> str:
    sizes = ", ".join(f"{s} {inp.n:,}" for s, inp in inputs.items())
    return f"{pair.name}: {sizes}" if opts.pairs else sizes


def _one(values: set):
    """The one value of a set, or None when there are several."""
    return next(iter(values)) if len(values) == 1 else None


def _total_counts(per_pair: list[dict]) -> dict:
    """Each split's counts summed over the pairs (the bilingual data dir's own)."""
    total: dict = {}
    for counts in per_pair:
        for split, c in counts.items():
            _add(total.setdefault(split, {}), c)
    return total


def _add(into: dict, counts: dict) -> None:
    for k, v in counts.items():
        if isinstance(v, dict):
            _add(into.setdefault(k, {}), v)
        else:
            into[k] = into.get(k, 0) + v


def _write_eval_splits(pairs, inputs, protos, per_pair, work, workers, log) -> dict:
    """Encode the valid and test splits of every pair (raw text kept for the references) into
    one split each, pair after pair; returns each pair's rows there, by split."""
    rows: dict[str, dict[str, list[int]]] = {}
    stage = Stage("write", sum(inp[s].n for inp in inputs for s in inp if s != "train"), log)
    for split in ("valid", "test"):
        todo = [(k, p, inp[split]) for k, (p, inp) in enumerate(zip(pairs, inputs)) if split in inp]
        if not todo:
            continue
        src_path, tgt_path = datadir.raw_text(work, split)
        with (
            SplitWriter(work, split) as out,
            open(src_path, "w", encoding="utf-8") as fs,
            open(tgt_path, "w", encoding="utf-8") as ft,
        ):
            for k, p, inp in todo:
                start = out.rows
                tasks = ((b, protos, 0, 0.0, p.tgt, k) for b in _raw_text(inp, fs, ft, stage))
                per_pair[k][split] |= _encode(tasks, workers, out, None, {})
                rows.setdefault(split, {})[p.name] = [start, out.rows]
    stage.done()
    return rows


def _clean(inp: SplitInput, opts: PreprocessOptions, path: Path, workers, log, sources):
    """Strip and drop empty pairs into the Arrow file `path`; returns it, the dedupe mask, the
    drops and the pairs kept."""
    stage = Stage("clean", inp.n, log)
    out = ArrowStream(path, CLEAN_SCHEMA)
    hashes, dropped = [], {"empty": 0}
    tasks = ((src, tgt, opts.dedupe) for src, tgt in inp.chunks())
    for batch, h, n_empty in workers.map(clean_chunk, tasks):
        out.write(batch)
        dropped["empty"] += n_empty
        if h is not None:
            hashes.append(h)
        stage.update(batch.num_rows + n_empty)
    out.close()
    keep = None
    if opts.dedupe:
        keep = first_occurrences(np.concatenate(hashes) if hashes else np.zeros(0, np.uint64))
        dropped["duplicate"] = int(out.rows - keep.sum())
    kept = out.rows - dropped.get("duplicate", 0)
    stage.done(
        f": {kept:,} kept, {dropped['empty']:,} empty"
        + (f", {dropped['duplicate']:,} duplicate" if opts.dedupe else "")
    )
    if kept == 0:
        where = ", ".join(sources["train"].paths) or sources["train"].hub_name
        raise NMTError(f"training corpus is empty after cleaning: {where}")
    return out.path, keep, dropped, kept


class SplitWriter:
    """An encoded split's Arrow file, written batch by batch, and its dataset info at the end."""

    def __init__(self, work: Path, split: str):
        self.dir = datadir.split_dir(work, split)
        self.stream = ArrowStream(self.dir / datadir.ARROW_FILE, datadir.encoded_schema())

    @property
    def rows(self) -> int:
        return self.stream.rows

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stream.close()
        if exc[0] is None:
            datadir.write_dataset_info(self.dir, self.stream.rows)


def _encode(tasks, workers, out: SplitWriter, stage, dropped: dict) -> dict:
    """Encode chunks into a split; returns the rows kept and the token, unknown-piece and word
    counts of each side."""
    start = out.rows
    tokens, unk, words = {"src": 0, "tgt": 0}, {"src": 0, "tgt": 0}, {"src": 0, "tgt": 0}
    for batch, drops in workers.map(encode_chunk, tasks):
        out.stream.write(batch)
        for side in ("src", "tgt"):
            tokens[side] += _total(batch.column(f"{side}_len"))
            unk[side] += _total(pc.equal(pc.list_flatten(batch.column(f"{side}_ids")), UNK_ID))
            spaces = _total(pc.count_substring(batch.column(f"{side}_text"), " "))
            words[side] += spaces + batch.num_rows  # stripped text: words = spaces + 1
        for k, v in drops.items():
            dropped[k] = dropped.get(k, 0) + v
        if stage is not None:
            stage.update(batch.num_rows + sum(drops.values()))
    return {"kept": out.rows - start, "tokens": tokens, "unk": unk, "words": words}


def _total(values) -> int:
    return int(pc.sum(values).as_py() or 0)


def _raw_text(inp: SplitInput, fs, ft, stage: Stage) -> Iterator[pa.RecordBatch]:
    """Stream a valid/test split: write its raw text to `fs`, `ft` (one line per pair, the
    references) and yield it in batches for encoding. It is never cleaned: line i is pair i."""
    for src, tgt in inp.chunks():
        src = [_line(x) for x in src]
        tgt = [_line(x) for x in tgt]
        fs.writelines(one_line(x) + "\n" for x in src)
        ft.writelines(one_line(x) + "\n" for x in tgt)
        stage.update(len(src))
        yield pa.record_batch(
            [pa.array(src, pa.string()), pa.array(tgt, pa.string())], ["src", "tgt"]
        )


def _line(x) -> str:
    if isinstance(x, bytes):
        return x.decode("utf-8").rstrip("\r\n")
    return "" if x is None else str(x)


def _replace_dir(new: Path, dst: Path) -> None:
    """Swap `new` into place at `dst` so that a crash never leaves a half-written data dir."""
    old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
    if dst.exists():
        dst.rename(old)
    new.rename(dst)
    shutil.rmtree(old, ignore_errors=True)
