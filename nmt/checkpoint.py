"""Self-describing checkpoints: the only module that calls `torch.save` / `torch.load`.

A checkpoint holds the config, weights, SentencePiece model(s), optimizer/scheduler/RNG state,
data-order position, step and best score, so `translate` and `evaluate` need nothing else.
Writes are atomic (temp file + rename); loads use `weights_only=True`.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch

from nmt.errors import NMTError
from nmt.files import atomic_write, temp_name

FORMAT = "nmt-checkpoint"
VERSION = 1


def bytes_to_tensor(data: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).clone()


def tensor_to_bytes(t: torch.Tensor) -> bytes:
    return t.numpy().tobytes()


def save(state: dict, path: Path) -> None:
    """Write `state` atomically: a crash leaves either the old file or the new one, never half."""
    with atomic_write(Path(path), "wb") as f:  # a file object: a failed write keeps its errno
        torch.save({"format": FORMAT, "version": VERSION, **state}, f)


def load(path: Path, map_location: str | torch.device = "cpu") -> dict:
    """Load and validate a checkpoint; anything else is a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise NMTError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # any failure to unpickle means: not a checkpoint we can read
        text = str(e).strip()
        if isinstance(e, pickle.UnpicklingError) and ("weights_only" in text or "global" in text):
            raise NMTError(
                f"{path}: refusing to load: the checkpoint needs to run code to load "
                "(only weights, tensors and plain data are accepted)"
            ) from None
        reason = text.splitlines()[0][:120] if text else type(e).__name__
        raise NMTError(
            f"{path}: not a valid checkpoint (corrupt or truncated file: {reason})"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise NMTError(
            f"{path}: not an nmt checkpoint (e.g. a plain state dict or another toolkit's file)"
        )
    if state.get("version", 0) > VERSION:
        raise NMTError(f"{path}: checkpoint format {state['version']} is newer than this nmt")
    return state


def link(src: Path, dst: Path) -> None:
    """Make `dst` name the same file as `src` (hard link, atomically replacing `dst`)."""
    tmp = temp_name(dst)
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:  # file systems without hard links
        import shutil

        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def latest(run_dir: Path) -> Path | None:
    """The most recent step checkpoint in a run dir (or last.pt)."""
    run_dir = Path(run_dir)
    if (run_dir / "last.pt").is_file():
        return run_dir / "last.pt"
    steps = step_checkpoints(run_dir)
    return steps[-1] if steps else None


def step_checkpoints(run_dir: Path) -> list[Path]:
    """The run dir's `step-N.pt` files, oldest first (by N, not by name)."""
    steps = [p for p in Path(run_dir).glob("step-*.pt") if p.stem[5:].isdigit()]
    return sorted(steps, key=lambda p: int(p.stem[5:]))


def prune(run_dir: Path, keep: int) -> None:
    """Keep the `keep` most recent step checkpoints."""
    steps = step_checkpoints(run_dir)
    for p in steps[: max(0, len(steps) - keep)]:
        p.unlink(missing_ok=True)


def average(paths: list[Path], out: Path) -> None:
    """Average the weights of several checkpoints of the same run into one (inference only)."""
    if not paths:
        raise NMTError("no checkpoints to average")
    states = [load(p) for p in paths]
    first = states[0]
    avg = {}
    for k, v in first["model"].items():
        if v.is_floating_point():
            try:
                avg[k] = sum(s["model"][k].double() for s in states).div(len(states)).to(v.dtype)
            except (KeyError, RuntimeError):
                raise NMTError(
                    f"checkpoints do not have the same architecture (tensor {k})"
                ) from None
        else:
            avg[k] = v
    keep = {
        k: v
        for k, v in first.items()
        if k not in ("model", "optimizer", "scheduler", "rng", "format", "version")
    }
    keep["averaged_from"] = [str(p) for p in paths]
    save({**keep, "model": avg}, out)
