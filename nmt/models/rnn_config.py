"""The `rnn` backend's config (`nmt.models.rnn`)."""

from __future__ import annotations

from dataclasses import dataclass

from nmt.checks import choice
from nmt.errors import NMTError
from nmt.models.model_config import ModelConfig

CELLS = ("lstm", "gru")  # torch.nn class names, lower-cased


@dataclass(frozen=True)
class RNNConfig(ModelConfig):
    backend: str = "rnn"
    cell: str = "lstm"

    def check(self) -> None:
        choice("model.cell", self.cell, CELLS)
        if self.encoder_layers != self.decoder_layers:
            raise NMTError(
                f"model.encoder_layers ({self.encoder_layers}) must equal model.decoder_layers "
                f"({self.decoder_layers}) for the rnn backend (the encoder's state is copied)"
            )
