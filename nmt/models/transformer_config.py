"""The `transformer` backend's config (`nmt.models.transformer`)."""

from __future__ import annotations

from dataclasses import dataclass

from nmt.checks import choice, positive, probability
from nmt.errors import NMTError
from nmt.models.model_config import ModelConfig

NORMS = ("pre", "post")  # layer norm before each sublayer (pre) or after the residual (post)
POSITIONS = ("sinusoidal", "learned")


@dataclass(frozen=True)
class TransformerConfig(ModelConfig):
    backend: str = "transformer"
    n_heads: int = 4
    d_ff: int = 1024
    norm: str = "pre"
    positions: str = "sinusoidal"
    attention_dropout: float = 0.1

    def check(self) -> None:
        choice("model.norm", self.norm, NORMS)
        choice("model.positions", self.positions, POSITIONS)
        positive("model.n_heads", self.n_heads)
        positive("model.d_ff", self.d_ff)
        probability("model.attention_dropout", self.attention_dropout)
        if self.d_model % self.n_heads:
            raise NMTError(
                f"model.d_model ({self.d_model}) must be divisible by model.n_heads ({self.n_heads})"
            )
