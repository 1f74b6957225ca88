"""Where `nmt preprocess` reads its sentence pairs: the input specs (`Source`, `Pair`, the pairs
that `nmt.preprocess_options.CorpusInputs` names, the `--data-spec` file) and one reader per kind
of source (`READERS`), each checking its input before any heavy work and streaming it in chunks
of (src, tgt) lines.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import NamedTuple

from nmt import datadir
from nmt.errors import NMTError
from nmt.files import open_bytes
from nmt.preprocess_options import HUB_SPLITS, CorpusInputs
from nmt.stages import BLOCK, PAIRS_PER_CHUNK


@dataclass(frozen=True)
class Source:
    """Where one split's sentence pairs come from."""

    kind: str  # a key of READERS: "plain" | "table" | "hub"
    paths: tuple[str, ...] = ()  # plain: (src_file, tgt_file); table: (file,)
    columns: tuple[str, str] = ("src", "tgt")  # table and hub columns (or languages)
    hub_name: str = ""
    hub_config: str | None = None
    hub_split: str = ""


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


def corpus_pairs(inputs: CorpusInputs) -> tuple[Pair, ...]:
    """The language pairs of `inputs` with their sources: the data spec's, or one per pair."""
    if inputs.data_spec is not None:
        files = [getattr(inputs, f.name) for f in fields(inputs) if f.name not in _LANGUAGE_FIELDS]
        if inputs.src or inputs.tgt or inputs.pair or any(v is not None for v in files):
            raise NMTError("--data-spec lists the pairs and their files: leave out the others")
        return read_data_spec(inputs.data_spec)
    languages = _language_pairs(inputs.src, inputs.tgt, inputs.pair)
    if len(languages) > 1 and (inputs.src_column or inputs.tgt_column):
        raise NMTError("--src-column/--tgt-column name one pair's columns: not with several --pair")
    return tuple(Pair(a, b, _corpus_sources(inputs, a, b)) for a, b in languages)


def _corpus_sources(inputs: CorpusInputs, src: str, tgt: str) -> dict[str, Source]:
    """Each given split's `Source`; the training split is required."""
    _check_flags(inputs)
    columns = (inputs.src_column or src, inputs.tgt_column or tgt)
    hub_names = (inputs.hub_splits or HUB_SPLITS).split(",")
    sources: dict[str, Source] = {}
    for i, split in enumerate(datadir.SPLITS):
        prefix, file = getattr(inputs, f"{split}_prefix"), getattr(inputs, f"{split}_file")
        if prefix and file:
            raise NMTError(f"give either --{split}-prefix or --{split}-file, not both")
        if prefix:
            sources[split] = plain_source(prefix, src, tgt)
        elif file:
            sources[split] = Source("table", (file,), columns)
        elif inputs.hub and i < len(hub_names) and hub_names[i]:
            sources[split] = Source(
                "hub", (), (src, tgt), inputs.hub, inputs.hub_config, hub_names[i].strip()
            )
    if "train" not in sources:
        raise NMTError("no training data: give --train-prefix, --train-file or --hub")
    return sources


def _check_flags(inputs: CorpusInputs) -> None:
    """Flags that would have no effect are refused, not ignored."""
    tables = any(getattr(inputs, f"{split}_file") for split in datadir.SPLITS)
    if (inputs.src_column or inputs.tgt_column) and not tables:
        raise NMTError("--src-column/--tgt-column name columns of --train/valid/test-file tables")
    if not inputs.hub and (inputs.hub_config or inputs.hub_splits is not None):
        raise NMTError("--hub-config/--hub-splits apply to a --hub dataset")


_LANGUAGE_FIELDS = ("src", "tgt", "pair", "data_spec")  # of CorpusInputs; the rest name files


def _language_pairs(src, tgt, pairs) -> list[tuple[str, str]]:
    """(source, target) codes from --src/--tgt or from each --pair SRC:TGT."""
    if pairs and (src or tgt):
        raise NMTError("give --pair SRC:TGT or --src/--tgt, not both")
    if not pairs:
        if not (src and tgt):
            raise NMTError("give the languages: --src and --tgt, or --pair SRC:TGT")
        return [(src, tgt)]
    out = []
    for p in pairs:
        a, sep, b = p.partition(":")
        if not sep or not a.strip() or not b.strip() or ":" in b:
            raise NMTError(f"--pair {p!r} must look like SRC:TGT (e.g. en:de)")
        out.append((a.strip(), b.strip()))
    return out


# ---------------------------------------------------------------------------------------------
# The data spec (`--data-spec`)

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
            sources[split] = plain_source(prefix, src, tgt)
    return Pair(src, tgt, sources, float(weight))


# ---------------------------------------------------------------------------------------------
# Finding and checking input files


def plain_source(prefix, src: str, tgt: str) -> Source:
    """The aligned files PREFIX.SRC and PREFIX.TGT (each maybe gzipped)."""
    return Source("plain", (str(find_plain(prefix, src)), str(find_plain(prefix, tgt))))


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


def file_stamp(path: str) -> list:
    """Path, size and modification time: what a fingerprint of an input file holds."""
    st = os.stat(path)
    return [os.path.abspath(path), st.st_size, int(st.st_mtime_ns)]


def stamps(source: Source) -> list:
    """The fields of a source and the stamps of its files (a missing file by its path alone)."""
    return [asdict(source), [file_stamp(p) if os.path.exists(p) else [p] for p in source.paths]]


# ---------------------------------------------------------------------------------------------
# Reading a split: one reader per kind of source


@dataclass
class SplitInput:
    """One split's pairs: how many, and a fresh iterator over chunks of (src, tgt) lines."""

    n: int
    chunks: Callable[[], Iterator[tuple[list, list]]]


def load_split(source: Source, cache_dir: Path, on_lines=None) -> SplitInput:
    """Check one split's input and return a way to stream it in chunks (`READERS[kind]`)."""
    reader = READERS.get(source.kind)
    if reader is None:
        raise NMTError(f"unknown source kind {source.kind!r}")
    return reader(source, cache_dir, on_lines)


def read_plain(source: Source, cache_dir: Path, on_lines=None) -> SplitInput:
    """Aligned plain files, checked (line counts, UTF-8) in one fast pass before any heavy work
    and then streamed from disk."""
    src_path, tgt_path = source.paths
    n_src = check_text_file(Path(src_path), on_lines)
    n_tgt = check_text_file(Path(tgt_path))
    if n_src != n_tgt:
        raise NMTError(f"line counts differ: {src_path} has {n_src} lines, {tgt_path} has {n_tgt}")
    if n_src == 0:
        raise NMTError(f"empty input: {src_path} and {tgt_path} have no lines")
    return SplitInput(n_src, lambda: _plain_chunks(src_path, tgt_path))


def _plain_chunks(src_path: str, tgt_path: str) -> Iterator[tuple[list[bytes], list[bytes]]]:
    """Aligned chunks of raw lines (bytes, newline included) from two files."""
    with open_bytes(Path(src_path)) as fs, open_bytes(Path(tgt_path)) as ft:
        while src := list(itertools.islice(fs, PAIRS_PER_CHUNK)):
            yield src, list(itertools.islice(ft, PAIRS_PER_CHUNK))


class TableFormat(NamedTuple):
    """How HF `datasets` parses a table file, and the check of the file before it does."""

    builder: str
    options: dict
    check: Callable[[Path], object]


def _check_tsv(path: Path) -> None:
    check_text_file(path)
    check_tsv_fields(path)


TSV = TableFormat(
    "csv",
    {"delimiter": "\t", "quoting": 3, "keep_default_na": False, "skip_blank_lines": False},
    _check_tsv,
)
JSON_LINES = TableFormat("json", {}, check_text_file)
TABLE_FORMATS = {".tsv": TSV, ".txt": TSV, ".jsonl": JSON_LINES, ".json": JSON_LINES}


def read_table(source: Source, cache_dir: Path, on_lines=None) -> SplitInput:
    """A TSV or JSONL file (`TABLE_FORMATS`, by its name's ending; optionally gzipped), read
    through a memory-mapped HF Dataset."""
    (path,) = source.paths
    name = path[:-3] if path.endswith(".gz") else path
    table = next((f for ending, f in TABLE_FORMATS.items() if name.endswith(ending)), None)
    if table is None:
        check_text_file(Path(path))  # a missing file is named as such first
        raise NMTError(f"{path}: unknown table format (use .tsv, .jsonl or .json, optionally .gz)")
    table.check(Path(path))
    datasets = _quiet_datasets()
    try:
        ds = datasets.load_dataset(
            table.builder, data_files=path, split="train", cache_dir=str(cache_dir), **table.options
        )
    except Exception as e:  # pandas/pyarrow parse errors
        raise NMTError(f"cannot parse {path}: {_last_line(e)}") from None
    return _dataset_input(_select_columns(ds, source.columns, path), on_lines)


def read_hub(source: Source, cache_dir: Path, on_lines=None) -> SplitInput:
    """A split of an HF hub dataset: a `translation` column of {language: text}, or two text
    columns."""
    datasets = _quiet_datasets()
    try:
        ds = datasets.load_dataset(source.hub_name, source.hub_config, split=source.hub_split)
    except Exception as e:
        raise NMTError(
            f"cannot load hub dataset {source.hub_name}"
            f"{'/' + source.hub_config if source.hub_config else ''} split "
            f"{source.hub_split!r}: {_last_line(e)}"
        ) from None
    if "translation" not in ds.column_names:
        return _dataset_input(_select_columns(ds, source.columns, source.hub_name), on_lines)
    src_l, tgt_l = source.columns
    ds = ds.map(
        lambda b: {
            "src": [p[src_l] for p in b["translation"]],
            "tgt": [p[tgt_l] for p in b["translation"]],
        },
        batched=True,
        remove_columns=ds.column_names,
    )
    return _dataset_input(ds, on_lines)


READERS: dict[str, Callable[..., SplitInput]] = {
    "plain": read_plain,
    "table": read_table,
    "hub": read_hub,
}


def _quiet_datasets():
    """HF `datasets`, imported here (not at start-up), without its progress bars and logs."""
    import datasets

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    return datasets


def _dataset_input(ds, on_lines) -> SplitInput:
    """An HF Dataset with string columns `src` and `tgt`, streamed in chunks."""
    if on_lines is not None:
        on_lines(len(ds))
    return SplitInput(
        len(ds), lambda: ((b["src"], b["tgt"]) for b in ds.iter(batch_size=PAIRS_PER_CHUNK))
    )


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
