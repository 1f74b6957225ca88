"""Backends: name -> config class, torch-free (the config reads it). The model classes are in
`nmt.models.backends`, which imports torch; each keeps the contract in `nmt.models.base`."""

from __future__ import annotations

from nmt.models.model_config import ModelConfig
from nmt.models.rnn_attention_config import AttentionRNNConfig
from nmt.models.rnn_config import RNNConfig
from nmt.models.transformer_config import TransformerConfig

CONFIGS: dict[str, type[ModelConfig]] = {
    "rnn": RNNConfig,
    "rnn_attention": AttentionRNNConfig,
    "transformer": TransformerConfig,
}
DEFAULT_BACKEND = "transformer"
