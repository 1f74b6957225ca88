"""Translation for programs and for the CLI: `Translator.load(path).translate(sentences, beam=5)`.

Sentences are sorted by length and batched by tokens for speed; results come back in input order.
Inputs longer than the model's limit are truncated with a warning; blank lines stay blank.
`Translator.load` also opens a CTranslate2 export dir (`nmt.ct2`); torch is imported only on the
torch path, so this module imports none of it at the top.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from nmt.attention_views import Views, plot_views
from nmt.config import BATCH_TOKENS, Config, from_dict
from nmt.errors import NMTError
from nmt.files import atomic_write, disk_error, read_lines, remove_stale_temps
from nmt.search_options import SearchOptions
from nmt.tokenizer import Tokenizer

if TYPE_CHECKING:
    import torch

    from nmt.search_options import Hypothesis

CHUNK = 5000  # lines read, sorted by length and translated together on the chunked path


@dataclass
class Translation:
    text: str
    score: float
    src_pieces: list[str]
    tgt_pieces: list[str]
    attention: torch.Tensor | None = None  # (len(tgt_pieces), len(src_pieces)); numpy on ct2
    # on request, every layer and head: "cross", and for the Transformer "encoder"/"decoder"
    # self-attention, each (layers, heads, rows, cols); see Translator.translate_detailed
    maps: dict[str, torch.Tensor] | None = None

    def alignment(self) -> str:
        """Hard alignment `src-tgt` pairs (Pharaoh format) from the attention argmax."""
        if self.attention is None:
            return ""
        n_src = len(self.src_pieces) - 1  # skip </s>
        links = []
        for j, row in enumerate(self.attention[: len(self.tgt_pieces)]):
            i = int(row[: max(1, n_src)].argmax())
            links.append(f"{i}-{j}")
        return " ".join(links)


def decode_corpus(
    model, src_ids: list[list[int]], opts: SearchOptions, max_len: int, batch_tokens: int, device
) -> list[list[Hypothesis]]:
    """Search over many encoded sentences (none empty); results in input order."""
    from nmt.batching import bucket_batches, pad
    from nmt.search import generate

    results: list[list[Hypothesis]] = [[] for _ in src_ids]
    # beams multiply the work per sentence: keep the batch's state size similar
    budget = max(batch_tokens // max(1, opts.beam // 2), 64)
    lengths = [len(s) for s in src_ids]
    for idx in bucket_batches(lengths, lengths, budget):
        hyps = generate(model, pad([src_ids[i] for i in idx], device), opts, max_len)
        for i, h in zip(idx, hyps):
            results[i] = h
    return results


class TranslatorBase:
    """What every translator shares: string in, `Translation`s out, in input order, streaming.

    Subclasses set `tokenizer`, `cfg`, `max_len`, `has_attention` and implement `seed(seed)`
    and `search(ids, opts, batch_tokens)`: n-best `Hypothesis` lists per encoded sentence (ids
    end with EOS, none empty), in input order.
    """

    tokenizer: Tokenizer
    cfg: Config
    max_len: int
    has_attention: bool

    def seed(self, seed: int) -> None:
        """Seed the random draws of sampling."""
        raise NotImplementedError

    def search(self, ids: list[list[int]], opts: SearchOptions, batch_tokens: int) -> list[list]:
        raise NotImplementedError

    def translate(
        self,
        sentences: list[str],
        beam: int | None = None,
        batch_tokens: int = BATCH_TOKENS,
        **search,
    ) -> list[str]:
        """Translate strings; the best hypothesis per sentence (a warning for each input
        truncated to the model's length limit)."""
        opts = SearchOptions(beam=beam, **search)
        return [t[0].text for t in self.translate_detailed(sentences, opts, batch_tokens)]

    def translate_detailed(
        self,
        sentences: list[str],
        opts: SearchOptions,
        batch_tokens: int = BATCH_TOKENS,
        warn: Callable[[int, int], None] | None = None,
        maps: bool = False,
    ) -> list[list[Translation]]:
        """n-best `Translation`s per sentence; `warn(i, n_tokens)` hears of truncated inputs
        (by default a `warnings.warn`).

        `maps=True` also fills `Translation.maps` with the attention of every layer and head
        (one extra teacher-forced pass per hypothesis; needs `opts.attention` for the pieces).
        """
        warn = warn or self._warn_truncated
        todo = [i for i, s in enumerate(sentences) if s.strip()]
        ids = self.tokenizer.encode_src([sentences[i].strip() for i in todo])
        for k, seq in enumerate(ids):
            if len(seq) > self.max_len:
                warn(todo[k], len(seq))
                ids[k] = seq[: self.max_len - 1] + seq[-1:]  # keep </s>
        hyps = self.search(ids, opts, batch_tokens) if ids else []
        out: list[list[Translation]] = [[Translation("", 0.0, [], [])] for _ in sentences]
        for k, i in enumerate(todo):
            src_pieces = None
            if opts.attention:
                src_pieces = [self.tokenizer.src.id_to_piece(t) for t in ids[k][:-1]] + ["</s>"]
            out[i] = [
                Translation(
                    self.tokenizer.decode_tgt(h.tokens),
                    h.score,
                    src_pieces or [],
                    self.tokenizer.tgt_pieces(h.tokens) + ["</s>"] if opts.attention else [],
                    h.attention,
                    self.attention_maps(ids[k], h.tokens) if maps else None,
                )
                for h in hyps[k]
            ]
        return out

    def warning_for_truncation(self, i: int, n_tokens: int) -> str:
        return (
            f"line {i + 1}: {n_tokens} source tokens, truncated to the model's limit of "
            f"{self.max_len}"
        )

    def _warn_truncated(self, i: int, n_tokens: int) -> None:
        warnings.warn(self.warning_for_truncation(i, n_tokens), stacklevel=4)

    def attention_maps(self, src_ids: list[int], tokens: list[int]) -> dict[str, torch.Tensor]:
        """Attention per layer and head of one source (with </s>) and its output tokens."""
        raise NMTError(
            "attention per layer and head needs a torch checkpoint (an export keeps the "
            "last layer's mean: use --attention-plot without --attention-layer/-heads)"
        )

    def translate_stream(
        self,
        lines: Iterable[str],
        opts: SearchOptions,
        batch_tokens: int = BATCH_TOKENS,
        chunk: int = CHUNK,
        warn: Callable[[int, int], None] | None = None,
        maps: bool = False,
    ) -> Iterator[list[Translation]]:
        """Translate an iterable of lines chunk by chunk (memory stays flat); yields in order."""
        buf: list[str] = []
        offset = 0
        warn = warn or self._warn_truncated

        def flush():
            def chunk_warn(i, n):
                warn(offset + i, n)

            return self.translate_detailed(buf, opts, batch_tokens, chunk_warn, maps)

        for line in lines:
            buf.append(line.rstrip("\r\n"))
            if len(buf) >= chunk:
                yield from flush()
                offset += len(buf)
                buf = []
        if buf:
            yield from flush()


@contextmanager
def _no_random_init():
    """Build modules without drawing their random initial weights (a third of a second for a
    Multi30k Transformer on this CPU): `torch.nn.init`'s in-place initialisers do nothing."""
    import torch

    names = [n for n in dir(torch.nn.init) if n.endswith("_") and not n.startswith("_")]
    saved = {n: getattr(torch.nn.init, n) for n in names}
    for n in names:
        setattr(torch.nn.init, n, lambda tensor, *args, **kwargs: tensor)
    try:
        yield
    finally:
        for n, f in saved.items():
            setattr(torch.nn.init, n, f)


class Translator(TranslatorBase):
    """A trained torch model with its tokenizer, ready to translate lists of strings."""

    def __init__(self, model, tokenizer: Tokenizer, cfg: Config, device: torch.device):
        self.model, self.tokenizer, self.cfg, self.device = model.eval(), tokenizer, cfg, device
        self.max_len = cfg.model.max_len
        self.has_attention = model.has_attention

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu", threads: int = 0) -> TranslatorBase:
        """Rebuild a model from a checkpoint alone; an `nmt export` dir opens on CTranslate2."""
        if Path(path).is_dir():
            from nmt.ct2 import CT2Translator

            return CT2Translator.load(path, device, threads)
        import torch

        from nmt import checkpoint

        if threads > 0:
            torch.set_num_threads(threads)
        if device == "cuda" and not torch.cuda.is_available():
            raise NMTError("--device cuda asked for, but no CUDA device is available")
        return cls.from_state(checkpoint.load(path), path, device)

    @classmethod
    def from_state(cls, state: dict, path: str | Path, device: str = "cpu") -> Translator:
        """Rebuild a model from a loaded checkpoint (`path` names it in errors)."""
        import torch

        from nmt import checkpoint
        from nmt.models import build_model
        from nmt.models.base import use_fast_cuda_kernels

        try:
            cfg = from_dict(Config, state["config"])
            tok = state["tokenizer"]
            tokenizer = Tokenizer(
                checkpoint.tensor_to_bytes(tok["src"]),
                checkpoint.tensor_to_bytes(tok["tgt"]) if tok.get("tgt") is not None else None,
            )
            with _no_random_init():  # every weight comes from the checkpoint (strict load)
                model = build_model(
                    cfg.model, tokenizer.src_vocab_size, tokenizer.tgt_vocab_size, tokenizer.joint
                )
            model.load_state_dict(state["model"])
        except (KeyError, RuntimeError, TypeError) as e:
            raise NMTError(
                f"{path}: checkpoint is incomplete or does not match its config ({str(e)[:100]})"
            ) from None
        dev = torch.device(device)
        use_fast_cuda_kernels(dev)
        return cls(model.to(dev), tokenizer, cfg, dev)

    def seed(self, seed: int) -> None:
        import torch

        torch.manual_seed(seed)

    def search(self, ids: list[list[int]], opts: SearchOptions, batch_tokens: int) -> list[list]:
        return decode_corpus(self.model, ids, opts, self.max_len, batch_tokens, self.device)

    def attention_maps(self, src_ids: list[int], tokens: list[int]) -> dict[str, torch.Tensor]:
        import torch

        from nmt.tokenizer import BOS_ID

        src = torch.tensor([src_ids], dtype=torch.long, device=self.device)
        tgt_in = torch.tensor([[BOS_ID, *tokens]], dtype=torch.long, device=self.device)
        with torch.no_grad():
            maps = self.model.attention_maps(src, tgt_in)
        return {k: v[0].cpu() for k, v in maps.items()}


def plot_attention(t: Translation, path: Path) -> None:
    """Heatmap of one sentence's attention: source pieces across, target pieces down."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    att = np.asarray(t.attention[: len(t.tgt_pieces), : len(t.src_pieces)])
    fig, ax = plt.subplots(
        figsize=(max(4, 0.4 * len(t.src_pieces) + 2), max(3, 0.35 * len(t.tgt_pieces) + 2))
    )
    ax.imshow(att, cmap="viridis", aspect="auto", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(len(t.src_pieces)), t.src_pieces, rotation=90, fontsize=8)
    ax.set_yticks(range(len(t.tgt_pieces)), t.tgt_pieces, fontsize=8)
    ax.set_xlabel("source")
    ax.set_ylabel("target")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run_translation(
    ckpt: Path,
    inputs: list[Path],
    output: Path | None,
    search: dict,
    batch_tokens: int = BATCH_TOKENS,
    alignment: bool = False,
    attention_plot: Path | None = None,
    views: Views | None = None,
    device: str = "cpu",
    threads: int = 0,
    seed: int = 1,
    progress: bool = False,
    log: Callable[[str], None] = print,
    buffer: int | None = None,
) -> int:
    """The `nmt translate` job: stream lines through a Translator into a file or stdout.

    A file output is written to a temporary name and renamed at the end, so an error never
    leaves a half-written file behind. Returns the number of lines translated. Lines are
    translated `buffer` at a time (default: one by one when stdin is a terminal, else in chunks
    of `CHUNK`); with a buffer set, every output line is flushed as soon as it is written.
    """
    for p in inputs:
        if not Path(p).is_file():
            raise NMTError(f"input file not found: {p}")
    if buffer is not None and buffer < 1:
        raise NMTError("--buffer must be >= 1")
    if buffer is None and not inputs and sys.stdin.isatty():
        buffer = 1  # typed in: answer each line at once
    progress = progress and buffer is None  # a bar would mix with the lines typed and answered
    opts = SearchOptions(**search, attention=alignment or attention_plot is not None)
    translator = Translator.load(ckpt, device, threads)
    translator.seed(seed)
    if opts.attention and not translator.has_attention:
        raise NMTError(
            f"the {translator.cfg.model.backend} backend has no attention: "
            "--alignment/--attention-plot need a backend with attention"
        )
    views = views or Views()
    if views.detailed and attention_plot is None:
        raise NMTError(
            "--attention-layer/--attention-heads/--self-attention need --attention-plot DIR"
        )
    if attention_plot is not None:
        Path(attention_plot).mkdir(parents=True, exist_ok=True)

    def warn(i: int, n: int) -> None:
        log(f"warning: {translator.warning_for_truncation(i, n)}")

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(unit="line", file=sys.stderr, dynamic_ncols=True, leave=False)
    n = 0
    try:
        with _output(output) as out:
            lines = read_lines(inputs)
            stream = translator.translate_stream(
                lines, opts, batch_tokens, buffer or CHUNK, warn, maps=views.detailed
            )
            for n, nbest in enumerate(stream, 1):
                out.write(_format(nbest, opts.n_best, alignment) + "\n")
                if buffer is not None:
                    out.flush()
                _plot(nbest[0], n, views, attention_plot, translator.cfg.model.backend)
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return n


def _plot(t: Translation, n: int, views: Views, plot_dir: Path | None, backend: str) -> None:
    """Draw line n's attention: the chosen views, or the single map of the best hypothesis."""
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
    if n_best == 1:
        t = nbest[0]
        return t.text + (f"\t{t.alignment()}" if alignment else "")
    cols = []
    for t in nbest:
        cols += [t.text, f"{t.score:.4f}"] + ([t.alignment()] if alignment else [])
    return "\t".join(cols)
