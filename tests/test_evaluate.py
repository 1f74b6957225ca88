"""`nmt evaluate`: a checkpoint's scores on a split, a hypothesis file's, and what it refuses."""

from __future__ import annotations

import json

import pytest

from nmt.errors import NMTError
from tests.conftest import nmt


def test_evaluate_scores_the_test_split(trained):
    out = trained / "scores.json"
    res = nmt("evaluate", "-c", trained / "run" / "best.pt", "-d", trained / "data", "--json", out)
    scores = json.loads(out.read_text())
    assert scores["sentences"] == 50
    assert scores["bleu"] > 80, scores  # word reversal is learnt
    assert scores["bleu_signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a")
    assert "BLEU" in res.stdout and "CHRF" in res.stdout and "TER" in res.stdout
    assert len(open(scores["hypotheses"]).readlines()) == 50  # kept beside the scores


def test_score_an_existing_hypothesis_file(tmp_path):
    (tmp_path / "hyp").write_text("a cat sat on the mat\n")
    (tmp_path / "ref").write_text("a cat sat on the mat\n")
    res = nmt("evaluate", "--hypothesis", tmp_path / "hyp", "--reference", tmp_path / "ref")
    assert "100.00" in res.stdout


def test_a_reference_file_starting_with_a_bom_scores_as_its_text(tmp_path):
    """Field report (pandas#4793's class): identical text scored 92.06 BLEU against a BOM."""
    (tmp_path / "hyp").write_text("a cat sat on the mat\nthe dog ran\n")
    (tmp_path / "ref").write_bytes(b"\xef\xbb\xbfa cat sat on the mat\nthe dog ran\n")
    res = nmt("evaluate", "--hypothesis", tmp_path / "hyp", "--reference", tmp_path / "ref")
    assert res.stdout.splitlines()[1].split()[:2] == ["BLEU", "100.00"]


# --- refused: options accepted and silently ignored, inputs that do not belong together ---------


def test_evaluate_refuses_flags_that_would_not_apply(tiny_checkpoint, tmp_path):
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
    from nmt.evaluate import EvalInputs, evaluate

    with pytest.raises(NMTError, match="is xx->yy, the model translates src->tgt"):
        evaluate(EvalInputs(checkpoint=tiny_checkpoint, data_dir=other_vocab_data))


def test_tgt_lang_of_a_bilingual_model_names_its_language_for_the_bleu_tokenizer(tiny_checkpoint):
    from nmt.evaluate import EvalInputs, evaluate

    result = evaluate(EvalInputs(checkpoint=tiny_checkpoint, split="valid", tgt_lang="zh"))
    assert result["tgt_lang"] == "zh" and "tok:zh" in result["bleu_signature"]
