"""The fused output-projection + cross-entropy equals the unfused PyTorch form."""

import pytest
import torch
import torch.nn.functional as F

from nmt.loss import linear_cross_entropy
from nmt.tokenizer import PAD_ID


def reference(h, w, y, eps):
    return F.cross_entropy(h @ w.t(), y, ignore_index=PAD_ID, label_smoothing=eps, reduction="sum")


@pytest.mark.parametrize("eps", [0.0, 0.1])
@pytest.mark.parametrize("chunk", [7, 64, 1000])
def test_loss_and_gradients_match_cross_entropy(eps, chunk):
    torch.manual_seed(0)
    h0, w0 = torch.randn(50, 16), torch.randn(30, 16)
    y = torch.randint(1, 30, (50,))
    y[[3, 17, 49]] = PAD_ID
    grads = []
    for fn in (reference, lambda *a: linear_cross_entropy(*a, chunk=chunk)):
        h, w = h0.clone().requires_grad_(), w0.clone().requires_grad_()
        loss = fn(h, w, y, eps)
        (loss * 0.37).backward()
        grads.append((loss.detach(), h.grad, w.grad))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert grads[1][1][3].abs().max() == 0  # padded positions get no gradient


def test_gradcheck_double():
    torch.manual_seed(0)
    h = torch.randn(9, 5, dtype=torch.double, requires_grad=True)
    w = torch.randn(11, 5, dtype=torch.double, requires_grad=True)
    y = torch.tensor([1, 2, 0, 4, 10, 3, 0, 7, 5])
    assert torch.autograd.gradcheck(
        lambda h, w: linear_cross_entropy(h, w, y, 0.2, chunk=4), (h, w)
    )


def test_without_grad_gives_the_same_loss():
    torch.manual_seed(0)
    h, w = torch.randn(40, 8), torch.randn(20, 8)
    y = torch.randint(0, 20, (40,))
    with torch.no_grad():
        fused = linear_cross_entropy(h, w, y, 0.1, chunk=16)
    torch.testing.assert_close(fused, reference(h, w, y, 0.1))


def test_bfloat16_inputs_accumulate_in_float32():
    torch.manual_seed(0)
    h, w = torch.randn(300, 16), torch.randn(50, 16)
    y = torch.randint(1, 50, (300,))
    hb = h.bfloat16().requires_grad_()
    loss = linear_cross_entropy(hb, w.bfloat16(), y, 0.1, chunk=64)
    loss.backward()
    assert loss.dtype == hb.grad.dtype == torch.bfloat16
    ref = reference(hb.detach().float(), w.bfloat16().float(), y, 0.1)
    torch.testing.assert_close(loss.float(), ref, rtol=1e-2, atol=0)
