"""The `nmt` command line: thin wrappers that parse options and call one library function each.

Heavy imports (torch, datasets) happen inside the commands so that `nmt --help` starts fast.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import os
import sys
import typing
from pathlib import Path

import typer

from nmt.demo import DEMO_MINUTES, DEMO_STEPS
from nmt.errors import Interrupted, NMTError
from nmt.export import FORMATS, MAX_BLEU_DROP, QUANTIZATIONS
from nmt.preprocess_options import CorpusInputs, PreprocessSettings
from nmt.search_options import BATCH_TOKENS, DecodeFlags, SearchOptions

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


def _one_or_many(paths: list[Path] | None) -> Path | list[Path] | None:
    """One -c path as itself, several as the list an ensemble is opened from."""
    return paths[0] if paths and len(paths) == 1 else (paths or None)


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


CHECKPOINT_HELP = (
    "Checkpoint (a .pt file of a run dir) or nmt export dir; repeat -c to decode with an "
    "ensemble of checkpoints."
)


def _flags_of(cls, into: str, make=None, unset: str | None = None):
    """Give the decorated command one flag per field of dataclass `cls` with a flag in its
    metadata (name, short name, help; the default is the field's) in place of its parameter
    `into`, which receives the flags' values as one `make(**values)` (`cls` by default). With
    `unset`, a help suffix naming the default (formatted with `shown`), every flag defaults to
    None: not given."""
    hints = typing.get_type_hints(cls)
    fields = [f for f in dataclasses.fields(cls) if "flag" in f.metadata]

    def parameter(f, kind) -> inspect.Parameter:
        name, short, hint = f.metadata["flag"], f.metadata["short"], hints[f.name]
        switch = bool in (hint, *typing.get_args(hint)) and "/" not in name
        decl = f"{name}/--no-{name[2:]}" if switch else name
        text, default = f.metadata["help"], f.default
        if unset is not None:
            text = f"{text} {unset.format(shown=f.metadata.get('shown', default))}"
            default, hint = None, hint | None
        option = typer.Option(default, decl, *([short] if short else []), help=text)
        return inspect.Parameter(f.name, kind, default=option, annotation=hint)

    def decorate(command):
        @functools.wraps(command)
        def with_flags(*args, **kwargs):
            values = {f.name: kwargs.pop(f.name) for f in fields}
            return command(*args, **{into: (make or cls)(**values)}, **kwargs)

        own = list(inspect.signature(command).parameters.values())
        at = next(i for i, p in enumerate(own) if p.name == into)
        flags = [parameter(f, own[at].kind) for f in fields]
        with_flags.__signature__ = inspect.Signature(own[:at] + flags + own[at + 1 :])
        return with_flags

    return decorate


# `translate` and `evaluate` share the decoding options this way: those given, as one
# `decode: DecodeFlags`, override the model's decode section
_decode_flags = _flags_of(
    SearchOptions, into="decode", make=DecodeFlags, unset="[default: the model's, else {shown}]"
)


@app.command()
@_flags_of(CorpusInputs, into="corpus")
@_flags_of(PreprocessSettings, into="settings")
def preprocess(
    out: Path = typer.Option(..., "--out", "-o", help="Data dir to write."),
    corpus: CorpusInputs = CorpusInputs(),
    settings: PreprocessSettings = PreprocessSettings(),
    force: bool = typer.Option(False, help="Overwrite an existing data dir."),
) -> None:
    """Clean parallel data, train SentencePiece and write an encoded data dir."""
    from nmt.preprocess import PreprocessOptions
    from nmt.preprocess import preprocess as run_preprocess

    opts = PreprocessOptions.from_inputs(corpus, settings)
    run_preprocess(opts, out, force=force, log=_say)


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
    init_from: Path | None = typer.Option(
        None,
        "--init-from",
        help="Start from a trained model's weights (fine-tuning): a checkpoint whose model "
        "section and vocabulary this run shares; fresh optimizer, schedule and step count "
        "(train.reset_optimizer=false keeps its optimizer state).",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Train a model. Extra arguments are dotted overrides: train.lr=3e-4 model.d_model=128."""
    import json

    from nmt.config import load_config

    overrides = list(ctx.args)
    if config is not None and "=" in str(config) and not config.exists():
        config, overrides = None, [str(config), *overrides]  # no config file, only overrides
    if init_from is not None:
        if resume:
            raise NMTError("--init-from starts a new run; --resume continues one: give one")
        overrides.append(f"train.init_from={json.dumps(str(init_from))}")
    cfg = load_config(config, overrides)
    from nmt.training import train as run_training

    try:
        summary = run_training(cfg, run_dir, resume=resume, quiet=quiet or not sys.stderr.isatty())
    except Interrupted as e:  # Ctrl-C or SIGTERM: last.pt is saved
        _say(f"nmt: {e}")
        raise typer.Exit(e.exit_status) from None
    if summary["rank"] == 0:
        best = summary["best"]
        best_s = f"{best:.2f}" if best is not None else "n/a"
        _say(
            f"trained {summary['steps']} steps ({summary['stop_reason']}); best {summary['best_metric']} "
            f"{best_s}; checkpoints in {summary['run_dir']}"
        )


@app.command()
@_decode_flags
def translate(
    inputs: list[Path] = typer.Argument(None, help="Input files (default: stdin)."),
    ckpt: list[Path] = typer.Option(..., "--checkpoint", "-c", help=CHECKPOINT_HELP),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Output file (default: stdout)."
    ),
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
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display."),
    buffer: int | None = typer.Option(
        None, help="Translate and flush every N lines (default: 1 when typed in, else chunks)."
    ),
    flags: Path | None = typer.Option(
        None, help="Write the trust checks of each line to this JSONL file (see nmt.flags)."
    ),
    constraints: Path | None = typer.Option(
        None,
        help="Target phrases each output must contain: one line per input line, "
        "tab-separated (an empty line for none).",
    ),
    glossary: Path | None = typer.Option(
        None,
        help="TSV of SOURCE TERM<tab>TARGET TERM: the target term is required in the output "
        "of every line that contains the source term.",
    ),
    tgt_lang: str | None = typer.Option(
        None,
        help="The language to write: required for a multilingual model with several targets "
        "(an error names them), else its one target.",
    ),
    decode: DecodeFlags = DecodeFlags(),
) -> None:
    """Translate files or stdin, one output line per input line, in order."""
    from nmt.attention_views import Views
    from nmt.translate import AttentionOutput, TranslateIO, run_translation
    from nmt.translator import RuntimeOptions

    streams = TranslateIO(
        inputs=inputs or [],
        output=output,
        buffer=buffer,
        progress=not quiet and sys.stderr.isatty(),
        flags=flags,
        constraints=constraints,
        glossary=glossary,
    )
    views = Views(attention_layer, attention_heads, self_attention)
    attention = AttentionOutput(alignment=alignment, plot_dir=attention_plot, views=views)
    runtime = RuntimeOptions(device=device, threads=threads)
    run_translation(
        _one_or_many(ckpt), streams, decode, runtime, attention, log=_say, tgt_lang=tgt_lang
    )


@app.command()
def export(
    ckpt: Path = typer.Argument(..., help="Transformer checkpoint (a .pt file of a run dir)."),
    output: Path = typer.Option(..., "--output", "-o", help="Model dir to write."),
    format: str = typer.Option(FORMATS[0], help=f"Export format: {', '.join(FORMATS)}."),
    quantization: str = typer.Option("float32", help=f"Weight type: {', '.join(QUANTIZATIONS)}."),
    force: bool = typer.Option(False, help="Replace an existing output dir."),
    valid: tuple[Path, Path] | None = typer.Option(
        None, help="SRC REF to prove the export on (default: the data dir's validation split)."
    ),
    max_bleu_drop: float = typer.Option(
        MAX_BLEU_DROP, help="Reference BLEU a quantized export may lose (on 500+ lines)."
    ),
) -> None:
    """Export a Transformer checkpoint to CTranslate2 (run it with translate/evaluate -c DIR),
    check it against the torch model and write its MODEL_CARD.md."""
    from nmt.export import export as run_export

    manifest = run_export(ckpt, output, quantization, force, valid, max_bleu_drop, format)
    _say(f"exported {ckpt} ({quantization}) to {output}; {_parity_line(manifest['parity'])}")


def _parity_line(parity: dict) -> str:
    if not parity["checked"]:
        return f"parity not checked: {parity['reason']}"
    n = parity["lines"]
    few = " (a small sample: fewer than 200 lines)" if parity.get("few_lines") else ""
    if "bleu_drop" in parity:
        return (
            f"greedy BLEU on {n} validation lines: torch {parity['bleu_torch']:.2f}, export "
            f"{parity['bleu_export']:.2f}{few}"
        )
    ties = f", float ties on lines {parity['ties']}" if parity["ties"] else ""
    return f"greedy outputs identical to torch on {parity['identical']} of {n} lines{ties}{few}"


@app.command()
def score(
    source: Path | None = typer.Argument(None, help="Source file (else TSV on stdin)."),
    target: Path | None = typer.Argument(None, help="Target file, line by line with SOURCE."),
    ckpt: list[Path] = typer.Option(..., "--checkpoint", "-c", help=CHECKPOINT_HELP),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Output file (default: stdout)."
    ),
    device: str = typer.Option("cpu", help="cpu or cuda."),
    threads: int = typer.Option(0, help="CPU threads (0: all cores)."),
    batch_tokens: int | None = typer.Option(
        None,
        help=f"Tokens per batch [default: the model's decode section, else {BATCH_TOKENS}].",
    ),
    tgt_lang: str | None = typer.Option(
        None, help="The language to write, for a multilingual model (its languages: nmt card)."
    ),
) -> None:
    """Score given translations: total log-probability, mean per token, tokens (tab-separated)."""
    from nmt.score import run_scoring
    from nmt.translator import RuntimeOptions

    runtime = RuntimeOptions(device=device, threads=threads)
    run_scoring(
        _one_or_many(ckpt), source, target, output, runtime, batch_tokens, tgt_lang, log=_say
    )


@app.command()
def card(run_dir: Path = typer.Argument(..., help="A run dir (from nmt train).")) -> None:
    """Write MODEL_CARD.md for a trained run: languages, sizes, data, training, test scores."""
    from nmt.card import write_card

    _say(f"wrote {write_card(run_dir)}")


@app.command()
@_decode_flags
def evaluate(
    ckpt: list[Path] | None = typer.Option(None, "--checkpoint", "-c", help=CHECKPOINT_HELP),
    data: Path | None = typer.Option(
        None, "--data", "-d", help="Data dir (default: the checkpoint's)."
    ),
    split: str = typer.Option("test", help="Split of the data dir: valid or test."),
    source: Path | None = typer.Option(None, help="Source file instead of a data dir split."),
    reference: Path | None = typer.Option(
        None, help="Reference file (with --source or --hypothesis)."
    ),
    hypothesis: Path | None = typer.Option(None, help="Score this existing hypothesis file."),
    tgt_lang: str | None = typer.Option(
        None,
        help="The language written (default: the data dir's target, else the model's): a "
        "multilingual model's target, and the BLEU tokenizer's language.",
    ),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write the translations here."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the scores as JSON here."),
    device: str = typer.Option("cpu", help="cpu or cuda."),
    threads: int = typer.Option(0, help="CPU threads (0: all cores)."),
    decode: DecodeFlags = DecodeFlags(),
) -> None:
    """Score translations with sacreBLEU (BLEU, chrF, TER) against references."""
    from nmt.evaluate import EvalInputs, EvalOutputs, format_table
    from nmt.evaluate import evaluate as run_evaluate
    from nmt.translator import RuntimeOptions

    inputs = EvalInputs(
        checkpoint=_one_or_many(ckpt),
        data_dir=data,
        split=split,
        source=source,
        reference=reference,
        hypothesis=hypothesis,
        tgt_lang=tgt_lang,
    )
    outputs = EvalOutputs(output=output, json_out=json_out)
    runtime = RuntimeOptions(device=device, threads=threads)
    print(format_table(run_evaluate(inputs, decode, runtime, outputs)))


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
    compare: bool = typer.Option(
        False, help="Two run dirs (or hypothesis files): significance and what changed."
    ),
    source: Path | None = typer.Option(None, help="With --compare on files: the source."),
    reference: Path | None = typer.Option(None, help="With --compare on files: the reference."),
    tgt_lang: str | None = typer.Option(
        None, help="With --compare: the BLEU tokenizer's language."
    ),
) -> None:
    """Compare runs: curves, throughput, a score table and test BLEU by source length; with
    --compare A B, a paired significance test, the sentences that changed and the trust flags."""
    if not compare:
        if source or reference or tgt_lang:
            raise NMTError("--source/--reference/--tgt-lang go with --compare")
        from nmt.report import write_report

        _say(f"wrote {write_report(run_dirs, out)}")
        return
    if len(run_dirs) != 2:
        raise NMTError(f"--compare takes two run dirs or hypothesis files, not {len(run_dirs)}")
    from nmt.compare import compare as run_compare

    _say(f"wrote {run_compare(*run_dirs, out, source, reference, tgt_lang)}")


@app.command()
def demo(
    out: Path = typer.Option(
        Path("demo"), "--out", "-o", help="Directory for everything the demo makes."
    ),
    steps: int = typer.Option(DEMO_STEPS, help="Training steps."),
    minutes: float = typer.Option(
        DEMO_MINUTES, help="Safety cap on training time (minutes): the demo says if it is hit."
    ),
) -> None:
    """Offline end-to-end run on a built-in synthetic English->German corpus, checked: the
    showcase translations must be the grammar's and test BLEU must reach the demo's value."""
    from nmt.demo import run_demo

    run_demo(out, steps=steps, minutes=minutes, log=_say)


def exit_status(e: BaseException) -> int | None:
    """The exit status of a command that raised `e`, its one line said on stderr: a user error
    is 1, Ctrl-C 130; None for anything else (a bug: let it raise)."""
    if isinstance(e, NMTError):
        _say(f"nmt: error: {e}")
        return 1
    if isinstance(e, KeyboardInterrupt):
        _say("nmt: interrupted")
        return 130
    return None


def main() -> None:
    """Entry point: user errors become one line on stderr and exit status 1."""
    try:
        app()
    except (NMTError, KeyboardInterrupt) as e:
        sys.exit(exit_status(e))
    except BrokenPipeError:
        # Output closed early (e.g. piped into `head`): exit quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(1)
