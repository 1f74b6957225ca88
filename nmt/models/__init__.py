"""Backends, listed in one explicit dict. Each keeps the contract in `nmt.models.base`."""

from __future__ import annotations

from nmt.config import ModelConfig
from nmt.models.base import Seq2Seq
from nmt.models.rnn import RNNSeq2Seq
from nmt.models.rnn_attention import AttentionRNNSeq2Seq
from nmt.models.transformer import Transformer

BACKENDS: dict[str, type[Seq2Seq]] = {
    "rnn": RNNSeq2Seq,
    "rnn_attention": AttentionRNNSeq2Seq,
    "transformer": Transformer,
}


def build_model(cfg: ModelConfig, src_vocab: int, tgt_vocab: int, joint: bool) -> Seq2Seq:
    """Instantiate the backend named by `cfg.backend`."""
    return BACKENDS[cfg.backend](cfg, src_vocab, tgt_vocab, joint)
