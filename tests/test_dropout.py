"""The CPU dropout: nn.Dropout's semantics, masks decided by torch's seed."""

import torch

from nmt.models.base import Dropout


def test_dropout_rate_scale_and_gradient():
    drop = Dropout(0.3).train()
    x = torch.ones(400, 500, requires_grad=True)
    y = drop(x)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.7) < 0.01
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / 0.7))
    y.sum().backward()
    assert torch.equal(x.grad != 0, kept)  # the gradient flows through the kept elements only


def test_dropout_follows_torch_seed_and_is_off_in_eval():
    drop, x = Dropout(0.5).train(), torch.randn(64, 33)
    torch.manual_seed(7)
    a = drop(x)
    torch.manual_seed(7)
    b = drop(x)
    assert torch.equal(a, b)
    assert not torch.equal(a, drop(x))  # a fresh draw without re-seeding
    assert drop.eval()(x) is x
