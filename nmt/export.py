"""`nmt export`: a checkpoint as a model dir another runtime runs, by format (`EXPORTERS`).

The job is the same for every format: the dir is written under a temporary name, gets the
SentencePiece model(s) and a manifest (`nmt.export_dir`), is proved against the torch model
(`check_parity`) and gets its MODEL_CARD.md, then is renamed into place. A format is one
`Exporter`: what it refuses, how it writes the model files, its weight types, the manifest
format the runtime that opens it reads (`nmt.runtimes.RUNTIMES`). `nmt translate -c DIR` runs
the result.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from nmt import export_ct2
from nmt.errors import NMTError
from nmt.export_dir import CTRANSLATE2
from nmt.files import temp_name, write_text


@dataclass(frozen=True)
class Exporter:
    """One export format."""

    format: str  # the manifest's format: which runtime opens the dir
    quantizations: tuple[str, ...]  # the weight types it writes
    check: Callable  # (state, ckpt): refuses a checkpoint the format cannot hold
    convert: Callable  # (model, cfg, tokenizer, out_dir, quantization): the model files


EXPORTERS = {
    "ctranslate2": Exporter(
        CTRANSLATE2, export_ct2.QUANTIZATIONS, export_ct2.check, export_ct2.convert
    ),
}
FORMATS = tuple(EXPORTERS)
QUANTIZATIONS = export_ct2.QUANTIZATIONS  # of the default format (`nmt export --help`)

MAX_BLEU_DROP = 1.0  # reference BLEU a quantized export may lose against the torch model
BLEU_DROP_MIN_LINES = 500  # the bound applies on samples this large; smaller ones are reported
PARITY_LINES = (200, 1000)  # validation lines decoded on both engines: at least, at most
TIE = 1e-4  # differing outputs whose scores are closer than this are float ties


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def export(
    ckpt: Path,
    out: Path,
    quantization: str = "float32",
    force: bool = False,
    valid: tuple[Path, Path] | None = None,
    max_bleu_drop: float = MAX_BLEU_DROP,
    format: str = FORMATS[0],
) -> dict:
    """Write a model dir of `format` for a checkpoint, prove it against the torch model
    (`check_parity` on `valid`, else the checkpoint's validation split) and write its model
    card; returns its manifest with the parity result.

    The dir is written under a temporary name and renamed when complete (and parity holds), so
    a failure leaves nothing half-written (and an existing export is replaced only with --force).
    """
    # here, not at the top: `nmt --help` imports this module for QUANTIZATIONS, without torch
    from nmt import checkpoint
    from nmt.card import CARD, render

    exporter = _exporter(format, quantization)
    out = Path(out)
    if out.exists() and not force:
        raise NMTError(f"{out} already exists: use --force to replace it")
    state = checkpoint.read(ckpt)
    exporter.check(state, Path(ckpt))
    model = checkpoint.model_of(state, ckpt)
    tmp = temp_name(out)
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        exporter.convert(model, state.config, state.tokenizer, tmp, quantization)
        manifest = _finish(format, state, Path(ckpt), tmp, quantization)
        manifest["parity"] = check_parity(
            _reference(state, model), tmp, quantization, _valid_sample(state, valid), max_bleu_drop
        )
        write_text(
            tmp / CARD, render(state, Path(ckpt), {"quantization": quantization, **manifest})
        )
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest


def _exporter(format: str, quantization: str) -> Exporter:
    if format not in EXPORTERS:
        raise NMTError(f"--format must be one of {', '.join(FORMATS)}, not {format!r}")
    exporter = EXPORTERS[format]
    if quantization not in exporter.quantizations:
        raise NMTError(
            f"--quantization must be one of {', '.join(exporter.quantizations)}, not "
            f"{quantization!r}"
        )
    return exporter


def _finish(format: str, state, ckpt: Path, tmp: Path, quantization: str) -> dict:
    """The SentencePiece model(s) and the manifest beside the model files in `tmp`."""
    from nmt import __version__, datadir
    from nmt.config import to_dict
    from nmt.export_dir import read_manifest, write_manifest

    tok, cfg = state.tokenizer, state.config
    fields = {
        "nmt_version": __version__,
        "backend": format,
        "quantization": quantization,
        "src_lang": state.data.get("src_lang"),
        "tgt_lang": state.data.get("tgt_lang"),
        "calibration": state.calibration,
        "config": to_dict(cfg),
        "source_checkpoint": str(ckpt),
        "source_checkpoint_sha256": sha256(ckpt),
        "joint_vocab": tok.joint,
    }
    manifest = write_manifest(tmp, EXPORTERS[format].format, datadir.spm_protos(tok), fields)
    read_manifest(tmp)  # the dir we wrote must pass the check every load makes
    return manifest


def _reference(state, model):
    """The checkpoint's model on torch: what the export is proved against."""
    from nmt.torch_translator import TorchTranslator

    return TorchTranslator(model, state.tokenizer, state.config, "cpu", state.languages)


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
        lines = [srcs[i] for i in rows]
        found = translator.translate_detailed(
            lines, SearchOptions(beam=1), warn=lambda n: None, tgt_lang=lang
        )
        for i, t in zip(rows, found):
            out[i] = t[0]
    return out


def check_parity(reference, export_dir, quantization, sample, max_bleu_drop=MAX_BLEU_DROP):
    """Decode the sample greedily on both engines (`reference`: the checkpoint's model, a
    `TorchTranslator`). float32: the outputs must agree except for
    float ties (scores within TIE); a quantized export may lose at most `max_bleu_drop`
    reference BLEU (on samples of BLEU_DROP_MIN_LINES lines or more). A failure is an
    NMTError naming the first differing line."""
    from nmt.runtimes import open_translator
    from nmt.scores import bleu

    if sample is None:
        return {"checked": False, "reason": "no validation text; give --valid SRC REF"}
    srcs, refs, numbers, langs = sample
    exported = open_translator(export_dir)
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
