"""`nmt demo`: the whole job offline on a built-in synthetic English->German corpus.

Generate the corpus, preprocess, train a small Transformer for a few minutes, evaluate with
sacreBLEU, translate a file, draw an attention heatmap of a sentence whose German verb
moves to the end of a subordinate clause, and write a report of the run (`nmt report`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from nmt.config import Config, DataConfig, TrainConfig
from nmt.models.transformer_config import TransformerConfig

# Showcase sentences: only words of the demo grammar (tests/test_demo.py checks every word
# against nmt.demo_corpus), so a trained model has seen each one.
DEMO_SENTENCES = [
    "The old man sees the small dog, because the woman has bought a red car.",
    "A young woman says that the teacher has found the new book.",
    "Today the children hold the big boxes.",
]


def demo_config(data_dir: Path, minutes: float) -> Config:
    return Config(
        data=DataConfig(dir=str(data_dir)),
        model=TransformerConfig(
            d_model=128,
            encoder_layers=2,
            decoder_layers=2,
            n_heads=4,
            d_ff=512,
            dropout=0.1,
            attention_dropout=0.0,
            max_len=128,
        ),
        train=TrainConfig(
            max_tokens=3000,
            lr=2e-3,
            warmup=300,
            max_time=minutes,
            valid_every=250,
            valid_max_sentences=200,
            log_every=50,
            keep_last=1,
        ),
    )


def run_demo(out: Path, minutes: float = 3.0, log: Callable[[str], None] = print) -> dict:
    """Run every step into `out`; returns the paths of what it made."""
    from nmt import checkpoint, runlog
    from nmt.data import PreprocessOptions, Source, preprocess
    from nmt.demo_corpus import write_corpus
    from nmt.evaluate import EvalInputs, EvalOutputs, evaluate, format_table
    from nmt.files import read_text_lines
    from nmt.report import write_report
    from nmt.search_options import SearchOptions
    from nmt.training import train
    from nmt.translate import AttentionOutput, TranslateIO, run_translation

    out = Path(out)
    corpus, data_dir, run_dir = out / "corpus", out / "data", out / "run"
    log(f"[1/6] generating a synthetic English->German corpus in {corpus}")
    counts = write_corpus(corpus, n_train=20000, n_valid=500, n_test=500, seed=1)
    log(f"      {counts['train']} training pairs, {counts['valid']} valid, {counts['test']} test")

    log(f"[2/6] preprocessing into {data_dir}")
    sources = {
        s: Source("plain", (str(corpus / f"{s}.en"), str(corpus / f"{s}.de"))) for s in counts
    }
    opts = PreprocessOptions(src_lang="en", tgt_lang="de", vocab_size=500, sources=sources)
    preprocess(opts, data_dir, force=True, log=lambda m: log(f"      {m}"))

    log(f"[3/6] training a small Transformer for {minutes:g} min into {run_dir}")
    cfg = demo_config(data_dir, minutes)
    if run_dir.exists():
        import shutil

        shutil.rmtree(run_dir)
    summary = train(cfg, run_dir, quiet=True)
    log(f"      {summary['steps']} steps, best validation BLEU {summary['best']:.1f}")

    best = run_dir / checkpoint.BEST
    log("[4/6] evaluating on the test split (beam 5)")
    scores_path, test_hyp = run_dir / runlog.RESULTS, run_dir / runlog.TEST_HYP
    result = evaluate(
        EvalInputs(best, data_dir, "test"),
        SearchOptions(beam=5),
        outputs=EvalOutputs(test_hyp, scores_path),
    )
    log(format_table(result))

    log("[5/6] translating a file and drawing attention")
    src_file, hyp_file, plots = out / "input.en", out / "output.de", out / "attention"
    src_file.write_text("".join(s + "\n" for s in DEMO_SENTENCES), encoding="utf-8")
    streams, attention = TranslateIO([src_file], hyp_file), AttentionOutput(plot_dir=plots)
    run_translation(best, streams, SearchOptions(beam=5), attention=attention, log=log)
    for src, hyp in zip(DEMO_SENTENCES, read_text_lines(hyp_file)):
        log(f"      {src}\n   -> {hyp}")
    log("[6/6] writing a report of the run")
    report = write_report([run_dir], out / "report")
    made = {
        "corpus": str(corpus),
        "data_dir": str(data_dir),
        "checkpoint": str(best),
        "scores": str(scores_path),
        "translations": str(hyp_file),
        "attention_plots": str(plots),
        "report": str(report),
    }
    (out / "outputs.json").write_text(json.dumps(made, indent=2) + "\n")
    log("outputs:")
    for k, v in made.items():
        log(f"  {k:<16} {v}")
    return made
