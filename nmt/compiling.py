"""`train.compile`: the model's regions compiled for training (eager for validation and search),
and Dynamo's recompiles and counters for the run's log."""

from __future__ import annotations

import logging

import torch
import torch.fx.experimental._config as fx_config


def compile_model(model, backend: str = "inductor"):
    """Compile the model's regions (`compile_regions`: each layer of the Transformer, the whole
    RNN models) for training, in place: in training mode they run compiled, in eval mode
    (validation, search) eagerly, so decoding never triggers a compile. Dynamic shapes:
    token-bucketed batches change (B, S, T) at every step and one graph serves them all; duck
    shapes off, so that a first batch with S == T does not tie the two. Returns the model."""
    fx_config.use_duck_shape = False
    for region in model.compile_regions():
        compiled = torch.compile(region.forward, dynamic=True, backend=backend)
        region.forward = _training_only(region, compiled, region.forward)
    return model


def _training_only(module, compiled, eager):
    def forward(*args, **kwargs):
        return (compiled if module.training else eager)(*args, **kwargs)

    return forward


class Recompiles(logging.Handler):
    """Dynamo's recompile messages, one line each (function and the first failed guard), kept
    for the run's log."""

    def __init__(self):
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record) -> None:
        msg = record.getMessage().splitlines()
        guard = next((m.strip().lstrip("- ") for m in msg[1:] if m.strip().startswith("-")), "")
        self.lines.append(f"{msg[0].strip()}: {guard}"[:240])

    @classmethod
    def install(cls) -> Recompiles:
        """The process's handler (installed once), emptied."""
        torch._logging.set_logs(recompiles=True)
        logger = logging.getLogger("torch._dynamo.guards.__recompiles")
        logger.setLevel(logging.DEBUG)  # enabled even where TORCH_LOGS overrides set_logs
        logger.propagate = False  # into the run's log, not onto stderr
        handler = next((h for h in logger.handlers if isinstance(h, cls)), None)
        if handler is None:
            handler = cls()
            logger.addHandler(handler)
        handler.take()
        return handler

    def take(self) -> list[str]:
        lines, self.lines = self.lines, []
        return lines


def compile_report(recompiles: int) -> str:
    """Dynamo's counters for the log: graphs built, graph breaks, frames compiled (one per
    compiled function plus one per recompile), recompiles."""
    counters = torch._dynamo.utils.counters
    breaks = sum(counters["graph_break"].values())
    return (
        f"compile: {counters['stats']['unique_graphs']} graphs, {breaks} graph breaks, "
        f"{counters['frames']['ok']} frame compiles, {recompiles} recompiles"
    )
