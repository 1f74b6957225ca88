"""Attention heatmaps per layer and head: cross-attention, and the Transformer's self-attention.

`nmt translate --attention-plot DIR` draws one map per line (the last layer's cross-attention,
averaged over heads). With `--attention-layer N|all`, `--attention-heads mean|all` or
`--self-attention` it draws the views chosen here: one figure per line, kind and layer, a grid
with one heatmap per head (or their mean). Layers are numbered from 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nmt.errors import NMTError
from nmt.plots import pyplot, save_png
from nmt.tokenizer import BOS

HEADS = ("mean", "all")
KINDS = {  # name in Translation.maps -> (title, row labels, column labels)
    "cross": ("cross-attention", "target", "source"),
    "encoder": ("encoder self-attention", "source", "source"),
    "decoder": ("decoder self-attention", "target output", "target input"),
}


@dataclass(frozen=True)
class Views:
    """Which maps to draw: layer 1..L or "all", heads "mean" or "all", self-attention too."""

    layer: str = "last"
    heads: str = "mean"
    self_attention: bool = False

    def __post_init__(self):
        if self.layer not in ("last", "all") and not (self.layer.isdigit() and int(self.layer) > 0):
            raise NMTError(
                f"--attention-layer must be a layer number (1, 2, ...) or all, not {self.layer!r}"
            )
        if self.heads not in HEADS:
            raise NMTError(
                f"--attention-heads must be one of: {', '.join(HEADS)}, not {self.heads!r}"
            )

    @property
    def detailed(self) -> bool:
        """False for the default single map, which search already returns."""
        return self != Views()

    def layers(self, n_layers: int) -> list[int]:
        """0-based layer indices to draw."""
        if self.layer == "all":
            return list(range(n_layers))
        if self.layer == "last":
            return [n_layers - 1]
        if int(self.layer) > n_layers:
            raise NMTError(
                f"--attention-layer {self.layer}: the model has {n_layers} layer(s) with this attention"
            )
        return [int(self.layer) - 1]

    def check(self, backend: str, maps: dict) -> None:
        """Clear errors for views the model does not have."""
        if self.self_attention and "encoder" not in maps:
            raise NMTError(
                f"--self-attention needs the transformer; {backend} has no self-attention"
            )
        self.layers(maps["cross"].size(0))


def axis_labels(kind: str, src_pieces: list[str], tgt_pieces: list[str]):
    """(row labels, column labels) of a map of this kind."""
    if kind == "encoder":
        return src_pieces, src_pieces
    if kind == "decoder":  # step t reads <s> y_1 .. y_{t-1} and predicts y_t
        return tgt_pieces, [BOS] + tgt_pieces[:-1]
    return tgt_pieces, src_pieces


def plot_views(t, views: Views, out_dir: Path, stem: str, backend: str) -> list[Path]:
    """Draw the chosen maps of one Translation (with `maps`); returns the files written."""
    kinds = ["cross"] + (["encoder", "decoder"] if views.self_attention else [])
    written = []
    for kind in kinds:
        att = t.maps[kind]  # (L, H, rows, cols)
        for layer in views.layers(att.size(0)):
            maps = att[layer].mean(0, keepdim=True) if views.heads == "mean" else att[layer]
            path = Path(out_dir) / f"{stem}-{kind}-layer{layer + 1}.png"
            title = f"{backend}: {KINDS[kind][0]}, layer {layer + 1} of {att.size(0)}"
            _grid(maps, axis_labels(kind, t.src_pieces, t.tgt_pieces), kind, title, views, path)
            written.append(path)
    return written


def _grid(maps, labels, kind: str, title: str, views: Views, path: Path) -> None:
    """One heatmap per head (or one for their mean), titled, tokens on both axes."""
    import math

    plt = pyplot()
    rows, cols = labels
    n = maps.size(0)
    ncols = min(n, 4)
    nrows = math.ceil(n / ncols)
    w, h = max(4, 0.3 * len(cols) + 2), max(3, 0.27 * len(rows) + 2)
    fig, axes = plt.subplots(nrows, ncols, figsize=(w * ncols, h * nrows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i >= n:
            ax.axis("off")
            continue
        ax.imshow(
            maps[i, : len(rows), : len(cols)].numpy(), cmap="viridis", aspect="auto", vmin=0, vmax=1
        )
        ax.set_xticks(range(len(cols)), cols, rotation=90, fontsize=7)
        ax.set_yticks(range(len(rows)), rows, fontsize=7)
        ax.set_xlabel(KINDS[kind][2])
        ax.set_ylabel(KINDS[kind][1])
        ax.set_title(
            "mean of heads" if views.heads == "mean" else f"head {i + 1} of {n}", fontsize=9
        )
    fig.suptitle(title)
    fig.tight_layout()
    save_png(fig, path, dpi=80)


def plot_attention(t, path: Path) -> None:
    """Heatmap of one `Translation`'s attention: source pieces across, target pieces down."""
    import numpy as np

    plt = pyplot()
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
    save_png(fig, path, dpi=100)
