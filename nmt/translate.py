"""The `nmt translate` job: lines from files or stdin through a translator into a file or stdout,
one output line per input line, in order; optional alignments and attention heatmaps."""

from __future__ import annotations

import dataclasses
import os
import sys
from collections import Counter
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from nmt.attention_views import Views, plot_attention, plot_views
from nmt.constraints import Glossary, read_constraints
from nmt.errors import NMTError
from nmt.files import atomic_write, disk_error, one_line, read_lines, remove_stale_temps
from nmt.flags import json_line
from nmt.runtimes import open_translator
from nmt.search_options import DecodeFlags, SearchOptions
from nmt.translator import NOTE_KINDS, STREAM_LINES, LineNote, RuntimeOptions, Translation

MAX_NOTES = 10  # warnings shown per kind of LineNote; the rest are counted at the end


@dataclass(frozen=True, eq=False)  # eq=False: never compared, and cheaper to build at start-up
class TranslateIO:
    """Where lines come from and go: `inputs` (none: stdin), `output` (None: stdout).

    Lines are translated `buffer` at a time (default: one by one when stdin is a terminal, else
    in chunks of `STREAM_LINES`); with a buffer set, every output line is flushed at once."""

    inputs: list[Path] = field(default_factory=list)
    output: Path | None = None
    buffer: int | None = None
    progress: bool = False  # a progress bar on stderr (not with a buffer)
    flags: Path | None = None  # the trust checks of each line, as JSON lines
    constraints: Path | None = None  # per input line, tab-separated target phrases required
    glossary: Path | None = None  # source term<tab>target term, required where the term occurs

    def __post_init__(self):
        for p in self.inputs:
            if not Path(p).is_file():
                raise NMTError(f"input file not found: {p}")
        if self.buffer is not None and self.buffer < 1:
            raise NMTError("--buffer must be >= 1")
        if self.flags is not None:
            taken = [Path(p).resolve() for p in self.inputs] + (
                [Path(self.output).resolve()] if self.output is not None else []
            )
            if Path(self.flags).resolve() in taken:
                raise NMTError(f"--flags {self.flags} is also an input or the output")


@dataclass(frozen=True, eq=False)
class AttentionOutput:
    """What of the attention to write: Pharaoh alignments beside each line, heatmaps in a dir."""

    alignment: bool = False
    plot_dir: Path | None = None
    views: Views = field(default_factory=Views)

    def __post_init__(self):
        if self.views.detailed and self.plot_dir is None:
            raise NMTError(
                "--attention-layer/--attention-heads/--self-attention need --attention-plot DIR"
            )

    @property
    def wanted(self) -> bool:
        return self.alignment or self.plot_dir is not None


def run_translation(
    ckpt: Path | list[Path],  # a list: an ensemble
    streams: TranslateIO,
    decode: DecodeFlags = DecodeFlags(),
    runtime: RuntimeOptions = RuntimeOptions(),
    attention: AttentionOutput = AttentionOutput(),
    log: Callable[[str], None] = print,
    tgt_lang: str | None = None,
) -> int:
    """Translate the lines of `streams` with the checkpoint or export dir `ckpt` into `tgt_lang`
    (default: the model's one target), with the model's decode section under the `decode` flags;
    returns the number of lines. A file output is written to a temporary name and renamed at the
    end, so an error never leaves a half-written file behind."""
    buffer = streams.buffer
    if buffer is None and not streams.inputs and sys.stdin is not None and sys.stdin.isatty():
        buffer = 1  # typed in: answer each line at once
    translator = open_translator(ckpt, runtime)
    opts = dataclasses.replace(translator.options(decode), attention=attention.wanted)
    translator.seed(opts.seed)
    if opts.attention and not translator.has_attention:
        raise NMTError(
            f"the {translator.cfg.model.backend} backend has no attention: "
            "--alignment/--attention-plot need a backend with attention"
        )
    constraints_of = _constraints_of(streams, translator, opts)
    if attention.plot_dir is not None:
        Path(attention.plot_dir).mkdir(parents=True, exist_ok=True)

    warn = Notes(log)
    bar = _progress_bar() if streams.progress and buffer is None else None
    n = 0
    try:
        with _output(streams.output) as out, _flags_output(streams.flags) as flags_out:
            stream = translator.translate_stream(
                read_lines(streams.inputs),
                opts,
                chunk=buffer or STREAM_LINES,
                warn=warn,
                maps=attention.views.detailed,
                constraints_of=constraints_of,
                tgt_lang=tgt_lang,
            )
            for n, nbest in enumerate(stream, 1):
                out.write(_format(nbest, opts.n_best, attention.alignment) + "\n")
                if flags_out is not None:
                    flags_out.write(json_line(n, nbest[0].flags) + "\n")
                if buffer is not None:
                    out.flush()
                _plot(nbest[0], n, attention, translator.cfg.model.backend)
                if bar is not None:
                    bar.update(1)
            if constraints_of is not None:
                constraints_of.check_count(n)
    finally:
        if bar is not None:
            bar.close()
    warn.close()
    return n


class Notes:
    """`LineNote`s said in a log: the first MAX_NOTES of each kind, then how many there were."""

    def __init__(self, log: Callable[[str], None]):
        self.log, self.heard = log, Counter()

    def __call__(self, note: LineNote) -> None:
        self.heard[note.kind] += 1
        if self.heard[note.kind] <= MAX_NOTES:
            self.log(f"warning: {note}")

    def close(self) -> None:
        for kind, count in self.heard.items():
            if count > MAX_NOTES:
                self.log(f"warning: {count} lines in all with {NOTE_KINDS[kind]}")


class _Required:
    """The target phrases required of each input line: its line of a constraints file, plus the
    glossary terms whose source term it contains."""

    def __init__(self, table: list[list[str]] | None, path: Path | None, glossary):
        self.table, self.path, self.glossary = table, path, glossary

    def __call__(self, n: int, line: str) -> list[str]:
        phrases = []
        if self.table is not None:
            if n >= len(self.table):
                self.check_count(n + 1, known=False)
            phrases += self.table[n]
        if self.glossary is not None:
            phrases += [t for t in self.glossary.targets(line) if t not in phrases]
        return phrases

    def check_count(self, lines: int, known: bool = True) -> None:
        """`lines`: the input's line count (`known`), or the lines read so far."""
        if self.table is not None and lines != len(self.table):
            counted = str(lines) if known else "more"
            raise NMTError(
                f"--constraints {self.path} has {len(self.table)} lines, the input {counted}: "
                "one line of constraints per input line (an empty line for none)"
            )


def _constraints_of(streams: TranslateIO, translator, opts: SearchOptions) -> _Required | None:
    """What each line must contain (None: nothing); a constraints file's line count is
    checked against input files before any work."""
    if streams.constraints is None and streams.glossary is None:
        return None
    translator.require_constraints(opts)
    table = read_constraints(streams.constraints) if streams.constraints is not None else None
    glossary = Glossary.read(streams.glossary) if streams.glossary is not None else None
    required = _Required(table, streams.constraints, glossary)
    if table is not None and streams.inputs:
        required.check_count(sum(1 for _ in read_lines(streams.inputs)))
    return required


@contextmanager
def _flags_output(path: Path | None):
    if path is None:
        yield None
        return
    path = Path(path)
    remove_stale_temps(path.parent, path.name)
    with atomic_write(path) as f:
        yield f


def _progress_bar():
    from tqdm import tqdm

    return tqdm(unit="line", file=sys.stderr, dynamic_ncols=True, leave=False)


def _plot(t: Translation, n: int, attention: AttentionOutput, backend: str) -> None:
    """Draw line n's attention: the chosen views, or the single map of the best hypothesis."""
    views, plot_dir = attention.views, attention.plot_dir
    if views.detailed and t.maps:
        views.check(backend, t.maps)
        plot_views(t, views, plot_dir, f"line-{n:06d}", backend)
    elif plot_dir is not None and t.attention is not None:
        plot_attention(t, Path(plot_dir) / f"line-{n:06d}.png")


@contextmanager
def _output(path: Path | None):
    """A file written atomically (stale temps of killed runs removed first), or stdout; a full
    disk is a one-line error naming it."""
    if path is not None:
        path = Path(path)
        remove_stale_temps(path.parent, path.name)
        with atomic_write(path) as f:
            yield f
        return
    if sys.stdout is None:  # started with file descriptor 1 closed
        raise NMTError("standard output is closed: give -o FILE")
    try:
        yield sys.stdout
        sys.stdout.flush()
    except OSError as e:
        err = disk_error(e, "<stdout>")
        if err is None:
            raise
        # what is still buffered cannot be written either: drop it instead of failing at exit
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        raise err from None


def _format(nbest: list[Translation], n_best: int, alignment: bool) -> str:
    """One output line: the text, or with n-best or alignments tab-separated columns (a tab or
    line break inside a text becomes a space: it would shift columns or lines)."""
    if n_best == 1:
        t = nbest[0]
        return _field(t.text) + (f"\t{t.alignment()}" if alignment else "")
    cols = []
    for t in nbest:
        cols += [_field(t.text), f"{t.score:.4f}"] + ([t.alignment()] if alignment else [])
    return "\t".join(cols)


def _field(text: str) -> str:
    return one_line(text).replace("\t", " ")
