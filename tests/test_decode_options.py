"""Decode options (`nmt/search_options.py`): checked, kept in the config's `decode` section.

The section is the one home of the decode options. It travels in the run dir, the checkpoint and
the export; translate/evaluate/score start from it, flags override it, and validation searches
with it (its beam from train.valid_beam).
"""

from __future__ import annotations

import dataclasses

import pytest

from nmt.config import load_config
from nmt.errors import NMTError
from nmt.search_options import DecodeFlags, SearchOptions
from tests.conftest import nmt


def test_bad_options_are_refused():
    with pytest.raises(NMTError):
        SearchOptions(beam=2, n_best=3)
    with pytest.raises(NMTError):
        SearchOptions(beam=4, sample=True)
    with pytest.raises(NMTError, match="--n-best 3 does not apply"):
        SearchOptions(sample=True, n_best=3)  # was accepted, and one hypothesis came back
    with pytest.raises(NMTError, match="--top-p only applies to sampling: add --sample"):
        SearchOptions(top_p=0.9)  # was accepted, and beam search ignored it
    with pytest.raises(NMTError, match="--temperature/--top-k only apply to sampling"):
        SearchOptions(beam=1, temperature=0.5, top_k=3)
    with pytest.raises(NMTError, match="--length-penalty ranks the finished hypotheses"):
        SearchOptions(beam=1, alpha=1.0)
    SearchOptions(sample=True, top_p=0.9, temperature=0.5)  # where they apply: accepted


def test_a_decode_section_is_typed_and_checked():
    cfg = load_config(None, ["decode.beam=3", "decode.max_len_b=4"])
    assert cfg.decode == SearchOptions(beam=3, max_len_b=4)
    assert load_config(None, []).decode == SearchOptions()
    with pytest.raises(NMTError, match="unknown config key decode.beam_size; valid keys"):
        load_config(None, ["decode.beam_size=3"])
    with pytest.raises(NMTError, match="n-best .* cannot exceed the beam size"):
        load_config(None, ["decode.beam=2", "decode.n_best=3"])
    with pytest.raises(NMTError, match="decode.attention is not a setting"):
        load_config(None, ["decode.attention=true"])


def test_flags_override_the_section_and_drop_what_their_search_would_refuse():
    model = SearchOptions(beam=4, alpha=1.0, n_best=2, max_len_b=3)
    assert DecodeFlags().over(model) == model
    assert DecodeFlags(max_len_b=7).over(model) == dataclasses.replace(model, max_len_b=7)
    greedy = DecodeFlags(beam=1).over(model)  # alpha and n-best have no effect at beam 1
    assert (greedy.beam, greedy.alpha, greedy.n_best, greedy.max_len_b) == (1, 0.6, 1, 3)
    sampled = DecodeFlags(sample=True).over(model)
    assert (sampled.beam, sampled.n_best, sampled.sample) == (1, 1, True)
    searched = DecodeFlags(beam=2).over(SearchOptions(sample=True, top_k=5))
    assert (searched.sample, searched.top_k, searched.beam) == (False, 0, 2)
    with pytest.raises(NMTError, match="--seed only applies to sampling"):
        DecodeFlags(seed=3).over(model)  # a flag given by the user is never dropped


@pytest.fixture(scope="module")
def short_model(toy_data_dir, tmp_path_factory):
    """A two-step model whose decode section asks for 2-best lists of at most 3 tokens."""
    from nmt.training import train

    run = tmp_path_factory.mktemp("decode") / "run"
    overrides = [f"data.dir={toy_data_dir}", "model.d_model=32", "model.n_heads=4"]
    overrides += ["model.d_ff=64", "model.encoder_layers=1", "model.decoder_layers=1"]
    overrides += ["train.max_tokens=300", "train.max_steps=2", "train.valid_every=2"]
    overrides += ["train.best_metric=loss", "decode.beam=2", "decode.n_best=2"]
    overrides += ["decode.max_len_a=0", "decode.max_len_b=3", "decode.alpha=1.0"]
    overrides += ["decode.batch_tokens=500"]
    train(load_config(None, overrides), run, quiet=True)
    return run


SECTION = SearchOptions(beam=2, n_best=2, max_len_a=0, max_len_b=3, alpha=1.0, batch_tokens=500)


def test_the_section_is_saved_with_the_run_the_checkpoint_and_the_export(short_model, tmp_path):
    from nmt.checkpoint import read
    from nmt.runtimes import open_translator

    assert load_config(short_model / "config.yaml").decode == SECTION
    assert read(short_model / "best.pt").config.decode == SECTION
    pytest.importorskip("ctranslate2")
    nmt("export", short_model / "best.pt", "-o", tmp_path / "ct2")
    assert open_translator(tmp_path / "ct2").decode == SECTION


def test_translate_starts_from_the_section_and_flags_override_it(short_model, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("red cat moon\nblue dog\n")
    lines = nmt("translate", "-c", short_model / "best.pt", src).stdout.splitlines()
    assert len(lines) == 2 and all(len(line.split("\t")) == 4 for line in lines)  # 2-best
    for line in lines:
        assert all(len(text.split()) <= 2 for text in line.split("\t")[::2])  # 3 tokens, EOS too
    res = nmt("translate", "-c", short_model / "best.pt", src, "-b", "1", "--max-len-b", "9")
    lines = res.stdout.splitlines()
    assert len(lines) == 2 and not any("\t" in line for line in lines)  # greedy: one column
    scores = nmt("score", "-c", short_model / "best.pt", src, src).stdout.splitlines()
    assert len(scores) == 2


def test_the_python_api_and_evaluate_start_from_the_section(short_model):
    from nmt.evaluate import EvalInputs, evaluate
    from nmt.runtimes import open_translator

    translator = open_translator(short_model / "best.pt")
    assert translator.options() == SECTION
    assert translator.options(DecodeFlags(beam=1)).max_len_b == 3
    result = evaluate(EvalInputs(checkpoint=short_model / "best.pt", split="valid"))
    assert result["beam"] == 2  # evaluate keeps the best of each line (n-best 1)


def test_validation_searches_with_the_section(short_model):
    from nmt import validation
    from nmt.checkpoint import read

    cfg = read(short_model / "best.pt").config
    opts = validation.valid_search_options(cfg)  # train.valid_beam (1) is validation's beam
    assert (opts.beam, opts.n_best, opts.max_len_a, opts.max_len_b) == (1, 1, 0, 3)
    assert opts.batch_tokens == 500
    wider = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, valid_beam=3))
    opts = validation.valid_search_options(wider)
    assert (opts.beam, opts.alpha, opts.n_best, opts.max_len_b) == (3, 1.0, 1, 3)
