"""The random state a checkpoint keeps: torch's (CPU and every CUDA device) and Python's
`random`; numpy draws are seeded from torch."""

from __future__ import annotations

import random

import torch


def rng_state() -> dict:
    """This process's generator states, as a checkpoint stores them."""
    state = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1])}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Put back what `rng_state` returned (the CUDA states where this machine has CUDA)."""
    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(state["python"]), None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
