"""Self-describing checkpoints: the one module that knows their format, and the only one that
calls `torch.save` / `torch.load`.

A checkpoint holds the config, weights, SentencePiece model(s), the data's languages, the run's
progress (step, best score, data-order position) and, except for the inference-only best.pt,
the optimizer/scheduler/RNG state: `translate` and `evaluate` need nothing else. Training writes
a `RunState`; everyone else reads one (`read`) or a ready model (`load_model`). Writes are atomic
(temp file + rename); loads use `weights_only=True`. Checkpoints of earlier versions load too
(their config's fields of other backends are dropped, see `nmt.config.model_from_dict`).
"""

from __future__ import annotations

import os
import pickle
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch

from nmt import datadir, runlog
from nmt.config import RESUME_FIXED, Config, from_dict, to_dict
from nmt.errors import NMTError
from nmt.files import atomic_write, temp_name
from nmt.models import ModelConfig
from nmt.models.backends import build_model
from nmt.models.base import Seq2Seq
from nmt.tokenizer import Tokenizer

FORMAT = "nmt-checkpoint"
VERSION = 1
LAST, BEST = "last.pt", "best.pt"  # in a run dir, beside step-N.pt
_STEP_PREFIX, _SUFFIX = "step-", ".pt"
_TRAINING_KEYS = ("optimizer", "scheduler", "rng")  # absent from inference-only checkpoints


@dataclass
class RunState:
    """What a checkpoint holds. `optimizer`, `scheduler` and `rng` are None in an
    inference-only checkpoint (best.pt, averages)."""

    config: Config
    model: dict  # the model's state_dict
    tokenizer: Tokenizer
    data: dict = field(default_factory=dict)  # src_lang, tgt_lang, joint_vocab
    progress: dict = field(default_factory=dict)  # `nmt.training.Progress` as a dict
    optimizer: dict | None = None
    scheduler: dict | None = None
    rng: dict | None = None
    calibration: dict | None = None  # the trust flags' thresholds (`nmt.flags.Calibration`)
    ema: dict | None = None  # the weights' moving average (train.ema_decay), beside the raw ones
    extra: dict = field(default_factory=dict)  # e.g. averaged_from

    @property
    def languages(self) -> tuple[str | None, str | None]:
        """The training data's (source, target) languages; None where unknown."""
        return self.data.get("src_lang"), self.data.get("tgt_lang")

    @property
    def weights(self) -> dict:
        """What to translate with: the moving average where the run kept one, else the weights."""
        return self.ema if self.ema is not None else self.model

    def to_dict(self) -> dict:
        tok = self.tokenizer
        state = {
            "format": FORMAT,
            "version": VERSION,
            "config": to_dict(self.config),
            "model": self.model,
            "tokenizer": {
                "src": _bytes_to_tensor(tok.src_proto),
                "tgt": None if tok.joint else _bytes_to_tensor(tok.tgt_proto),
            },
            "data": self.data,
            "progress": self.progress,
            **self.extra,
        }
        if self.calibration is not None:
            state["calibration"] = self.calibration
        if self.ema is not None:
            state["ema"] = self.ema
        for key in _TRAINING_KEYS:
            if getattr(self, key) is not None:
                state[key] = getattr(self, key)
        return state

    @classmethod
    def from_dict(cls, state: dict, path: Path) -> RunState:
        try:
            tok = state["tokenizer"]
            tgt = tok.get("tgt")
            tokenizer = Tokenizer(
                _tensor_to_bytes(tok["src"]), _tensor_to_bytes(tgt) if tgt is not None else None
            )
            known = {"format", "version", "config", "model", "tokenizer", "data", "progress"}
            known |= {"calibration", "ema"}
            return cls(
                config=from_dict(Config, state["config"]),
                model=state["model"],
                tokenizer=tokenizer,
                data=dict(state.get("data") or {}),
                progress=dict(state.get("progress") or {}),
                **{k: state.get(k) for k in _TRAINING_KEYS},
                calibration=state.get("calibration"),
                ema=state.get("ema"),
                extra={k: v for k, v in state.items() if k not in known | set(_TRAINING_KEYS)},
            )
        except (KeyError, TypeError, AttributeError) as e:
            raise NMTError(f"{path}: checkpoint is incomplete ({str(e)[:100]})") from None

    def inference_only(self) -> RunState:
        """Without the training state; the weights are those to translate with (`weights`)."""
        return RunState(
            self.config,
            self.weights,
            self.tokenizer,
            self.data,
            self.progress,
            calibration=self.calibration,
            extra=self.extra,
        )


def _bytes_to_tensor(data: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).clone()


def _tensor_to_bytes(t: torch.Tensor) -> bytes:
    return t.numpy().tobytes()


# ---------------------------------------------------------------------------------------------
# Writing and reading


def save(state: RunState, path: Path) -> None:
    """Write atomically: a crash leaves either the old file or the new one, never half."""
    with atomic_write(Path(path), "wb") as f:  # a file object: a failed write keeps its errno
        torch.save(state.to_dict(), f)


def load(path: Path, map_location: str | torch.device = "cpu") -> dict:
    """Load and validate a checkpoint file as a plain dict; anything else is a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise NMTError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # any failure to unpickle means: not a checkpoint we can read
        text = str(e).strip()
        if isinstance(e, pickle.UnpicklingError) and ("weights_only" in text or "global" in text):
            raise NMTError(
                f"{path}: refusing to load: the checkpoint needs to run code to load "
                "(only weights, tensors and plain data are accepted)"
            ) from None
        reason = text.splitlines()[0][:120] if text else type(e).__name__
        raise NMTError(
            f"{path}: not a valid checkpoint (corrupt or truncated file: {reason})"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise NMTError(
            f"{path}: not an nmt checkpoint (e.g. a plain state dict or another toolkit's file)"
        )
    if state.get("version", 0) > VERSION:
        raise NMTError(f"{path}: checkpoint format {state['version']} is newer than this nmt")
    return state


def read(path: Path) -> RunState:
    """A checkpoint as a `RunState`."""
    return RunState.from_dict(load(path), Path(path))


def load_model(path: Path, device: str | torch.device = "cpu") -> tuple[Seq2Seq, Tokenizer, Config]:
    """Rebuild the model (in eval mode, on `device`), its tokenizer and config from a checkpoint."""
    state = read(Path(path))
    return model_of(state, Path(path)).to(device).eval(), state.tokenizer, state.config


def read_all(paths: list[Path]) -> list[RunState]:
    """Checkpoints that work together (an ensemble, an average), without their training state:
    one source encoding feeds them all and their outputs are combined, so they must share the
    vocabulary (source and target) and the language pair."""
    if not paths:
        raise NMTError("no checkpoints given")
    states = []
    for path in paths:
        state = read(Path(path)).inference_only()  # one full checkpoint in memory at a time
        if states:
            _check_together(state, path, states[0], paths[0])
        states.append(state)
    return states


def _check_together(state: RunState, path, first: RunState, first_path) -> None:
    for side, mine, theirs in zip(
        ("source", "target"), state.tokenizer.vocabulary, first.tokenizer.vocabulary
    ):
        if mine != theirs:
            raise NMTError(
                f"{path}: its {side} vocabulary differs from that of {first_path}: models "
                "combine only over one vocabulary (train them on one data dir)"
            )
    if state.languages != first.languages:
        pair, first_pair = ("->".join(map(str, s.languages)) for s in (state, first))
        raise NMTError(f"{path}: trained on {pair}, {first_path} on {first_pair}")


def read_start(path: Path, model: ModelConfig, tokenizer: Tokenizer, optimizer: bool) -> RunState:
    """The checkpoint a run starts from (`train.init_from`): its model section must be the
    run's (dropout rates aside: they shape no weight), its vocabulary the data dir's; with
    `optimizer` (train.reset_optimizer=false) it must keep the optimizer state."""
    path = Path(path)
    state = read(path)
    old, new = to_dict(state.config.model), to_dict(model)
    keys = [k for k in dict.fromkeys([*old, *new]) if old.get(k) != new.get(k)]
    keys = ["backend"] if "backend" in keys else [k for k in keys if not k.endswith("dropout")]
    if keys:
        what = ", ".join(f"model.{k} ({old.get(k)} -> {new.get(k)})" for k in keys)
        raise NMTError(
            f"--init-from {path}: the model section differs from the checkpoint's: {what}"
        )
    if state.tokenizer.vocabulary != tokenizer.vocabulary:
        raise NMTError(
            f"--init-from {path}: the data dir's vocabulary is not the checkpoint's; encode the "
            f"data with its SentencePiece model: nmt preprocess --spm-model {path} ..."
        )
    if optimizer and state.optimizer is None:
        raise NMTError(
            f"--init-from {path}: train.reset_optimizer=false needs the optimizer state, which "
            f"this inference-only checkpoint does not keep (give last.pt or a step-N.pt)"
        )
    return state


def read_resume(run_dir: Path, cfg: Config) -> RunState:
    """The newest checkpoint of `run_dir`, for `--resume` with `cfg`: it must keep the optimizer
    state, its model section and the train settings `RESUME_FIXED` names must be `cfg`'s, and
    its vocabulary the data dir's."""
    last = latest(run_dir)
    if last is None:
        raise NMTError(f"--resume: no checkpoint in {run_dir}")
    state = read(last)
    if state.optimizer is None:
        raise NMTError(f"--resume: {last} is inference-only (no optimizer state)")
    if state.config.model != cfg.model:
        raise NMTError(f"--resume: the model config differs from the one in {last}")
    old, new = state.config.train, cfg.train
    changed = [k for k in RESUME_FIXED if getattr(old, k) != getattr(new, k)]
    if changed:
        what = ", ".join(f"train.{k} ({getattr(old, k)} -> {getattr(new, k)})" for k in changed)
        raise NMTError(
            f"--resume cannot change {what}: the optimizer, schedule and batch order in "
            f"{last} carry the run's values; give the values its {runlog.CONFIG} records, "
            "or start a new run"
        )
    if datadir.load_tokenizer(cfg.data.dir).vocabulary != state.tokenizer.vocabulary:
        raise NMTError(
            f"--resume: the vocabulary of data dir {cfg.data.dir} is not the one "
            f"{last} was trained with"
        )
    return state


def model_of(state: RunState, path: Path) -> Seq2Seq:
    """The model a `RunState` describes, with its weights (`path` names it in errors)."""
    tok = state.tokenizer
    try:
        with _no_random_init():  # every weight comes from the checkpoint (strict load)
            model = build_model(
                state.config.model, tok.src_vocab_size, tok.tgt_vocab_size, tok.joint
            )
        model.load_state_dict(state.weights)
    except (KeyError, RuntimeError, TypeError) as e:
        raise NMTError(
            f"{path}: checkpoint is incomplete or does not match its config ({str(e)[:100]})"
        ) from None
    return model


@contextmanager
def _no_random_init() -> Iterator[None]:
    """Build modules without drawing their random initial weights (a third of a second for a
    Multi30k Transformer on this CPU): `torch.nn.init`'s in-place initialisers do nothing."""
    names = [n for n in dir(torch.nn.init) if n.endswith("_") and not n.startswith("_")]
    saved = {n: getattr(torch.nn.init, n) for n in names}
    for n in names:
        setattr(torch.nn.init, n, lambda tensor, *args, **kwargs: tensor)
    try:
        yield
    finally:
        for n, f in saved.items():
            setattr(torch.nn.init, n, f)


# ---------------------------------------------------------------------------------------------
# The checkpoints of a run dir


def step_name(step: int) -> str:
    return f"{_STEP_PREFIX}{step}{_SUFFIX}"


def link(src: Path, dst: Path) -> None:
    """Make `dst` name the same file as `src` (hard link, atomically replacing `dst`)."""
    tmp = temp_name(dst)
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:  # file systems without hard links
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def latest(run_dir: Path) -> Path | None:
    """The most recent step checkpoint in a run dir (or last.pt)."""
    run_dir = Path(run_dir)
    if (run_dir / LAST).is_file():
        return run_dir / LAST
    steps = step_checkpoints(run_dir)
    return steps[-1] if steps else None


def step_checkpoints(run_dir: Path) -> list[Path]:
    """The run dir's `step-N.pt` files, oldest first (by N, not by name)."""
    n = len(_STEP_PREFIX)
    steps = [p for p in Path(run_dir).glob(f"{_STEP_PREFIX}*{_SUFFIX}") if p.stem[n:].isdigit()]
    return sorted(steps, key=lambda p: int(p.stem[n:]))


def prune(run_dir: Path, keep: int) -> None:
    """Keep the `keep` most recent step checkpoints."""
    steps = step_checkpoints(run_dir)
    for p in steps[: max(0, len(steps) - keep)]:
        p.unlink(missing_ok=True)


def average(paths: list[Path], out: Path) -> None:
    """Average the weights of several checkpoints of the same run into one (inference only)."""
    if not paths:
        raise NMTError("no checkpoints to average")
    states = read_all(paths)
    first = states[0]
    for path, state in zip(paths[1:], states[1:]):
        if state.config.model != first.config.model:
            raise NMTError(f"{path}: its model config differs from that of {paths[0]}: not one run")
    avg = {}
    for k, v in first.weights.items():
        if v.is_floating_point():
            try:
                avg[k] = sum(s.weights[k].double() for s in states).div(len(states)).to(v.dtype)
            except (KeyError, RuntimeError):
                raise NMTError(
                    f"checkpoints do not have the same architecture (tensor {k})"
                ) from None
        else:
            avg[k] = v
    result = first.inference_only()
    result.model = avg
    result.extra = {**first.extra, "averaged_from": [str(p) for p in paths]}
    save(result, out)
