"""`nmt preprocess`: read corpora (plain files, TSV/JSONL tables through HF `datasets`, hub
datasets), clean, train SentencePiece, encode, and write a data dir (`nmt.datadir` owns its
layout) that `nmt train` reads.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from nmt import datadir
from nmt.errors import NMTError
from nmt.files import one_line, open_bytes, remove_stale_temps, reporting_full_disk, temp_name
from nmt.signals import sigterm_as_interrupt
from nmt.stages import (
    BLOCK,
    PAIRS_PER_CHUNK,
    ArrowStream,
    Stage,
    Workers,
    clean_chunk,
    encode_chunk,
    first_occurrences,
    masked,
    read_batches,
    sample_rows,
)
from nmt.tokenizer import (
    SPM_SAMPLE_SENTENCES,
    UNK_ID,
    Tokenizer,
    default_character_coverage,
    tag,
    train_sentencepiece,
)

PARALLEL_MIN_PAIRS = 50_000  # worker processes only pay off on big corpora
CLEAN_SCHEMA = pa.schema([("src", pa.string()), ("tgt", pa.string())])


@dataclass(frozen=True)
class Source:
    """Where one split's sentence pairs come from."""

    kind: str  # "plain" | "table" | "hub"
    paths: tuple[str, ...] = ()  # plain: (src_file, tgt_file); table: (file,)
    columns: tuple[str, str] = ("src", "tgt")  # table and hub columns (or languages)
    hub_name: str = ""
    hub_config: str | None = None
    hub_split: str = ""


HUB_SPLITS = "train,validation,test"


@dataclass(frozen=True)
class CorpusInputs:
    """Where the splits come from, as `nmt preprocess` names them: aligned plain files
    (PREFIX.{src,tgt}[.gz]), TSV/JSONL tables (with column names), or a hub dataset."""

    train_prefix: str | None = None
    valid_prefix: str | None = None
    test_prefix: str | None = None
    train_file: str | None = None
    valid_file: str | None = None
    test_file: str | None = None
    src_column: str | None = None  # default: the source language code
    tgt_column: str | None = None
    hub: str | None = None
    hub_config: str | None = None
    hub_splits: str | None = None  # hub split names for train,valid,test (None: HUB_SPLITS)

    def sources(self, src: str, tgt: str) -> dict[str, Source]:
        """Each given split's `Source`; the training split is required."""
        self._check_flags()
        columns = (self.src_column or src, self.tgt_column or tgt)
        hub_names = (self.hub_splits or HUB_SPLITS).split(",")
        sources: dict[str, Source] = {}
        for i, split in enumerate(datadir.SPLITS):
            prefix, file = getattr(self, f"{split}_prefix"), getattr(self, f"{split}_file")
            if prefix and file:
                raise NMTError(f"give either --{split}-prefix or --{split}-file, not both")
            if prefix:
                sources[split] = Source(
                    "plain", (str(find_plain(prefix, src)), str(find_plain(prefix, tgt)))
                )
            elif file:
                sources[split] = Source("table", (file,), columns)
            elif self.hub and i < len(hub_names) and hub_names[i]:
                sources[split] = Source(
                    "hub", (), (src, tgt), self.hub, self.hub_config, hub_names[i].strip()
                )
        if "train" not in sources:
            raise NMTError("no training data: give --train-prefix, --train-file or --hub")
        return sources

    def _check_flags(self) -> None:
        """Flags that would have no effect are refused, not ignored."""
        tables = any(getattr(self, f"{split}_file") for split in datadir.SPLITS)
        if (self.src_column or self.tgt_column) and not tables:
            raise NMTError(
                "--src-column/--tgt-column name columns of --train/valid/test-file tables"
            )
        if not self.hub and (self.hub_config or self.hub_splits is not None):
            raise NMTError("--hub-config/--hub-splits apply to a --hub dataset")


MODEL_TYPES = ("unigram", "bpe")


@dataclass(frozen=True)
class Pair:
    """One language pair of a multilingual data dir, and where its splits come from."""

    src: str
    tgt: str
    sources: dict[str, Source]
    weight: float = 1.0  # its share of training draws, times this (`train.pair_temperature`)

    @property
    def name(self) -> str:
        return f"{self.src}-{self.tgt}"


SPEC_KEYS = ("pair", "train", "valid", "test", "weight")


def read_data_spec(path: Path) -> tuple[Pair, ...]:
    """The pairs of a `--data-spec` YAML file: a list under `pairs:`, each with `pair: SRC:TGT`,
    a `train` file prefix (PREFIX.SRC, PREFIX.TGT), optional `valid` and `test` prefixes and a
    `weight`. Relative prefixes are read from the file's folder."""
    import yaml

    path = Path(path)
    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise NMTError(f"--data-spec {path}: {str(e).splitlines()[0]}") from None
    entries = spec.get("pairs") if isinstance(spec, dict) else None
    if not isinstance(entries, list) or not entries:
        raise NMTError(f"--data-spec {path}: expected a list of pairs under `pairs:`")
    return tuple(_spec_pair(entry, path, n) for n, entry in enumerate(entries, 1))


def _spec_pair(entry, path: Path, n: int) -> Pair:
    where = f"--data-spec {path}, pair {n}"
    if not isinstance(entry, dict) or "pair" not in entry or "train" not in entry:
        raise NMTError(f"{where}: needs `pair: SRC:TGT` and `train: PREFIX`")
    unknown = [k for k in entry if k not in SPEC_KEYS]
    if unknown:
        raise NMTError(f"{where}: unknown key {unknown[0]!r}; valid keys: {', '.join(SPEC_KEYS)}")
    src, sep, tgt = str(entry["pair"]).partition(":")
    if not sep or not src.strip() or not tgt.strip():
        raise NMTError(f"{where}: pair {entry['pair']!r} must look like SRC:TGT")
    weight = entry.get("weight", 1.0)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight > 0:
        raise NMTError(f"{where}: weight must be a number > 0, got {weight!r}")
    src, tgt = src.strip(), tgt.strip()
    sources = {}
    for split in datadir.SPLITS:
        if entry.get(split) is not None:
            prefix = path.parent / str(entry[split])  # an absolute prefix stays as it is
            sources[split] = Source(
                "plain", (str(find_plain(prefix, src)), str(find_plain(prefix, tgt)))
            )
    return Pair(src, tgt, sources, float(weight))


@dataclass(frozen=True)
class PreprocessOptions:
    src_lang: str = ""  # a bilingual data dir's languages (with `sources`), or `pairs`
    tgt_lang: str = ""
    vocab_size: int = 8000
    model_type: str = "unigram"
    joint: bool = True
    character_coverage: float | None = None  # None: chosen from the languages
    byte_fallback: bool = False  # uncovered characters as UTF-8 byte pieces instead of <unk>
    max_len: int = 250  # subword tokens, training pairs only
    max_ratio: float = 3.0
    dedupe: bool = False
    input_sentence_size: int = SPM_SAMPLE_SENTENCES
    num_proc: int = 1
    sources: dict[str, Source] = field(default_factory=dict)
    spm_model: str | None = None  # an existing SentencePiece model (file, data dir, checkpoint)
    pairs: tuple[Pair, ...] = ()  # a multilingual data dir's pairs (instead of the above)

    def __post_init__(self):
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

    def all_pairs(self) -> tuple[Pair, ...]:
        """The language pairs: `pairs`, or the one of a bilingual data dir."""
        return self.pairs or (Pair(self.src_lang, self.tgt_lang, self.sources),)

    @property
    def tagged(self) -> bool:
        """Whether sources carry target-language tags: where there are several targets."""
        return len({p.tgt for p in self.all_pairs()}) > 1


# ---------------------------------------------------------------------------------------------
# Finding and checking input files


def find_plain(prefix: str, lang: str) -> Path:
    """`prefix.lang` or `prefix.lang.gz` (fairseq-style aligned files)."""
    for cand in (Path(f"{prefix}.{lang}"), Path(f"{prefix}.{lang}.gz")):
        if cand.is_file():
            return cand
    raise NMTError(f"missing file: {prefix}.{lang} (also tried {prefix}.{lang}.gz)")


def check_text_file(path: Path, on_lines=None) -> int:
    """Count lines of a UTF-8 text file; invalid UTF-8 is an error naming file and line.

    Reads big blocks and validates each with one C-level decode, so a bad byte deep in a big
    file is found before any other work, at the speed of reading it."""
    path = Path(path)
    if not path.is_file():
        raise NMTError(f"missing file: {path}")
    n, tail = 0, b""
    try:
        with open_bytes(path) as f:
            while block := f.read(BLOCK):
                block = tail + block
                cut = block.rfind(b"\n") + 1  # UTF-8 never splits a character at a newline
                body, tail = block[:cut], block[cut:]
                _check_utf8(path, body, n)
                lines = body.count(b"\n")
                n += lines
                if on_lines is not None:
                    on_lines(lines)
    except (OSError, EOFError) as e:
        raise NMTError(f"cannot read {path}: {e}") from None
    if tail:
        _check_utf8(path, tail, n)
        n += 1
        if on_lines is not None:
            on_lines(1)
    return n


def check_tsv_fields(path: Path) -> None:
    """Every row of a TSV has as many tab-separated fields as its header: a row with one more
    would shift every column by one (the parser takes the first as an index), with one fewer it
    would fail deep in parsing. Fields are never quoted, so a tab always separates."""
    with open_bytes(path) as f:
        width = f.readline().count(b"\t") + 1
        for i, row in enumerate(f, start=2):
            if b"\r" in row.rstrip(b"\r\n"):  # the parser would end a row there
                raise NMTError(f"{path}:{i}: a carriage return inside a row")
            fields = row.count(b"\t") + 1
            if fields != width:
                raise NMTError(
                    f"{path}:{i}: {fields} tab-separated field{'s' * (fields > 1)} where the "
                    f"header has {width} (fields cannot contain tabs; blank rows are not allowed)"
                )


def _check_utf8(path: Path, body: bytes, lines_before: int) -> None:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as e:
        line_start = body.rfind(b"\n", 0, e.start) + 1
        line = lines_before + body.count(b"\n", 0, e.start) + 1
        raise NMTError(
            f"{path}:{line}: invalid UTF-8 ({e.reason} at byte {e.start - line_start})"
        ) from None


def _plain_chunks(src_path: str, tgt_path: str) -> Iterator[tuple[list[bytes], list[bytes]]]:
    """Aligned chunks of raw lines (bytes, newline included) from two files."""
    with open_bytes(Path(src_path)) as fs, open_bytes(Path(tgt_path)) as ft:
        while src := list(itertools.islice(fs, PAIRS_PER_CHUNK)):
            yield src, list(itertools.islice(ft, PAIRS_PER_CHUNK))


def _file_stamp(path: str) -> list:
    st = os.stat(path)
    return [os.path.abspath(path), st.st_size, int(st.st_mtime_ns)]


# ---------------------------------------------------------------------------------------------
# Loading a split as an HF dataset with columns (src, tgt)


@dataclass
class SplitInput:
    """One split's pairs: how many, and a fresh iterator over chunks of (src, tgt) lines."""

    n: int
    chunks: Callable[[], Iterator[tuple[list, list]]]


def load_split(source: Source, cache_dir: Path, on_lines=None) -> SplitInput:
    """Check one split's input and return a way to stream it in chunks.

    Plain files are checked (line counts, UTF-8) in one fast pass before any heavy work and
    then streamed from disk; tables and hub datasets go through a memory-mapped HF Dataset."""
    if source.kind == "plain":
        src_path, tgt_path = source.paths
        n_src = check_text_file(Path(src_path), on_lines)
        n_tgt = check_text_file(Path(tgt_path))
        if n_src != n_tgt:
            raise NMTError(
                f"line counts differ: {src_path} has {n_src} lines, {tgt_path} has {n_tgt}"
            )
        if n_src == 0:
            raise NMTError(f"empty input: {src_path} and {tgt_path} have no lines")
        return SplitInput(n_src, lambda: _plain_chunks(src_path, tgt_path))
    ds = _load_dataset(source, cache_dir)
    if on_lines is not None:
        on_lines(len(ds))
    return SplitInput(
        len(ds), lambda: ((b["src"], b["tgt"]) for b in ds.iter(batch_size=PAIRS_PER_CHUNK))
    )


def _load_dataset(source: Source, cache_dir: Path):
    """A table file or hub dataset as an HF Dataset with string columns `src` and `tgt`."""
    import datasets

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    if source.kind == "table":
        (path,) = source.paths
        check_text_file(Path(path))
        name = path[:-3] if path.endswith(".gz") else path
        if name.endswith((".tsv", ".txt")):
            check_tsv_fields(Path(path))
            builder, kwargs = (
                "csv",
                {
                    "delimiter": "\t",
                    "quoting": 3,
                    "keep_default_na": False,
                    "skip_blank_lines": False,
                },
            )
        elif name.endswith((".jsonl", ".json")):
            builder, kwargs = "json", {}
        else:
            raise NMTError(
                f"{path}: unknown table format (use .tsv, .jsonl or .json, optionally .gz)"
            )
        try:
            ds = datasets.load_dataset(
                builder, data_files=path, split="train", cache_dir=str(cache_dir), **kwargs
            )
        except Exception as e:  # pandas/pyarrow parse errors
            raise NMTError(f"cannot parse {path}: {_last_line(e)}") from None
        return _select_columns(ds, source.columns, path)
    if source.kind == "hub":
        try:
            ds = datasets.load_dataset(source.hub_name, source.hub_config, split=source.hub_split)
        except Exception as e:
            raise NMTError(
                f"cannot load hub dataset {source.hub_name}"
                f"{'/' + source.hub_config if source.hub_config else ''} split "
                f"{source.hub_split!r}: {_last_line(e)}"
            ) from None
        if "translation" in ds.column_names:
            src_l, tgt_l = source.columns
            ds = ds.map(
                lambda b: {
                    "src": [p[src_l] for p in b["translation"]],
                    "tgt": [p[tgt_l] for p in b["translation"]],
                },
                batched=True,
                remove_columns=ds.column_names,
            )
            return ds
        return _select_columns(ds, source.columns, source.hub_name)
    raise NMTError(f"unknown source kind {source.kind!r}")


def _last_line(e: Exception) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[-1]


def _select_columns(ds, columns: tuple[str, str], where: str):
    missing = [c for c in columns if c not in ds.column_names]
    if missing:
        raise NMTError(
            f"{where}: unknown column(s) {', '.join(missing)}; available: {', '.join(ds.column_names)}"
        )
    src_c, tgt_c = columns
    ds = ds.select_columns([src_c, tgt_c])
    return ds.map(
        lambda b: {
            "src": ["" if x is None else str(x) for x in b[src_c]],
            "tgt": ["" if x is None else str(x) for x in b[tgt_c]],
        },
        batched=True,
        remove_columns=[c for c in (src_c, tgt_c) if c not in ("src", "tgt")],
    )


# ---------------------------------------------------------------------------------------------
# The whole job


def fingerprint(opts: PreprocessOptions) -> str:
    """Hash of options and input file stamps: re-running with the same inputs reuses the output."""
    stamps = []
    for pair in opts.all_pairs():
        for split, source in sorted(pair.sources.items()):
            files = [_file_stamp(p) if os.path.exists(p) else [p] for p in source.paths]
            stamps.append([pair.name, pair.weight, split, asdict(source), files] if opts.pairs else
                          [split, asdict(source), files])  # fmt: skip
    body = {k: v for k, v in asdict(opts).items() if k not in ("sources", "num_proc", "pairs")}
    body = {k: v for k, v in body.items() if k != "spm_model" or v}  # as before the option
    if opts.spm_model:
        spm = Path(opts.spm_model)
        found = [spm] if spm.is_file() else sorted(spm.glob("*.model")) + sorted(spm.glob("*.json"))
        stamps.append(["spm_model", [_file_stamp(str(p)) for p in found]])
    return hashlib.sha1(
        json.dumps([datadir.FORMAT_VERSION, body, stamps], sort_keys=True).encode()
    ).hexdigest()


def preprocess(opts: PreprocessOptions, out_dir: Path, force: bool = False, log=print) -> dict:
    """Read, clean, train SentencePiece, encode and write a data dir; return its meta."""
    out_dir = Path(out_dir).resolve()
    fp = fingerprint(opts)
    if out_dir.exists() and any(out_dir.iterdir()):
        old = datadir.meta_if_any(out_dir) if not force else None
        if old is not None:
            if old.get("fingerprint") == fp:
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


def _build(opts: PreprocessOptions, work: Path, fp: str, log) -> dict:
    cache = work / ".cache"
    pairs = opts.all_pairs()
    reused = read_spm_model(Path(opts.spm_model)) if opts.spm_model else None
    if reused is not None:
        _check_tags(Tokenizer(*reused[0]), opts)
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
        if reused is not None:
            protos = reused[0]
            for side, proto in zip(("src", "tgt"), protos):
                if proto is not None:
                    datadir.spm_path(work, side, protos[1] is None).write_bytes(proto)
        elif opts.pairs:
            protos = _train_multilingual_sentencepiece(cleaned, opts, coverage, work, log)
        else:
            clean, keep, _, kept = cleaned[0]
            protos = _train_sentencepiece(clean, keep, kept, opts, coverage, work, log)
        per_pair = [{s: {"read": inp[s].n} for s in inp} for inp in inputs]
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
        shutil.rmtree(cache, ignore_errors=True)
        rows = _write_eval_splits(pairs, inputs, protos, per_pair, work, workers, log)

    tok = Tokenizer(*protos)
    counts = _total_counts(per_pair)
    meta = {
        "src_lang": _one({p.src for p in pairs}),
        "tgt_lang": _one({p.tgt for p in pairs}),
        "joint_vocab": tok.joint,
        "src_vocab_size": tok.src_vocab_size,
        "tgt_vocab_size": tok.tgt_vocab_size,
        "counts": counts,
        "options": {k: v for k, v in asdict(opts).items() if k not in ("sources", "pairs")}
        | {"character_coverage": coverage},
        "sources": {k: asdict(v) for k, v in opts.sources.items()},
        "fingerprint": fp,
    }
    if opts.pairs:
        meta["pairs"] = [
            {
                "src": p.src,
                "tgt": p.tgt,
                "weight": p.weight,
                "counts": c,
                "sources": {k: asdict(v) for k, v in p.sources.items()},
            }
            for p, c in zip(pairs, per_pair)
        ]
        meta["pair_rows"] = rows
    if reused is not None:
        meta["spm_model"] = opts.spm_model
        meta["spm_reference"] = reused[1]
    datadir.write_meta(work, meta)
    meta = datadir.read_meta(work)
    for p, c in zip(pairs, per_pair):
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
    if reused is not None:
        for line in coverage_report(datadir.coverage(counts["train"]), reused[1], opts.spm_model):
            log(line)
    return meta


def _check_tags(tok: Tokenizer, opts: PreprocessOptions) -> None:
    """A reused vocabulary for several targets must have their tags (else the model could
    not tell them apart)."""
    missing = [p.tgt for p in opts.all_pairs() if p.tgt not in tok.tags]
    if opts.tagged and missing:
        raise NMTError(
            f"--spm-model {opts.spm_model}: no target-language tag for {', '.join(missing)} "
            "in its vocabulary; several targets need one each (a multilingual model's)"
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


def _train_sentencepiece(clean: Path, keep, n_pairs: int, opts, coverage, work, log):
    """Train the vocabulary (joint or one per side) on a random sample of the cleaned pairs."""
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


def _spm_options(opts: PreprocessOptions, coverage: float) -> dict:
    """The options of `train_sentencepiece` that `opts` set."""
    return dict(
        vocab_size=opts.vocab_size,
        model_type=opts.model_type,
        character_coverage=coverage,
        byte_fallback=opts.byte_fallback,
        input_sentence_size=opts.input_sentence_size,
        num_threads=max(2, opts.num_proc),
    )


def _train_multilingual_sentencepiece(cleaned, opts, coverage, work, log):
    """One joint vocabulary over every language of the pairs, each language sampled on its own
    (a share of `input_sentence_size`, so a big corpus does not crowd out a small one), with
    the target-language tags as user-defined pieces where there are several targets."""
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


def _counted(items, stage: Stage, every: int = 10_000):
    n = 0
    for item in items:
        yield item
        n += 1
        if n == every:
            stage.update(n)
            n = 0
    stage.update(n)


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


# ---------------------------------------------------------------------------------------------
# An existing SentencePiece model (`--spm-model`)

UNK_WARN = 0.001  # more unknown pieces than this share: the vocabulary misses the new data
GROWTH_WARN = 1.5  # pieces per word this many times the original corpus's: it splits words apart


def read_spm_model(path: Path) -> tuple[tuple[bytes, bytes | None], dict | None]:
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
