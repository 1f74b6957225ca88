"""The data dir that `nmt preprocess` writes and training, evaluation and reports read.

    meta.json                 languages, vocab sizes, counts, options, input fingerprint
    spm.model | spm.{src,tgt}.model
    {train,valid,test}/       Arrow datasets (memory-mapped): src_ids, tgt_ids, src_len, tgt_len,
                              src_text, tgt_text (the text encoded), pair (the row's language
                              pair: an index into meta "pairs"; 0 in a bilingual data dir);
                              older data dirs lack the last three
    {valid,test}.{src,tgt}    raw text, aligned line by line with the references (a multilingual
                              data dir's pairs one after another: meta "pair_rows")

This module owns the names and the layout; everyone else calls it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from nmt.errors import NMTError
from nmt.tokenizer import Tokenizer

SPLITS = ("train", "valid", "test")
META = "meta.json"
FORMAT_VERSION = 2  # 2: splits keep their text (1 still reads, without subword sampling)
ARROW_FILE = "data-00000-of-00001.arrow"  # the file name `datasets.save_to_disk` would use


def encoded_schema():
    """The Arrow schema of an encoded split (pyarrow is imported here, not at start-up)."""
    import pyarrow as pa

    ids, length = pa.list_(pa.int32()), pa.int32()
    columns = [("src_ids", ids), ("tgt_ids", ids), ("src_len", length), ("tgt_len", length)]
    texts = [(name, pa.string()) for name in TEXT_COLUMNS]
    return pa.schema(columns + texts + [(PAIR_COLUMN, pa.int32())])


TEXT_COLUMNS = ("src_text", "tgt_text")  # the text each pair's ids encode (subword sampling)
PAIR_COLUMN = "pair"  # the language pair of each row (multilingual data dirs)


def has_text(ds) -> bool:
    """Whether an encoded split keeps its text (data dirs written before it did not)."""
    return all(name in ds.column_names for name in TEXT_COLUMNS)


# ---------------------------------------------------------------------------------------------
# The meta


@dataclass(frozen=True)
class MetaPair:
    """One language pair of a multilingual data dir (an entry of the meta's `pairs`)."""

    src: str
    tgt: str
    weight: float = 1.0  # its share of training draws (`--data-spec`)
    counts: dict = field(default_factory=dict)  # by split, as `Meta.counts`
    sources: dict = field(default_factory=dict)  # by split: the `Source` fields


@dataclass(frozen=True)
class Meta:
    """`meta.json`: what `nmt preprocess` wrote and with which options. Keys an older data dir
    lacks take these defaults; keys this version does not know are ignored."""

    format: int = FORMAT_VERSION
    src_lang: str | None = None  # None where a multilingual data dir has several
    tgt_lang: str | None = None
    joint_vocab: bool = True
    src_vocab_size: int = 0
    tgt_vocab_size: int = 0
    counts: dict = field(default_factory=dict)  # split -> read, kept, tokens, unk, words, dropped
    options: dict = field(default_factory=dict)  # the preprocess options, as written
    sources: dict = field(default_factory=dict)  # split -> the `Source` fields (bilingual)
    fingerprint: str | None = None  # of the inputs and options (an up-to-date data dir is reused)
    pairs: tuple[MetaPair, ...] | None = None  # a multilingual data dir's pairs
    pair_rows: dict | None = None  # with `pairs`: split -> pair name -> [start, end)
    spm_model: str | None = None  # the reused SentencePiece model (`--spm-model`)
    spm_reference: dict | None = None  # with `spm_model`: the coverage of its original corpus

    @classmethod
    def from_dict(cls, d: dict) -> Meta:
        known = {f.name for f in dataclasses.fields(cls)}
        kept = {k: v for k, v in d.items() if k in known}
        if kept.get("pairs") is not None:
            names = {f.name for f in dataclasses.fields(MetaPair)}
            kept["pairs"] = tuple(
                MetaPair(**{k: v for k, v in p.items() if k in names}) for p in kept["pairs"]
            )
        return cls(**kept)

    def to_dict(self) -> dict:
        """The JSON object, keys in field order; the multilingual and `--spm-model` keys only
        where they apply."""
        d = dataclasses.asdict(self)
        if self.pairs is None:
            del d["pairs"], d["pair_rows"]
        if self.spm_model is None:
            del d["spm_model"], d["spm_reference"]
        return d


# ---------------------------------------------------------------------------------------------
# Names


def spm_files(joint: bool) -> tuple[str, ...]:
    """SentencePiece model file names: one joint model, or source then target."""
    return ("spm.model",) if joint else ("spm.src.model", "spm.tgt.model")


def spm_protos(tokenizer: Tokenizer) -> dict[str, bytes]:
    """File name -> SentencePiece model of a tokenizer (also the names in an export dir)."""
    protos = (
        (tokenizer.src_proto,) if tokenizer.joint else (tokenizer.src_proto, tokenizer.tgt_proto)
    )
    return dict(zip(spm_files(tokenizer.joint), protos))


def raw_text(data_dir: Path, split: str) -> tuple[Path, Path]:
    """The (source, reference) text files of a valid/test split."""
    return Path(data_dir) / f"{split}.src", Path(data_dir) / f"{split}.tgt"


def split_dir(data_dir: Path, split: str) -> Path:
    return Path(data_dir) / split


# ---------------------------------------------------------------------------------------------
# Writing (into a work dir that `nmt.preprocess` renames into place)


def write_meta(data_dir: Path, meta: Meta) -> None:
    (Path(data_dir) / META).write_text(json.dumps(meta.to_dict(), indent=2) + "\n")


def spm_path(data_dir: Path, side: str, joint: bool) -> Path:
    """Where SentencePiece training writes the model of `side` ("joint", "src" or "tgt")."""
    names = spm_files(joint)
    return Path(data_dir) / (names[0] if joint or side == "src" else names[1])


def write_dataset_info(split_path: Path, rows: int) -> None:
    """The two small files `datasets.load_from_disk` reads beside the Arrow data."""
    value = {"dtype": "int32", "_type": "Value"}
    features = {
        "src_ids": {"feature": value, "_type": "List"},
        "tgt_ids": {"feature": value, "_type": "List"},
        "src_len": value,
        "tgt_len": value,
        **{name: {"dtype": "string", "_type": "Value"} for name in TEXT_COLUMNS},
        PAIR_COLUMN: value,
    }
    info = {
        "features": features,
        "splits": {split_path.name: {"name": split_path.name, "num_examples": rows}},
    }
    (split_path / "dataset_info.json").write_text(json.dumps(info, indent=2) + "\n")
    state = {
        "_data_files": [{"filename": ARROW_FILE}],
        "_fingerprint": hashlib.sha1(f"{split_path}:{rows}".encode()).hexdigest()[:16],
        "_format_columns": None,
        "_format_kwargs": {},
        "_format_type": None,
        "_output_all_columns": False,
        "_split": split_path.name,
    }
    (split_path / "state.json").write_text(json.dumps(state, indent=2) + "\n")


# ---------------------------------------------------------------------------------------------
# Reading


def read_meta(data_dir: Path) -> Meta:
    meta = meta_if_any(data_dir)
    if meta is None:
        raise NMTError(f"not a data dir (no {META}): {data_dir}; run `nmt preprocess` first")
    return meta


def meta_if_any(data_dir: Path) -> Meta | None:
    """The data dir's meta, or None when it has none (a report on a moved data dir)."""
    path = Path(data_dir) / META
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as e:  # JSON and UTF-8 errors are ValueErrors
        raise NMTError(f"{path}: unreadable ({str(e)[:80]}); re-run nmt preprocess") from None
    if not isinstance(meta, dict):
        raise NMTError(f"{path}: not a data dir's meta; re-run nmt preprocess")
    try:
        return Meta.from_dict(meta)
    except (TypeError, AttributeError):  # a pair that is not an object with its languages
        raise NMTError(f"{path}: not a data dir's meta; re-run nmt preprocess") from None


def languages(meta: Meta) -> dict:
    """What a checkpoint keeps of the data dir's meta: src_lang, tgt_lang (None where a
    multilingual data dir has several), joint_vocab, its language pairs where there are
    several, and how well the vocabulary covers the corpus it was trained on (`spm_reference`)
    where known."""
    kept = {"src_lang": meta.src_lang, "tgt_lang": meta.tgt_lang, "joint_vocab": meta.joint_vocab}
    if meta.pairs is not None:
        kept["pairs"] = [p.src + ":" + p.tgt for p in meta.pairs]
    reference = spm_reference(meta)
    return kept | ({"coverage": reference} if reference else {})


def pairs(meta: Meta) -> list[tuple[str | None, str | None]]:
    """The (source, target) languages of each pair of a data dir, in the order of its `pair`
    column: one for a bilingual data dir."""
    if meta.pairs is not None:
        return [(p.src, p.tgt) for p in meta.pairs]
    return [(meta.src_lang, meta.tgt_lang)]


def pair_weights(meta: Meta) -> list[float]:
    """Each pair's sampling weight (`--data-spec`), in the order of the `pair` column."""
    return [float(p.weight) for p in meta.pairs] if meta.pairs is not None else [1.0]


def pair_names(meta: Meta) -> dict[str, tuple[str | None, str | None]]:
    """Each pair's (source, target) languages by its name ("en-de")."""
    return {f"{a}-{b}": (a, b) for a, b in pairs(meta)}


def pair_rows(meta: Meta, split: str) -> dict[str, tuple[int, int]]:
    """A multilingual split's rows by pair name ("en-de": [start, end)); {} for a bilingual one."""
    return {name: (a, b) for name, (a, b) in (meta.pair_rows or {}).get(split, {}).items()}


def coverage(counts: dict) -> dict | None:
    """Per side: the share of unknown pieces and the pieces per word of an encoded training
    split (its `counts` in the meta); None for data dirs written before they were counted."""
    if "unk" not in counts or "words" not in counts:
        return None
    rows = counts["kept"]
    out = {}
    for side in ("src", "tgt"):
        pieces = counts["tokens"][side] - rows  # EOS aside
        out[side] = {
            "unk_rate": counts["unk"][side] / max(pieces, 1),
            "pieces_per_word": pieces / max(counts["words"][side], 1),
        }
    return out


def spm_reference(meta: Meta) -> dict | None:
    """The coverage of the corpus the data dir's SentencePiece model was trained on: its own
    training split's, or the original corpus's when the model was reused (`--spm-model`)."""
    return meta.spm_reference or coverage(meta.counts.get("train", {}))


def has_split(data_dir: Path, split: str) -> bool:
    return split_dir(data_dir, split).is_dir()


def load_encoded(data_dir: Path, split: str):
    """A preprocessed split as a memory-mapped HF Dataset."""
    import datasets

    path = split_dir(data_dir, split)
    if not path.is_dir():
        raise NMTError(f"data dir {data_dir} has no {split} split")
    return datasets.load_from_disk(str(path))


def load_tokenizer(data_dir: Path) -> Tokenizer:
    data_dir = Path(data_dir)
    joint = (data_dir / spm_files(True)[0]).is_file()
    return Tokenizer.from_files(*(data_dir / n for n in spm_files(joint)))


def src_spm_path(data_dir: Path) -> Path:
    """The source side's SentencePiece model (the joint one when there is one)."""
    joint = Path(data_dir) / spm_files(True)[0]
    return joint if joint.is_file() else Path(data_dir) / spm_files(False)[0]
