"""Faults reported against other toolkits, replayed on nmt: one test per case."""

from __future__ import annotations

import dataclasses

import pytest

from nmt import languages, scores

ZH_REFS = ["我们今天去公园散步。", "这只狗在草地上跑。", "孩子们在河边玩耍。", "她正在看一本新书。"]
ZH_HYPS = ["我们今天去公园散步。", "这只狗在草地上跑步。", "孩子们在河里玩耍。", "她在看一本书。"]


# --- scores computed with the wrong tokenizer ----------------------------------------------------


@pytest.mark.parametrize(
    "code, lang",
    [("zh", "zh"), ("ZH", "zh"), ("zh_CN", "zh"), ("zh-CN", "zh"), ("zh-Hans", "zh"),
     ("zh-Hant-TW", "zh"), ("cmn", "zh"), ("yue", "zh"), ("zho", "zh"), ("ja-JP", "ja"),
     ("jpn", "ja"), ("ko_KR", "ko"), ("deu", "de"), ("en-GB", "en"), (None, None), ("", None)],
)  # fmt: skip
def test_language_codes_normalise_to_one_language(code, lang):
    assert languages.base(code) == lang


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


# --- text split or joined on a separator that can occur inside it --------------------------------


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


def test_a_tab_or_newline_inside_an_output_text_keeps_columns_and_lines():
    from nmt.translate import _format
    from nmt.translator import Translation

    nbest = [Translation("a\tb", -1.0, [], []), Translation("c\nd", -2.0, [], [])]
    assert _format(nbest[:1], 1, False) == "a b"
    assert _format(nbest, 2, False).split("\t") == ["a b", "-1.0000", "c d", "-2.0000"]


# --- content lost without a word ------------------------------------------------------------------


def test_characters_outside_the_vocabulary_are_named_per_line(tiny_checkpoint):
    from nmt.runtimes import Translator

    translator = Translator.load(tiny_checkpoint)
    with pytest.warns(UserWarning, match="line 2: not in the model's vocabulary: 東京 ☆★☆"):
        translator.translate(["red cat", "red 東京 cat ☆★☆", "blue"], beam=1)


def test_outputs_stopped_by_the_length_limit_are_reported(trained):
    from tests.conftest import nmt

    ckpt = trained / "run" / "best.pt"
    limit = ["--max-len-a", "0", "--max-len-b", "4"]
    res = nmt("translate", "-c", ckpt, "--beam", "1", *limit, input="red cat moon sun dog\nsun\n")
    assert "line 1: output stopped by the length limit before its end (4 tokens)" in res.stderr
    assert "line 2" not in res.stderr  # a one-word reversal ends within four tokens
    res = nmt("evaluate", "-c", ckpt, *limit)
    assert "output stopped by the length limit before its end:" in res.stdout
    assert "Traceback" not in res.stderr


def test_byte_fallback_keeps_uncovered_characters(tmp_path):
    from nmt.tokenizer import Tokenizer, train_sentencepiece

    text = ["red cat moon", "blue dog sun", "green bird tree"] * 50
    plain = Tokenizer(train_sentencepiece(iter(text), tmp_path / "a.model", 20).read_bytes())
    assert plain.uncovered("red 東京 cat") == ["東京"]
    model = train_sentencepiece(iter(text), tmp_path / "b.model", 280, byte_fallback=True)
    tok = Tokenizer(model.read_bytes())
    assert tok.uncovered("red 東京 cat") == []
    assert tok.src.decode(tok.encode_src(["red 東京 cat"])[0][:-1]) == "red 東京 cat"


# --- alignment output in the wrong units ----------------------------------------------------------


def test_pieces_map_to_the_words_of_the_text():
    from nmt.translator import word_ids

    pieces = ["▁Ein", "▁brau", "n", "-", "weiß", "er", "▁Hund", "."]
    assert word_ids(pieces) == [0, 1, 1, 1, 1, 1, 2, 2]
    assert word_ids(["▁", "sun", "▁dog", "▁"]) == [None, 0, 1, None]
    assert word_ids(["ab", "▁c"]) == [0, 1]
    assert word_ids(["<s>", "▁a", "b", "</s>"]) == [None, 0, 0, None]
    # an output's <unk> is decoded as " ⁇ ": a word of its own, as the text shows
    pieces = ["▁", "<unk>", "e", "l", "▁", "<unk>", "o"]
    assert word_ids(pieces, output=True) == [None, 0, 1, 1, None, 2, 3]  # " ⁇ el  ⁇ o"
    assert word_ids(pieces) == [None, 0, 0, 0, None, 1, 1]  # in an input: the unknown text


def test_alignments_link_words_of_the_printed_texts_without_special_tokens():
    from nmt.translator import Translation

    attention = [  # rows: target pieces (and </s>), columns: source pieces (and </s>)
        [0.7, 0.1, 0.1, 0.1],
        [0.1, 0.1, 0.7, 0.1],  # "▁child" attends to "er", a piece of source word 1
        [0.1, 0.7, 0.1, 0.1],  # "ren" to "▁Kind": the same link, once
        [0.1, 0.1, 0.1, 0.7],  # </s> to </s>: no link
    ]
    t = Translation(
        "Two children", -1.0, ["▁Zwei", "▁Kind", "er", "</s>"], ["▁Two", "▁child", "ren", "</s>"]
    )
    t.attention = attention
    assert t.alignment() == "0-0 1-1"  # was "0-0 2-1 1-2 0-3": pieces, and a link for </s>


# --- options accepted and silently ignored; inputs that do not belong together -------------------

TINY = ["model.d_model=32", "model.n_heads=4", "model.d_ff=64", "model.encoder_layers=1"]
TINY += ["model.decoder_layers=1", "train.max_tokens=300", "train.valid_every=2"]
TINY += ["train.valid_bleu=false", "train.best_metric=loss"]


def _tiny_run(data_dir, run, *extra, resume=False):
    from nmt.config import load_config
    from nmt.training import train

    cfg = load_config(None, [f"data.dir={data_dir}", *TINY, "train.max_steps=2", *extra])
    return train(cfg, run, resume=resume, quiet=True)


@pytest.fixture(scope="module")
def other_vocab_data(tmp_path_factory):
    """A data dir of the toy task in capitals: another vocabulary of the same size as
    `toy_data_dir`'s (and languages xx -> yy)."""
    from nmt.preprocess import PreprocessOptions, preprocess
    from nmt.sources import Source
    from tests.conftest import reverse_pairs, write_parallel

    raw = tmp_path_factory.mktemp("other_raw")
    sources = {}
    for split, n, seed in (("train", 800, 5), ("valid", 30, 6), ("test", 30, 7)):
        pairs = [(s.upper(), t.upper()) for s, t in reverse_pairs(n, seed)]
        prefix = write_parallel(raw, split, pairs, "xx", "yy")
        sources[split] = Source("plain", (f"{prefix}.xx", f"{prefix}.yy"))
    out = tmp_path_factory.mktemp("other") / "data"
    opts = PreprocessOptions(src_lang="xx", tgt_lang="yy", vocab_size=36, sources=sources)
    preprocess(opts, out, log=lambda m: None)
    return out


def test_resume_refuses_what_the_runs_state_carries(toy_data_dir, other_vocab_data, tmp_path):
    """`--resume train.lr=1e-5` kept the old rate while config.yaml said 1e-5."""
    from nmt.errors import NMTError

    run = tmp_path / "run"
    _tiny_run(toy_data_dir, run)
    recorded = (run / "config.yaml").read_text()
    for change in ("train.lr=1e-5", "train.warmup=7", "train.max_tokens=400"):
        key = change.split("=")[0]
        with pytest.raises(NMTError, match=rf"--resume cannot change {key} \("):
            _tiny_run(toy_data_dir, run, change, resume=True)
    with pytest.raises(NMTError, match="is not the one .* was trained with"):
        _tiny_run(other_vocab_data, run, resume=True)
    assert (run / "config.yaml").read_text() == recorded  # nothing rewritten
    summary = _tiny_run(toy_data_dir, run, "train.max_steps=3", "train.log_every=1", resume=True)
    assert summary["steps"] == 3  # budgets and logging take effect


def test_averaging_checkpoints_of_different_vocabularies_is_refused(
    toy_data_dir, other_vocab_data, tmp_path
):
    from nmt import checkpoint
    from nmt.errors import NMTError

    _tiny_run(toy_data_dir, tmp_path / "a")
    _tiny_run(other_vocab_data, tmp_path / "b")  # the same shapes: averaging would "work"
    paths = [tmp_path / "a" / "last.pt", tmp_path / "b" / "last.pt"]
    with pytest.raises(NMTError, match="vocabulary differs from that of"):
        checkpoint.average(paths, tmp_path / "avg.pt")
    assert not (tmp_path / "avg.pt").exists()


def test_evaluate_refuses_flags_that_would_not_apply(tiny_checkpoint, tmp_path):
    from nmt.errors import NMTError
    from nmt.evaluate import EvalInputs, EvalOutputs, evaluate
    from nmt.search_options import DecodeFlags, SearchOptions

    f = tmp_path / "h.txt"
    f.write_text("a\n")
    with pytest.raises(NMTError, match="-c/--checkpoint and --source do not apply"):
        EvalInputs(checkpoint=tiny_checkpoint, hypothesis=f, reference=f)
    with pytest.raises(NMTError, match="decoding flags and -o do not apply"):
        evaluate(EvalInputs(hypothesis=f, reference=f), DecodeFlags(beam=2))
    with pytest.raises(NMTError, match="decoding flags and -o do not apply"):
        evaluate(EvalInputs(hypothesis=f, reference=f), outputs=EvalOutputs(output=f))
    with pytest.raises(NMTError, match="leave out -d/--split"):
        EvalInputs(checkpoint=tiny_checkpoint, source=f, reference=f, split="valid")
    with pytest.raises(NMTError, match="leave out --n-best"):
        evaluate(EvalInputs(checkpoint=tiny_checkpoint), DecodeFlags(beam=2, n_best=2))
    with pytest.raises(NMTError, match="--seed only applies to sampling"):
        SearchOptions(seed=7)


def test_evaluate_refuses_a_data_dir_of_another_language_pair(tiny_checkpoint, other_vocab_data):
    from nmt.errors import NMTError
    from nmt.evaluate import EvalInputs, evaluate

    with pytest.raises(NMTError, match="is xx->yy, the model translates src->tgt"):
        evaluate(EvalInputs(checkpoint=tiny_checkpoint, data_dir=other_vocab_data))
