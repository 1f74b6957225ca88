"""The decoding engine against a scripted decoder, plus invariants on every backend."""

from __future__ import annotations

import math

import pytest
import torch

from nmt.models.backends import BACKENDS, build_model
from nmt.models.base import src_mask_of
from nmt.search import SearchOptions, _beam, generate
from nmt.search_options import length_penalty
from nmt.tokenizer import BOS_ID, EOS_ID
from tests.conftest import model_config

A, B = 4, 5  # the two word ids of the scripted vocabulary
V = 7

# P(next | last token): the decoder only looks at the token it is fed.
SCRIPT = {
    BOS_ID: {A: 0.6, B: 0.4},
    A: {EOS_ID: 0.4, A: 0.3, B: 0.3},
    B: {EOS_ID: 0.9, A: 0.05, B: 0.05},
}


class ScriptedDecoder(torch.nn.Module):
    """Keeps the model contract; its per-step probabilities are the table above."""

    def __init__(self, script: dict = SCRIPT):
        super().__init__()
        table = torch.full((V, V), 1e-9)
        for last, row in script.items():
            for tok, p in row.items():
                table[last, tok] = p
        self.register_buffer("log_table", table.log())

    def encode(self, src, src_mask, src_lengths=None):
        return {"src_mask": src_mask, "memory": src_mask.float()[..., None]}

    def init_cache(self, encoded):
        return {"steps": torch.zeros(encoded["src_mask"].size(0), 1)}

    def decode(self, tgt_in, encoded, cache=None):
        logits = self.log_table[tgt_in]  # (B, T, V)
        attn = encoded["src_mask"].float()[:, None, :].expand(-1, tgt_in.size(1), -1)
        attn = attn / attn.sum(-1, keepdim=True)
        if cache is not None:
            cache = {"steps": cache["steps"] + 1}
        return logits, attn, cache


def src_batch(n: int) -> torch.Tensor:
    return torch.full((n, 3), 7)


def test_greedy_follows_the_script():
    hyps = generate(ScriptedDecoder(), src_batch(2), SearchOptions(beam=1), max_len=10)
    for h in hyps:
        assert h[0].tokens == [A]
        assert h[0].score == pytest.approx(math.log(0.6 * 0.4), abs=1e-5)


def test_beam_finds_the_better_hypothesis_greedy_misses():
    opts = SearchOptions(beam=2, n_best=2, alpha=0.0)
    hyps = generate(ScriptedDecoder(), src_batch(3), opts, max_len=10)
    for h in hyps:
        assert [x.tokens for x in h] == [[B], [A]]
        assert h[0].score == pytest.approx(math.log(0.4 * 0.9), abs=1e-5)
        assert h[1].score == pytest.approx(math.log(0.6 * 0.4), abs=1e-5)


def test_beam_search_runs_on_until_no_alive_beam_can_win():
    """Two hypotheses finish by step 2 (0.25 and 0.225), but the alive C E (0.45) goes on to
    end at 0.45: a beam of 2 must not stop merely because 2 hypotheses have finished."""
    C, D, E = 4, 5, 6
    script = {
        BOS_ID: {C: 0.5, EOS_ID: 0.25, D: 0.25},
        C: {E: 0.9, EOS_ID: 0.1},
        D: {EOS_ID: 0.9, D: 0.1},
        E: {EOS_ID: 1.0},
    }
    for alpha in (0.0, 0.6):
        (h,) = generate(ScriptedDecoder(script), src_batch(1), SearchOptions(2, alpha), 10)[0]
        assert h.tokens == [C, E]
        assert h.score == pytest.approx(math.log(0.45) / length_penalty(3, alpha), abs=1e-5)


def test_length_penalty_normalises_scores():
    opts = SearchOptions(beam=2, alpha=1.0)
    (h,) = generate(ScriptedDecoder(), src_batch(1), opts, max_len=10)[0]
    assert h.score == pytest.approx(math.log(0.36) / ((5 + 2) / 6), abs=1e-5)


def test_max_length_stops_unfinished_hypotheses():
    opts = SearchOptions(beam=1, max_len_a=0.0, max_len_b=1)
    (h,) = generate(ScriptedDecoder(), src_batch(1), opts, max_len=10)[0]
    assert h.tokens == [A]  # cut after one token, no EOS reached


def test_attention_comes_back_with_the_hypothesis():
    for beam in (1, 2):
        (h,) = generate(
            ScriptedDecoder(), src_batch(1), SearchOptions(beam=beam, attention=True), 10
        )[0]
        assert h.attention.shape == (len(h.tokens) + 1, 3)


def test_no_repeat_ngram_blocks_repeats():
    class Repeater(ScriptedDecoder):
        def decode(self, tgt_in, encoded, cache=None):
            logits, attn, cache = super().decode(tgt_in, encoded, cache)
            logits = torch.full_like(logits, -10.0)
            logits[..., A] = 0.0  # always wants A
            logits[..., B] = -1.0
            return logits, attn, cache

    opts = SearchOptions(beam=1, no_repeat_ngram=2, max_len_a=0, max_len_b=5)
    (h,) = generate(Repeater(), src_batch(1), opts, 10)[0]
    bigrams = list(zip(h.tokens, h.tokens[1:]))
    assert len(bigrams) == len(set(bigrams))


def test_blocked_tokens_leave_their_probability_to_the_others():
    """With A blocked after one use, B's score is its probability among the tokens left."""

    class Repeater(ScriptedDecoder):
        def decode(self, tgt_in, encoded, cache=None):
            logits, attn, cache = super().decode(tgt_in, encoded, cache)
            logits = torch.full_like(logits, -10.0)
            logits[..., A] = 0.0
            logits[..., B] = -1.0
            return logits, attn, cache

    opts = SearchOptions(beam=1, no_repeat_ngram=1, max_len_a=0, max_len_b=2)
    (h,) = generate(Repeater(), src_batch(1), opts, 10)[0]
    full = torch.tensor([-10.0] * 4 + [0.0, -1.0, -10.0]).log_softmax(-1)
    left = torch.tensor([-10.0] * 4 + [-1.0, -10.0]).log_softmax(-1)  # A removed
    assert h.tokens == [A, B]
    assert h.score == pytest.approx((full[A] + left[B - 1]).item(), abs=1e-5)


def test_sampling_respects_top_k():
    torch.manual_seed(0)
    opts = SearchOptions(beam=1, sample=True, top_k=1)
    hyps = generate(ScriptedDecoder(), src_batch(20), opts, max_len=10)
    assert all(h[0].tokens == [A] for h in hyps)  # top-1 sampling is greedy
    opts = SearchOptions(beam=1, sample=True)
    hyps = generate(ScriptedDecoder(), src_batch(200), opts, max_len=10)
    assert len({tuple(h[0].tokens) for h in hyps}) > 2  # real sampling varies


# --- invariants on every real backend (random weights are fine: the search must be exact) ---


def model_for(backend: str):
    torch.manual_seed(1)
    cfg = model_config(backend, d_model=32, n_heads=4, d_ff=64, encoder_layers=1, decoder_layers=1)
    return build_model(cfg, 20, 20, joint=True).eval()


def random_src(n: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    src = torch.zeros(n, 8, dtype=torch.long)
    for i in range(n):
        length = int(torch.randint(2, 8, (1,), generator=gen))
        src[i, :length] = torch.randint(4, 20, (length,), generator=gen)
        src[i, length] = EOS_ID
    return src


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_beam_one_equals_greedy(backend):
    """The beam code path with K=1 (`generate` sends beam 1 to greedy) finds greedy's output."""
    model, src = model_for(backend), random_src(6)
    opts = SearchOptions(beam=2, alpha=0.0)
    object.__setattr__(opts, "beam", 1)  # the beam code path with K=1 and raw scores, as greedy
    greedy = generate(model, src, opts, max_len=20)
    src_mask = src_mask_of(src)
    limits = (opts.max_len_a * src_mask.sum(1).float() + opts.max_len_b).long().clamp(1, 20)
    beam1 = _beam(model, model.encode(src, src_mask), limits, opts)
    assert [h[0].tokens for h in beam1] == [h[0].tokens for h in greedy]
    for b, g in zip(beam1, greedy):
        assert b[0].score == pytest.approx(g[0].score, abs=1e-4)
    # and the check can fail: with a beam of 2 the scripted decoder's answers differ from greedy
    scripted = ScriptedDecoder()
    src = src_batch(1)
    greedy = generate(scripted, src, SearchOptions(beam=1), 10)
    limits = torch.tensor([10])
    beam2 = _beam(scripted, scripted.encode(src, src > 0), limits, SearchOptions(beam=2, alpha=0.0))
    assert beam2[0][0].tokens != greedy[0][0].tokens


@pytest.mark.parametrize("backend", sorted(BACKENDS))
@pytest.mark.parametrize("beam", [1, 4])
def test_batch_equals_one_by_one(backend, beam):
    model, src = model_for(backend), random_src(6, seed=3)
    opts = SearchOptions(beam=beam, n_best=min(beam, 2))
    batched = generate(model, src, opts, max_len=20)
    for i in range(src.size(0)):
        row = src[i : i + 1, : int((src[i] > 0).sum())]
        single = generate(model, row, opts, max_len=20)[0]
        assert [h.tokens for h in single] == [h.tokens for h in batched[i]]
        for a, b in zip(single, batched[i]):
            assert a.score == pytest.approx(b.score, abs=1e-4)


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_beam_score_is_the_models_log_probability(backend):
    """Re-score the returned hypothesis teacher-forced: the beam's score must match."""
    model, src = model_for(backend), random_src(3, seed=5)
    opts = SearchOptions(beam=3, alpha=0.0)
    hyps = generate(model, src, opts, max_len=20)
    for i, h in enumerate(hyps):
        row = src[i : i + 1, : int((src[i] > 0).sum())]
        limit = min(int(opts.max_len_a * row.size(1) + opts.max_len_b), 20)
        toks = h[0].tokens
        ended = len(toks) < limit  # else it was cut at the length limit, without EOS
        gold = torch.tensor(toks + ([EOS_ID] if ended else []))
        tgt_in = torch.tensor([[BOS_ID] + toks])[:, : len(gold)]
        logits, _, _ = model.decode(tgt_in, model.encode(row, row > 0))
        expected = logits[0].log_softmax(-1)[torch.arange(len(gold)), gold].sum().item()
        assert h[0].score == pytest.approx(expected, abs=1e-3)
