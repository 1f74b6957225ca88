"""The weights' exponential moving average (train.ema_decay): the formula, checkpoints, resume."""

from __future__ import annotations

import pytest
import torch

from nmt import checkpoint
from nmt.ema import EMA
from nmt.errors import NMTError
from nmt.training import train
from tests.test_training import tiny_cfg


def test_the_average_is_the_hand_computed_one():
    model = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema = EMA(model, decay=0.9)
    expected = 1.0
    for t, w in enumerate([3.0, -2.0, 5.0, 0.5, 4.0] + [2.0] * 40):
        with torch.no_grad():
            model.weight.fill_(w)
        ema.update(model, t)
        d = min(0.9, (1 + t) / (10 + t))  # the warm-up, then the decay
        expected = d * expected + (1 - d) * w
        assert ema.model.weight[0, 0].item() == pytest.approx(expected, rel=1e-6)
    assert ema.rate(0) == pytest.approx(0.1) and ema.rate(1000) == 0.9
    assert not any(p.requires_grad for p in ema.model.parameters())


def test_tied_weights_stay_tied_in_the_average(toy_data_dir):
    from nmt.models.backends import build_model

    cfg = tiny_cfg(toy_data_dir)
    model = build_model(cfg.model, 36, 36, True)
    ema = EMA(model, 0.99)
    assert ema.model.generator.weight is ema.model.tgt_embed.lut.weight


COMMON = ["train.valid_every=4", "train.valid_bleu=false", "train.best_metric=loss"]
COMMON += ["train.ema_decay=0.9", "model.dropout=0.3"]


def test_checkpoints_keep_both_and_translate_with_the_average(toy_data_dir, tmp_path):
    train(tiny_cfg(toy_data_dir, *COMMON, "train.max_steps=8"), tmp_path / "r", quiet=True)
    last = checkpoint.read(tmp_path / "r" / "last.pt")
    assert last.ema is not None and set(last.ema) == set(last.model)
    assert any(not torch.equal(last.ema[k], last.model[k]) for k in last.model)
    model = checkpoint.model_of(last, tmp_path / "r" / "last.pt")
    for k, v in model.state_dict().items():
        assert torch.equal(v, last.ema[k])  # what translate, evaluate and export load
    best = checkpoint.read(tmp_path / "r" / "best.pt")
    assert best.ema is None and best.optimizer is None  # inference only: the average alone
    if best.progress["step"] == last.progress["step"]:
        assert all(torch.equal(best.model[k], last.ema[k]) for k in last.ema)
    checkpoint.average(
        [tmp_path / "r" / "step-4.pt", tmp_path / "r" / "last.pt"], tmp_path / "a.pt"
    )
    avg = checkpoint.read(tmp_path / "a.pt")
    step4 = checkpoint.read(tmp_path / "r" / "step-4.pt")
    k = next(iter(avg.model))
    assert torch.allclose(avg.model[k], (step4.ema[k] + last.ema[k]) / 2)  # averages of averages


def test_validation_scores_the_average(toy_data_dir, tmp_path):
    from nmt.validation import ValidData, validation_data, validation_scores

    cfg = tiny_cfg(toy_data_dir, *COMMON, "train.max_steps=4")
    train(cfg, tmp_path / "r", quiet=True)
    last = checkpoint.read(tmp_path / "r" / "last.pt")
    logged = last.progress["history"][-1]["loss"]
    valid: ValidData = validation_data(cfg, torch.device("cpu"))
    model = checkpoint.model_of(last, tmp_path / "r" / "last.pt")  # the average
    assert validation_scores(model, cfg, valid, last.tokenizer, "cpu")["loss"] == pytest.approx(
        logged, rel=1e-5
    )
    raw = checkpoint.model_of(checkpoint.RunState(last.config, last.model, last.tokenizer), "x")
    assert validation_scores(raw, cfg, valid, last.tokenizer, "cpu")["loss"] != pytest.approx(
        logged, rel=1e-5
    )


def test_resume_continues_both_exactly(toy_data_dir, tmp_path):
    train(tiny_cfg(toy_data_dir, *COMMON, "train.max_steps=10"), tmp_path / "a", quiet=True)
    train(tiny_cfg(toy_data_dir, *COMMON, "train.max_steps=4"), tmp_path / "b", quiet=True)
    train(
        tiny_cfg(toy_data_dir, *COMMON, "train.max_steps=10"),
        tmp_path / "b",
        resume=True,
        quiet=True,
    )
    a, b = (checkpoint.read(tmp_path / r / "last.pt") for r in "ab")
    for k in a.model:
        assert torch.allclose(a.model[k], b.model[k], atol=1e-6), k
        assert torch.allclose(a.ema[k], b.ema[k], atol=1e-6), k


def test_the_decay_is_checked_and_fixed_on_resume(toy_data_dir, tmp_path):
    with pytest.raises(NMTError, match=r"train.ema_decay must be in \[0, 1\)"):
        tiny_cfg(toy_data_dir, "train.ema_decay=1.0")
    train(tiny_cfg(toy_data_dir, *COMMON, "train.max_steps=2"), tmp_path / "r", quiet=True)
    with pytest.raises(NMTError, match="train.ema_decay"):
        train(tiny_cfg(toy_data_dir, *COMMON, "train.max_steps=4", "train.ema_decay=0.5"),
              tmp_path / "r", resume=True, quiet=True)  # fmt: skip
