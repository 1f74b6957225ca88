"""Parallel data: read corpora through HF `datasets`, clean, train SentencePiece, encode, write a data dir.

A data dir holds everything `nmt train` needs:
  meta.json                 languages, vocab sizes, counts, options, input fingerprint
  spm.model | spm.{src,tgt}.model
  {train,valid,test}/       Arrow datasets (memory-mapped): src_ids, tgt_ids, src_len, tgt_len
  {valid,test}.{src,tgt}    raw text, aligned line by line with the references
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from nmt.errors import NMTError
from nmt.files import read_lines, remove_stale_temps, reporting_full_disk, temp_name

SPLITS = ("train", "valid", "test")
META = "meta.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Source:
    """Where one split's sentence pairs come from."""

    kind: str  # "plain" | "table" | "hub"
    paths: tuple[str, ...] = ()  # plain: (src_file, tgt_file); table: (file,)
    columns: tuple[str, str] = ("src", "tgt")  # table and hub columns (or languages)
    hub_name: str = ""
    hub_config: str | None = None
    hub_split: str = ""


@dataclass(frozen=True)
class PreprocessOptions:
    src_lang: str
    tgt_lang: str
    vocab_size: int = 8000
    model_type: str = "unigram"
    joint: bool = True
    character_coverage: float | None = None  # None: chosen from the languages
    max_len: int = 250  # subword tokens, training pairs only
    max_ratio: float = 3.0
    dedupe: bool = False
    input_sentence_size: int = 2_000_000
    num_proc: int = 1
    sources: dict[str, Source] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Finding and checking input files


def find_plain(prefix: str, lang: str) -> Path:
    """`prefix.lang` or `prefix.lang.gz` (fairseq-style aligned files)."""
    for cand in (Path(f"{prefix}.{lang}"), Path(f"{prefix}.{lang}.gz")):
        if cand.is_file():
            return cand
    raise NMTError(f"missing file: {prefix}.{lang} (also tried {prefix}.{lang}.gz)")


def check_text_file(path: Path) -> int:
    """Count lines of a UTF-8 text file; invalid UTF-8 is an error naming file and line."""
    if not Path(path).is_file():
        raise NMTError(f"missing file: {path}")
    return sum(1 for _ in read_lines([Path(path)]))


def _read_pairs(src_path: str, tgt_path: str):
    """Yield aligned pairs; Windows line endings and a missing final newline are fine."""
    for s, t in zip(read_lines([Path(src_path)]), read_lines([Path(tgt_path)])):
        yield {"src": s.rstrip("\r\n"), "tgt": t.rstrip("\r\n")}


def _file_stamp(path: str) -> list:
    st = os.stat(path)
    return [os.path.abspath(path), st.st_size, int(st.st_mtime_ns)]


# ---------------------------------------------------------------------------------------------
# Loading a split as an HF dataset with columns (src, tgt)


def load_split(source: Source, cache_dir: Path):
    """Load one split as a memory-mapped HF Dataset with string columns `src` and `tgt`."""
    import datasets

    if source.kind == "plain":
        src_path, tgt_path = source.paths
        n_src, n_tgt = check_text_file(Path(src_path)), check_text_file(Path(tgt_path))
        if n_src != n_tgt:
            raise NMTError(
                f"line counts differ: {src_path} has {n_src} lines, {tgt_path} has {n_tgt}"
            )
        if n_src == 0:
            raise NMTError(f"empty input: {src_path} and {tgt_path} have no lines")
        stamp = hashlib.sha1(json.dumps([_file_stamp(p) for p in source.paths]).encode())
        features = datasets.Features(
            {"src": datasets.Value("string"), "tgt": datasets.Value("string")}
        )
        return datasets.Dataset.from_generator(
            _read_pairs,
            gen_kwargs={"src_path": src_path, "tgt_path": tgt_path},
            features=features,
            cache_dir=str(cache_dir),
            fingerprint=stamp.hexdigest(),
        )
    if source.kind == "table":
        (path,) = source.paths
        check_text_file(Path(path))
        name = path[:-3] if path.endswith(".gz") else path
        if name.endswith((".tsv", ".txt")):
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
# Cleaning (training data only)


def _strip_batch(batch):
    return {"src": [s.strip() for s in batch["src"]], "tgt": [t.strip() for t in batch["tgt"]]}


def clean_train(ds, dedupe: bool, num_proc: int) -> tuple[object, dict[str, int]]:
    """Strip whitespace, drop empty pairs and (optionally) exact duplicates; count the drops."""
    ds = ds.map(_strip_batch, batched=True, num_proc=_procs(ds, num_proc))
    n0 = len(ds)
    ds = ds.filter(
        lambda b: [bool(s) and bool(t) for s, t in zip(b["src"], b["tgt"])],
        batched=True,
        num_proc=_procs(ds, num_proc),
    )
    dropped = {"empty": n0 - len(ds)}
    if dedupe:
        seen: set[bytes] = set()
        keep = []
        for i, (s, t) in enumerate(zip(ds["src"], ds["tgt"])):
            h = hashlib.blake2b(f"{s}\t{t}".encode(), digest_size=12).digest()
            if h not in seen:
                seen.add(h)
                keep.append(i)
        dropped["duplicate"] = len(ds) - len(keep)
        ds = ds.select(keep)
    return ds, dropped


def _procs(ds, num_proc: int) -> int | None:
    """Worker processes only pay off on big splits."""
    return num_proc if num_proc > 1 and len(ds) >= 100_000 else None


# ---------------------------------------------------------------------------------------------
# Encoding


class _Encoder:
    """Picklable batch encoder for `Dataset.map(num_proc=...)`."""

    def __init__(self, src_proto: bytes, tgt_proto: bytes | None):
        self.protos = (src_proto, tgt_proto)
        self.tok = None

    def __call__(self, batch):
        from nmt.tokenizer import Tokenizer

        if self.tok is None:
            self.tok = Tokenizer(*self.protos)
        src = self.tok.encode_src(batch["src"])
        tgt = self.tok.encode_tgt(batch["tgt"])
        return {
            "src_ids": src,
            "tgt_ids": tgt,
            "src_len": [len(x) for x in src],
            "tgt_len": [len(x) + 1 for x in tgt],  # + EOS (or BOS on the input side)
        }

    def __getstate__(self):
        return {"protos": self.protos, "tok": None}


def encode_split(ds, encoder: _Encoder, num_proc: int):
    import datasets

    features = datasets.Features(
        {
            "src_ids": datasets.Sequence(datasets.Value("int32")),
            "tgt_ids": datasets.Sequence(datasets.Value("int32")),
            "src_len": datasets.Value("int32"),
            "tgt_len": datasets.Value("int32"),
        }
    )
    return ds.map(
        encoder,
        batched=True,
        batch_size=2000,
        num_proc=_procs(ds, num_proc),
        remove_columns=ds.column_names,
        features=features,
    )


def filter_lengths(ds, max_len: int, max_ratio: float, num_proc: int) -> tuple[object, dict]:
    """Drop training pairs longer than `max_len` tokens or with a length ratio above `max_ratio`."""

    import numpy as np

    s = np.asarray(ds["src_len"])
    t = np.asarray(ds["tgt_len"])
    too_long = (s > max_len) | (t > max_len)
    longer, shorter = np.maximum(s, t), np.minimum(s, t)
    bad_ratio = ~too_long & (longer > max_ratio * shorter) & (longer > 5)
    codes = np.where(too_long, 1, np.where(bad_ratio, 2, 0))
    keep = np.flatnonzero(codes == 0)
    dropped = {"too_long": int((codes == 1).sum()), "length_ratio": int((codes == 2).sum())}
    return (ds.select(keep) if len(keep) < len(ds) else ds), dropped


# ---------------------------------------------------------------------------------------------
# The whole job


def fingerprint(opts: PreprocessOptions) -> str:
    """Hash of options and input file stamps: re-running with the same inputs reuses the output."""
    stamps = []
    for split, source in sorted(opts.sources.items()):
        files = [_file_stamp(p) if os.path.exists(p) else [p] for p in source.paths]
        stamps.append([split, asdict(source), files])
    body = {k: v for k, v in asdict(opts).items() if k not in ("sources", "num_proc")}
    return hashlib.sha1(
        json.dumps([FORMAT_VERSION, body, stamps], sort_keys=True).encode()
    ).hexdigest()


def preprocess(opts: PreprocessOptions, out_dir: Path, force: bool = False, log=print) -> dict:
    """Read, clean, train SentencePiece, encode and write a data dir; return its meta."""
    out_dir = Path(out_dir).resolve()
    fp = fingerprint(opts)
    meta_path = out_dir / META
    if out_dir.exists() and any(out_dir.iterdir()):
        if meta_path.is_file() and not force:
            old = json.loads(meta_path.read_text())
            if old.get("fingerprint") == fp:
                log(f"{out_dir} is up to date (same inputs and options): reusing it")
                return old
        if not force:
            raise NMTError(
                f"output directory {out_dir} already exists: use --force or another --out"
            )
    if "train" not in opts.sources:
        raise NMTError("no training data given")

    t0 = time.time()
    for p in remove_stale_temps(out_dir.parent, out_dir.name):
        log(f"removed {p}, left by a process that no longer runs")
    work = temp_name(out_dir)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        with reporting_full_disk(out_dir):
            meta = _build(opts, work, fp, log)
            _replace_dir(work, out_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log(f"wrote {out_dir} in {time.time() - t0:.1f}s")
    return meta


def _build(opts: PreprocessOptions, work: Path, fp: str, log) -> dict:
    import datasets

    from nmt.tokenizer import default_character_coverage, train_sentencepiece

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    cache = work / ".cache"
    raw = {split: load_split(src, cache) for split, src in opts.sources.items()}
    counts = {split: {"read": len(ds)} for split, ds in raw.items()}

    train, dropped = clean_train(raw["train"], opts.dedupe, opts.num_proc)
    if len(train) == 0:
        where = ", ".join(opts.sources["train"].paths) or opts.sources["train"].hub_name
        raise NMTError(f"training corpus is empty after cleaning: {where}")

    coverage = opts.character_coverage or default_character_coverage(opts.src_lang, opts.tgt_lang)
    spm_kw = dict(
        vocab_size=opts.vocab_size,
        model_type=opts.model_type,
        character_coverage=coverage,
        input_sentence_size=opts.input_sentence_size,
    )
    if opts.joint:
        train_sentencepiece(
            _interleave(train), work / "spm.model", what="the joint vocabulary", **spm_kw
        )
        protos = ((work / "spm.model").read_bytes(), None)
    else:
        for side, lang in (("src", opts.src_lang), ("tgt", opts.tgt_lang)):
            train_sentencepiece(
                _column(train, side), work / f"spm.{side}.model", what=f"{side} ({lang})", **spm_kw
            )
        protos = ((work / "spm.src.model").read_bytes(), (work / "spm.tgt.model").read_bytes())
    encoder = _Encoder(*protos)

    for split, ds in raw.items():
        if split == "train":
            enc = encode_split(train, encoder, opts.num_proc)
            enc, len_dropped = filter_lengths(enc, opts.max_len, opts.max_ratio, opts.num_proc)
            dropped.update(len_dropped)
            if len(enc) == 0:
                raise NMTError("training corpus is empty after length filtering: raise --max-len")
            counts["train"].update(kept=len(enc), dropped=dropped)
        else:
            enc = encode_split(ds, encoder, opts.num_proc)
            counts[split]["kept"] = len(enc)
            for side in ("src", "tgt"):
                with open(work / f"{split}.{side}", "w", encoding="utf-8") as f:
                    for line in ds[side]:
                        f.write(" ".join(line.splitlines()) + "\n")
        enc.save_to_disk(str(work / split))
        counts[split]["tokens"] = {
            "src": int(sum(enc["src_len"])),
            "tgt": int(sum(enc["tgt_len"])),
        }

    from nmt.tokenizer import Tokenizer

    tok = Tokenizer(*protos)
    meta = {
        "format": FORMAT_VERSION,
        "src_lang": opts.src_lang,
        "tgt_lang": opts.tgt_lang,
        "joint_vocab": opts.joint,
        "src_vocab_size": tok.src_vocab_size,
        "tgt_vocab_size": tok.tgt_vocab_size,
        "counts": counts,
        "options": {k: v for k, v in asdict(opts).items() if k != "sources"}
        | {"character_coverage": coverage},
        "sources": {k: asdict(v) for k, v in opts.sources.items()},
        "fingerprint": fp,
    }
    (work / META).write_text(json.dumps(meta, indent=2) + "\n")
    shutil.rmtree(cache, ignore_errors=True)
    tr = counts["train"]
    drops = ", ".join(f"{v} {k}" for k, v in tr["dropped"].items() if v) or "none"
    log(f"train: {tr['read']} pairs read, {tr['kept']} kept (dropped: {drops})")
    for split in ("valid", "test"):
        if split in counts:
            log(f"{split}: {counts[split]['kept']} pairs")
    log(
        f"vocab: src {tok.src_vocab_size}, tgt {tok.tgt_vocab_size} ({'joint' if opts.joint else 'separate'})"
    )
    return meta


def _interleave(ds):
    for s, t in zip(_column(ds, "src"), _column(ds, "tgt")):
        yield s
        yield t


def _column(ds, name: str):
    for batch in ds.select_columns([name]).iter(batch_size=10_000):
        yield from batch[name]


def _replace_dir(new: Path, dst: Path) -> None:
    """Swap `new` into place at `dst` so that a crash never leaves a half-written data dir."""
    old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
    if dst.exists():
        dst.rename(old)
    new.rename(dst)
    shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Reading a data dir back


def read_meta(data_dir: Path) -> dict:
    data_dir = Path(data_dir)
    path = data_dir / META
    if not path.is_file():
        raise NMTError(f"not a data dir (no {META}): {data_dir}; run `nmt preprocess` first")
    return json.loads(path.read_text())


def load_encoded(data_dir: Path, split: str):
    """A preprocessed split as a memory-mapped HF Dataset."""
    import datasets

    path = Path(data_dir) / split
    if not path.is_dir():
        raise NMTError(f"data dir {data_dir} has no {split} split")
    return datasets.load_from_disk(str(path))


def load_tokenizer(data_dir: Path):
    from nmt.tokenizer import Tokenizer

    data_dir = Path(data_dir)
    if (data_dir / "spm.model").is_file():
        return Tokenizer.from_files(data_dir / "spm.model")
    return Tokenizer.from_files(data_dir / "spm.src.model", data_dir / "spm.tgt.model")
