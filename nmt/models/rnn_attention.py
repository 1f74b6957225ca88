"""RNN encoder-decoder with attention (Bahdanau et al. 2015; Luong et al. 2015).

A bidirectional encoder gives one annotation per source token; at every step the decoder attends
over all of them. Input feeding (Luong, section 3.3): the attentional vector of step t-1 is fed
with the embedding of y_{t-1}, so that the decoder knows what it attended to before.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from nmt.models.base import Cache, Dropout, Encoded, Seq2Seq
from nmt.models.rnn import cache_to_state, rnn_cell, run_rnn, source_lengths, state_to_cache
from nmt.models.rnn_attention_config import AttentionRNNConfig
from nmt.models.rnn_scores import attend, make_attention


class AttentionRNNSeq2Seq(Seq2Seq):
    """BiRNN encoder -> memory (B, S, d); decoder RNN over [y_{t-1}; attentional vector_{t-1}]."""

    config_class = AttentionRNNConfig

    def __init__(self, cfg: AttentionRNNConfig, src_vocab: int, tgt_vocab: int, joint: bool):
        super().__init__(src_vocab, tgt_vocab, cfg.d_model, cfg.tie_embeddings, joint, scale=False)
        d, Cell = cfg.d_model, rnn_cell(cfg.cell)
        self.cell, self.decoder_layers = cfg.cell, cfg.decoder_layers
        enc_drop = cfg.dropout if cfg.encoder_layers > 1 else 0.0
        dec_drop = cfg.dropout if cfg.decoder_layers > 1 else 0.0
        self.encoder = Cell(
            d, d // 2, cfg.encoder_layers, batch_first=True, bidirectional=True, dropout=enc_drop
        )
        self.bridge = nn.Linear(d, d)  # final encoder states -> initial decoder state
        self.decoder = Cell(2 * d, d, cfg.decoder_layers, batch_first=True, dropout=dec_drop)
        self.attention = make_attention(cfg.attention, d, d)
        self.combine = nn.Linear(2 * d, d, bias=False)  # W_c [s_t; c_t]
        self.dropout = Dropout(cfg.dropout)

    def encode(
        self, src: Tensor, src_mask: Tensor, src_lengths: np.ndarray | None = None
    ) -> Encoded:
        x = self.dropout(self.src_embed(src))  # (B, S, d)
        lengths = source_lengths(src_mask, src_lengths)
        memory, state = run_rnn(self.encoder, x, lengths)  # (B, S, d)
        h = state[0] if self.cell == "lstm" else state  # (L * 2, B, d/2)
        final = torch.cat([h[-2], h[-1]], -1)  # (B, d): top layer, both directions
        return {
            "memory": memory,
            "keys": self.attention.project_keys(memory),  # computed once per source
            "src_mask": src_mask,
            "init": torch.tanh(self.bridge(final)),  # (B, d)
        }

    def init_cache(self, encoded: Encoded) -> Cache:
        h = (
            encoded["init"][:, None, :].expand(-1, self.decoder_layers, -1).contiguous()
        )  # (B, L, d)
        cache = {"h": h, "feed": torch.zeros_like(encoded["init"])[:, None, :]}  # feed (B, 1, d)
        if self.cell == "lstm":
            cache["c"] = h
        return cache

    def decode_hidden(self, tgt_in: Tensor, encoded: Encoded, cache: Cache | None = None):
        step_cache = cache if cache is not None else self.init_cache(encoded)
        state, feed = cache_to_state(step_cache, self.cell), step_cache["feed"]
        y = self.dropout(self.tgt_embed(tgt_in))  # (B, T, d)
        feeds, weights = [], []
        for t in range(y.size(1)):
            out, state = self.decoder(torch.cat([y[:, t : t + 1], feed], -1), state)  # (B, 1, d)
            ctx, w = attend(
                self.attention, out, encoded["keys"], encoded["memory"], encoded["src_mask"]
            )  # (B, 1, d), (B, 1, S)
            feed = torch.tanh(self.combine(torch.cat([out, ctx], -1)))  # (B, 1, d)
            feeds.append(feed)
            weights.append(w)
        hidden = self.dropout(torch.cat(feeds, 1))  # (B, T, d_model)
        new_cache = None
        if cache is not None:
            new_cache = state_to_cache(state, self.cell) | {"feed": feed}
        return hidden, torch.cat(weights, 1), new_cache
