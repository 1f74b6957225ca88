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
        (
            "",
            ["model.backend=rnn_attention", "model.attention=concat"],
            "not one of: bahdanau, luong_dot, luong_general",
        ),
        ("", ["model.d_model=100", "model.n_heads=3"], "must be divisible by model.n_heads"),
        (
            "",
            ["model.cell=gru"],
            "model.cell is not a key of the transformer backend; its keys: backend, d_model",
        ),
        ("", ["model.backend=rnn", "model.n_heads=4"], "model.n_heads is not a key of the rnn"),
        ("", ["model.backend=rnn", "model.attention=luong_dot"], "not a key of the rnn backend"),
        ("", ["train.best_metric=bleu", "train.valid_bleu=false"], "train.best_metric=bleu needs"),
        ("", ["train.betas=[0.9]"], "train.betas must be a list of 2 values"),
        ("", ["model.dropout=1.5"], "must be in [0, 1)"),
        ("", ["train.lr"], "must look like section.key=value"),
        ("model: [1, 2]\n", [], "model must be a mapping"),
        ("model:\n  d_model: true\n", [], "model.d_model must be int, got True"),
        ("", ["train.lr=nan"], "train.lr must be a finite number, got 'nan'"),
        ("", ["train.lr=.inf"], "train.lr must be a finite number"),
        ("", ["train.max_time=.nan"], "train.max_time must be a finite number"),
        ("", ["train.lr=-1e-3"], "train.lr must be > 0"),
        ("", ["train.weight_decay=-0.1"], "train.weight_decay must be >= 0"),
        ("", ["train.betas=[0.9, 1.5]"], "train.betas must be in [0, 1)"),
        ("", ["train.keep_last=0"], "train.keep_last must be > 0"),
        ("", ["train.best_metric=accuracy"], "not one of: bleu, loss, ppl, train_loss"),
        ("", ["train.schedule=cosine"], "not one of: inverse_sqrt, noam, constant"),
        (
            "",
            ["model.backend=rnn", "model.encoder_layers=2", "model.decoder_layers=1"],
            "model.encoder_layers (2) must equal model.decoder_layers (1) for the rnn backend",
        ),
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
        # transformer-base: the GPU preset; transformer-to-en: a multilingual recipe's reverse
        assert cfg.model.backend == path.stem.removesuffix("-base").removesuffix("-to-en")


def test_config_choices_are_the_dispatch_tables():
    """Adding a backend, cell, score, schedule or metric to its table makes the config accept it."""
    from nmt.models import CONFIGS
    from nmt.models.backends import BACKENDS
    from nmt.models.rnn_attention_config import SCORES
    from nmt.models.rnn_config import CELLS
    from nmt.models.transformer import POSITION_CLASSES
    from nmt.models.transformer_config import POSITIONS
    from nmt.optim import METRICS, SCHEDULES

    assert tuple(CONFIGS) == tuple(BACKENDS)
    assert POSITIONS == tuple(POSITION_CLASSES)
    for backend, table, key in (
        ("rnn", CELLS, "cell"),
        ("rnn_attention", SCORES, "attention"),
        ("transformer", POSITIONS, "positions"),
    ):
        for name in table:
            cfg = load_config(None, [f"model.backend={backend}", f"model.{key}={name}"])
            assert getattr(cfg.model, key) == name
    for table, key in ((SCHEDULES, "schedule"), (METRICS, "best_metric")):
        for name in table:
            assert getattr(load_config(None, [f"train.{key}={name}"]).train, key) == name


def test_each_backend_has_its_own_config_and_old_full_dumps_still_load():
    """A config written before per-backend configs lists every backend's field: the chosen
    backend's are kept, the others dropped; a hand-written foreign key stays an error."""
    import dataclasses

    from nmt.config import from_dict, to_dict
    from nmt.models import CONFIGS

    every = {f.name: f.default for c in CONFIGS.values() for f in dataclasses.fields(c)}
    for backend, cls in CONFIGS.items():
        cfg = from_dict(Config, {"model": every | {"backend": backend, "d_model": 64}})
        assert type(cfg.model) is cls and cfg.model.d_model == 64
        assert set(to_dict(cfg)["model"]) == {f.name for f in dataclasses.fields(cls)}
    partial = {k: v for k, v in every.items() if k != "norm"} | {"backend": "rnn"}
    with pytest.raises(NMTError, match="is not a key of the rnn backend"):
        from_dict(Config, {"model": partial})


@pytest.mark.parametrize(
    "override", ["train.extra_valid=[data-bin/x", "train.lr=!!python/object:os.system ls"]
)
def test_a_yaml_typo_in_an_override_is_one_line(override):
    """Field report: a dotted override that is no YAML gave a 62-75-line yaml traceback."""
    with pytest.raises(NMTError, match=r"^override .*: not a valid YAML value \(") as e:
        load_config(None, [override])
    assert "\n" not in str(e.value)
