"""Attention per layer and head for every backend with attention, and the views drawn from it."""

from __future__ import annotations

import pytest
import torch

from nmt.attention_views import Views, axis_labels
from nmt.errors import NMTError
from nmt.models.backends import build_model
from nmt.tokenizer import PAD_ID
from tests.test_models import VARIANTS, tiny

ENC_LAYERS, DEC_LAYERS, HEADS = 3, 2, 4


def maps_of(backend, kw):
    torch.manual_seed(0)
    cfg = (
        tiny(backend, **kw)
        if backend != "transformer"
        else tiny(backend, encoder_layers=ENC_LAYERS, decoder_layers=DEC_LAYERS, **kw)
    )
    model = build_model(cfg, 30, 30, joint=True).eval()
    src = torch.randint(4, 30, (2, 7))
    src[0, 4:] = PAD_ID  # a padded sentence in the batch
    tgt_in = torch.randint(4, 30, (2, 5))
    with torch.no_grad():
        maps = model.attention_maps(src, tgt_in)
        _, attn, _ = model.decode(tgt_in, model.encode(src, src != PAD_ID))
    return maps, attn


@pytest.mark.parametrize("backend,kw", VARIANTS)
def test_attention_maps_shapes_per_layer_and_head(backend, kw):
    maps, attn = maps_of(backend, kw)
    expected = {
        "rnn": {},
        "rnn_attention": {"cross": (2, 1, 1, 5, 7)},
        "transformer": {
            "cross": (2, DEC_LAYERS, HEADS, 5, 7),
            "encoder": (2, ENC_LAYERS, HEADS, 7, 7),
            "decoder": (2, DEC_LAYERS, HEADS, 5, 5),
        },
    }[backend]
    assert {k: tuple(v.shape) for k, v in maps.items()} == expected
    for m in maps.values():
        torch.testing.assert_close(m.sum(-1), torch.ones(m.shape[:-1]))  # rows are distributions
    if maps:  # the last layer's mean over heads is the map search returns
        torch.testing.assert_close(maps["cross"][:, -1].mean(1), attn, atol=1e-5, rtol=1e-4)
        assert maps["cross"][0, ..., 4:].abs().max() < 1e-6  # no attention on padding


def test_transformer_self_attention_masks():
    maps, _ = maps_of("transformer", {})
    dec = maps["decoder"]  # (B, L, H, T, T)
    future = torch.ones(5, 5, dtype=torch.bool).triu(1)
    assert dec[..., future].abs().max() == 0  # causal: no step looks ahead
    assert dec[..., ~future].min() > 0
    assert maps["encoder"][0, ..., 4:].abs().max() < 1e-6  # padding is never attended to
    heads = maps["cross"][0, 0]
    assert not torch.allclose(heads[0], heads[1])  # heads differ: a grid shows something


def test_views_choose_layers_and_reject_bad_values():
    assert Views().layers(3) == [2] and not Views().detailed
    assert Views("all").layers(3) == [0, 1, 2] and Views("all").detailed
    assert Views("2", "all").layers(3) == [1]
    with pytest.raises(NMTError, match="has 3 layer"):
        Views("4").layers(3)
    with pytest.raises(NMTError, match="layer number"):
        Views("0")
    with pytest.raises(NMTError, match="mean, all"):
        Views(heads="some")
    with pytest.raises(NMTError, match="rnn_attention has no self-attention"):
        Views(self_attention=True).check("rnn_attention", {"cross": torch.zeros(1, 1, 2, 2)})


def test_axis_labels_of_each_kind():
    src, tgt = ["a", "b", "</s>"], ["x", "</s>"]
    assert axis_labels("cross", src, tgt) == (tgt, src)
    assert axis_labels("encoder", src, tgt) == (src, src)
    assert axis_labels("decoder", src, tgt) == (tgt, ["<s>", "x"])
