"""Label-smoothed cross-entropy fused with the output projection.

    loss_i = logsumexp(z_i) - (1 - eps) * z_i[y_i] - eps / V * sum_v z_i[v],   z_i = W h_i
    dloss_i / dz_i = softmax(z_i) - (1 - eps) * onehot(y_i) - eps / V

This is `F.cross_entropy(h @ W.T, y, label_smoothing=eps, ignore_index=PAD, reduction="sum")`,
computed over chunks of tokens: the (tokens x vocabulary) logits never exist in full, and the
gradients with respect to h and W are formed chunk by chunk while the logits are still in cache.
On a CPU this is about 1.6x faster than the unfused form for an 8k vocabulary and saves the
memory of the full logits, their softmax and their gradient. Nothing in it reads a value back
from the device: padded targets are masked out unconditionally, so that on a GPU the host never
waits for the kernels (the caller may or may not have dropped padded positions first).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from nmt.tokenizer import PAD_ID

# Tokens per chunk. On a 2-core CPU 1024 x 8k logits (32 MB) measured fastest (they stay in
# cache). On a GPU a chunk holds as many tokens as LOGITS_PER_GPU_CHUNK logits allow (about 2 GB
# with their float32 copy and gradient): a whole batch for a 10k vocabulary, few large kernels.
TOKENS_PER_CPU_CHUNK = 1024
LOGITS_PER_GPU_CHUNK = 2**28


def chunk_for(device: torch.device, vocab: int) -> int:
    """Tokens per chunk of the fused loss on `device` for a `vocab`-sized output layer."""
    if torch.device(device).type == "cpu":
        return TOKENS_PER_CPU_CHUNK
    return max(TOKENS_PER_CPU_CHUNK, LOGITS_PER_GPU_CHUNK // vocab)


def _chunk_loss(z: Tensor, y: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """Per-token smoothed loss of logits z (C, V) and their logsumexp (C,)."""
    lse = torch.logsumexp(z, -1)
    loss = lse - (1 - eps) * z.gather(1, y[:, None]).squeeze(1)
    if eps > 0:
        loss = loss - (eps / z.size(1)) * z.sum(-1)
    return loss, lse


class _LinearCrossEntropy(torch.autograd.Function):
    """Forward computes the loss and both gradients; backward only scales them."""

    @staticmethod
    def forward(ctx, h: Tensor, weight: Tensor, y: Tensor, eps: float, chunk: int, mm_dtype):
        ctx.h_dtype, ctx.w_dtype = h.dtype, weight.dtype
        acc = torch.promote_types(h.dtype, torch.float32)  # float32 at least, for 16-bit inputs
        h32, w32 = h.to(acc), weight.to(acc)
        # the three products run in `mm_dtype` (bf16/fp16 under autocast, else float32); the
        # softmax, the loss and the sums over chunks stay in float32
        h_mm, w_mm = h.to(mm_dtype or acc), weight.to(mm_dtype or acc)
        grad_h, grad_w = torch.empty_like(h32), torch.zeros_like(w32)
        total = h32.new_zeros(())
        V = weight.size(0)
        # (d, V) contiguous is the faster layout for a CPU's forward product; cuBLAS takes the
        # transpose as it is, without a copy
        weight_t = w_mm.t().contiguous() if h.device.type == "cpu" else w_mm.t()
        for s in range(0, h.size(0), chunk):
            hc, yc = h_mm[s : s + chunk], y[s : s + chunk]
            z = (hc @ weight_t).to(acc)  # (C, V)
            keep = (yc != PAD_ID)[:, None]  # (C, 1): padded targets add no loss, no gradient
            # Seven passes over the chunk, all but the first two in place: loss terms, max,
            # exp, sum, then the gradient softmax - (1 - eps) * onehot - eps / V.
            loss = -(1 - eps) * z.gather(1, yc[:, None]).squeeze(1)
            if eps > 0:
                loss -= (eps / V) * z.sum(-1)
            m = z.amax(-1, keepdim=True)
            e = z.sub_(m).exp_()
            total_exp = e.sum(-1, keepdim=True)
            loss += (m + total_exp.log()).squeeze(1)  # + logsumexp
            total += loss.masked_fill(~keep[:, 0], 0).sum()
            g = e.mul_(total_exp.reciprocal_()).sub_(eps / V)  # softmax - eps / V
            g.scatter_add_(1, yc[:, None], g.new_full((yc.size(0), 1), eps - 1))
            # padded rows of g are not zeroed (a pass over (C, V)): their inputs are, for the
            # weight gradient, and their outputs, for the gradient of h (passes over (C, d))
            hc = hc * keep
            if mm_dtype is None:
                torch.mm(g, w32, out=grad_h[s : s + chunk])
                grad_w.addmm_(g.t(), hc)
            else:
                g = g.to(mm_dtype)
                grad_h[s : s + chunk] = g @ w_mm
                grad_w += g.t() @ hc
            grad_h[s : s + chunk] *= keep
        ctx.save_for_backward(grad_h.to(ctx.h_dtype), grad_w.to(ctx.w_dtype))
        return total.to(ctx.h_dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):
        grad_h, grad_w = ctx.saved_tensors
        return grad_h * grad_out, grad_w * grad_out, None, None, None, None


def linear_cross_entropy(
    h: Tensor,
    weight: Tensor,
    y: Tensor,
    label_smoothing: float = 0.0,
    chunk: int | None = None,
) -> Tensor:
    """Summed label-smoothed cross-entropy of logits `h @ weight.T` over non-pad targets.

    h (N, d), weight (V, d), y (N,). Under autocast the products run in the autocast dtype and
    everything after them (softmax, loss, the sums of gradients over chunks) in float32. Inside
    `torch.compile` the plain form is traced instead: the compiler fuses it itself. `chunk`:
    tokens per chunk, by default `chunk_for(h.device, V)`.
    """
    if torch.compiler.is_compiling():
        logits = (h @ weight.t()).float()
        return F.cross_entropy(
            logits, y, ignore_index=PAD_ID, label_smoothing=label_smoothing, reduction="sum"
        )
    device = h.device.type
    chunk = chunk or chunk_for(h.device, weight.size(0))
    mm_dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None
    if torch.is_grad_enabled() and (h.requires_grad or weight.requires_grad):
        with torch.autocast(device, enabled=False):
            return _LinearCrossEntropy.apply(h, weight, y, label_smoothing, chunk, mm_dtype)
    acc = torch.promote_types(h.dtype, torch.float32)
    total = h.new_zeros((), dtype=acc)
    w_mm = weight.to(mm_dtype or weight.dtype)
    with torch.autocast(device, enabled=False):
        for s in range(0, h.size(0), chunk):  # no gradients needed: the loss alone, by chunk
            yc = y[s : s + chunk]
            z = (h[s : s + chunk].to(w_mm.dtype) @ w_mm.t()).to(acc)
            loss, _ = _chunk_loss(z, yc, label_smoothing)
            total += loss.masked_fill(yc == PAD_ID, 0).sum()
    return total.to(h.dtype)
