"""The backend contract: cached step-by-step decoding equals one teacher-forced pass.

Each backend also learns a tiny reversal task."""

from __future__ import annotations

import pytest
import torch

from nmt.models.backends import BACKENDS, build_model
from nmt.models.base import src_mask_of
from nmt.search import SearchOptions, generate
from nmt.tokenizer import BOS_ID, EOS_ID, PAD_ID
from tests.conftest import model_config

VARIANTS = [
    ("rnn", {"cell": "lstm"}),
    ("rnn", {"cell": "gru"}),
    ("rnn_attention", {"attention": "bahdanau"}),
    ("rnn_attention", {"attention": "luong_dot", "cell": "gru"}),
    ("rnn_attention", {"attention": "luong_general"}),
    ("transformer", {"norm": "pre"}),
    ("transformer", {"norm": "post", "positions": "learned"}),
]


def tiny(backend: str, **kw):
    base = dict(d_model=32, n_heads=4, d_ff=64, encoder_layers=2, decoder_layers=2, max_len=32)
    return model_config(backend, **(base | kw))


def test_every_backend_is_covered():
    assert {b for b, _ in VARIANTS} == set(BACKENDS)


@pytest.mark.parametrize("backend,kw", VARIANTS)
def test_cached_decoding_equals_teacher_forcing(backend, kw):
    torch.manual_seed(0)
    model = build_model(tiny(backend, **kw), 30, 30, joint=True).eval()
    src = torch.randint(4, 30, (3, 7))
    src[0, 4:] = PAD_ID  # a padded sentence in the batch
    tgt_in = torch.randint(4, 30, (3, 6))
    encoded = model.encode(src, src_mask_of(src))
    full_logits, full_attn, _ = model.decode(tgt_in, encoded)
    cache = model.init_cache(encoded)
    steps, attns = [], []
    for t in range(tgt_in.size(1)):
        logits, attn, cache = model.decode(tgt_in[:, t : t + 1], encoded, cache)
        steps.append(logits)
        attns.append(attn)
    torch.testing.assert_close(torch.cat(steps, 1), full_logits, atol=1e-5, rtol=1e-4)
    if backend == "rnn":
        assert full_attn is None
    else:
        torch.testing.assert_close(torch.cat(attns, 1), full_attn, atol=1e-5, rtol=1e-4)
        assert full_attn.shape == (3, 6, 7)
        assert full_attn[0, :, 4:].abs().max() < 1e-6  # no attention on padding
        torch.testing.assert_close(full_attn.sum(-1), torch.ones(3, 6))


@pytest.mark.parametrize("backend,kw", VARIANTS)
def test_training_loss_is_cross_entropy_of_the_logits(backend, kw):
    """`model(src, tgt_in, tgt_out, eps)` (fused with the output projection) is the summed
    label-smoothed cross-entropy of `model(src, tgt_in)`, with the same gradients."""
    src = torch.randint(4, 30, (3, 7))
    tgt_in, tgt_out = torch.randint(4, 30, (3, 6)), torch.randint(4, 30, (3, 6))
    tgt_out[1, 3:] = PAD_ID
    grads = []
    for fused in (False, True):
        torch.manual_seed(0)
        model = build_model(tiny(backend, **kw), 30, 30, joint=True)
        torch.manual_seed(1)  # same dropout masks in both passes
        if fused:
            loss = model(src, tgt_in, tgt_out, 0.1)
        else:
            loss = torch.nn.functional.cross_entropy(
                model(src, tgt_in).flatten(0, 1),
                tgt_out.flatten(),
                ignore_index=PAD_ID,
                label_smoothing=0.1,
                reduction="sum",
            )
        loss.backward()
        grads.append([loss.detach()] + [p.grad for p in model.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def reversal_batch(n: int, gen: torch.Generator, vocab: int = 12):
    lengths = torch.randint(3, 7, (n,), generator=gen)
    src = torch.full((n, 7), PAD_ID)
    tgt_in = torch.full((n, 8), PAD_ID)
    tgt_out = torch.full((n, 8), PAD_ID)
    for i, n_i in enumerate(lengths.tolist()):
        seq = torch.randint(4, vocab, (n_i,), generator=gen)
        src[i, :n_i], src[i, n_i] = seq, EOS_ID
        rev = seq.flip(0)
        tgt_in[i, 0], tgt_in[i, 1 : n_i + 1] = BOS_ID, rev
        tgt_out[i, :n_i], tgt_out[i, n_i] = rev, EOS_ID
    return src, tgt_in, tgt_out


LEARN = {
    "rnn": (dict(d_model=128, encoder_layers=1, decoder_layers=1, dropout=0.0), 600, 3e-3),
    "rnn_attention": (dict(d_model=64, encoder_layers=1, decoder_layers=1, dropout=0.0), 300, 5e-3),
    "transformer": (dict(d_model=64, encoder_layers=1, decoder_layers=1, dropout=0.0), 300, 3e-3),
}


@pytest.mark.slow
@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_backend_learns_reversal(backend):
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    kw, steps, lr = LEARN[backend]
    model = build_model(tiny(backend, **(kw | {"d_ff": 128})), 12, 12, joint=True)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):  # stop early once the task is learnt
        src, tgt_in, tgt_out = reversal_batch(64, gen)
        logits = model(src, tgt_in)
        loss = torch.nn.functional.cross_entropy(
            logits.flatten(0, 1), tgt_out.flatten(), ignore_index=PAD_ID
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
        if loss.item() < 0.01:
            break
    model.eval()
    src, _, tgt_out = reversal_batch(200, gen)
    hyps = generate(model, src, SearchOptions(beam=1), max_len=16)
    correct = 0
    for i, h in enumerate(hyps):
        ref = tgt_out[i][tgt_out[i] > EOS_ID].tolist()
        correct += h[0].tokens == ref
    assert correct / len(hyps) >= 0.9, f"{backend}: exact match {correct}/{len(hyps)}"
