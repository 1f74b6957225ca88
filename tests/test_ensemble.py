"""Ensembles: several checkpoints decode as one model (mean of their next-token probabilities)."""

from __future__ import annotations

import math

import pytest
import torch

from nmt.models.ensemble import Ensemble
from nmt.runtimes import Translator
from nmt.search import generate
from nmt.search_options import SearchOptions
from nmt.tokenizer import EOS_ID
from tests.conftest import nmt, one_line_error

V = 9
A, B, C, D = 5, 6, 7, 8  # the toy vocabulary's words (after the special ids)


class FixedNext(torch.nn.Module):
    """Keeps the model contract; the first token is drawn from `first`, then EOS for sure."""

    has_attention = False

    def __init__(self, first: dict[int, float]):
        super().__init__()
        row = torch.full((V,), 1e-9)
        for tok, p in first.items():
            row[tok] = p
        end = torch.full((V,), 1e-9)
        end[EOS_ID] = 1.0
        self.register_buffer("first", row.log())
        self.register_buffer("end", end.log())

    def encode(self, src, src_mask, src_lengths=None):
        return {"src_mask": src_mask}

    def init_cache(self, encoded):
        return {"steps": torch.zeros(encoded["src_mask"].size(0), 1)}

    def decode(self, tgt_in, encoded, cache=None):
        T = tgt_in.size(1)
        if cache is None:
            rows = [self.first] + [self.end] * (T - 1)
            logits = torch.stack(rows)[None].expand(tgt_in.size(0), -1, -1)
            return logits, None, None
        first = cache["steps"][:, 0] == 0  # (B,)
        logits = torch.where(first[:, None], self.first, self.end)[:, None]  # (B, 1, V)
        return logits, None, {"steps": cache["steps"] + 1}


def test_the_mean_of_probabilities_picks_what_neither_member_would():
    # the mean of probabilities picks D (0.275); a mean of log-probabilities would pick B
    left = FixedNext({A: 0.40, D: 0.38, B: 0.22})
    right = FixedNext({C: 0.45, B: 0.30, D: 0.17, A: 0.08})
    src = torch.full((2, 3), 7)
    for opts in (SearchOptions(beam=1), SearchOptions(beam=3, alpha=0.0)):
        for member, pick in ((left, A), (right, C)):
            assert generate(member, src, opts, max_len=5)[0][0].tokens == [pick]
        hyp = generate(Ensemble([left, right]), src, opts, max_len=5)[0][0]
        assert hyp.tokens == [D]
        assert hyp.score == pytest.approx(math.log(0.275), abs=1e-5)


def test_sampling_draws_from_the_mean_distribution():
    left, right = FixedNext({A: 1.0}), FixedNext({C: 1.0})
    torch.manual_seed(0)
    src = torch.full((400, 3), 7)
    picks = [
        h[0].tokens[0]
        for h in generate(Ensemble([left, right]), src, SearchOptions(sample=True), 5)
    ]
    assert set(picks) == {A, C} and 120 < picks.count(A) < 280  # 200 expected, sd 10


@pytest.fixture(scope="module")
def two_models(trained, tmp_path_factory):
    """The e2e Transformer and an RNN with attention trained briefly on the same data dir."""
    run = tmp_path_factory.mktemp("ens") / "rnn"
    data = trained / "data"
    nmt("train", "-o", run, "-q", f"data.dir={data}", "model.backend=rnn_attention",
        "model.d_model=32", "train.max_steps=30", "train.valid_every=30", "train.max_tokens=600",
        "train.valid_bleu=false", "train.best_metric=loss")  # fmt: skip
    return trained / "run" / "best.pt", run / "best.pt", data


def test_an_ensemble_of_one_model_is_that_model(two_models):
    ckpt, _, data = two_models
    srcs = (data / "test.src").read_text().splitlines()[:20]
    single = Translator.load(ckpt)
    one = Translator.load(ckpt)
    one.model = Ensemble([one.model])
    for opts in (SearchOptions(beam=1), SearchOptions(beam=4, n_best=3)):
        a = single.translate_detailed(srcs, opts)
        b = one.translate_detailed(srcs, opts)
        for x, y in zip(a, b):
            assert [h.text for h in x] == [h.text for h in y]
            assert [h.score for h in x] == pytest.approx([h.score for h in y], abs=1e-5)


def test_two_identical_models_decode_as_one_through_the_cli(two_models):
    ckpt, _, data = two_models
    src = data / "test.src"
    one = nmt("translate", "-c", ckpt, src, "--n-best", "2", "-q").stdout
    two = nmt("translate", "-c", ckpt, "-c", ckpt, src, "--n-best", "2", "-q").stdout
    rows = [line.split("\t") for line in one.splitlines()]
    rows2 = [line.split("\t") for line in two.splitlines()]
    assert len(rows) == len(rows2) == len(src.read_text().splitlines())
    for r1, r2 in zip(rows, rows2):
        assert r1[0::2] == r2[0::2]  # the texts; their scores agree to float precision
        assert [float(x) for x in r1[1::2]] == pytest.approx([float(x) for x in r2[1::2]], abs=1e-4)


def test_mixed_backends_decode_and_score_consistently(two_models):
    """A Transformer and an RNN with attention: cached incremental decoding of every member
    gives the scores that teacher-forced scoring of the same outputs gives."""
    a, b, data = two_models
    srcs = (data / "test.src").read_text().splitlines()[:15]
    t = Translator.load([a, b])
    assert isinstance(t.model, Ensemble) and t.calibration is None
    out = t.translate_detailed(srcs, SearchOptions(beam=4, n_best=2, alpha=0.0, attention=True))
    hyps = [(s, h) for s, hs in zip(srcs, out) for h in hs if h.ended]
    scores = t.score([s for s, _ in hyps], [h.text for _, h in hyps])
    tok = t.tokenizer
    agree = [
        sc.total == pytest.approx(h.score, abs=1e-4)
        for (_, h), sc in zip(hyps, scores)
        if tok.tgt_pieces(tok.encode_tgt([h.text])[0]) == h.tgt_pieces[:-1]
    ]
    assert len(agree) >= len(hyps) // 2 and all(agree)
    best = out[0][0]  # the members' mean attention, over the batch's padded source
    assert best.attention.shape[0] == len(best.tgt_pieces) and best.alignment()
    sampled = t.translate(srcs, sample=True, seed=3)
    assert len(sampled) == len(srcs)


def test_score_takes_an_ensemble(two_models, tmp_path):
    a, b, data = two_models
    src, tgt = data / "test.src", data / "test.tgt"
    res = nmt("score", "-c", a, "-c", b, src, tgt)
    lines = res.stdout.splitlines()
    assert len(lines) == len(src.read_text().splitlines())
    totals = [float(line.split("\t")[0]) for line in lines]
    pairs = zip(src.read_text().splitlines(), tgt.read_text().splitlines())
    srcs, tgts = map(list, zip(*pairs))
    expected = [s.total for s in Translator.load([a, b]).score(srcs, tgts)]
    assert totals == pytest.approx(expected, abs=1e-5)


def test_models_of_other_vocabularies_do_not_ensemble(two_models, tiny_checkpoint, tmp_path):
    a, _, data = two_models
    res = nmt("translate", "-c", a, "-c", tiny_checkpoint, data / "test.src", check=False)
    one_line_error(res, "vocabulary differs", "one data dir")


def test_an_export_dir_does_not_ensemble(two_models, tmp_path):
    pytest.importorskip("ctranslate2")
    a, _, data = two_models
    nmt("export", a, "-o", tmp_path / "ct2")
    res = nmt("translate", "-c", a, "-c", tmp_path / "ct2", data / "test.src", check=False)
    one_line_error(res, "CTranslate2 has no ensembles")


def test_per_layer_attention_is_refused_for_an_ensemble(two_models, tmp_path):
    a, b, data = two_models
    args = ["-c", a, "-c", b, data / "test.src", "--attention-plot", tmp_path / "plots"]
    res = nmt("translate", *args, "--attention-layer", "1", check=False)
    one_line_error(res, "ensemble")
    nmt("translate", *args, "-o", tmp_path / "out.txt")  # the members' mean is drawn
    assert list((tmp_path / "plots").iterdir())
