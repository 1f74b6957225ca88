"""Optimisation: learning-rate schedules, optimizers and the validation metrics' direction.

The dispatch tables below are the config's lists of valid names (`nmt.config` reads them), in a
module light enough for the config check of `nmt translate` to import.
"""

from __future__ import annotations

import math

import torch


def _inverse_sqrt(step: int, warmup: int, d_model: int) -> float:
    return min(step / warmup, math.sqrt(warmup / step))


def _noam(step: int, warmup: int, d_model: int) -> float:
    return d_model**-0.5 * min(step**-0.5, step * warmup**-1.5)


def _constant(step: int, warmup: int, d_model: int) -> float:
    return min(1.0, step / warmup)


SCHEDULES = {"inverse_sqrt": _inverse_sqrt, "noam": _noam, "constant": _constant}
OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
METRICS = {"bleu": True, "loss": False, "ppl": False, "train_loss": False}  # higher is better?


def lr_lambda(cfg, d_model: int):
    """Multiplier of the base lr at each step (inverse-sqrt and noam warm up linearly)."""
    schedule, warmup = SCHEDULES[cfg.schedule], max(1, cfg.warmup)
    return lambda step: schedule(max(step, 1), warmup, d_model)


def make_optimizer(model, cfg):
    params = list(model.parameters())
    # fused multi-tensor kernels instead of a dozen small ops per parameter (CPU and CUDA)
    fused = all(p.device.type in ("cpu", "cuda") for p in params)
    return OPTIMIZERS[cfg.optimizer](
        params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay, fused=fused
    )
