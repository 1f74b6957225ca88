"""Where the host would wait for the device: the calls that read a tensor's value back.

On a GPU the host queues kernels and runs ahead of them; a call that needs a value computed on
the device (`.item()`, `bool(t)`, `.tolist()`, `nonzero`, indexing by a boolean mask, whose
result's size depends on the data) makes it stop until every queued kernel has finished. Inside
a training step each such call turns overlap into turn-taking. `HostSyncs` records them from
Python on any device, a CPU included, so a test can assert that a step has none:

    with HostSyncs() as syncs:
        trainer.step(group, n_tokens)
    assert not syncs.found, syncs.found

It sees calls made through torch's Python API (also from inside torch, such as an optimizer's);
CUDA's own `torch.cuda.set_sync_debug_mode` is the authority on a GPU.
"""

from __future__ import annotations

import traceback

import torch
from torch.overrides import TorchFunctionMode

# methods whose result is a Python value read from the tensor
READS = {
    torch.Tensor.item,
    torch.Tensor.tolist,
    torch.Tensor.__bool__,
    torch.Tensor.__int__,
    torch.Tensor.__float__,
    torch.Tensor.__index__,
    torch.Tensor.numpy,
}
# functions whose output's size depends on the values
DATA_SHAPED = {
    torch.nonzero,
    torch.Tensor.nonzero,
    torch.argwhere,
    torch.masked_select,
    torch.Tensor.masked_select,
    torch.unique,
    torch.Tensor.unique,
    torch.unique_consecutive,
}
INDEXING = {torch.Tensor.__getitem__, torch.Tensor.__setitem__, torch.Tensor.index_put_}


def _is_bool_tensor(x) -> bool:
    return isinstance(x, torch.Tensor) and x.dtype == torch.bool


def sync_reason(func, args: tuple) -> str | None:
    """Why calling `func(*args)` reads back from the device, or None."""
    if func in READS:
        return f"Tensor.{func.__name__}"
    if func in DATA_SHAPED:
        return getattr(func, "__qualname__", str(func))
    if func in INDEXING and len(args) > 1:
        index = args[1] if isinstance(args[1], (tuple, list)) else (args[1],)
        if any(_is_bool_tensor(i) for i in index):
            return f"Tensor.{func.__name__} with a boolean mask"
    if func is torch.where and len(args) == 1:
        return "torch.where(condition)"
    return None


class HostSyncs(TorchFunctionMode):
    """Records each read-back as 'what (file:line in function)' in `found`."""

    def __init__(self):
        super().__init__()
        self.found: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        reason = sync_reason(func, args)
        if reason is not None:
            self.found.append(f"{reason} ({_caller()})")
        return func(*args, **(kwargs or {}))


def _caller() -> str:
    """The innermost frame outside this module and torch's own override machinery."""
    for frame in reversed(traceback.extract_stack()[:-2]):
        if "torch/overrides" not in frame.filename and not frame.filename.endswith("syncs.py"):
            return f"{frame.filename}:{frame.lineno} in {frame.name}"
    return "?"
