"""Tests for `nmt preprocess`: reading, cleaning, SentencePiece, the data dir, and bad input.

End-to-end and bad-input cases drive the real CLI in a subprocess; the rest call `nmt.preprocess`
directly, which is much cheaper. All corpora are tiny synthetic ones written into tmp_path.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from nmt.datadir import load_encoded, load_tokenizer, read_meta  # noqa: E402
from nmt.errors import NMTError  # noqa: E402
from nmt.preprocess import PreprocessOptions, preprocess  # noqa: E402
from nmt.sources import Source, check_text_file  # noqa: E402
from nmt.tokenizer import EOS_ID, default_character_coverage  # noqa: E402
from tests.conftest import nmt  # noqa: E402

# Parallel word lists: sentence i of one side is the word-by-word translation of the other.
EN = (
    "the a dog cat house tree car bird fish horse red blue green old new big small "
    "sees eats runs walks likes finds and with"
).split()
DE = (
    "der ein Hund Katze Haus Baum Auto Vogel Fisch Pferd rot blau grün alt neu groß klein "
    "sieht isst läuft geht mag findet und mit"
).split()
assert len(EN) == len(DE)

VOCAB = 64  # joint vocabulary the tiny corpora support (about 85 at most)
VOCAB_SIDE = 40  # per-side vocabulary with --separate (about 49 at most for English)
# With such small vocabularies German words may split into single characters while English ones
# stay whole, so the default --max-ratio 3 could drop a few normal pairs; tests that compare
# the output pair by pair with the input use a ratio no normal pair reaches.
MAX_RATIO = 10.0
STAGE_LINE = re.compile(r"^(read|clean|sentencepiece|encode|write): [\d,]+ (pairs|sentences) in ")


def make_pairs(n: int, seed: int = 0, lo: int = 2, hi: int = 5) -> list[tuple[str, str]]:
    """`n` distinct sentence pairs of `lo`..`hi` words."""
    rng = random.Random(seed)
    seen: set[tuple[int, ...]] = set()
    pairs = []
    while len(pairs) < n:
        idx = tuple(rng.randrange(len(EN)) for _ in range(rng.randint(lo, hi)))
        if idx not in seen:
            seen.add(idx)
            pairs.append((" ".join(EN[i] for i in idx), " ".join(DE[i] for i in idx)))
    return pairs


def write_lines(path: Path, lines, eol: str = "\n", final_eol: bool = True) -> Path:
    """Write `lines` (text or bytes) joined by `eol`; gzip when the name ends in .gz."""
    lines = [x if isinstance(x, bytes) else x.encode("utf-8") for x in lines]
    eol_b = eol.encode()
    data = eol_b.join(lines) + (eol_b if final_eol and lines else b"")
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.name.endswith(".gz"):
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)
    return path


def write_prefix(prefix: Path, pairs, src="en", tgt="de", gz=(False, False), **kw) -> str:
    write_lines(Path(f"{prefix}.{src}" + (".gz" if gz[0] else "")), [s for s, _ in pairs], **kw)
    write_lines(Path(f"{prefix}.{tgt}" + (".gz" if gz[1] else "")), [t for _, t in pairs], **kw)
    return str(prefix)


def expected_text(lines) -> str:
    return "".join(line + "\n" for line in lines)


def run_cli(*args, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return nmt("preprocess", *args, check=False, cwd=cwd)


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "Traceback" not in out, out
    lines = proc.stderr.strip("\n").splitlines()
    *progress, line = lines  # stages that finished before the error print their summary line
    assert all(STAGE_LINE.match(p) for p in progress), proc.stderr
    assert line.startswith("nmt: error: "), line
    for needle in needles:
        assert needle in line, f"{needle!r} not in {line!r}"
    return line


def no_leftovers(out: Path) -> bool:
    """No half-written `.NAME.tmp-PID` / `.NAME.old-PID` directories next to `out`."""
    return not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


def build(out: Path, sources: dict[str, Source], **kw) -> tuple[dict, list[str]]:
    """Run the library `preprocess` in-process; return its meta and log lines."""
    logs: list[str] = []
    kw.setdefault("src_lang", "en")
    kw.setdefault("tgt_lang", "de")
    kw.setdefault("vocab_size", VOCAB)
    kw.setdefault("max_ratio", MAX_RATIO)
    meta = preprocess(PreprocessOptions(sources=sources, **kw), out, log=logs.append)
    return meta, logs


def plain(prefix, src="en", tgt="de", gz=(False, False)) -> Source:
    ext = (".gz" if gz[0] else "", ".gz" if gz[1] else "")
    return Source("plain", (f"{prefix}.{src}{ext[0]}", f"{prefix}.{tgt}{ext[1]}"))


def decoded_pairs(data: Path, split: str) -> list[tuple[str, str]]:
    tok = load_tokenizer(data)
    ds = load_encoded(data, split)
    return [
        (tok.src.decode(s[:-1]), tok.decode_tgt(t))
        for s, t in zip(ds["src_ids"], ds["tgt_ids"], strict=True)
    ]


# ---------------------------------------------------------------------------------------------
# 1. Happy path with plain files through the CLI (built once for the module)


@pytest.fixture(scope="module")
def pp_happy(tmp_path_factory):
    """Plain train (target side gzipped), valid with blank/padded lines, gzipped test."""
    root = tmp_path_factory.mktemp("pp_happy")
    train = make_pairs(300, seed=1)
    valid = make_pairs(20, seed=2)
    valid[4] = ("", valid[4][1])  # blank source line
    valid[11] = (valid[11][0], "")  # blank target line
    valid[8] = ("  " + valid[8][0] + "  ", valid[8][1])  # padded: never stripped
    test = make_pairs(15, seed=3)
    inp = root / "inp"
    args = [
        "--out",
        root / "data",
        "--src",
        "en",
        "--tgt",
        "de",
        "--train-prefix",
        write_prefix(inp / "train", train, gz=(False, True)),
        "--valid-prefix",
        write_prefix(inp / "valid", valid),
        "--test-prefix",
        write_prefix(inp / "test", test, gz=(True, True)),
        "--vocab-size",
        VOCAB,
        "--max-ratio",
        MAX_RATIO,
    ]
    proc = run_cli(*args, cwd=root)
    return dict(
        root=root, data=root / "data", args=args, proc=proc, train=train, valid=valid, test=test
    )


def test_happy_path_cli_succeeds(pp_happy):
    proc = pp_happy["proc"]
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "train: 300 pairs read, 300 kept (dropped: none)" in proc.stderr
    assert "valid: 20 pairs" in proc.stderr
    assert "test: 15 pairs" in proc.stderr
    assert no_leftovers(pp_happy["data"])


def test_happy_path_data_dir_layout(pp_happy):
    data = pp_happy["data"]
    names = {p.name for p in data.iterdir()}
    assert names == {
        "meta.json",
        "spm.model",
        "train",
        "valid",
        "test",
        "valid.src",
        "valid.tgt",
        "test.src",
        "test.tgt",
    }
    for split in ("train", "valid", "test"):
        assert (data / split).is_dir()


def test_happy_path_meta(pp_happy):
    meta = read_meta(pp_happy["data"])
    assert meta.src_lang == "en" and meta.tgt_lang == "de"
    assert meta.joint_vocab is True
    assert meta.src_vocab_size == meta.tgt_vocab_size == VOCAB
    counts = meta.counts
    assert counts["train"]["read"] == counts["train"]["kept"] == 300
    assert counts["train"]["dropped"] == {"empty": 0, "too_long": 0, "length_ratio": 0}
    assert counts["valid"]["read"] == counts["valid"]["kept"] == 20
    assert counts["test"]["read"] == counts["test"]["kept"] == 15
    assert meta.options["vocab_size"] == VOCAB
    assert meta.options["character_coverage"] == 1.0  # en-de: full coverage
    assert meta.sources["train"]["kind"] == "plain"
    assert meta.sources["train"]["paths"][1].endswith("train.de.gz")
    assert meta.sources["test"]["paths"][0].endswith("test.en.gz")
    for split in ("train", "valid", "test"):
        ds = load_encoded(pp_happy["data"], split)
        assert counts[split]["tokens"] == {"src": sum(ds["src_len"]), "tgt": sum(ds["tgt_len"])}


def test_happy_path_raw_valid_test_text_aligned_and_uncleaned(pp_happy):
    data = pp_happy["data"]
    for split in ("valid", "test"):
        pairs = pp_happy[split]
        src = (data / f"{split}.src").read_text(encoding="utf-8")
        tgt = (data / f"{split}.tgt").read_text(encoding="utf-8")
        assert src == expected_text(s for s, _ in pairs)
        assert tgt == expected_text(t for _, t in pairs)
    valid_src = (data / "valid.src").read_text(encoding="utf-8").split("\n")
    assert valid_src[4] == ""  # the blank line stays a blank line
    assert valid_src[8].startswith("  ")  # and padding is kept


def test_happy_path_arrow_splits(pp_happy):
    data = pp_happy["data"]
    for split, n in (("train", 300), ("valid", 20), ("test", 15)):
        ds = load_encoded(data, split)
        assert len(ds) == n
        assert set(ds.column_names) == {"src_ids", "tgt_ids", "src_len", "tgt_len"} | {
            "src_text",
            "tgt_text",
            "pair",  # the language pair: 0 in a bilingual data dir
        }
        assert set(ds["pair"]) == {0}
        for row in ds:
            assert row["src_ids"][-1] == EOS_ID  # source closed by EOS
            assert EOS_ID not in row["tgt_ids"]  # target: the batcher adds BOS/EOS
            assert row["src_len"] == len(row["src_ids"])
            assert row["tgt_len"] == len(row["tgt_ids"]) + 1
    # Token ids decode back to the input text, in input order.
    assert decoded_pairs(data, "train") == pp_happy["train"]
    assert decoded_pairs(data, "test") == pp_happy["test"]
    valid = [(" ".join(s.split()), " ".join(t.split())) for s, t in pp_happy["valid"]]
    assert decoded_pairs(data, "valid") == valid
    assert load_encoded(data, "valid")[4]["src_ids"] == [EOS_ID]


# ---------------------------------------------------------------------------------------------
# 6. Re-running: reuse when nothing changed, --force to overwrite


def test_rerun_reuses_then_needs_force(pp_happy, tmp_path):
    assert pp_happy["proc"].returncode == 0
    data = tmp_path / "data"
    shutil.copytree(pp_happy["data"], data)  # the fingerprint does not depend on --out
    args = list(pp_happy["args"])
    args[1] = data
    meta_path = data / "meta.json"
    before = (meta_path.stat().st_mtime_ns, meta_path.read_bytes())
    spm_mtime = (data / "spm.model").stat().st_mtime_ns

    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr
    assert "up to date" in proc.stderr and "reusing" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert (meta_path.stat().st_mtime_ns, meta_path.read_bytes()) == before
    assert (data / "spm.model").stat().st_mtime_ns == spm_mtime

    # Different options into the existing dir: refused, nothing touched.
    changed = args + ["--separate", "--vocab-size", VOCAB_SIDE]
    assert_one_line_error(run_cli(*changed), "already exists", "--force", str(data))
    assert (meta_path.stat().st_mtime_ns, meta_path.read_bytes()) == before

    # Same options but a changed input file (new mtime): refused as well.
    train_src = Path(args[args.index("--train-prefix") + 1] + ".en")
    st = train_src.stat()
    try:
        os.utime(train_src, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        assert_one_line_error(run_cli(*args), "--force")
    finally:
        os.utime(train_src, ns=(st.st_atime_ns, st.st_mtime_ns))

    # --force rebuilds with the new options and replaces the old contents.
    proc = run_cli(*changed, "--force")
    assert proc.returncode == 0, proc.stderr
    meta = json.loads(meta_path.read_text())
    assert meta["joint_vocab"] is False and meta["options"]["vocab_size"] == VOCAB_SIDE
    assert (data / "spm.src.model").is_file() and (data / "spm.tgt.model").is_file()
    assert not (data / "spm.model").exists()
    assert meta_path.stat().st_mtime_ns != before[0]
    assert no_leftovers(data)

    # ... and the rebuilt dir is reused in turn.
    proc = run_cli(*changed)
    assert proc.returncode == 0 and "reusing" in proc.stderr, proc.stderr


# ---------------------------------------------------------------------------------------------
# 2. Cleaning report (training data only)


@pytest.mark.parametrize("dedupe", [False, True])
def test_cleaning_drops_and_counts(tmp_path, dedupe):
    good = make_pairs(200, seed=4)
    empty = [("", "der Hund")] * 3 + [("   ", "die Katze"), ("\t", "ein Baum")]  # 5
    empty += [("the dog", ""), ("a cat", "  "), ("a tree", ""), ("the car", "\t")]  # 4
    empty += [("", ""), (" ", " ")]  # 2
    dups = good[:4] + [(" " + s + "  ", "\t" + t) for s, t in good[4:6]]  # equal once stripped
    too_long = [
        (" ".join(s for s, _ in good[i : i + 120]), " ".join(t for _, t in good[i : i + 120]))
        for i in (0, 40, 80)
    ]  # >= 240 words, so >= 240 tokens, a side: above --max-len 200
    # Normal pairs stay under a length ratio of about 6; this one has <= 3 source tokens
    # ("▁", "a", EOS) and 31 to 151 target tokens: above --max-ratio 8, under --max-len 200.
    ratio = [("a", " ".join(["Hund"] * 30))]
    rows = good[:100] + empty + dups + too_long + ratio + good[100:]
    src = write_prefix(tmp_path / "train", rows)
    meta, logs = build(
        tmp_path / "data", {"train": plain(src)}, dedupe=dedupe, max_len=200, max_ratio=8.0
    )

    counts = meta.counts["train"]
    expected = {"empty": 11, "duplicate": 6} if dedupe else {"empty": 11}
    expected |= {"too_long": 3, "length_ratio": 1}
    assert counts["dropped"] == expected
    assert counts["read"] == len(rows)
    assert counts["kept"] == len(rows) - sum(expected.values())
    on_disk = read_meta(tmp_path / "data").counts["train"]
    assert on_disk["dropped"] == expected and on_disk["kept"] == counts["kept"]
    drops = ", ".join(f"{v} {k}" for k, v in expected.items())
    assert f"train: {len(rows)} pairs read, {counts['kept']} kept (dropped: {drops})" in logs

    kept = decoded_pairs(tmp_path / "data", "train")
    assert len(kept) == counts["kept"]
    assert all(s and t for s, t in kept)
    assert ratio[0] not in kept
    assert len(set(kept)) == len(kept) - (0 if dedupe else 6)
    assert set(kept) == set(good)


def test_valid_and_test_are_never_cleaned(tmp_path):
    train = write_prefix(tmp_path / "train", make_pairs(200, seed=5))
    rows = [("", ""), ("the dog", ""), ("the dog", "der Hund"), ("the dog", "der Hund")]
    rows.append((" ".join(["dog"] * 200), "Hund"))  # long and lopsided
    valid = write_prefix(tmp_path / "valid", rows)
    meta, _ = build(
        tmp_path / "data",
        {"train": plain(train), "valid": plain(valid)},
        dedupe=True,
        max_len=20,
    )
    assert meta.counts["valid"]["read"] == meta.counts["valid"]["kept"] == 5
    assert len(load_encoded(tmp_path / "data", "valid")) == 5
    assert (tmp_path / "data" / "valid.src").read_text() == expected_text(s for s, _ in rows)
    assert (tmp_path / "data" / "valid.tgt").read_text() == expected_text(t for _, t in rows)


# ---------------------------------------------------------------------------------------------
# 3. Windows line endings and a missing final newline


@pytest.mark.parametrize(
    ("text", "lines"),
    [
        (b"", 0),
        (b"a\n", 1),
        (b"a\nb", 2),
        (b"a\nb\n", 2),
        (b"a\r\nb\r\n", 2),
        (b"a\r\n\r\nb", 3),
        (b"\n\n", 2),
    ],
)
@pytest.mark.parametrize("gz", [False, True])
def test_check_text_file_counts_lines(tmp_path, text, lines, gz):
    path = tmp_path / ("f.txt.gz" if gz else "f.txt")
    if gz:
        with gzip.open(path, "wb") as f:
            f.write(text)
    else:
        path.write_bytes(text)
    assert check_text_file(path) == lines


def test_crlf_and_missing_final_newline(tmp_path):
    train = make_pairs(200, seed=6)
    valid = make_pairs(12, seed=7)
    valid[3] = ("", valid[3][1])
    inp = tmp_path / "inp"
    # Source side: CRLF without a final newline; target side: LF without a final newline.
    write_lines(inp / "train.en", [s for s, _ in train], eol="\r\n", final_eol=False)
    write_lines(inp / "train.de", [t for _, t in train], final_eol=False)
    write_lines(inp / "valid.en", [s for s, _ in valid], eol="\r\n", final_eol=False)
    write_lines(inp / "valid.de.gz", [t for _, t in valid], eol="\r\n", final_eol=True)
    data = tmp_path / "data"
    meta, _ = build(
        data, {"train": plain(inp / "train"), "valid": plain(inp / "valid", gz=(False, True))}
    )
    assert meta.counts["train"]["read"] == meta.counts["train"]["kept"] == 200
    assert meta.counts["train"]["dropped"]["empty"] == 0
    assert meta.counts["valid"]["read"] == meta.counts["valid"]["kept"] == 12
    for side, col in (("src", 0), ("tgt", 1)):
        raw = (data / f"valid.{side}").read_bytes()
        assert b"\r" not in raw
        assert raw.decode() == expected_text(p[col] for p in valid)
    assert decoded_pairs(data, "train") == train  # the last pair is there, no \r anywhere
    assert decoded_pairs(data, "valid") == valid
    tok = load_tokenizer(data)
    assert not [i for i in range(tok.src_vocab_size) if "\r" in tok.src.id_to_piece(i)]


# ---------------------------------------------------------------------------------------------
# 4. TSV and JSONL input with named columns


def test_tsv_and_jsonl_with_named_columns(tmp_path):
    train = make_pairs(250, seed=8) + [('the "dog"', 'der "Hund"')]  # no quote processing
    valid = make_pairs(10, seed=9) + [("", "der Hund")]
    test = make_pairs(6, seed=10)
    tsv = write_lines(
        tmp_path / "train.tsv",
        ["id\tenglish\tgerman"] + [f"{i}\t{s}\t{t}" for i, (s, t) in enumerate(train)],
        eol="\r\n",
        final_eol=False,
    )
    jsonl = write_lines(
        tmp_path / "valid.jsonl.gz",
        [
            json.dumps({"german": t, "id": i, "english": s}, ensure_ascii=False)
            for i, (s, t) in enumerate(valid)
        ],
    )
    data = tmp_path / "data"
    proc = run_cli(
        "--out",
        data,
        "--src",
        "en",
        "--tgt",
        "de",
        "--train-file",
        tsv,
        "--valid-file",
        jsonl,
        "--test-prefix",
        write_prefix(tmp_path / "test", test),
        "--src-column",
        "english",
        "--tgt-column",
        "german",
        "--vocab-size",
        VOCAB,
        "--max-ratio",
        MAX_RATIO,
    )
    assert proc.returncode == 0, proc.stderr
    meta = read_meta(data)
    assert meta.counts["train"]["read"] == meta.counts["train"]["kept"] == len(train)
    assert meta.counts["valid"]["kept"] == len(valid)
    assert meta.counts["test"]["kept"] == len(test)
    assert meta.sources["train"]["kind"] == "table"
    assert meta.sources["train"]["columns"] == ["english", "german"]
    assert decoded_pairs(data, "train") == train
    assert (data / "valid.src").read_text() == expected_text(s for s, _ in valid)
    assert (data / "valid.tgt").read_text() == expected_text(t for _, t in valid)
    assert (data / "test.src").read_text() == expected_text(s for s, _ in test)


# ---------------------------------------------------------------------------------------------
# 5. Separate vocabularies


def test_separate_vocabularies(tmp_path):
    train = write_prefix(tmp_path / "train", make_pairs(300, seed=11))
    data = tmp_path / "data"
    meta, logs = build(data, {"train": plain(train)}, joint=False, vocab_size=VOCAB_SIDE)
    assert (data / "spm.src.model").is_file() and (data / "spm.tgt.model").is_file()
    assert not (data / "spm.model").exists()
    assert meta.joint_vocab is False
    assert meta.src_vocab_size == meta.tgt_vocab_size == VOCAB_SIDE
    assert any("(separate)" in line for line in logs)
    tok = load_tokenizer(data)
    assert not tok.joint
    unk = tok.src.unk_id()
    assert tok.src.piece_to_id("ä") == unk  # German-only characters: target vocabulary only
    assert tok.tgt.piece_to_id("ä") != unk
    assert decoded_pairs(data, "train")[:3] == make_pairs(300, seed=11)[:3]


# ---------------------------------------------------------------------------------------------
# 8. Character coverage


@pytest.mark.parametrize(
    ("langs", "expected"),
    [
        (("en", "de"), 1.0),
        (("fr", "ru"), 1.0),
        (("zh", "en"), 0.9995),
        (("en", "ja"), 0.9995),
        (("ko", "en"), 0.9995),
        (("ZH", "en"), 0.9995),
        (("zh_Hans", "en"), 0.9995),
        (("en", "zh_TW"), 0.9995),
        (("jv", "en"), 1.0),  # Javanese: not a CJK prefix match
    ],
)
def test_default_character_coverage(langs, expected):
    assert default_character_coverage(*langs) == expected


def test_default_character_coverage_hyphenated_tags():
    assert default_character_coverage("zh-Hans", "en") == 0.9995


@pytest.mark.parametrize(
    ("src", "tgt", "given", "expected"),
    [("zh", "en", None, 0.9995), ("en", "ja", None, 0.9995), ("en", "de", 0.98, 0.98)],
)
def test_meta_records_character_coverage(tmp_path, src, tgt, given, expected):
    train = write_prefix(tmp_path / "train", make_pairs(200, seed=12), src=src, tgt=tgt)
    meta, _ = build(
        tmp_path / "data",
        {"train": plain(train, src=src, tgt=tgt)},
        src_lang=src,
        tgt_lang=tgt,
        character_coverage=given,
    )
    assert meta.options["character_coverage"] == expected
    assert read_meta(tmp_path / "data").options["character_coverage"] == expected


# ---------------------------------------------------------------------------------------------
# 7. Bad input: one line on stderr, non-zero exit, no traceback, nothing half-written


def _bad_missing_prefix(d: Path):
    return ["--train-prefix", d / "nope"], ["missing file", "nope.en", "nope.en.gz"]


def _bad_missing_tgt_side(d: Path):
    write_prefix(d / "train", make_pairs(50))
    write_lines(d / "valid.en", ["the dog"])
    args = ["--train-prefix", d / "train", "--valid-prefix", d / "valid"]
    return args, ["missing file", "valid.de"]


def _bad_line_counts(d: Path):
    pairs = make_pairs(5)
    write_lines(d / "train.en", [s for s, _ in pairs])
    write_lines(d / "train.de", [t for _, t in pairs[:4]])
    return ["--train-prefix", d / "train"], [
        "line counts differ",
        "train.en has 5 lines",
        "train.de has 4",
    ]


def _bad_utf8(d: Path):
    pairs = make_pairs(50)
    write_lines(d / "train.en", [s for s, _ in pairs[:2]] + [b"the \xff dog"] + ["a cat"] * 47)
    write_lines(d / "train.de", [t for _, t in pairs])
    return ["--train-prefix", d / "train"], [f"{d / 'train.en'}:3:", "invalid UTF-8"]


def _bad_all_blank(d: Path):
    write_lines(d / "train.en", ["", "   ", "the dog", "", "\t"])
    write_lines(d / "train.de", ["der Hund", "", "", "", "  "])
    return ["--train-prefix", d / "train"], ["training corpus is empty", "train.en"]


def _bad_vocab_too_large(d: Path):
    write_prefix(d / "train", make_pairs(100))
    return ["--train-prefix", d / "train", "--vocab-size", 5000], [
        "vocabulary size 5000",
        "lower --vocab-size",
    ]


def _bad_vocab_too_small_for_the_characters(d: Path):
    # SentencePiece needs a piece per kept character: the advice is to raise the size (it said
    # to lower it, with a garbled limit)
    rng = random.Random(0)
    chars = [chr(0x4E00 + i) for i in range(300)]
    pairs = [("".join(rng.choices(chars, k=12)), "x y z") for _ in range(200)]
    write_prefix(d / "train", pairs)
    return ["--train-prefix", d / "train", "--vocab-size", 100], [
        "vocabulary size 100",
        "--character-coverage 1 keeps: raise --vocab-size to at least 3",
        "or lower --character-coverage below 1",
    ]


def _bad_unknown_column_tsv(d: Path):
    write_lines(d / "train.tsv", ["english\tgerman", "the dog\tder Hund"])
    args = ["--train-file", d / "train.tsv", "--src-column", "eng", "--tgt-column", "german"]
    return args, ["unknown column(s) eng;", "available: english, german"]


def _bad_tsv_first_row_has_an_extra_field(d: Path):
    # pandas took the first column as an index: every column shifted by one, no error
    rows = ["en\tde", "1\tthe dog\tder Hund"] + ["the cat\tdie Katze"] * 20
    write_lines(d / "train.tsv", rows)
    return ["--train-file", d / "train.tsv"], [
        f"{d / 'train.tsv'}:2: 3 tab-separated fields where the header has 2"
    ]


def _bad_tsv_carriage_return_inside_a_row(d: Path):
    # the parser ended a row at a lone \r: the rest became a row of its own, shifted
    rows = ["en\tde", "the\rdog\tder Hund"] + ["the cat\tdie Katze"] * 20
    write_lines(d / "train.tsv", rows)
    return ["--train-file", d / "train.tsv"], [f"{d / 'train.tsv'}:2: a carriage return"]


def _bad_tsv_later_row_has_a_missing_field(d: Path):
    rows = ["en\tde"] + ["the cat\tdie Katze"] * 20 + ["the dog"]
    write_lines(d / "train.tsv", rows)
    return ["--train-file", d / "train.tsv"], [
        f"{d / 'train.tsv'}:22: 1 tab-separated field where the header has 2"
    ]


def _bad_unknown_columns_jsonl_default(d: Path):
    write_lines(d / "train.jsonl", ['{"english": "the dog", "german": "der Hund"}'])
    # Without --src-column/--tgt-column the columns default to the language codes.
    return ["--train-file", d / "train.jsonl"], [
        "unknown column(s) en, de;",
        "available: english, german",
    ]


def _bad_column_without_a_table(d: Path):
    write_prefix(d / "train", make_pairs(5))  # was accepted and ignored
    return ["--train-prefix", d / "train", "--src-column", "english"], ["--src-column", "tables"]


def _bad_hub_option_without_hub(d: Path):
    write_prefix(d / "train", make_pairs(5))
    return ["--train-prefix", d / "train", "--hub-config", "de-en"], ["--hub-config", "--hub"]


def _bad_existing_dir(d: Path):
    write_prefix(d / "train", make_pairs(50))
    (d / "out").mkdir()
    (d / "out" / "notes.txt").write_text("mine\n")
    return ["--train-prefix", d / "train"], ["already exists", "--force"]


def _bad_prefix_and_file(d: Path):
    write_prefix(d / "train", make_pairs(5))
    write_lines(d / "train.tsv", ["en\tde", "the dog\tder Hund"])
    args = ["--train-prefix", d / "train", "--train-file", d / "train.tsv"]
    return args, ["--train-prefix", "--train-file", "not both"]


def _bad_no_train(d: Path):
    write_prefix(d / "valid", make_pairs(5))
    return ["--valid-prefix", d / "valid"], ["no training data"]


def _bad_model_type(d: Path):
    write_prefix(d / "train", make_pairs(5))
    return ["--train-prefix", d / "train", "--model-type", "wordpiece"], ["--model-type"]


BAD_INPUTS = {
    "missing-prefix": _bad_missing_prefix,
    "missing-tgt-side": _bad_missing_tgt_side,
    "line-counts": _bad_line_counts,
    "invalid-utf8": _bad_utf8,
    "all-blank": _bad_all_blank,
    "vocab-too-large": _bad_vocab_too_large,
    "vocab-too-small-for-characters": _bad_vocab_too_small_for_the_characters,
    "unknown-column-tsv": _bad_unknown_column_tsv,
    "unknown-columns-jsonl": _bad_unknown_columns_jsonl_default,
    "tsv-extra-field": _bad_tsv_first_row_has_an_extra_field,
    "tsv-missing-field": _bad_tsv_later_row_has_a_missing_field,
    "tsv-carriage-return": _bad_tsv_carriage_return_inside_a_row,
    "existing-dir": _bad_existing_dir,
    "column-without-table": _bad_column_without_a_table,
    "hub-option-without-hub": _bad_hub_option_without_hub,
    "prefix-and-file": _bad_prefix_and_file,
    "no-train": _bad_no_train,
    "model-type": _bad_model_type,
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_line_error(tmp_path, case):
    args, needles = BAD_INPUTS[case](tmp_path)
    out = tmp_path / "out"
    existed = out.exists()
    proc = run_cli("--out", out, "--src", "en", "--tgt", "de", "--vocab-size", VOCAB, *args)
    assert_one_line_error(proc, *needles)
    assert no_leftovers(out)
    if existed:
        assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    else:
        assert not out.exists()


# The same checks through the library, in-process (cheaper than a subprocess each).


def _lib_missing_table(d: Path):
    return {"train": Source("table", (str(d / "nope.tsv"),), ("en", "de"))}, [
        f"missing file: {d / 'nope.tsv'}"
    ]


def _lib_line_counts(d: Path):
    write_lines(d / "a.en", ["x", "y"])
    write_lines(d / "a.de", ["x"])
    return {"train": plain(d / "a")}, [
        f"line counts differ: {d / 'a.en'} has 2 lines, {d / 'a.de'} has 1"
    ]


def _lib_utf8_gz_valid(d: Path):
    write_prefix(d / "train", make_pairs(50))
    write_lines(d / "valid.en", ["the dog", "a cat"])
    write_lines(d / "valid.de.gz", ["der Hund", b"die \xe4 Katze"])  # Latin-1, not UTF-8
    sources = {"train": plain(d / "train"), "valid": plain(d / "valid", gz=(False, True))}
    return sources, [f"{d / 'valid.de.gz'}:2: invalid UTF-8"]


def _lib_not_gzip(d: Path):
    write_lines(d / "train.en", ["the dog"])
    write_lines(d / "train.de.gz.txt", ["der Hund"]).rename(d / "train.de.gz")  # plain text
    return {"train": plain(d / "train", gz=(False, True))}, [f"cannot read {d / 'train.de.gz'}"]


def _lib_table_format(d: Path):
    write_lines(d / "train.csv", ["en,de", "the dog,der Hund"])
    return {"train": Source("table", (str(d / "train.csv"),), ("en", "de"))}, [
        "unknown table format",
        "train.csv",
    ]


def _lib_unknown_column(d: Path):
    write_lines(d / "t.jsonl.gz", ['{"src": "the dog", "tgt": "der Hund", "id": 1}'])
    return {"train": Source("table", (str(d / "t.jsonl.gz"),), ("src", "de"))}, [
        "unknown column(s) de; available: src, tgt, id"
    ]


def _lib_no_train(d: Path):
    write_prefix(d / "valid", make_pairs(5))
    return {"valid": plain(d / "valid")}, ["no training data"]


def _lib_empty_files(d: Path):
    write_lines(d / "train.en", [])
    write_lines(d / "train.de", [])
    return {"train": plain(d / "train")}, ["train.en"]


LIB_BAD_INPUTS = {
    "missing-table": _lib_missing_table,
    "line-counts": _lib_line_counts,
    "invalid-utf8-gz-valid": _lib_utf8_gz_valid,
    "not-gzip": _lib_not_gzip,
    "table-format": _lib_table_format,
    "unknown-column-jsonl-gz": _lib_unknown_column,
    "no-train": _lib_no_train,
}


@pytest.mark.parametrize("case", [*LIB_BAD_INPUTS, "empty-files"])
def test_library_bad_input_raises_nmt_error(tmp_path, case):
    sources, needles = {**LIB_BAD_INPUTS, "empty-files": _lib_empty_files}[case](tmp_path)
    out = tmp_path / "out"
    with pytest.raises(NMTError) as info:
        build(out, sources)
    msg = str(info.value)
    assert "\n" not in msg
    for needle in needles:
        assert needle in msg
    assert not out.exists() and no_leftovers(out)


# ---------------------------------------------------------------------------------------------
# 9. Interrupted runs and full disks leave nothing half-written


def _big_prefix(d: Path, n: int = 60_000) -> Path:
    """Enough short pairs that preprocessing takes a few seconds."""
    pairs = make_pairs(2000, seed=21)
    lines = [pairs[i % len(pairs)] for i in range(n)]
    return Path(write_prefix(d / "big", lines))


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_interrupted_preprocess_leaves_nothing_and_the_next_run_starts_clean(tmp_path, sig):
    prefix = _big_prefix(tmp_path)
    out = tmp_path / "out"
    args = ["--out", out, "--src", "en", "--tgt", "de", "--vocab-size", VOCAB, "--train-prefix"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "nmt", "preprocess", *map(str, args), str(prefix)]
    for _ in range(3):  # on a loaded machine the signal can land after the run has finished
        proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env)
        first = proc.stderr.readline()  # the read stage is done: the work dir exists
        assert first.startswith("read: "), first
        proc.send_signal(sig)
        rest = proc.communicate(timeout=120)[1]
        if proc.returncode != 0:
            break
        assert f"wrote {out}" in rest, rest  # exit 0 only for a run that finished its work
        shutil.rmtree(out)
    assert proc.returncode != 0
    assert "Traceback" not in rest
    assert not out.exists()
    if sig != signal.SIGKILL:  # unwound: the work dir is gone already
        assert no_leftovers(out)
    meta, logs = build(out, {"train": plain(prefix)})  # a kill -9 leftover is cleared first
    assert no_leftovers(out)
    assert meta.counts["train"]["kept"] == 60_000
    assert any("left by a process that no longer runs" in line for line in logs) == (
        sig == signal.SIGKILL
    )


def test_full_disk_while_writing_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    import errno

    from nmt import stages

    def no_space(self, batch):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(stages.ArrowStream, "write", no_space)
    train = write_prefix(tmp_path / "train", make_pairs(200, seed=22))
    out = tmp_path / "out"
    with pytest.raises(NMTError) as info:
        build(out, {"train": plain(train)})
    assert str(info.value).startswith(f"{out}: no space left on device")
    assert not out.exists() and no_leftovers(out)


def test_num_proc_gives_the_same_data_dir(tmp_path, monkeypatch):
    import nmt.preprocess as job

    monkeypatch.setattr(job, "PARALLEL_MIN_PAIRS", 1)  # worker processes even on a tiny corpus
    train = write_prefix(tmp_path / "train", make_pairs(3000, seed=23) * 2)
    one, _ = build(tmp_path / "one", {"train": plain(train)}, dedupe=True)
    two, _ = build(tmp_path / "two", {"train": plain(train)}, dedupe=True, num_proc=2)
    assert one.counts == two.counts
    assert one.counts["train"]["dropped"]["duplicate"] == 3000
    assert decoded_pairs(tmp_path / "one", "train") == decoded_pairs(tmp_path / "two", "train")


def test_ctrl_c_while_sentencepiece_reads_its_sample_is_an_interrupt(tmp_path):
    """SentencePiece re-raises what its sentence iterator raises as a RuntimeError: a Ctrl-C
    (or SIGTERM, which preprocess turns into one) in that window must stay an interrupt (exit
    130, work dir removed), not become "SentencePiece training failed" (exit 1)."""
    from nmt.tokenizer import train_sentencepiece

    def sentences():
        for i in range(5000):
            if i == 1000:
                raise KeyboardInterrupt
            yield f"the small dog {i % 7} sees the big cat {i % 11}"

    model = tmp_path / "spm.model"
    with pytest.raises(KeyboardInterrupt):
        train_sentencepiece(sentences(), model, 32)
    assert not model.exists()


# ---------------------------------------------------------------------------------------------
# 10. Faults reported against other toolkits: a tab's place, line breaks, uncovered characters


def test_pairs_that_differ_only_in_where_a_tab_falls_are_both_kept():
    from nmt.stages import _pair_hash

    assert _pair_hash("a\tb", "c") != _pair_hash("a", "b\tc")
    assert _pair_hash("a", "b") == _pair_hash("a", "b")


def test_lines_split_at_newlines_only():
    from nmt.files import one_line, split_lines

    text = "one\u2028still one\r\ntwo\x0cstill two\nthree\x85\n"
    assert split_lines(text) == ["one\u2028still one", "two\x0cstill two", "three\x85"]
    assert len(text.splitlines()) == 6  # what reading hypothesis files used to do
    assert one_line("a\nb\r\nc\rd") == "a b c d"


def test_byte_fallback_keeps_uncovered_characters(tmp_path):
    from nmt.tokenizer import Tokenizer, train_sentencepiece

    text = ["red cat moon", "blue dog sun", "green bird tree"] * 50
    plain = Tokenizer(train_sentencepiece(iter(text), tmp_path / "a.model", 20).read_bytes())
    assert plain.uncovered("red 東京 cat") == ["東京"]
    model = train_sentencepiece(iter(text), tmp_path / "b.model", 280, byte_fallback=True)
    tok = Tokenizer(model.read_bytes())
    assert tok.uncovered("red 東京 cat") == []
    assert tok.src.decode(tok.encode_src(["red 東京 cat"])[0][:-1]) == "red 東京 cat"


def test_a_utf8_bom_at_the_start_of_a_file_is_no_text(tmp_path):
    """Field report (pandas#4793's class): a BOM editors put first is read past, plain or gz."""
    train = write_prefix(tmp_path / "train", make_pairs(200, seed=21), gz=(False, True))
    valid = write_prefix(tmp_path / "valid", make_pairs(12, seed=22))
    for side, gz in (("en", False), ("de", True)):
        for prefix in (train, valid):
            path = Path(f"{prefix}.{side}" + (".gz" if gz and prefix == train else ""))
            body = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
            data = b"\xef\xbb\xbf" + body
            path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    out = tmp_path / "out"
    args = ["--src", "en", "--tgt", "de", "--train-prefix", train, "--valid-prefix", valid]
    run_cli(*args, "--vocab-size", VOCAB, "--out", out)
    for name in ("valid.src", "valid.tgt"):
        text = (out / name).read_text(encoding="utf-8")
        assert not text.startswith("\ufeff") and text.splitlines()[0]
    tok = load_tokenizer(out)
    first = load_encoded(out, "train")[0]
    assert "\ufeff" not in tok.decode_tgt(first["tgt_ids"][:-1])
