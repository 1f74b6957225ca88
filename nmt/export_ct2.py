"""The CTranslate2 exporter: an `nmt` Transformer as a CTranslate2 model directory.

The weights go through CTranslate2's own converter API: a `Converter` subclass fills a
`TransformerSpec` (fused self-attention QKV, our pre/post norm, our sinusoidal or learned position
table set explicitly, sqrt(d_model) embedding scaling, the tied output projection, our
SentencePiece vocabularies and special tokens). `nmt.export` runs it from its `EXPORTERS` table;
`nmt.ct2` translates with the result.
"""

from __future__ import annotations

from pathlib import Path

from nmt.errors import NMTError

QUANTIZATIONS = ("int8", "int8_float32", "int16", "float16", "bfloat16", "float32")


def check(state, ckpt: Path) -> None:
    """Refuse what CTranslate2 cannot run, before any work."""
    _ctranslate2()
    backend = state.config.model.backend
    if backend != "transformer":
        raise NMTError(
            f"{ckpt}: export supports the transformer backend only (this is {backend}; "
            "CTranslate2 has no RNN decoder): translate it with nmt translate -c CHECKPOINT"
        )


def convert(model, cfg, tokenizer, out: Path, quantization: str) -> None:
    """Write the CTranslate2 model files of `model` into the (new) dir `out`."""
    _converter(model, cfg, tokenizer).convert(str(out), quantization=quantization)


def _ctranslate2():
    try:
        import ctranslate2  # noqa: F401
        from ctranslate2 import converters, specs
    except ImportError:
        raise NMTError(
            "nmt export needs CTranslate2: pip install 'nmt[ct2]' (or pip install ctranslate2)"
        ) from None
    return converters, specs


def _spec(model, cfg, tokenizer):
    """A filled `TransformerSpec` for our Transformer `model` (weights as float32 numpy)."""
    _, specs = _ctranslate2()
    from nmt.tokenizer import BOS_ID, EOS_ID, UNK_ID

    m = cfg.model
    spec = specs.TransformerSpec.from_config(
        (m.encoder_layers, m.decoder_layers),
        m.n_heads,
        pre_norm=m.norm == "pre",
        activation=specs.Activation.RELU,
        alignment_layer=-1,  # the attention `--alignment` reads: last layer, heads averaged
        alignment_heads=0,
    )
    spec.config.layer_norm_epsilon = model.decoder_layers[0].sub1.norm.eps
    positions = _np(
        model.positions.pe if m.positions == "sinusoidal" else model.positions.emb.weight
    )
    for side, layers, embed in (
        (spec.encoder, model.encoder_layers, model.src_embed),
        (spec.decoder, model.decoder_layers, model.tgt_embed),
    ):
        emb = side.embeddings[0] if isinstance(side.embeddings, list) else side.embeddings
        emb.weight = _np(embed.lut.weight)
        side.scale_embeddings = True  # x sqrt(d_model), as `Embeddings(scale=True)`
        side.position_encodings.encodings = positions  # ours, not CTranslate2's built-in table
        for layer_spec, layer in zip(side.layer, layers):
            _set_layer(layer_spec, layer)
    if m.norm == "pre":
        _set_norm(spec.encoder.layer_norm, model.encoder_norm)
        _set_norm(spec.decoder.layer_norm, model.decoder_norm)
    spec.decoder.projection.weight = _np(model.generator.weight)  # bias-free, maybe tied
    src, tgt = tokenizer.src, tokenizer.tgt
    spec.register_source_vocabulary([src.id_to_piece(i) for i in range(src.get_piece_size())])
    spec.register_target_vocabulary([tgt.id_to_piece(i) for i in range(tgt.get_piece_size())])
    spec.config.unk_token = tgt.id_to_piece(UNK_ID)
    spec.config.bos_token = spec.config.decoder_start_token = tgt.id_to_piece(BOS_ID)
    spec.config.eos_token = tgt.id_to_piece(EOS_ID)
    spec.config.add_source_eos = False  # `nmt.ct2` appends </s> itself, as `encode_src` does
    return spec


def _set_layer(spec, layer) -> None:
    """One encoder or decoder layer: attention blocks, feed-forward, their norms."""
    blocks = [(spec.self_attention, layer.self_attn, layer.sub1)]
    if hasattr(layer, "cross_attn"):
        blocks.append((spec.attention, layer.cross_attn, layer.sub2))
    for attn_spec, attn, sub in blocks:
        w_q, b_q = _np(attn.w_q.weight), _np(attn.w_q.bias)
        w_kv, b_kv = _np(attn.w_kv.weight), _np(attn.w_kv.bias)
        if attn_spec is spec.self_attention:  # one fused QKV projection
            import numpy as np

            attn_spec.linear[0].weight = np.concatenate([w_q, w_kv])
            attn_spec.linear[0].bias = np.concatenate([b_q, b_kv])
        else:  # cross-attention: Q from the decoder, fused KV from the memory
            attn_spec.linear[0].weight, attn_spec.linear[0].bias = w_q, b_q
            attn_spec.linear[1].weight, attn_spec.linear[1].bias = w_kv, b_kv
        attn_spec.linear[-1].weight, attn_spec.linear[-1].bias = (
            _np(attn.w_o.weight),
            _np(attn.w_o.bias),
        )
        _set_norm(attn_spec.layer_norm, sub.norm)
    ff_sub = layer.sub3 if hasattr(layer, "cross_attn") else layer.sub2
    _set_norm(spec.ffn.layer_norm, ff_sub.norm)
    spec.ffn.linear_0.weight, spec.ffn.linear_0.bias = (
        _np(layer.ff.w_1.weight),
        _np(layer.ff.w_1.bias),
    )
    spec.ffn.linear_1.weight, spec.ffn.linear_1.bias = (
        _np(layer.ff.w_2.weight),
        _np(layer.ff.w_2.bias),
    )


def _set_norm(spec, norm) -> None:
    spec.gamma, spec.beta = _np(norm.weight), _np(norm.bias)


def _np(t):
    return t.detach().float().cpu().numpy().copy()


def _converter(model, cfg, tokenizer):
    converters, _ = _ctranslate2()

    class NMTConverter(converters.Converter):
        """Converts an `nmt` Transformer (built by `nmt.checkpoint.model_of`) to CTranslate2."""

        def _load(self):
            return _spec(model, cfg, tokenizer)

    return NMTConverter()
