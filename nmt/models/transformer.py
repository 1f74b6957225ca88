"""The Transformer (Vaswani et al. 2017, "Attention Is All You Need").

Read top to bottom: positions, attention, feed-forward, the two layer types, the full model.
Attention runs through `F.scaled_dot_product_attention`; decoding keeps per-layer self-attention
keys/values in the cache and computes cross-attention keys/values once per source.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nmt.models.base import Cache, Dropout, Encoded, Seq2Seq, src_mask_of
from nmt.models.transformer_config import TransformerConfig


class SinusoidalPositions(nn.Module):
    """PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(...)  (section 3.5)."""

    def __init__(self, d_model: int, max_len: int):
        super().__init__()
        pos = torch.arange(max_len).unsqueeze(1)
        div = torch.exp(torch.arange(0, d_model, 2) * (-math.log(10000.0) / d_model))
        pe = torch.zeros(max_len, d_model)
        pe[:, 0::2] = torch.sin(pos * div)
        pe[:, 1::2] = torch.cos(pos * div)
        self.register_buffer("pe", pe, persistent=False)

    def forward(self, length: int, offset: int = 0) -> Tensor:
        return self.pe[offset : offset + length]  # (T, d_model)


class LearnedPositions(nn.Module):
    """A trained embedding per position (the paper's alternative, table 3 row E)."""

    def __init__(self, d_model: int, max_len: int):
        super().__init__()
        self.emb = nn.Embedding(max_len, d_model)
        nn.init.normal_(self.emb.weight, std=0.02)

    def forward(self, length: int, offset: int = 0) -> Tensor:
        return self.emb.weight[offset : offset + length]  # (T, d_model)


POSITION_CLASSES = {
    "sinusoidal": SinusoidalPositions,
    "learned": LearnedPositions,
}  # config POSITIONS


def key_padding_mask(src_mask: Tensor, src_lengths: np.ndarray | None = None) -> Tensor | None:
    """(B, 1, 1, S) mask over keys for SDPA, or None when no source is padded: on a GPU a masked
    call cannot use the flash kernel. Whether one is padded is read from the host's `src_lengths`
    when given (no sync), else from the mask. Inside a graph compiled whole, the mask is kept (no
    data-dependent branch); layers compiled alone get a graph with a mask and one without."""
    if torch.compiler.is_compiling():
        padded = True
    elif src_lengths is not None:
        padded = int(src_lengths.min()) < src_mask.size(1)
    else:
        padded = not bool(src_mask.all())
    return src_mask[:, None, None, :] if padded else None  # broadcast over heads and queries


class MultiHeadAttention(nn.Module):
    """MultiHead(Q, K, V) = Concat(head_1..head_h) W^O, head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V)."""

    def __init__(self, d_model: int, n_heads: int, dropout: float):
        super().__init__()
        self.n_heads = n_heads
        self.dropout = dropout
        self.w_q = nn.Linear(d_model, d_model)
        self.w_kv = nn.Linear(d_model, 2 * d_model)
        self.w_o = nn.Linear(d_model, d_model)

    def heads(self, x: Tensor) -> Tensor:
        B, T, d = x.shape
        return x.view(B, T, self.n_heads, d // self.n_heads).transpose(1, 2)  # (B, H, T, d_head)

    def keys_values(self, x: Tensor) -> tuple[Tensor, Tensor]:
        k, v = self.w_kv(x).chunk(2, dim=-1)
        return self.heads(k), self.heads(v)  # (B, H, S, d_head) each

    def forward(
        self,
        x: Tensor,
        k: Tensor,
        v: Tensor,
        mask: Tensor | None = None,
        causal: bool = False,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        B, T, d = x.shape
        q = self.heads(self.w_q(x))  # (B, H, T, d_head)
        p = self.dropout if self.training else 0.0
        ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p, is_causal=causal)
        out = self.w_o(ctx.transpose(1, 2).reshape(B, T, d))  # (B, T, d_model)
        weights = None
        if need_weights:  # SDPA does not return weights; recompute them (inference only)
            weights = self.probabilities(q, k, mask, causal).mean(1)  # (B, T, S)
        return out, weights

    @staticmethod
    def probabilities(q: Tensor, k: Tensor, mask: Tensor | None, causal: bool) -> Tensor:
        """softmax(Q K^T / sqrt(d_head)) per head: (B, H, T, S)."""
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))  # (B, H, T, S)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        if causal:
            T, S = scores.shape[-2:]
            future = torch.ones(T, S, dtype=torch.bool, device=q.device).triu(1)
            scores = scores.masked_fill(future, float("-inf"))
        return scores.softmax(-1)

    def weights(self, x: Tensor, k: Tensor, v: Tensor, mask=None, causal=False, **_) -> Tensor:
        """The attention probabilities of a forward call with these arguments: (B, H, T, S)."""
        return self.probabilities(self.heads(self.w_q(x)), k, mask, causal)


class FeedForward(nn.Module):
    """FFN(x) = max(0, x W_1 + b_1) W_2 + b_2  (section 3.3)."""

    def __init__(self, d_model: int, d_ff: int, dropout: float):
        super().__init__()
        self.w_1 = nn.Linear(d_model, d_ff)
        self.w_2 = nn.Linear(d_ff, d_model)
        self.dropout = Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.w_2(self.dropout(F.relu(self.w_1(x))))


class Sublayer(nn.Module):
    """Residual connection around a sublayer, with layer norm before (pre) or after (post) it."""

    def __init__(self, d_model: int, dropout: float, pre_norm: bool):
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.dropout = Dropout(dropout)
        self.pre_norm = pre_norm

    def inp(self, x: Tensor) -> Tensor:
        return self.norm(x) if self.pre_norm else x

    def out(self, x: Tensor, y: Tensor) -> Tensor:
        x = x + self.dropout(y)
        return x if self.pre_norm else self.norm(x)


class EncoderLayer(nn.Module):
    """Self-attention, then feed-forward, each wrapped in a residual sublayer."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        pre = cfg.norm == "pre"
        self.self_attn = MultiHeadAttention(cfg.d_model, cfg.n_heads, cfg.attention_dropout)
        self.ff = FeedForward(cfg.d_model, cfg.d_ff, cfg.dropout)
        self.sub1 = Sublayer(cfg.d_model, cfg.dropout, pre)
        self.sub2 = Sublayer(cfg.d_model, cfg.dropout, pre)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        h = self.sub1.inp(x)
        y, _ = self.self_attn(h, *self.self_attn.keys_values(h), mask=mask)
        x = self.sub1.out(x, y)
        return self.sub2.out(x, self.ff(self.sub2.inp(x)))


class DecoderLayer(nn.Module):
    """Causal self-attention, cross-attention over the encoder memory, then feed-forward."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        pre = cfg.norm == "pre"
        self.self_attn = MultiHeadAttention(cfg.d_model, cfg.n_heads, cfg.attention_dropout)
        self.cross_attn = MultiHeadAttention(cfg.d_model, cfg.n_heads, cfg.attention_dropout)
        self.ff = FeedForward(cfg.d_model, cfg.d_ff, cfg.dropout)
        self.sub1 = Sublayer(cfg.d_model, cfg.dropout, pre)
        self.sub2 = Sublayer(cfg.d_model, cfg.dropout, pre)
        self.sub3 = Sublayer(cfg.d_model, cfg.dropout, pre)

    def forward(
        self,
        x: Tensor,
        cross_kv: tuple[Tensor, Tensor],
        src_mask: Tensor,
        past_kv: tuple[Tensor, Tensor] | None,
        need_weights: bool,
    ) -> tuple[Tensor, tuple[Tensor, Tensor], Tensor | None]:
        h = self.sub1.inp(x)
        k, v = self.self_attn.keys_values(h)  # (B, H, T, d_head)
        if past_kv is not None:  # one incremental step: attend to every earlier position
            k, v = torch.cat([past_kv[0], k], 2), torch.cat([past_kv[1], v], 2)
        y, _ = self.self_attn(h, k, v, causal=past_kv is None)  # one query: causal is a no-op
        x = self.sub1.out(x, y)
        y, attn = self.cross_attn(
            self.sub2.inp(x), *cross_kv, mask=src_mask, need_weights=need_weights
        )
        x = self.sub2.out(x, y)
        return self.sub3.out(x, self.ff(self.sub3.inp(x))), (k, v), attn


class Transformer(Seq2Seq):
    """Encoder-decoder Transformer with tied embeddings and sinusoidal (or learned) positions."""

    config_class = TransformerConfig

    def __init__(self, cfg: TransformerConfig, src_vocab: int, tgt_vocab: int, joint: bool):
        super().__init__(src_vocab, tgt_vocab, cfg.d_model, cfg.tie_embeddings, joint, scale=True)
        self.positions = POSITION_CLASSES[cfg.positions](cfg.d_model, cfg.max_len + 1)
        self.dropout = Dropout(cfg.dropout)
        self.encoder_layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.encoder_layers))
        self.decoder_layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.decoder_layers))
        pre = cfg.norm == "pre"
        self.encoder_norm = nn.LayerNorm(cfg.d_model) if pre else nn.Identity()
        self.decoder_norm = nn.LayerNorm(cfg.d_model) if pre else nn.Identity()
        for name, p in self.named_parameters():
            if p.dim() > 1 and "lut" not in name and "positions" not in name:
                nn.init.xavier_uniform_(p)

    def embed(self, embed: nn.Module, ids: Tensor, offset: int = 0) -> Tensor:
        return self.dropout(embed(ids) + self.positions(ids.size(1), offset))  # (B, T, d_model)

    def encode(
        self, src: Tensor, src_mask: Tensor, src_lengths: np.ndarray | None = None
    ) -> Encoded:
        mask = key_padding_mask(src_mask, src_lengths)
        x = self.embed(self.src_embed, src)
        for layer in self.encoder_layers:
            x = layer(x, mask)
        memory = self.encoder_norm(x)  # (B, S, d_model)
        encoded = {"memory": memory, "src_mask": src_mask}
        if mask is not None:  # absent when no source is padded: decoding reads nothing back
            encoded["key_mask"] = mask  # (B, 1, 1, S)
        for i, layer in enumerate(self.decoder_layers):  # cross-attention K/V: once per source
            encoded[f"cross_k{i}"], encoded[f"cross_v{i}"] = layer.cross_attn.keys_values(memory)
        return encoded

    def init_cache(self, encoded: Encoded) -> Cache:
        memory = encoded["memory"]
        B, H = memory.size(0), self.decoder_layers[0].self_attn.n_heads
        empty = memory.new_zeros(B, H, 0, memory.size(-1) // H)  # (B, H, 0, d_head)
        cache = {}
        for i in range(len(self.decoder_layers)):
            cache[f"self_k{i}"], cache[f"self_v{i}"] = empty, empty
        return cache

    def decode_hidden(self, tgt_in: Tensor, encoded: Encoded, cache: Cache | None = None):
        src_mask = encoded.get("key_mask")
        offset = 0 if cache is None else cache["self_k0"].size(2)
        x = self.embed(self.tgt_embed, tgt_in, offset)  # (B, T, d_model)
        new_cache: Cache | None = None if cache is None else {}
        last = len(self.decoder_layers) - 1
        attn = None
        for i, layer in enumerate(self.decoder_layers):
            cross_kv = encoded[f"cross_k{i}"], encoded[f"cross_v{i}"]
            past_kv = None if cache is None else (cache[f"self_k{i}"], cache[f"self_v{i}"])
            need_weights = i == last and not self.training  # alignments at inference only
            x, (k, v), a = layer(x, cross_kv, src_mask, past_kv, need_weights)
            if new_cache is not None:
                new_cache[f"self_k{i}"], new_cache[f"self_v{i}"] = k, v
            attn = a if i == last else attn
        hidden = self.decoder_norm(x)  # (B, T, d_model)
        return hidden, attn, new_cache

    def compile_regions(self) -> list[nn.Module]:
        """Each encoder and decoder layer: two graphs (one per layer class) instead of one for
        the whole model, the embeddings, the key mask and the fused loss left eager."""
        return [*self.encoder_layers, *self.decoder_layers]

    def attention_maps(self, src: Tensor, tgt_in: Tensor) -> dict[str, Tensor]:
        """Teacher-forced attention of every layer and head: encoder (B, L, H, S, S),
        decoder self-attention (B, L, H, T, T), cross-attention (B, L, H, T, S)."""
        maps: dict[str, list[Tensor]] = {"cross": [], "encoder": [], "decoder": []}

        def record(name: str):
            def hook(module, args, kwargs, _out):
                maps[name].append(module.weights(*args, **kwargs))

            return hook

        hooked = [(layer.self_attn, "encoder") for layer in self.encoder_layers]
        hooked += [(layer.self_attn, "decoder") for layer in self.decoder_layers]
        hooked += [(layer.cross_attn, "cross") for layer in self.decoder_layers]
        handles = [m.register_forward_hook(record(n), with_kwargs=True) for m, n in hooked]
        try:
            self.decode_hidden(tgt_in, self.encode(src, src_mask_of(src)))
        finally:
            for h in handles:
                h.remove()
        return {name: torch.stack(ws, 1) for name, ws in maps.items()}
