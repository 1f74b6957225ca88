"""The `rnn_attention` backend's config (`nmt.models.rnn_attention`)."""

from __future__ import annotations

from dataclasses import dataclass

from nmt.checks import choice
from nmt.errors import NMTError
from nmt.models.model_config import ModelConfig
from nmt.models.rnn_config import CELLS

SCORES = ("bahdanau", "luong_dot", "luong_general")  # attention scores (`nmt.models.rnn_scores`)


@dataclass(frozen=True)
class AttentionRNNConfig(ModelConfig):
    backend: str = "rnn_attention"
    cell: str = "lstm"
    attention: str = "bahdanau"

    def check(self) -> None:
        choice("model.cell", self.cell, CELLS)
        choice("model.attention", self.attention, SCORES)
        if self.d_model % 2:
            raise NMTError("model.d_model must be even for rnn_attention (two encoder directions)")
