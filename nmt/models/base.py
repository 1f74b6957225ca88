"""The contract every backend keeps, and the pieces they share (embeddings, masks).

    encoded = model.encode(src, src_mask, src_lengths)  # flat dict of batch-first tensors
    cache = model.init_cache(encoded)                   # flat dict of batch-first tensors
    logits, attn, cache = model.decode(tgt_in, encoded, cache)

`src_lengths` (optional) are the sources' lengths (B,) as a numpy array, known on the host where
the batch was padded (training): with them a backend reads nothing back from the device to learn
how the batch is padded, and the host never waits for the GPU. `decode` without a cache runs
teacher-forced over the whole `tgt_in` (B, T); with a cache it takes one step (B, 1) and returns
the updated cache. Because `encoded` and `cache` are flat dicts of tensors whose first dimension
is the batch, search reorders beams with one `index_select` each.
`attn` (B, T, S) is the attention over source positions used for alignments (None for `rnn`).
Backends implement `encode`, `init_cache` and `decode_hidden`, which returns the decoder's output
states (B, T, d_model) in place of logits; they leave `decode` and `forward` to this class and
project to the vocabulary only through its bias-free `generator`. `decode` applies it for search;
training fuses it with the loss (`model(src, tgt_in, tgt_out, label_smoothing)`, see `nmt.loss`).

`encoded` holds what depends on the source only (it is read, never updated, by `decode`), so beam
search shares it across a sentence's beams and trims it only when sentences finish; `cache` holds
per-hypothesis state and is reordered with the beams at every step.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nmt.loss import linear_cross_entropy
from nmt.tokenizer import PAD_ID

Encoded = dict[str, Tensor]
Cache = dict[str, Tensor]


def use_fast_cuda_kernels(device: torch.device) -> None:
    """Kernel choices for CUDA: TF32 tensor cores for the float32 products left outside autocast,
    and attention without cuDNN's SDPA backend. cuDNN builds an execution plan per input shape,
    and token-bucketed batches (and every decoding step) bring a new (B, S, T) almost every call
    (on an H100, a Transformer-base training profile showed ~6 ms of host time per attention
    call, the likely cost). Flash and memory-efficient attention take any shape without a plan."""
    if torch.device(device).type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cuda.enable_cudnn_sdp(False)


def drops_padding(device: torch.device) -> bool:
    """Whether the training loss drops padded target positions before the output projection.
    On a CPU that saves their share of the largest product; on a GPU the boolean index would make
    the host wait for the kernels (its result's size depends on the data), and the loss masks
    padded targets anyway. Compiled graphs keep every position (no data-dependent shape)."""
    return torch.device(device).type == "cpu" and not torch.compiler.is_compiling()


def select_batch(state: dict[str, Tensor], index: Tensor) -> dict[str, Tensor]:
    """Reorder/select batch entries of a flat dict of batch-first tensors."""
    return {k: v.index_select(0, index) for k, v in state.items()}


def src_mask_of(src: Tensor) -> Tensor:
    """(B, S) bool, True at real tokens."""
    return src != PAD_ID


class Dropout(nn.Module):
    """Inverted dropout with the mask drawn as 16-bit integers from numpy's PCG64DXSM.

    Same semantics as `nn.Dropout` (keep probability quantised to 1/65536). On a CPU, drawing the
    random mask dominates dropout's cost and torch draws it on one core from MT19937; PCG64DXSM
    gives four 16-bit draws per 64-bit output about twice as fast. Each call seeds it from torch's
    generator, so `torch.manual_seed` and the RNG state saved in checkpoints still decide every
    mask. On CUDA this is `F.dropout`.
    """

    def __init__(self, p: float):
        super().__init__()
        self.p = p
        self.threshold = int(round(p * 65536)) - 32768  # keep where the int16 draw >= threshold

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0:
            return x
        if x.device.type != "cpu" or torch.compiler.is_compiling():
            return F.dropout(x, self.p, True)
        keep = random_int16(x.numel()).view(x.shape) >= self.threshold
        return torch.where(keep, x, 0.0).mul_(1.0 / (1.0 - self.p))  # backward keeps 1-byte mask


def random_int16(n: int) -> Tensor:
    """n uniform int16 draws (CPU), seeded from torch's default generator."""
    seed = int(torch.randint(0, 2**63 - 1, (), dtype=torch.int64))
    raw = np.random.PCG64DXSM(seed).random_raw((n + 3) // 4)  # uint64, four draws each
    return torch.from_numpy(raw.view(np.int16)[:n])


class Embeddings(nn.Module):
    """Token embeddings, scaled by sqrt(d_model) when used by the Transformer."""

    def __init__(self, vocab_size: int, d_model: int, scale: bool = False):
        super().__init__()
        self.lut = nn.Embedding(vocab_size, d_model, padding_idx=PAD_ID)
        self.scale = math.sqrt(d_model) if scale else 1.0
        nn.init.normal_(self.lut.weight, mean=0.0, std=d_model**-0.5)
        with torch.no_grad():
            self.lut.weight[PAD_ID].zero_()

    def forward(self, ids: Tensor) -> Tensor:
        return self.lut(ids) * self.scale  # (B, T, d_model)


class Seq2Seq(nn.Module):
    """Base class: holds the shared embedding/output wiring; backends implement the contract."""

    has_attention = True  # `decode` returns attention over the source (alignments, heatmaps)
    config_class: type  # the backend's `ModelConfig` subclass

    def __init__(
        self, src_vocab: int, tgt_vocab: int, d_model: int, tie: bool, joint: bool, scale: bool
    ):
        super().__init__()
        self.tgt_embed = Embeddings(tgt_vocab, d_model, scale)
        share_src = tie and joint and src_vocab == tgt_vocab
        self.src_embed = self.tgt_embed if share_src else Embeddings(src_vocab, d_model, scale)
        self.generator = nn.Linear(d_model, tgt_vocab, bias=False)
        if tie:
            self.generator.weight = self.tgt_embed.lut.weight

    def encode(
        self, src: Tensor, src_mask: Tensor, src_lengths: np.ndarray | None = None
    ) -> Encoded:
        raise NotImplementedError

    def init_cache(self, encoded: Encoded) -> Cache:
        raise NotImplementedError

    def decode_hidden(
        self, tgt_in: Tensor, encoded: Encoded, cache: Cache | None = None
    ) -> tuple[Tensor, Tensor | None, Cache | None]:
        """Decoder output states (B, T, d_model), attention (B, T, S) or None, updated cache."""
        raise NotImplementedError

    def decode(
        self, tgt_in: Tensor, encoded: Encoded, cache: Cache | None = None
    ) -> tuple[Tensor, Tensor | None, Cache | None]:
        """Logits (B, T, V), attention (B, T, S) or None, updated cache (None without one)."""
        hidden, attn, cache = self.decode_hidden(tgt_in, encoded, cache)
        return self.generator(hidden), attn, cache

    def compile_regions(self) -> list[nn.Module]:
        """The modules `train.compile` compiles: the whole model, unless a backend names its
        repeated layers (compiled once and reused by every layer of their class)."""
        return [self]

    def attention_maps(self, src: Tensor, tgt_in: Tensor) -> dict[str, Tensor]:
        """Teacher-forced attention per layer and head, name -> (B, L, H, rows, cols): "cross"
        (target over source) for models with attention; the Transformer adds "encoder" and
        "decoder" self-attention. Empty for a model without attention."""
        _, attn, _ = self.decode_hidden(tgt_in, self.encode(src, src_mask_of(src)))
        return {} if attn is None else {"cross": attn[:, None, None]}  # one layer, one head

    def forward(
        self,
        src: Tensor,
        tgt_in: Tensor,
        tgt_out: Tensor | None = None,
        label_smoothing: float = 0.0,
        src_lengths: np.ndarray | None = None,
    ) -> Tensor:
        """Teacher-forced logits (B, T, V); with `tgt_out`, the summed (label-smoothed)
        cross-entropy over its non-pad tokens instead, without materialising the logits.
        `src_lengths`: the sources' lengths on the host, when known (see the module docstring)."""
        encoded = self.encode(src, src_mask_of(src), src_lengths)
        hidden, _, _ = self.decode_hidden(tgt_in, encoded)
        if tgt_out is None:
            return self.generator(hidden)
        hidden, tgt_out = hidden.reshape(-1, hidden.size(-1)), tgt_out.reshape(-1)
        if drops_padding(hidden.device):
            keep = tgt_out != PAD_ID
            hidden, tgt_out = hidden[keep], tgt_out[keep]
        return linear_cross_entropy(hidden, self.generator.weight, tgt_out, label_smoothing)
