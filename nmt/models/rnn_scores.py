"""Attention scores for RNN decoders: additive (Bahdanau et al. 2015) and multiplicative (Luong et al. 2015).

Each module splits into `project_keys` (once per source, cached) and `forward` (once per step).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class BahdanauAttention(nn.Module):
    """score(s, h_j) = v^T tanh(W_q s + W_k h_j): an MLP over decoder and encoder states."""

    def __init__(self, d_query: int, d_key: int, d_attn: int):
        super().__init__()
        self.w_q = nn.Linear(d_query, d_attn, bias=False)
        self.w_k = nn.Linear(d_key, d_attn, bias=False)
        self.v = nn.Linear(d_attn, 1, bias=False)

    def project_keys(self, memory: Tensor) -> Tensor:
        return self.w_k(memory)  # (B, S, d_attn)

    def scores(self, query: Tensor, keys: Tensor) -> Tensor:
        q = self.w_q(query)[:, :, None, :]  # (B, T, 1, d_attn)
        return self.v(torch.tanh(q + keys[:, None])).squeeze(-1)  # (B, T, S)


class LuongAttention(nn.Module):
    """score(s, h_j) = s^T h_j ("dot") or s^T W h_j ("general")."""

    def __init__(self, d_query: int, d_key: int, general: bool):
        super().__init__()
        if not general and d_query != d_key:
            raise ValueError("luong_dot needs equal decoder and encoder sizes")
        self.w = nn.Linear(d_key, d_query, bias=False) if general else nn.Identity()

    def project_keys(self, memory: Tensor) -> Tensor:
        return self.w(memory)  # (B, S, d_query)

    def scores(self, query: Tensor, keys: Tensor) -> Tensor:
        return query @ keys.transpose(1, 2)  # (B, T, S)


def attend(module: nn.Module, query: Tensor, keys: Tensor, memory: Tensor, src_mask: Tensor):
    """Softmax over source positions; returns the context (B, T, d_mem) and weights (B, T, S)."""
    scores = module.scores(query, keys).masked_fill(~src_mask[:, None, :], float("-inf"))
    weights = scores.softmax(-1)
    return weights @ memory, weights


def make_attention(kind: str, d_query: int, d_key: int) -> nn.Module:
    """The score module named by `model.attention` (`rnn_attention_config.SCORES`): bahdanau,
    luong_dot or luong_general."""
    if kind == "bahdanau":
        return BahdanauAttention(d_query, d_key, d_query)
    return LuongAttention(d_query, d_key, general=kind == "luong_general")
