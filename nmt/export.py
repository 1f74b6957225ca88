"""`nmt export`: a Transformer checkpoint as a CTranslate2 model directory.

The weights go through CTranslate2's own converter API: a `Converter` subclass fills a
`TransformerSpec` (fused self-attention QKV, our pre/post norm, our sinusoidal or learned position
table set explicitly, sqrt(d_model) embedding scaling, the tied output projection, our
SentencePiece vocabularies and special tokens). Beside the model go the SentencePiece model(s)
and a manifest (`nmt.ct2.write_manifest`) that `nmt translate -c DIR` reads; see `nmt.ct2`.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import shutil
from pathlib import Path

from nmt.errors import NMTError
from nmt.files import temp_name, write_text

QUANTIZATIONS = ("int8", "int8_float32", "int16", "float16", "bfloat16", "float32")


MAX_BLEU_DROP = 1.0  # reference BLEU a quantized export may lose against the torch model
BLEU_DROP_MIN_LINES = 500  # the bound applies on samples this large; smaller ones are reported
PARITY_LINES = (200, 1000)  # validation lines decoded on both engines: at least, at most
TIE = 1e-4  # differing outputs whose scores are closer than this are float ties


def _ctranslate2():
    try:
        import ctranslate2  # noqa: F401
        from ctranslate2 import converters, specs
    except ImportError:
        raise NMTError(
            "nmt export needs CTranslate2: pip install 'nmt[ct2]' (or pip install ctranslate2)"
        ) from None
    return converters, specs


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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


def export(
    ckpt: Path,
    out: Path,
    quantization: str = "float32",
    force: bool = False,
    valid: tuple[Path, Path] | None = None,
    max_bleu_drop: float = MAX_BLEU_DROP,
) -> dict:
    """Write a CTranslate2 model dir for a Transformer checkpoint, prove it against the torch
    model (`check_parity` on `valid`, else the checkpoint's validation split) and write its
    model card; returns its manifest with the parity result.

    The dir is written under a temporary name and renamed when complete (and parity holds), so
    a failure leaves nothing half-written (and an existing export is replaced only with --force).
    """
    # here, not at the top: `nmt --help` imports this module for QUANTIZATIONS, without torch
    from nmt import __version__, checkpoint
    from nmt.card import CARD, render
    from nmt.config import to_dict
    from nmt.ct2 import read_manifest, write_manifest
    from nmt.torch_translator import TorchTranslator

    if quantization not in QUANTIZATIONS:
        raise NMTError(
            f"--quantization must be one of {', '.join(QUANTIZATIONS)}, not {quantization!r}"
        )
    out = Path(out)
    if out.exists() and not force:
        raise NMTError(f"{out} already exists: use --force to replace it")
    _ctranslate2()
    state = checkpoint.read(ckpt)
    backend = state.config.model.backend
    if backend != "transformer":
        raise NMTError(
            f"{ckpt}: export supports the transformer backend only (this is {backend}; "
            "CTranslate2 has no RNN decoder): translate it with nmt translate -c CHECKPOINT"
        )
    model, tok, cfg = checkpoint.model_of(state, ckpt), state.tokenizer, state.config
    tmp = temp_name(out)
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _converter(model, cfg, tok).convert(str(tmp), quantization=quantization)
        fields = {
            "nmt_version": __version__,
            "backend": "ctranslate2",
            "quantization": quantization,
            "src_lang": state.data.get("src_lang"),
            "tgt_lang": state.data.get("tgt_lang"),
            "calibration": state.calibration,
            "config": to_dict(cfg),
            "source_checkpoint": str(ckpt),
            "source_checkpoint_sha256": sha256(Path(ckpt)),
        }
        manifest = write_manifest(tmp, tok, fields)
        read_manifest(tmp)  # the dir we wrote must pass the check every load makes
        sample = _valid_sample(state, valid)
        reference = TorchTranslator(
            model, tok, cfg, "cpu", (fields["src_lang"], fields["tgt_lang"])
        )
        manifest["parity"] = check_parity(reference, tmp, quantization, sample, max_bleu_drop)
        card = render(state, Path(ckpt), {"quantization": quantization, **manifest})
        write_text(tmp / CARD, card)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest


def _valid_sample(state, valid: tuple[Path, Path] | None):
    """Source and reference lines to prove the export on, their line numbers and the language
    each is translated into (None: the model's own): `valid`, else the validation split of the
    checkpoint's data dir (a multilingual one's lines in their pairs' languages, in turns);
    None when there is neither (or it has no non-blank line)."""
    from nmt import datadir
    from nmt.files import read_text_lines

    langs: list = []
    if valid is None:
        data_dir = state.config.data.dir
        if not datadir.has_split(data_dir, "valid"):
            return None
        valid = datadir.raw_text(data_dir, "valid")
        meta = datadir.read_meta(data_dir)
        names = datadir.pair_names(meta)
        for name, (start, end) in datadir.pair_rows(meta, "valid").items():
            langs[start:end] = [names[name][1]] * (end - start)
    elif state.tokenizer.tags and not state.data.get("tgt_lang"):
        raise NMTError(
            "--valid: a model with several target languages is checked on its data dir's "
            "validation split, which says the language of each line: leave out --valid"
        )
    srcs, refs = (read_text_lines(Path(p)) for p in valid)
    if len(srcs) != len(refs):
        raise NMTError(f"--valid: {len(srcs)} source lines but {len(refs)} reference lines")
    langs = langs or [None] * len(srcs)
    keep = [i for i, s in enumerate(srcs) if s.strip()]
    if len(set(langs)) > 1:  # every pair in the sample: its lines in turns, then cut
        by_lang = [[i for i in keep if langs[i] == lang] for lang in dict.fromkeys(langs)]
        turns = itertools.zip_longest(*by_lang)
        keep = sorted([i for turn in turns for i in turn if i is not None][: PARITY_LINES[1]])
    keep = keep[: PARITY_LINES[1]]
    if not keep:
        return None
    return (
        [srcs[i] for i in keep],
        [refs[i] for i in keep],
        [i + 1 for i in keep],
        [langs[i] for i in keep],
    )


def _greedy(translator, srcs: list[str], langs: list) -> list:
    """The greedy `Translation` of each line, each into its language."""
    from nmt.search_options import SearchOptions

    out: list = [None] * len(srcs)
    for lang in dict.fromkeys(langs):
        rows = [i for i, x in enumerate(langs) if x == lang]
        opts = SearchOptions(beam=1, tgt_lang=lang)
        found = translator.translate_detailed([srcs[i] for i in rows], opts, warn=lambda n: None)
        for i, t in zip(rows, found):
            out[i] = t[0]
    return out


def check_parity(reference, export_dir, quantization, sample, max_bleu_drop=MAX_BLEU_DROP):
    """Decode the sample greedily on both engines (`reference`: the checkpoint's model, a
    `TorchTranslator`). float32: the outputs must agree except for
    float ties (scores within TIE); a quantized export may lose at most `max_bleu_drop`
    reference BLEU (on samples of BLEU_DROP_MIN_LINES lines or more). A failure is an
    NMTError naming the first differing line."""
    from nmt.ct2 import CT2Translator
    from nmt.scores import bleu

    if sample is None:
        return {"checked": False, "reason": "no validation text; give --valid SRC REF"}
    srcs, refs, numbers, langs = sample
    exported = CT2Translator.open(export_dir)
    a, b = (_greedy(t, srcs, langs) for t in (reference, exported))
    result = {"checked": True, "lines": len(srcs), "few_lines": len(srcs) < PARITY_LINES[0]}
    if quantization != "float32":
        lang = reference.tgt_lang
        bt, be = (bleu([t.text for t in x], refs, lang) for x in (a, b))
        enforced = len(srcs) >= BLEU_DROP_MIN_LINES
        result |= {"bleu_torch": round(bt, 2), "bleu_export": round(be, 2)}
        result |= {"bleu_drop": round(bt - be, 2), "max_bleu_drop": max_bleu_drop}
        result["enforced"] = enforced
        if enforced and bt - be > max_bleu_drop:
            raise NMTError(
                f"export parity failed: {quantization} loses {bt - be:.2f} BLEU against the "
                f"torch model on {len(srcs)} validation lines (bound --max-bleu-drop "
                f"{max_bleu_drop}); nothing was written"
            )
        return result
    differ = [i for i, (x, y) in enumerate(zip(a, b)) if x.text != y.text]
    ties = [numbers[i] for i in differ if abs(a[i].score - b[i].score) < TIE]
    for i in differ:
        if numbers[i] not in ties:
            raise NMTError(
                f"export parity failed on validation line {numbers[i]}: torch {a[i].text!r} "
                f"({a[i].score:.4f}), export {b[i].text!r} ({b[i].score:.4f}); nothing was written"
            )
    return result | {"identical": len(srcs) - len(differ), "ties": ties}
