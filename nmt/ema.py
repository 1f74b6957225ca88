"""An exponential moving average of a model's weights during training (Polyak averaging; as
OpenNMT-py's `-average_decay` and Marian's `--exponential-smoothing`).

After every optimizer update, on the weights' device and without a host sync:

    ema <- d_t * ema + (1 - d_t) * weights,    d_t = min(decay, (1 + t) / (10 + t))

The warm-up of d_t (t: updates so far) keeps the random initial weights from lingering in the
average of a short run. Validation, best.pt and everything that translates use the average;
checkpoints keep both, so `--resume` continues each exactly.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """A frozen copy of `model` whose weights follow the moving average."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.model = copy.deepcopy(model).eval()  # shared (tied) weights stay shared
        for p in self.model.parameters():
            p.requires_grad_(False)

    def rate(self, updates: int) -> float:
        """d_t after `updates` optimizer updates."""
        return min(self.decay, (1 + updates) / (10 + updates))

    @torch.no_grad()
    def update(self, model: nn.Module, updates: int) -> None:
        """Move the average towards `model`'s weights (`updates`: done before this one)."""
        ema, now = list(self.model.parameters()), list(model.parameters())
        torch._foreach_lerp_(ema, now, 1.0 - self.rate(updates))

    def state_dict(self) -> dict:
        return self.model.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state)
