"""The classic RNN encoder-decoder (Sutskever et al. 2014; Cho et al. 2014).

The encoder's final state is a fixed-size context: it initialises the decoder and, as in Cho et
al., is fed to every decoder step and to the output layer. No attention.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from nmt.models.base import Cache, Dropout, Encoded, Seq2Seq
from nmt.models.rnn_config import RNNConfig


def rnn_cell(name: str) -> type[nn.RNNBase]:
    """The torch module of a cell named in `nmt.models.rnn_config.CELLS` ("lstm" -> nn.LSTM)."""
    return getattr(nn, name.upper())


def source_lengths(src_mask: Tensor, src_lengths: np.ndarray | None) -> Tensor:
    """The sources' lengths as a CPU tensor: the host's, when given, else read back from the
    mask (on a GPU, the host waits for the device there)."""
    if src_lengths is not None:
        return torch.from_numpy(np.asarray(src_lengths, dtype=np.int64))
    return src_mask.sum(1).cpu()


def run_rnn(rnn: nn.RNNBase, x: Tensor, lengths: Tensor):
    """Run `rnn` over padded (B, S, E) inputs with true `lengths` (a CPU tensor); returns outputs
    and final state. The rows are sorted by length on the host and their order is sent to the
    device without waiting (pinned, non-blocking): `enforce_sorted=False` would copy it from
    pageable memory, and the host would wait for the device there."""
    order = torch.sort(lengths, descending=True, stable=True).indices  # (B,) on the host
    to_x, back = _to_device(order, x.device), _to_device(torch.argsort(order), x.device)
    packed = pack_padded_sequence(x.index_select(0, to_x), lengths[order], batch_first=True)
    out, state = rnn(packed)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.size(1))
    if isinstance(state, tuple):  # LSTM: (h, c), each (L * dirs, B, H)
        state = tuple(s.index_select(1, back) for s in state)
    else:
        state = state.index_select(1, back)
    return out.index_select(0, back), state  # (B, S, H * dirs), state (L * dirs, B, H) [or (h, c)]


def _to_device(index: Tensor, device: torch.device) -> Tensor:
    if device.type == "cpu":
        return index
    return index.pin_memory().to(device, non_blocking=True)


def state_to_cache(state, cell: str) -> Cache:
    """nn.RNN state (L, B, H) [or (h, c)] -> batch-first cache entries (B, L, H)."""
    if cell == "lstm":
        return {"h": state[0].transpose(0, 1), "c": state[1].transpose(0, 1)}
    return {"h": state.transpose(0, 1)}


def cache_to_state(cache: Cache, cell: str):
    h = cache["h"].transpose(0, 1).contiguous()  # (L, B, H)
    return (h, cache["c"].transpose(0, 1).contiguous()) if cell == "lstm" else h


class RNNSeq2Seq(Seq2Seq):
    """Encoder RNN -> context vector c -> decoder RNN over [y_{t-1}; c] -> output from [s_t; c; y_{t-1}]."""

    config_class = RNNConfig
    has_attention = False

    def __init__(self, cfg: RNNConfig, src_vocab: int, tgt_vocab: int, joint: bool):
        super().__init__(src_vocab, tgt_vocab, cfg.d_model, cfg.tie_embeddings, joint, scale=False)
        d, Cell = cfg.d_model, rnn_cell(cfg.cell)
        drop = cfg.dropout if cfg.encoder_layers > 1 else 0.0
        self.cell = cfg.cell
        self.encoder = Cell(d, d, cfg.encoder_layers, batch_first=True, dropout=drop)
        self.decoder = Cell(2 * d, d, cfg.decoder_layers, batch_first=True, dropout=drop)
        self.pre_output = nn.Linear(3 * d, d)
        self.dropout = Dropout(cfg.dropout)

    def encode(
        self, src: Tensor, src_mask: Tensor, src_lengths: np.ndarray | None = None
    ) -> Encoded:
        x = self.dropout(self.src_embed(src))  # (B, S, d)
        _, state = run_rnn(self.encoder, x, source_lengths(src_mask, src_lengths))
        enc = state_to_cache(state, self.cell)
        enc = {f"final_{k}": v for k, v in enc.items()}
        enc["context"] = enc["final_h"][:, -1]  # (B, d): the top layer's final hidden state
        enc["src_mask"] = src_mask
        return enc

    def init_cache(self, encoded: Encoded) -> Cache:
        return {k[len("final_") :]: v for k, v in encoded.items() if k.startswith("final_")}

    def decode_hidden(self, tgt_in: Tensor, encoded: Encoded, cache: Cache | None = None):
        state = cache_to_state(cache if cache is not None else self.init_cache(encoded), self.cell)
        y = self.dropout(self.tgt_embed(tgt_in))  # (B, T, d)
        ctx = encoded["context"][:, None, :].expand(-1, y.size(1), -1)  # (B, T, d)
        out, state = self.decoder(torch.cat([y, ctx], -1), state)  # (B, T, d)
        h = torch.tanh(self.pre_output(torch.cat([out, ctx, y], -1)))
        hidden = self.dropout(h)  # (B, T, d_model)
        new_cache = state_to_cache(state, self.cell) if cache is not None else None
        return hidden, None, new_cache
