"""The optimizer's kernels and the step's number format: fused Adam(W), bf16/fp16 autocast and
fp16's gradient scaler."""

from __future__ import annotations

from contextlib import nullcontext

import torch

from nmt.optim import OPTIMIZERS


def make_optimizer(model, cfg):
    """The `torch.optim` optimizer `cfg.optimizer` names, over the model's parameters."""
    params = list(model.parameters())
    # fused multi-tensor kernels instead of a dozen small ops per parameter (CPU and CUDA)
    fused = all(p.device.type in ("cpu", "cuda") for p in params)
    return getattr(torch.optim, OPTIMIZERS[cfg.optimizer])(
        params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay, fused=fused
    )


def restore_fused(optimizer, device) -> None:
    """`load_state_dict` brings back the saved groups' `fused` flag; keep this run's choice."""
    fused = optimizer.defaults.get("fused")
    for group in optimizer.param_groups:
        group["fused"] = fused
    if fused:  # fused kernels keep the step count as a float32 tensor beside the parameters
        for st in optimizer.state.values():
            if "step" in st:
                st["step"] = st["step"].to(device, torch.float32)


def autocast(precision: str, device: torch.device):
    """A context factory: bf16/fp16 autocast on the training device (CUDA, or CPU), or none."""
    if precision == "fp32":
        return nullcontext
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return lambda: torch.autocast(device.type, dtype=dtype)


def grad_scaler(precision: str, device: torch.device):
    """fp16's loss scaler (bf16 and fp32 need none)."""
    return torch.amp.GradScaler(device.type) if precision == "fp16" else None
