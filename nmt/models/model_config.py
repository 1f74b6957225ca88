"""The fields every backend reads; each backend's own fields live in a subclass beside its model."""

from __future__ import annotations

from dataclasses import dataclass

from nmt.checks import positive, probability
from nmt.errors import NMTError


@dataclass(frozen=True, init=False, repr=False, eq=False)  # only its subclasses are built
class ModelConfig:
    backend: str  # the subclass's name in `nmt.models.CONFIGS`
    d_model: int = 256  # embedding and hidden size
    encoder_layers: int = 3
    decoder_layers: int = 3
    dropout: float = 0.1
    max_len: int = 256  # longest source/target (subwords) the model accepts
    tie_embeddings: bool = True  # output = target embedding (and source too if joint vocab)

    def __post_init__(self):
        own = type(self).__dataclass_fields__["backend"].default
        if self.backend != own:
            raise NMTError(f"model.backend={self.backend!r} does not match {type(self).__name__}")
        for name in ("d_model", "encoder_layers", "decoder_layers", "max_len"):
            positive(f"model.{name}", getattr(self, name))
        probability("model.dropout", self.dropout)
        self.check()

    def check(self) -> None:
        """What only this backend needs (cross-field checks), as one-line errors."""
