"""Typed configuration: a tree of frozen dataclasses loaded from YAML plus dotted overrides.

Unknown keys, wrong types and impossible combinations fail loudly with the valid choices named.
The `model` section is the chosen backend's config class (`nmt.models.CONFIGS`): a key that
backend does not read is an error naming its keys. Importing this module imports no torch.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nmt.checks import choice, positive, probability
from nmt.errors import NMTError
from nmt.files import write_text
from nmt.models import CONFIGS, DEFAULT_BACKEND, ModelConfig
from nmt.optim import METRICS, OPTIMIZERS, SCHEDULES
from nmt.search_options import SearchOptions


@dataclass(frozen=True)
class DataConfig:
    dir: str = "data-bin"  # a data dir written by `nmt preprocess`


PRECISIONS = ("fp32", "bf16", "fp16")


# Marks the keys a run carries in its state: the optimizer and schedule (their state holds the
# old values), the batches' order (the position in the epoch) and the scale of the recorded best
# score. `nmt train --resume` refuses to change them (`RESUME_FIXED`, below the class).
CARRIED = {"resume": "fixed"}


@dataclass(frozen=True)
class TrainConfig:
    seed: int = field(default=1, metadata=CARRIED)
    # target+source tokens per batch bound (per GPU/process)
    max_tokens: int = field(default=4096, metadata=CARRIED)
    accum: int = field(default=1, metadata=CARRIED)  # gradient accumulation steps
    max_steps: int = 0  # 0: unlimited
    max_epochs: int = 0  # 0: unlimited
    max_time: float = 0.0  # wall-clock minutes; 0: unlimited
    optimizer: str = field(default="adam", metadata=CARRIED)
    lr: float = field(default=5e-4, metadata=CARRIED)
    betas: tuple[float, float] = field(default=(0.9, 0.98), metadata=CARRIED)
    weight_decay: float = field(default=0.0, metadata=CARRIED)
    schedule: str = field(default="inverse_sqrt", metadata=CARRIED)
    warmup: int = field(default=4000, metadata=CARRIED)
    label_smoothing: float = 0.1
    clip_norm: float = 1.0  # 0: no clipping
    # subword regularisation of training batches: SentencePiece sampling (unigram: smoothing
    # alpha over the subword_nbest best segmentations, -1: all; BPE: dropout alpha); 0: off
    subword_alpha: float = 0.0
    subword_nbest: int = -1
    # multilingual data dirs: pairs drawn with probability ~ size^(1/T) each epoch (1:
    # proportional to corpus size, larger: flatter, towards uniform)
    pair_temperature: float = field(default=5.0, metadata=CARRIED)
    # weights' exponential moving average, validated and translated with; 0: off
    ema_decay: float = field(default=0.0, metadata=CARRIED)
    precision: str = "fp32"
    compile: bool = False
    valid_every: int = 1000  # steps
    valid_bleu: bool = True
    # the beam of validation's search; the rest of that search comes from the decode section
    valid_beam: int = 1
    valid_max_sentences: int = 0  # 0: the whole validation set
    best_metric: str = field(default="bleu", metadata=CARRIED)
    patience: int = 0  # validations without improvement before stopping; 0: never stop early
    keep_last: int = 2  # recent checkpoints kept besides best.pt
    log_every: int = 100
    device: str = "auto"
    threads: int = 0  # torch CPU threads; 0: all cores
    # start from a trained model's weights (a checkpoint; fine-tuning): fresh optimizer,
    # schedule and step count, or the checkpoint's optimizer state with reset_optimizer=false
    init_from: str = ""
    reset_optimizer: bool = True
    # other data dirs whose validation splits are scored beside this one (forgetting guard);
    # a warning when one's BLEU falls more than forget_warn below its value at step 0
    extra_valid: tuple[str, ...] = ()
    forget_warn: float = 2.0

    def __post_init__(self):
        choice("train.optimizer", self.optimizer, tuple(OPTIMIZERS))
        choice("train.schedule", self.schedule, tuple(SCHEDULES))
        choice("train.precision", self.precision, PRECISIONS)
        choice("train.best_metric", self.best_metric, tuple(METRICS))
        choice("train.device", self.device, ("auto", "cpu", "cuda"))
        for name in (
            "max_tokens",
            "accum",
            "lr",
            "valid_every",
            "valid_beam",
            "log_every",
            "keep_last",
        ):
            positive(f"train.{name}", getattr(self, name))
        for name in ("max_steps", "max_epochs", "max_time", "warmup", "clip_norm", "patience"):
            positive(f"train.{name}", getattr(self, name), allow_zero=True)
        for name in ("weight_decay", "valid_max_sentences", "threads", "forget_warn"):
            positive(f"train.{name}", getattr(self, name), allow_zero=True)
        probability("train.label_smoothing", self.label_smoothing)
        if not 0 <= self.subword_alpha <= 1:
            raise NMTError(
                f"train.subword_alpha must be in [0, 1] (0: off), got {self.subword_alpha}"
            )
        if self.subword_nbest != -1 and self.subword_nbest < 2:
            raise NMTError(
                f"train.subword_nbest must be -1 (all) or >= 2, got {self.subword_nbest}"
            )
        if self.pair_temperature < 1:
            raise NMTError(f"train.pair_temperature must be >= 1, got {self.pair_temperature}")
        if not 0 <= self.ema_decay < 1:
            raise NMTError(f"train.ema_decay must be in [0, 1) (0: off), got {self.ema_decay}")
        if not all(0 <= b < 1 for b in self.betas):
            raise NMTError(f"train.betas must be in [0, 1), got {list(self.betas)}")
        if self.best_metric == "bleu" and not self.valid_bleu:
            raise NMTError("train.best_metric=bleu needs train.valid_bleu=true (or pick loss/ppl)")
        if not self.reset_optimizer and not self.init_from:
            raise NMTError("train.reset_optimizer=false applies to train.init_from (--init-from)")
        if len(set(self.extra_valid)) < len(self.extra_valid):
            raise NMTError(f"train.extra_valid lists a data dir twice: {list(self.extra_valid)}")


RESUME_FIXED = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.metadata == CARRIED)


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=CONFIGS[DEFAULT_BACKEND])
    train: TrainConfig = field(default_factory=TrainConfig)
    # how the model translates unless told otherwise: translate/evaluate/score and validation
    # start from it, flags override it; it travels in checkpoints and exports
    decode: SearchOptions = field(default_factory=SearchOptions)

    def __post_init__(self):
        if self.decode.attention:
            raise NMTError(
                "decode.attention is not a setting: translate --alignment or --attention-plot "
                "asks for attention weights"
            )


def model_from_dict(data: Any) -> ModelConfig:
    """The `model` section as its backend's config class.

    A section with exactly the keys of the old flat model section (`_V1_MODEL_FIELDS`) was
    written before the backends had configs of their own (a checkpoint's, a run dir's or an
    export's): the other backends' fields in it are dropped."""
    if not isinstance(data, dict):
        raise NMTError(f"model must be a mapping, got {type(data).__name__}")
    backend = data.get("backend", DEFAULT_BACKEND)
    choice("model.backend", backend, tuple(CONFIGS))
    cls = CONFIGS[backend]
    own = {f.name for f in dataclasses.fields(cls)}
    if set(data) == _V1_MODEL_FIELDS:
        data = {k: v for k, v in data.items() if k in own}
    foreign = [k for k in data if k not in own and k in _ALL_MODEL_FIELDS]
    if foreign:  # another backend's key (an unknown one is reported by from_dict)
        raise NMTError(
            f"model.{foreign[0]} is not a key of the {backend} backend; its keys: "
            f"{', '.join(f.name for f in dataclasses.fields(cls))}"
        )
    return from_dict(cls, {**data, "backend": backend}, "model")


_ALL_MODEL_FIELDS = {f.name for cls in CONFIGS.values() for f in dataclasses.fields(cls)}
# the one flat model section of checkpoints and run dirs written before per-backend configs
_V1_MODEL_FIELDS = {
    "backend", "d_model", "encoder_layers", "decoder_layers", "dropout", "max_len",
    "tie_embeddings", "cell", "attention", "n_heads", "d_ff", "norm", "positions",
    "attention_dropout",
}  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Building dataclasses from plain dicts, strictly


def from_dict(cls, data: Any, where: str = ""):
    """Build dataclass `cls` from a dict; unknown keys and wrong types are errors."""
    if not isinstance(data, dict):
        raise NMTError(f"{where or 'config'} must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in data if k not in names]
    if unknown:
        prefix = f"{where}." if where else ""
        raise NMTError(
            f"unknown config key {prefix}{unknown[0]}; valid keys{' in ' + where if where else ''}: "
            f"{', '.join(names)}"
        )
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else key
        kwargs[key] = _coerce(hints[key], value, path)
    return cls(**kwargs)


def _coerce(tp, value: Any, path: str):
    if tp is ModelConfig:
        return model_from_dict(value if value is not None else {})
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value if value is not None else {}, path)
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        return _coerce(next(a for a in args if a is not type(None)), value, path)
    if origin is tuple and typing.get_args(tp)[1:] == (...,):  # tuple[X, ...]: a list
        if isinstance(value, str):
            value = [value]  # one item given as a plain value (a dotted override)
        if not isinstance(value, (list, tuple)):
            raise NMTError(f"{path} must be a list, got {value!r}")
        item = typing.get_args(tp)[0]
        return tuple(_coerce(item, v, f"{path}[{i}]") for i, v in enumerate(value))
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise NMTError(f"{path} must be a list of {len(args)} values, got {value!r}")
        return tuple(_coerce(a, v, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif tp is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):  # YAML 1.1 reads "3e-4" (no dot) as a string
            try:
                number = float(value)
            except ValueError:
                pass
        if number is not None:
            if not math.isfinite(number):
                raise NMTError(f"{path} must be a finite number, got {value!r}")
            return number
    elif tp is str:
        if isinstance(value, str):
            return value
    else:
        return value
    raise NMTError(f"{path} must be {tp.__name__}, got {value!r}")


def to_dict(cfg) -> dict:
    """Plain dict (tuples as lists) for YAML and checkpoints."""

    def plain(x):
        if isinstance(x, dict):
            return {k: plain(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [plain(v) for v in x]
        return x

    return plain(dataclasses.asdict(cfg))


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Apply `section.key=value` overrides (values parsed as YAML) to a raw config dict."""
    import yaml

    raw = {k: dict(v) if isinstance(v, dict) else v for k, v in raw.items()}
    for item in overrides:
        if "=" not in item:
            raise NMTError(f"override {item!r} must look like section.key=value")
        key, value = item.split("=", 1)
        parts = key.strip().split(".")
        node = raw
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise NMTError(f"override {item!r}: {p} is not a section")
        try:
            node[parts[-1]] = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError as e:
            reason = " ".join(str(e).split("\n")[0].split())
            raise NMTError(f"override {item!r}: not a valid YAML value ({reason})") from None
    return raw


def load_config(path: Path | None, overrides: list[str] | None = None) -> Config:
    """Load a YAML config file (or defaults) and apply dotted overrides."""
    import yaml

    raw: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise NMTError(f"config file not found: {path}")
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise NMTError(f"{path}: invalid YAML: {str(e).splitlines()[0]}") from None
        if not isinstance(raw, dict):
            raise NMTError(f"{path}: the config must be a mapping of sections")
    raw = apply_overrides(raw, overrides or [])
    return from_dict(Config, raw)


def dump_config(cfg: Config, path: Path) -> None:
    import yaml

    write_text(Path(path), yaml.safe_dump(to_dict(cfg), sort_keys=False))
