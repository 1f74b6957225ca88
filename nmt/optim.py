"""Optimisation settings without torch: learning-rate schedules, optimizer names, and the
validation metrics' direction.

These tables are the config's lists of valid names (`nmt.config` reads them); the training loop
turns an optimizer name into its `torch.optim` class.
"""

from __future__ import annotations

import math


def _inverse_sqrt(step: int, warmup: int, d_model: int) -> float:
    return min(step / warmup, math.sqrt(warmup / step))


def _noam(step: int, warmup: int, d_model: int) -> float:
    return d_model**-0.5 * min(step**-0.5, step * warmup**-1.5)


def _constant(step: int, warmup: int, d_model: int) -> float:
    return min(1.0, step / warmup)


SCHEDULES = {"inverse_sqrt": _inverse_sqrt, "noam": _noam, "constant": _constant}
OPTIMIZERS = {"adam": "Adam", "adamw": "AdamW"}  # config name -> torch.optim class name
METRICS = {"bleu": True, "loss": False, "ppl": False, "train_loss": False}  # higher is better?


def lr_lambda(cfg, d_model: int):
    """Multiplier of the base lr at each step (inverse-sqrt and noam warm up linearly)."""
    schedule, warmup = SCHEDULES[cfg.schedule], max(1, cfg.warmup)
    return lambda step: schedule(max(step, 1), warmup, d_model)
