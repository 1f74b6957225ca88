"""Typed config: typos and bad values fail loudly, naming the valid choices."""

from __future__ import annotations

import pytest

from nmt.config import Config, load_config, to_dict
from nmt.errors import NMTError


def write(tmp_path, text: str):
    p = tmp_path / "cfg.yaml"
    p.write_text(text)
    return p


def test_defaults_and_overrides(tmp_path):
    cfg = load_config(
        write(tmp_path, "model:\n  backend: rnn\n"), ["train.lr=3e-4", "model.d_model=128"]
    )
    assert cfg.model.backend == "rnn" and cfg.model.d_model == 128
    assert cfg.train.lr == pytest.approx(3e-4)
    assert isinstance(cfg.train.lr, float)
    assert to_dict(load_config(None)) == to_dict(Config())


@pytest.mark.parametrize(
    "text,overrides,needle",
    [
        (
            "model:\n  d_modle: 128\n",
            [],
            "unknown config key model.d_modle; valid keys in model: backend, d_model",
        ),
        ("trian:\n  lr: 1\n", [], "unknown config key trian; valid keys: data, model, train"),
        ("", ["train.lr=fast"], "train.lr must be float, got 'fast'"),
        (
            "",
            ["model.backend=lstm"],
            "model.backend='lstm' is not one of: rnn, rnn_attention, transformer",
        ),
        ("", ["model.attention=concat"], "not one of: bahdanau, luong_dot, luong_general"),
        ("", ["model.d_model=100", "model.n_heads=3"], "must be divisible by model.n_heads"),
        ("", ["train.best_metric=bleu", "train.valid_bleu=false"], "train.best_metric=bleu needs"),
        ("", ["train.betas=[0.9]"], "train.betas must be a list of 2 values"),
        ("", ["model.dropout=1.5"], "must be in [0, 1)"),
        ("", ["train.lr"], "must look like section.key=value"),
        ("model: [1, 2]\n", [], "model must be a mapping"),
        ("model:\n  d_model: true\n", [], "model.d_model must be int, got True"),
    ],
)
def test_bad_configs_fail_with_a_helpful_message(tmp_path, text, overrides, needle):
    with pytest.raises(NMTError) as e:
        load_config(write(tmp_path, text), overrides)
    assert needle in str(e.value)


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(NMTError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(NMTError, match="invalid YAML"):
        load_config(write(tmp_path, "model: [unclosed\n"))


def test_every_recipe_config_loads():
    from pathlib import Path

    configs = sorted(Path(__file__).resolve().parents[1].glob("recipes/*/*.yaml"))
    assert len(configs) >= 9
    for path in configs:
        cfg = load_config(path)
        assert cfg.model.backend == path.stem
