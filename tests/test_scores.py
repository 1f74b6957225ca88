"""Scores and languages: language codes, BLEU's tokenizer by language, and warnings about it."""

from __future__ import annotations

import dataclasses

import pytest

from nmt import languages, scores

ZH_REFS = ["我们今天去公园散步。", "这只狗在草地上跑。", "孩子们在河边玩耍。", "她正在看一本新书。"]
ZH_HYPS = ["我们今天去公园散步。", "这只狗在草地上跑步。", "孩子们在河里玩耍。", "她在看一本书。"]


@pytest.mark.parametrize(
    "code, lang",
    [("zh", "zh"), ("ZH", "zh"), ("zh_CN", "zh"), ("zh-CN", "zh"), ("zh-Hans", "zh"),
     ("zh-Hant-TW", "zh"), ("cmn", "zh"), ("yue", "zh"), ("zho", "zh"), ("ja-JP", "ja"),
     ("jpn", "ja"), ("ko_KR", "ko"), ("deu", "de"), ("en-GB", "en"), (None, None), ("", None)],
)  # fmt: skip
def test_language_codes_normalise_to_one_language(code, lang):
    assert languages.base(code) == lang


# --- scores computed with the wrong tokenizer (faults reported against other toolkits) ---------


@pytest.mark.parametrize("code", ["zh-CN", "zh-Hans", "cmn", "ZH"])
def test_every_spelling_of_chinese_scores_with_the_zh_tokenizer(code):
    zh = scores.score(ZH_HYPS, ZH_REFS, "zh")
    assert "tok:zh" in zh["bleu_signature"] and zh["bleu"] > 30
    assert scores.score(ZH_HYPS, ZH_REFS, code)["bleu"] == zh["bleu"]


def test_cjk_references_without_a_cjk_language_are_warned_about(capsys):
    scores._WARNED.clear()
    result = scores.score(ZH_HYPS, ZH_REFS, None)
    assert "tok:13a" in result["bleu_signature"]
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "look Chinese, Japanese or Korean" in err[0] and "--tgt-lang" in err[0]
    scores.score(["a dog runs"], ["a dog runs"], None)  # Latin text: no warning
    scores.score(ZH_HYPS, ZH_REFS, "zh")
    assert capsys.readouterr().err == ""


def test_ja_bleu_without_mecab_says_which_tokenizer_it_used(capsys):
    from sacrebleu.metrics import BLEU

    from nmt.scores import score

    try:
        BLEU(tokenize="ja-mecab")
        pytest.skip("MeCab is installed: BLEU uses ja-mecab")
    except (ImportError, RuntimeError):
        pass
    result = score(["猫 が いる"], ["猫 が いる"], "ja")
    assert "tok:char" in result["bleu_signature"]
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "MeCab is not installed" in err[0] and "tok:char" in err[0]


def test_validation_bleu_during_training_uses_the_targets_tokenizer(
    toy_data_dir, tiny_checkpoint, monkeypatch
):
    """train.log's BLEU, best.pt and patience follow the same number `evaluate` reports."""
    from nmt import checkpoint, validation
    from nmt.search_options import Hypothesis

    model, tok, cfg = checkpoint.load_model(tiny_checkpoint)
    valid = validation.validation_data(cfg, "cpu")
    assert valid.tgt_lang == "tgt"  # from the data dir's meta
    texts = iter(ZH_HYPS)
    monkeypatch.setattr(tok, "decode_tgt", lambda ids: next(texts))
    monkeypatch.setattr(
        validation, "decode_corpus", lambda m, src, *a: [[Hypothesis([4], 0.0)] for _ in src]
    )
    valid.src, valid.refs, valid.tgt_lang = valid.src[:4], ZH_REFS, "zh-CN"
    cfg = dataclasses.replace(
        cfg, train=dataclasses.replace(cfg.train, valid_bleu=True, valid_max_sentences=0)
    )
    result = validation.validation_scores(model, cfg, valid, tok, "cpu")
    assert result["bleu"] == pytest.approx(scores.bleu(ZH_HYPS, ZH_REFS, "zh"))
    assert result["bleu"] > scores.bleu(ZH_HYPS, ZH_REFS, "en") + 20
