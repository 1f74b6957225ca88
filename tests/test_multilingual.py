"""One model, several target languages: tags, temperature sampling, per-pair validation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nmt import checkpoint, runlog
from nmt.batching import PairSampling
from nmt.datadir import load_encoded, load_tokenizer, pair_rows, read_meta
from nmt.errors import NMTError
from nmt.preprocess import PreprocessOptions, preprocess
from nmt.runtimes import open_translator
from nmt.sources import Pair, Source
from tests.conftest import nmt, one_line_error, reverse_pairs, small_transformer, write_parallel

# two "languages" written from one source: cp copies it, rv reverses its words
TASKS = {"cp": lambda s: s, "rv": lambda s: " ".join(reversed(s.split()))}


def write_multiway(raw, split: str, n: int, seed: int) -> str:
    """PREFIX.en, PREFIX.cp, PREFIX.rv: one multi-way corpus serving both pairs."""
    raw.mkdir(parents=True, exist_ok=True)
    srcs = [s for s, _ in reverse_pairs(n, seed)]
    (raw / f"{split}.en").write_text("".join(s + "\n" for s in srcs))
    for lang, task in TASKS.items():
        (raw / f"{split}.{lang}").write_text("".join(task(s) + "\n" for s in srcs))
    return str(raw / split)


@pytest.fixture(scope="module")
def multi(tmp_path_factory):
    """preprocess --pair en:cp --pair en:rv, then a small Transformer trained on both."""
    tmp = tmp_path_factory.mktemp("multi")
    raw = tmp / "raw"
    prefixes = {
        s: write_multiway(raw, s, n, seed)
        for s, n, seed in (("train", 2000, 31), ("valid", 40, 32), ("test", 40, 33))
    }
    data = tmp / "data"
    nmt(
        "preprocess", "--pair", "en:cp", "--pair", "en:rv", "--train-prefix", prefixes["train"],
        "--valid-prefix", prefixes["valid"], "--test-prefix", prefixes["test"],
        "--vocab-size", "40", "-o", data,
    )  # fmt: skip
    cfg = tmp / "cfg.yaml"
    cfg.write_text(small_transformer(data))
    nmt("train", cfg, "-o", tmp / "run", "train.log_every=50")
    return tmp


def test_tags_lead_each_source_and_never_show(multi):
    data = multi / "data"
    tok = load_tokenizer(data)
    assert sorted(tok.tags) == ["cp", "rv"]
    meta = read_meta(data)
    assert [(p.src, p.tgt) for p in meta.pairs] == [("en", "cp"), ("en", "rv")]
    assert meta.tgt_lang is None and meta.src_lang == "en"
    ds = load_encoded(data, "train")
    rows = ds[:]
    for pair, lang in enumerate(("cp", "rv")):
        mine = [s for s, p in zip(rows["src_ids"], rows["pair"]) if p == pair]
        assert len(mine) == 2000 and all(s[0] == tok.tags[lang] for s in mine)
    assert pair_rows(meta, "valid") == {"en-cp": (0, 40), "en-rv": (40, 80)}
    ids = tok.encode_src(["red cat"], "rv")[0]
    assert ids[0] == tok.tags["rv"] and tok.decode_tgt(ids[:-1]) == "red cat"  # the tag is hidden
    with pytest.raises(NMTError, match="cp, rv"):
        tok.encode_src(["red cat"])


def test_a_tiny_model_learns_both_tasks_from_the_tags(multi):
    translator = open_translator(multi / "run" / "best.pt")
    srcs = (multi / "raw" / "test.en").read_text().splitlines()
    for lang, task in TASKS.items():
        out = translator.translate(srcs, beam=1, tgt_lang=lang)
        exact = sum(o == task(s) for o, s in zip(out, srcs)) / len(srcs)
        assert exact > 0.6, (lang, exact, out[:3])
        assert not any("<2" in o for o in out)
    with pytest.raises(NMTError, match="cp, rv"):
        translator.translate(srcs[:1])
    (pieces,) = translator.translate_detailed(srcs[:1], translator_opts(), tgt_lang="rv")
    assert pieces[0].src_pieces[0] == "<2rv>"
    assert "<2rv>" not in pieces[0].text and pieces[0].alignment()  # the tag is no word


def translator_opts():
    from nmt.search_options import SearchOptions

    return SearchOptions(beam=1, attention=True)


def test_validation_reports_each_pair_and_the_best_follows_their_mean(multi):
    run = multi / "run"
    curves = runlog.read_curves(run)
    assert sorted(curves.extra) == ["en-cp", "en-rv"]
    for step_row in curves.valid:
        pairs = [
            next(r for r in curves.extra[n] if r["step"] == step_row["step"]) for n in curves.extra
        ]
        assert step_row["bleu"] == pytest.approx(sum(r["bleu"] for r in pairs) / 2)
    best = checkpoint.read(run / "best.pt").progress
    assert best["best"] == max(r["bleu"] for r in curves.valid)
    assert checkpoint.read(run / "best.pt").data["pairs"] == ["en:cp", "en:rv"]


def test_translate_and_evaluate_by_target_language(multi, tmp_path):
    ckpt = multi / "run" / "best.pt"
    srcs = (multi / "raw" / "test.en").read_text().splitlines()[:5]
    res = nmt(
        "translate", "-c", ckpt, "--tgt-lang", "rv", "--beam", "1", input="\n".join(srcs) + "\n"
    )
    assert res.stdout.splitlines() == open_translator(ckpt).translate(srcs, beam=1, tgt_lang="rv")
    one_line_error(nmt("translate", "-c", ckpt, input="red cat\n", check=False), "cp, rv")
    one_line_error(
        nmt("translate", "-c", ckpt, "--tgt-lang", "de", input="red cat\n", check=False), "cp, rv"
    )
    both = nmt("evaluate", "-c", ckpt, "--beam", "1", "--json", tmp_path / "all.json")
    assert "en-cp:" in both.stdout and "en-rv:" in both.stdout and "mean BLEU" in both.stdout
    scores = json.loads((tmp_path / "all.json").read_text())
    assert sorted(scores["pairs"]) == ["en-cp", "en-rv"]
    one = nmt(
        "evaluate", "-c", ckpt, "--beam", "1", "--tgt-lang", "rv", "--json", tmp_path / "rv.json"
    )
    assert "en-cp" not in one.stdout
    rv = json.loads((tmp_path / "rv.json").read_text())["pairs"]["en-rv"]
    assert rv["bleu"] == scores["pairs"]["en-rv"]["bleu"]
    res = nmt("evaluate", "-c", ckpt, "--tgt-lang", "de", check=False)
    one_line_error(res, "targets are cp, rv")


def test_pair_sampling_follows_the_temperature():
    pair = np.repeat([0, 1], [900, 100])
    for t, expected in ((1, [900, 100]), (5, [608, 392]), (50, [511, 489])):
        sampling = PairSampling(pair, t)
        assert list(sampling.draws) == expected
        rows = sampling.draw(np.random.default_rng(0))
        assert np.bincount(pair[rows]).tolist() == expected
        assert len(np.unique(rows[pair[rows] == 0])) == min(900, expected[0])  # no repeats


def test_preprocess_refuses_bad_pairs(tmp_path, toy_data_dir):
    prefix = write_multiway(tmp_path / "raw", "train", 20, 1)
    for args, needle in (
        (["--pair", "en:cp", "--pair", "en:cp"], "listed twice"),
        (["--pair", "en-cp"], "SRC:TGT"),
        (["--pair", "en:cp", "--src", "en"], "not both"),
        (["--pair", "en:xx", "--pair", "en:cp"], "train.xx"),
        (
            ["--pair", "en:cp", "--pair", "en:rv", "--spm-model", toy_data_dir],
            "no target-language tag",
        ),
    ):
        res = nmt("preprocess", *args, "--train-prefix", prefix, "-o", tmp_path / "d", check=False)
        one_line_error(res, needle)
    assert not (tmp_path / "d").exists()


def test_pairs_from_their_own_files_are_balanced_in_the_vocabulary(tmp_path):
    """A big pair does not crowd a small one's language out of the SentencePiece sample."""
    big = write_parallel(tmp_path / "big", "train", reverse_pairs(600, 1), "en", "cp")
    small = write_parallel(
        tmp_path / "small", "train", [(s, s.upper()) for s, _ in reverse_pairs(60, 2)], "en", "up"
    )
    pairs = (
        Pair("en", "cp", {"train": Source("plain", (f"{big}.en", f"{big}.cp"))}),
        Pair("en", "up", {"train": Source("plain", (f"{small}.en", f"{small}.up"))}),
    )
    logs = []
    opts = PreprocessOptions(pairs=pairs, vocab_size=60, input_sentence_size=120)
    preprocess(opts, tmp_path / "d", log=logs.append)
    assert sorted(load_tokenizer(tmp_path / "d").tags) == ["cp", "up"]
    line = next(x for x in logs if x.startswith("sentencepiece:"))
    assert "sentences per language: en 40, cp 40, up 40" in line  # not 11 of 120 for up


def test_the_export_writes_what_torch_writes_for_each_target(multi, tmp_path):
    pytest.importorskip("ctranslate2")
    ckpt, out = multi / "run" / "best.pt", tmp_path / "ct2"
    nmt("export", ckpt, "-o", out, "--quantization", "float32")
    srcs = (multi / "raw" / "test.en").read_text().splitlines()
    torch_side, ct2_side = open_translator(ckpt), open_translator(out)
    for lang in TASKS:
        assert ct2_side.translate(srcs, beam=1, tgt_lang=lang) == torch_side.translate(
            srcs, beam=1, tgt_lang=lang
        )
    with pytest.raises(NMTError, match="cp, rv"):
        ct2_side.translate(srcs[:1])
    assert "target tags: <2cp> <2rv>" in (out / "MODEL_CARD.md").read_text()


def test_a_bilingual_model_takes_its_own_target_only(tiny_checkpoint):
    translator = open_translator(tiny_checkpoint)
    assert translator.translate(["red cat"], beam=1, tgt_lang="tgt") == translator.translate(
        ["red cat"], beam=1
    )
    with pytest.raises(NMTError, match="translates into tgt only"):
        translator.translate(["red cat"], beam=1, tgt_lang="fr")


def test_average_and_specialising_to_one_pair(multi, tmp_path):
    """Averaged multilingual checkpoints still take --tgt-lang; fine-tuned on en->rv alone (its
    data encoded with the multilingual vocabulary), the model needs no --tgt-lang any more."""
    run = multi / "run"
    nmt("average", "--run-dir", run, "-n", "2", "-o", tmp_path / "avg.pt")
    srcs = (multi / "raw" / "test.en").read_text().splitlines()[:5]
    avg = open_translator(tmp_path / "avg.pt")
    assert avg.translate(srcs, beam=1, tgt_lang="cp") != avg.translate(srcs, beam=1, tgt_lang="rv")
    raw = multi / "raw"
    nmt(
        "preprocess", "--src", "en", "--tgt", "rv", "--train-prefix", raw / "train",
        "--valid-prefix", raw / "valid", "--spm-model", multi / "data", "-o", tmp_path / "rv",
    )  # fmt: skip
    assert (
        load_encoded(tmp_path / "rv", "train")[0]["src_ids"][0]
        == load_tokenizer(multi / "data").tags["rv"]
    )
    nmt(
        "train", multi / "cfg.yaml", "--init-from", run / "best.pt", "-o", tmp_path / "ft",
        f"data.dir={tmp_path / 'rv'}", "train.max_steps=20", "train.valid_every=20",
        f"train.extra_valid=[{multi / 'data'}]",
    )  # fmt: skip
    tuned = open_translator(tmp_path / "ft" / "best.pt")
    assert tuned.translate(srcs, beam=1) == tuned.translate(srcs, beam=1, tgt_lang="rv")
    assert "validation of data at step 20" in (tmp_path / "ft" / "train.log").read_text()


def test_a_data_spec_gives_each_pair_its_files_and_weight(tmp_path):
    write_parallel(tmp_path / "c", "big", reverse_pairs(400, 1), "en", "cp")
    small = write_parallel(tmp_path / "c", "small", reverse_pairs(100, 2), "en", "rv")
    spec = tmp_path / "c" / "spec.yaml"
    spec.write_text(
        "pairs:\n"
        "  - {pair: 'en:cp', train: big}\n"  # relative to the spec's folder
        f"  - {{pair: 'en:rv', train: {small}, valid: small, weight: 4}}\n"
    )
    nmt("preprocess", "--data-spec", spec, "--vocab-size", "40", "-o", tmp_path / "d")
    meta = read_meta(tmp_path / "d")
    assert [(p.src, p.tgt, p.weight) for p in meta.pairs] == [
        ("en", "cp", 1.0),
        ("en", "rv", 4.0),
    ]
    assert list(pair_rows(meta, "valid")) == ["en-rv"]
    ds = load_encoded(tmp_path / "d", "train")
    sampling = PairSampling.of(ds, 1.0, [1.0, 4.0])
    assert list(sampling.draws) == [250, 250]  # 400 x 1 : 100 x 4
    bad = tmp_path / "c" / "bad.yaml"
    for text, needle in (
        ("pairs:\n  - {pair: 'en:cp', train: big, wieght: 2}\n", "unknown key 'wieght'"),
        ("pairs:\n  - {pair: 'en:cp', train: nowhere}\n", "nowhere.en"),
        ("pairs:\n  - {pair: 'en:cp', train: big, weight: 0}\n", "weight must be"),
        ("pairs: []\n", "a list of pairs"),
    ):
        bad.write_text(text)
        res = nmt("preprocess", "--data-spec", bad, "-o", tmp_path / "x", check=False)
        one_line_error(res, needle)
    res = nmt(
        "preprocess", "--data-spec", spec, "--pair", "en:cp", "-o", tmp_path / "x", check=False
    )
    one_line_error(res, "leave out the others")
    assert not (tmp_path / "x").exists()


def test_any_spelling_of_a_target_language_picks_its_tag(multi):
    """Field report (fairseq#3906's class): `de-DE`, `DE` or `deu` was refused by a multilingual
    model while a bilingual one took them; one language-code normaliser for both."""
    tok = open_translator(multi / "run" / "best.pt").tokenizer
    assert all(tok.tag_id(code) == tok.tags["rv"] for code in ("rv", "RV", "rv-XX", "rv_Latn"))
    with pytest.raises(
        NMTError, match=r"^target language 'de': this multilingual model writes cp, rv$"
    ):
        tok.tag_id("de")
    with pytest.raises(NMTError, match=r"no target language: .* \(give --tgt-lang\)"):
        tok.tag_id(None)
