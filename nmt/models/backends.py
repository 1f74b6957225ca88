"""Backend name -> model class, and building a model from its config."""

from __future__ import annotations

from nmt.models import CONFIGS
from nmt.models.base import Seq2Seq
from nmt.models.model_config import ModelConfig
from nmt.models.rnn import RNNSeq2Seq
from nmt.models.rnn_attention import AttentionRNNSeq2Seq
from nmt.models.transformer import Transformer

_MODELS = {cls.config_class: cls for cls in (RNNSeq2Seq, AttentionRNNSeq2Seq, Transformer)}
BACKENDS: dict[str, type[Seq2Seq]] = {name: _MODELS[cfg] for name, cfg in CONFIGS.items()}


def build_model(cfg: ModelConfig, src_vocab: int, tgt_vocab: int, joint: bool) -> Seq2Seq:
    """Instantiate the backend named by `cfg.backend`."""
    return BACKENDS[cfg.backend](cfg, src_vocab, tgt_vocab, joint)
