"""Matplotlib, set up once: the headless backend, and figures saved atomically as PNG."""

from __future__ import annotations

from pathlib import Path

from nmt.files import atomic_write


def pyplot():
    """`matplotlib.pyplot` on the Agg backend (no display needed); imported on first use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, path: Path, dpi: int = 90) -> None:
    """Write `fig` to `path` atomically and close it."""
    try:
        with atomic_write(Path(path), "wb") as f:
            fig.savefig(f, dpi=dpi, format="png")
    finally:
        pyplot().close(fig)
