"""Model cards: `MODEL_CARD.md` for a run (`nmt card RUN_DIR`) or an export dir (`nmt export`).

Every number comes from where it is recorded: the checkpoint (config, progress, calibration),
the data dir's `meta.json` (corpus counts) and the run's `results.json` (test scores with their
sacreBLEU signatures); what is not there is said to be unknown, never estimated.
"""

from __future__ import annotations

import json
from pathlib import Path

from nmt import checkpoint, datadir, runlog
from nmt.checkpoint import RunState
from nmt.errors import NMTError
from nmt.files import write_text
from nmt.search_options import SearchOptions
from nmt.tokenizer import tag

CARD = "MODEL_CARD.md"


def write_card(run_dir: Path) -> Path:
    """The card of a run dir's best.pt (last.pt when there is none), written into the run dir."""
    run_dir = Path(run_dir)
    ckpt = run_dir / checkpoint.BEST
    ckpt = ckpt if ckpt.is_file() else run_dir / checkpoint.LAST
    if not ckpt.is_file():
        raise NMTError(f"{run_dir}: no {checkpoint.BEST} or {checkpoint.LAST}: not a run dir")
    path = run_dir / CARD
    write_text(path, render(checkpoint.read(ckpt), ckpt))
    return path


def render(state: RunState, ckpt: Path, export: dict | None = None) -> str:
    """The card's Markdown; `export` (an export's quantization and parity) for an export dir."""
    sections = [
        _about(state, ckpt, export),
        _data(state),
        _training(state),
        _scores(Path(ckpt)),
        _export(export) if export is not None else "",
        _use(state),
    ]
    return "\n".join(s for s in sections if s)


def _about(state: RunState, ckpt: Path, export: dict | None) -> str:
    m, tok = state.config.model, state.tokenizer
    tensors = {v.data_ptr(): v for v in state.model.values() if v.is_floating_point()}
    n_params = sum(v.numel() for v in tensors.values())  # tied weights once
    src, tgt = state.data.get("src_lang") or "?", state.data.get("tgt_lang") or "?"
    title = f"{src} -> {tgt}"
    if state.data.get("pairs"):  # a multilingual model: its pairs, and the tags it reads
        title = ", ".join(p.replace(":", " -> ") for p in state.data["pairs"])
    if tok.tags:
        title += f" (target tags: {' '.join(tag(lang) for lang in tok.tags)})"
    runtime = f"CTranslate2 export ({export['quantization']})" if export else "torch checkpoint"
    sizes = ", ".join(f"{k} {v}" for k, v in _sizes(m).items())
    return (
        f"# Model card: {title}\n\n"
        f"- Model: {m.backend}, {n_params:,} parameters ({sizes})\n"
        f"- Vocabulary: SentencePiece, {'joint' if tok.joint else 'separate'}, source "
        f"{tok.src_vocab_size} pieces, target {tok.tgt_vocab_size}\n"
        f"- Runtime: {runtime}; from `{ckpt}`\n"
    )


def _sizes(m) -> dict:
    names = ("encoder_layers", "decoder_layers", "d_model", "n_heads", "d_ff", "hidden", "layers")
    return {n: getattr(m, n) for n in names if hasattr(m, n)}


def _data(state: RunState) -> str:
    meta = datadir.meta_if_any(state.config.data.dir)
    if meta is None:
        return f"## Training data\n\nUnknown: data dir `{state.config.data.dir}` is not here.\n"
    if datadir.load_tokenizer(state.config.data.dir).vocabulary != state.tokenizer.vocabulary:
        return (
            f"## Training data\n\nUnknown: data dir `{state.config.data.dir}` has another "
            "vocabulary than this model (rewritten since, or another corpus).\n"
        )
    rows = ["## Training data\n", f"Data dir `{state.config.data.dir}`:\n"]
    for split, c in meta.counts.items():
        kept = c.get("kept", c.get("read", 0))
        tokens = c.get("tokens", {})
        pieces = (
            f", {tokens['src']:,} source / {tokens['tgt']:,} target pieces"
            if {"src", "tgt"} <= tokens.keys()
            else ""
        )
        rows.append(f"- {split}: {kept:,} pairs ({c.get('read', kept):,} read){pieces}")
    return "\n".join(rows) + "\n"


def _training(state: RunState) -> str:
    p = state.progress
    minutes = p.get("train_seconds", 0) / 60
    best = p.get("best")
    cal = state.calibration
    rows = [
        "## Training\n",
        f"- Steps: {p.get('step', 0)}, epochs: {p.get('epoch', 0)}, training time: "
        f"{minutes:.1f} minutes",
        f"- Best validation {state.config.train.best_metric}: "
        + (f"{best:.2f} at step {p.get('best_step')}" if best is not None else "unknown"),
        "- Trust flags: "
        + (
            f"calibrated on {cal['lines']} validation lines (length ratio "
            f"{cal['ratio_low']}-{cal['ratio_high']}, mean token log-probability floor "
            f"{cal['min_mean_logprob']})"
            if cal
            else "not calibrated (the length-ratio and confidence checks are skipped)"
        ),
    ]
    return "\n".join(rows) + "\n"


def _named(scored) -> str:
    if isinstance(scored, list):
        return "an ensemble of " + " + ".join(scored)
    return scored or "a checkpoint not recorded"


def _scores(ckpt: Path) -> str:
    path = ckpt.parent / runlog.RESULTS
    if not path.is_file():
        return f"## Test scores\n\nNone recorded: no {runlog.RESULTS} beside the checkpoint.\n"
    r = json.loads(path.read_text(encoding="utf-8"))
    scored = r.get("checkpoint")
    what = f"the {r['split']} split" if r.get("split") else f"`{r.get('source', '?')}`"
    whose = "this checkpoint (torch)"
    if not isinstance(scored, str) or Path(scored).resolve() != ckpt.resolve():
        whose = f"`{_named(scored)}`, not this one"
    rows = [
        "## Test scores\n",
        f"From {runlog.RESULTS}: {what}, {r.get('sentences', '?')} sentences, beam "
        f"{r.get('beam', '?')}, translated by {whose}:\n",
    ]
    for m in ("bleu", "chrf", "ter"):
        if m in r:
            rows.append(f"- {m.upper()} {r[m]:.2f} (`{r.get(m + '_signature', '')}`)")
    return "\n".join(rows) + "\n"


def _export(export: dict) -> str:
    parity = export["parity"]
    rows = ["## Export\n", f"- Quantization: {export['quantization']}"]
    if not parity.get("checked"):
        rows.append(f"- Parity with the torch model: not checked ({parity['reason']})")
    elif "bleu_drop" in parity:
        rows.append(
            f"- Parity: greedy BLEU on {parity['lines']} validation lines, torch "
            f"{parity['bleu_torch']:.2f}, export {parity['bleu_export']:.2f} (drop "
            f"{parity['bleu_drop']:.2f}; bound {parity['max_bleu_drop']}"
            + ("" if parity["enforced"] else ", not enforced under 500 lines")
            + ")"
        )
    else:
        rows.append(
            f"- Parity: greedy outputs identical to the torch model's on {parity['identical']} "
            f"of {parity['lines']} validation lines; float ties: {parity['ties'] or 'none'}"
        )
    if parity.get("few_lines"):
        rows.append(f"- Parity sample: only {parity['lines']} validation lines (fewer than 200)")
    return "\n".join(rows) + "\n"


def _use(state: RunState) -> str:
    d = SearchOptions()
    return (
        "## Use\n\n"
        f"- Decoding defaults: beam {d.beam}, GNMT length penalty {d.alpha}, at most "
        f"{d.max_len_a} x source length + {d.max_len_b} output pieces\n"
        f"- Inputs over {state.config.model.max_len} pieces are truncated (with a warning)\n"
        "- Intended use: translating text like the training data (domain and language pair "
        "above); research and evaluation.\n"
        "- Known limits: quality outside the training domain is unknown; characters outside "
        "the vocabulary are lost (warned per line); a line's trust flags "
        "(`nmt translate --flags`) point at loops, copies, cut outputs and low confidence, "
        "not at fluent mistranslations.\n"
    )
