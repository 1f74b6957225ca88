"""The `nmt` command line: thin wrappers that parse options and call one library function each.

Heavy imports (torch, datasets) happen inside the commands so that `nmt --help` starts fast.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from nmt.config import BATCH_TOKENS, BEAM, LENGTH_PENALTY
from nmt.errors import Interrupted, NMTError
from nmt.export import QUANTIZATIONS

app = typer.Typer(
    name="nmt",
    help="Sequence-to-sequence translation: preprocess, train, evaluate, translate.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", help="Print the version and exit."),
) -> None:
    """Sequence-to-sequence translation: preprocess, train, evaluate, translate."""
    if version:
        from nmt import __version__

        print(f"nmt {__version__}")
        raise typer.Exit()


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@app.command()
def preprocess(
    out: Path = typer.Option(..., "--out", "-o", help="Data dir to write."),
    src: str = typer.Option(..., "--src", "-s", help="Source language code (e.g. de)."),
    tgt: str = typer.Option(..., "--tgt", "-t", help="Target language code (e.g. en)."),
    train_prefix: str | None = typer.Option(None, help="Plain files PREFIX.{src,tgt}[.gz]."),
    valid_prefix: str | None = typer.Option(None, help="Validation PREFIX.{src,tgt}[.gz]."),
    test_prefix: str | None = typer.Option(None, help="Test PREFIX.{src,tgt}[.gz]."),
    train_file: str | None = typer.Option(None, help="TSV or JSONL training file."),
    valid_file: str | None = typer.Option(None, help="TSV or JSONL validation file."),
    test_file: str | None = typer.Option(None, help="TSV or JSONL test file."),
    src_column: str | None = typer.Option(None, help="Source column (default: --src)."),
    tgt_column: str | None = typer.Option(None, help="Target column (default: --tgt)."),
    hub: str | None = typer.Option(None, help="HF hub dataset name (needs internet)."),
    hub_config: str | None = typer.Option(None, help="HF hub dataset config."),
    hub_splits: str = typer.Option(
        "train,validation,test", help="Hub split names train,valid,test."
    ),
    vocab_size: int = typer.Option(8000, help="SentencePiece vocabulary size."),
    model_type: str = typer.Option("unigram", help="unigram or bpe."),
    joint: bool = typer.Option(True, "--joint/--separate", help="One vocabulary or one per side."),
    character_coverage: float | None = typer.Option(
        None, help="SentencePiece character coverage (default 1.0; 0.9995 for zh/ja/ko)."
    ),
    max_len: int = typer.Option(250, help="Drop training pairs longer than this (subwords)."),
    max_ratio: float = typer.Option(3.0, help="Drop training pairs with a longer length ratio."),
    dedupe: bool = typer.Option(False, help="Drop duplicate training pairs."),
    input_sentence_size: int | None = typer.Option(
        None, help="Sentences sampled for SentencePiece training (default 1,000,000)."
    ),
    num_proc: int = typer.Option(
        1, help="Worker processes for cleaning and encoding (e.g. the number of cores)."
    ),
    force: bool = typer.Option(False, help="Overwrite an existing data dir."),
) -> None:
    """Clean parallel data, train SentencePiece and write an encoded data dir."""
    from nmt.data import PreprocessOptions, Source, find_plain, preprocess

    if model_type not in ("unigram", "bpe"):
        raise NMTError(f"--model-type must be unigram or bpe, not {model_type!r}")
    columns = (src_column or src, tgt_column or tgt)
    sources: dict[str, Source] = {}
    hub_split_names = hub_splits.split(",")
    for i, (split, prefix, file) in enumerate(
        [
            ("train", train_prefix, train_file),
            ("valid", valid_prefix, valid_file),
            ("test", test_prefix, test_file),
        ]
    ):
        if prefix and file:
            raise NMTError(f"give either --{split}-prefix or --{split}-file, not both")
        if prefix:
            paths = (str(find_plain(prefix, src)), str(find_plain(prefix, tgt)))
            sources[split] = Source("plain", paths)
        elif file:
            sources[split] = Source("table", (file,), columns)
        elif hub and i < len(hub_split_names) and hub_split_names[i]:
            sources[split] = Source(
                "hub", (), (src, tgt), hub, hub_config, hub_split_names[i].strip()
            )
    if "train" not in sources:
        raise NMTError("no training data: give --train-prefix, --train-file or --hub")
    opts = PreprocessOptions(
        src_lang=src,
        tgt_lang=tgt,
        vocab_size=vocab_size,
        model_type=model_type,
        joint=joint,
        character_coverage=character_coverage,
        max_len=max_len,
        max_ratio=max_ratio,
        dedupe=dedupe,
        num_proc=num_proc,
        sources=sources,
        **({"input_sentence_size": input_sentence_size} if input_sentence_size else {}),
    )
    preprocess(opts, out, force=force, log=_say)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": False})
def train(
    ctx: typer.Context,
    config: Path | None = typer.Argument(None, help="YAML config (data/model/train sections)."),
    run_dir: Path = typer.Option(
        Path("runs/default"), "--run-dir", "-o", help="Where checkpoints go."
    ),
    resume: bool = typer.Option(
        False, help="Continue the run in --run-dir from its last checkpoint."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Train a model. Extra arguments are dotted overrides: train.lr=3e-4 model.d_model=128."""
    from nmt.config import load_config

    overrides = list(ctx.args)
    if config is not None and "=" in str(config) and not config.exists():
        config, overrides = None, [str(config), *overrides]  # no config file, only overrides
    cfg = load_config(config, overrides)
    from nmt.training import train as run_training

    try:
        summary = run_training(cfg, run_dir, resume=resume, quiet=quiet or not sys.stderr.isatty())
    except Interrupted as e:  # Ctrl-C or SIGTERM: last.pt is saved
        _say(f"nmt: {e}")
        raise typer.Exit(e.exit_status) from None
    if int(os.environ.get("RANK", 0)) == 0:
        best = summary["best"]
        best_s = f"{best:.2f}" if best is not None else "n/a"
        _say(
            f"trained {summary['steps']} steps ({summary['stop_reason']}); best {summary['best_metric']} "
            f"{best_s}; checkpoints in {summary['run_dir']}"
        )


@app.command()
def translate(
    inputs: list[Path] = typer.Argument(None, help="Input files (default: stdin)."),
    ckpt: Path = typer.Option(
        ..., "--checkpoint", "-c", help="Checkpoint (e.g. runs/x/best.pt) or nmt export dir."
    ),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Output file (default: stdout)."
    ),
    beam: int | None = typer.Option(
        None, "--beam", "-b", help=f"Beam size (1: greedy) [default: {BEAM}; 1 with --sample]."
    ),
    batch_tokens: int = typer.Option(BATCH_TOKENS, help="Source tokens per batch."),
    alpha: float = typer.Option(
        LENGTH_PENALTY, "--length-penalty", help="GNMT length penalty alpha."
    ),
    n_best: int = typer.Option(1, help="Hypotheses per line (tab-separated with scores)."),
    max_len_a: float = typer.Option(1.5, help="Max output length = a * source length + b."),
    max_len_b: int = typer.Option(10, help="Max output length = a * source length + b."),
    sample: bool = typer.Option(False, help="Sample instead of searching (beam 1)."),
    temperature: float = typer.Option(1.0, help="Sampling temperature."),
    top_k: int = typer.Option(0, help="Sample among the k best tokens (0: all)."),
    top_p: float = typer.Option(1.0, help="Nucleus sampling mass."),
    no_repeat_ngram: int = typer.Option(0, help="Block repeated n-grams of this size."),
    alignment: bool = typer.Option(
        False, help="Append the source-target alignment (tab-separated)."
    ),
    attention_plot: Path | None = typer.Option(None, help="Directory for attention heatmaps."),
    attention_layer: str = typer.Option(
        "last", help="Transformer: layer whose attention to draw (1, 2, ...), or all."
    ),
    attention_heads: str = typer.Option(
        "mean", help="Transformer: mean (one map) or all (a grid, one map per head)."
    ),
    self_attention: bool = typer.Option(
        False, "--self-attention", help="Transformer: also draw encoder/decoder self-attention."
    ),
    device: str = typer.Option("cpu", help="cpu or cuda."),
    threads: int = typer.Option(0, help="CPU threads (0: all cores)."),
    seed: int = typer.Option(1, help="Random seed for sampling."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display."),
    buffer: int | None = typer.Option(
        None, help="Translate and flush every N lines (default: 1 when typed in, else chunks)."
    ),
) -> None:
    """Translate files or stdin, one output line per input line, in order."""
    from nmt.attention_views import Views
    from nmt.translate import run_translation

    run_translation(
        ckpt,
        inputs or [],
        output,
        search=dict(
            beam=beam,
            alpha=alpha,
            n_best=n_best,
            max_len_a=max_len_a,
            max_len_b=max_len_b,
            sample=sample,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            no_repeat_ngram=no_repeat_ngram,
        ),
        batch_tokens=batch_tokens,
        alignment=alignment,
        attention_plot=attention_plot,
        views=Views(attention_layer, attention_heads, self_attention),
        device=device,
        threads=threads,
        seed=seed,
        progress=not quiet and sys.stderr.isatty(),
        log=_say,
        buffer=buffer,
    )


@app.command()
def export(
    ckpt: Path = typer.Argument(..., help="Transformer checkpoint (e.g. runs/x/final.pt)."),
    output: Path = typer.Option(..., "--output", "-o", help="CTranslate2 model dir to write."),
    quantization: str = typer.Option("float32", help=f"Weight type: {', '.join(QUANTIZATIONS)}."),
    force: bool = typer.Option(False, help="Replace an existing output dir."),
) -> None:
    """Export a Transformer checkpoint to CTranslate2 (run it with translate/evaluate -c DIR)."""
    from nmt.export import export as run_export

    run_export(ckpt, output, quantization, force=force)
    _say(f"exported {ckpt} ({quantization}) to {output}")


@app.command()
def evaluate(
    ckpt: Path | None = typer.Option(
        None, "--checkpoint", "-c", help="Checkpoint (or nmt export dir) to translate with."
    ),
    data: Path | None = typer.Option(
        None, "--data", "-d", help="Data dir (default: the checkpoint's)."
    ),
    split: str = typer.Option("test", help="Split of the data dir: valid or test."),
    source: Path | None = typer.Option(None, help="Source file instead of a data dir split."),
    reference: Path | None = typer.Option(
        None, help="Reference file (with --source or --hypothesis)."
    ),
    hypothesis: Path | None = typer.Option(None, help="Score this existing hypothesis file."),
    tgt_lang: str | None = typer.Option(None, help="Target language (picks the BLEU tokenizer)."),
    beam: int = typer.Option(BEAM, "--beam", "-b", help="Beam size."),
    alpha: float = typer.Option(
        LENGTH_PENALTY, "--length-penalty", help="GNMT length penalty alpha."
    ),
    batch_tokens: int = typer.Option(BATCH_TOKENS, help="Source tokens per batch."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write the translations here."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the scores as JSON here."),
    device: str = typer.Option("cpu", help="cpu or cuda."),
    threads: int = typer.Option(0, help="CPU threads (0: all cores)."),
) -> None:
    """Score translations with sacreBLEU (BLEU, chrF, TER) against references."""
    from nmt.evaluate import evaluate as run_evaluate
    from nmt.evaluate import format_table

    result = run_evaluate(
        checkpoint=ckpt,
        data_dir=data,
        split=split,
        source=source,
        reference=reference,
        hypothesis=hypothesis,
        tgt_lang=tgt_lang,
        beam=beam,
        alpha=alpha,
        batch_tokens=batch_tokens,
        output=output,
        json_out=json_out,
        device=device,
        threads=threads,
    )
    print(format_table(result))


@app.command()
def average(
    checkpoints: list[Path] = typer.Argument(
        None, help="Checkpoints to average (or use --run-dir)."
    ),
    run_dir: Path | None = typer.Option(
        None, "--run-dir", help="Average its last N step checkpoints."
    ),
    last: int = typer.Option(5, "--last", "-n", help="How many of the run's checkpoints."),
    output: Path = typer.Option(..., "--output", "-o", help="Averaged checkpoint to write."),
) -> None:
    """Average the weights of several checkpoints into one."""
    from nmt import checkpoint

    paths = list(checkpoints or [])
    if run_dir is not None:
        paths += checkpoint.step_checkpoints(run_dir)[-last:]
    checkpoint.average(paths, output)
    _say(f"averaged {len(paths)} checkpoints into {output}")


@app.command()
def report(
    run_dirs: list[Path] = typer.Argument(..., help="Run dirs to compare (from `nmt train`)."),
    out: Path = typer.Option(..., "--out", "-o", help="Directory for report.md and its figures."),
) -> None:
    """Compare runs: curves, throughput, a score table and test BLEU by source length."""
    from nmt.report import write_report

    _say(f"wrote {write_report(run_dirs, out)}")


@app.command()
def demo(
    out: Path = typer.Option(
        Path("demo"), "--out", "-o", help="Directory for everything the demo makes."
    ),
    minutes: float = typer.Option(3.0, help="Training time budget in minutes."),
) -> None:
    """Offline end-to-end run on a built-in synthetic English->German corpus."""
    from nmt.demo import run_demo

    run_demo(out, minutes=minutes, log=_say)


def main() -> None:
    """Entry point: user errors become one line on stderr and exit status 1."""
    try:
        app()
    except NMTError as e:
        _say(f"nmt: error: {e}")
        sys.exit(1)
    except KeyboardInterrupt:
        _say("nmt: interrupted")
        sys.exit(130)
    except BrokenPipeError:
        # Output closed early (e.g. piped into `head`): exit quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(1)
