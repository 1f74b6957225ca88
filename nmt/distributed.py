"""The processes of a run under `torchrun`: rank and world size, the device, the DDP wrapper and
the collective checks. A single process is rank 0 of world size 1 and makes no collective call."""

from __future__ import annotations

import os

import torch

from nmt.errors import NMTError


def dist_info() -> tuple[int, int]:
    """(rank, world size) from torchrun's environment."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def init_distributed(device: torch.device) -> tuple[int, int]:
    """Join the process group (NCCL on CUDA, gloo on CPU) when there are several processes."""
    rank, world = dist_info()
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend)
    return rank, world


def pick_device(name: str) -> torch.device:
    """The device `train.device` names ("auto": CUDA where there is one); each process of a
    CUDA run gets its local rank's GPU."""
    if name == "cuda" and not torch.cuda.is_available():
        raise NMTError("train.device=cuda but no CUDA device is available")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and dist_info()[1] > 1:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device(name)


def wrap_ddp(model, device: torch.device, world: int):
    """The module a rank trains: `model` in DistributedDataParallel when world > 1, else itself."""
    if world > 1:
        ids = [device.index] if device.type == "cuda" else None
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=ids, gradient_as_bucket_view=True
        )
    return model


def any_rank(flag: bool, world: int) -> bool:
    """True on every rank if it is true on one (stop signals stay in sync)."""
    if world == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0])
    torch.distributed.all_reduce(t)
    return bool(t.item() > 0)


def check_in_sync(model, world: int) -> float:
    """All ranks must hold the same weights after training; returns the shared checksum."""
    local = torch.stack([p.detach().double().sum() for p in model.parameters()]).sum().cpu()
    gathered = [torch.zeros_like(local) for _ in range(world)]
    torch.distributed.all_gather(gathered, local)
    if any(abs(g.item() - local.item()) > 1e-6 * max(1.0, abs(local.item())) for g in gathered):
        raise NMTError(f"DDP ranks diverged: parameter checksums {[g.item() for g in gathered]}")
    return local.item()
