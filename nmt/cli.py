"""The `nmt` command line: thin wrappers that parse options and call one library function each.

Heavy imports (torch, datasets) happen inside the commands so that `nmt --help` starts fast.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import typer

from nmt.errors import NMTError

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
    train_prefix: Optional[str] = typer.Option(None, help="Plain files PREFIX.{src,tgt}[.gz]."),
    valid_prefix: Optional[str] = typer.Option(None, help="Validation PREFIX.{src,tgt}[.gz]."),
    test_prefix: Optional[str] = typer.Option(None, help="Test PREFIX.{src,tgt}[.gz]."),
    train_file: Optional[str] = typer.Option(None, help="TSV or JSONL training file."),
    valid_file: Optional[str] = typer.Option(None, help="TSV or JSONL validation file."),
    test_file: Optional[str] = typer.Option(None, help="TSV or JSONL test file."),
    src_column: Optional[str] = typer.Option(None, help="Source column (default: --src)."),
    tgt_column: Optional[str] = typer.Option(None, help="Target column (default: --tgt)."),
    hub: Optional[str] = typer.Option(None, help="HF hub dataset name (needs internet)."),
    hub_config: Optional[str] = typer.Option(None, help="HF hub dataset config."),
    hub_splits: str = typer.Option("train,validation,test", help="Hub split names train,valid,test."),
    vocab_size: int = typer.Option(8000, help="SentencePiece vocabulary size."),
    model_type: str = typer.Option("unigram", help="unigram or bpe."),
    joint: bool = typer.Option(True, "--joint/--separate", help="One vocabulary or one per side."),
    character_coverage: Optional[float] = typer.Option(
        None, help="SentencePiece character coverage (default 1.0; 0.9995 for zh/ja/ko)."
    ),
    max_len: int = typer.Option(250, help="Drop training pairs longer than this (subwords)."),
    max_ratio: float = typer.Option(3.0, help="Drop training pairs with a longer length ratio."),
    dedupe: bool = typer.Option(False, help="Drop duplicate training pairs."),
    input_sentence_size: int = typer.Option(
        2_000_000, help="Sentences sampled for SentencePiece training."
    ),
    num_proc: int = typer.Option(1, help="Worker processes for encoding large corpora."),
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
        input_sentence_size=input_sentence_size,
        num_proc=num_proc,
        sources=sources,
    )
    preprocess(opts, out, force=force, log=_say)


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
