"""`train()`: one loop for every backend over a data dir written by `nmt preprocess`.

Token-bucketed batches, label-smoothed cross-entropy, Adam(W) with warmup schedules, clipping,
accumulation, mixed precision on GPU, validation (loss, perplexity, sacreBLEU of a
`train.valid_beam` search), best/last checkpoints with atomic writes, resume, Ctrl-C / SIGTERM, a
lock on the run dir, and DDP under `torchrun`. A run's state lives in one `Trainer`; `train()` is the entry point.
"""

from __future__ import annotations

import logging
import math
import os
import random
import signal
import time
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.fx.experimental._config as fx_config

from nmt import checkpoint, datadir, files, runlog, scores
from nmt.batching import Batch, Prefetcher, Sampling, TrainBatches, bucket_batches, collate
from nmt.config import RESUME_FIXED, Config, dump_config
from nmt.ema import EMA
from nmt.errors import Interrupted, NMTError
from nmt.flags import Calibration
from nmt.models.backends import build_model
from nmt.models.base import use_fast_cuda_kernels
from nmt.optim import METRICS, OPTIMIZERS, lr_lambda
from nmt.search import decode_corpus
from nmt.search_options import SearchOptions, mean_logprob
from nmt.signals import StopRequest
from nmt.tokenizer import PAD_ID


@dataclass
class Progress:
    """Where the run is: enough to continue it exactly."""

    step: int = 0
    epoch: int = 0
    batch: int = 0  # batches of `epoch` already consumed
    best: float | None = None
    best_step: int = 0  # the step whose weights best.pt holds
    bad_validations: int = 0
    train_seconds: float = 0.0
    history: list = field(default_factory=list)  # validation results
    since_valid_loss: float = 0.0  # summed training loss since the last validation
    since_valid_tokens: int = 0
    extra_base: dict = field(default_factory=dict)  # train.extra_valid: BLEU at step 0, by name


# ---------------------------------------------------------------------------------------------
# Distributed helpers (a single process is world size 1)


def _dist_info() -> tuple[int, int]:
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def _init_distributed(device: torch.device) -> tuple[int, int]:
    rank, world = _dist_info()
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend)
    return rank, world


def _any_rank(flag: bool, world: int) -> bool:
    """True on every rank if it is true on one (stop signals stay in sync)."""
    if world == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0])
    torch.distributed.all_reduce(t)
    return bool(t.item() > 0)


def _check_in_sync(model, world: int) -> float:
    """All ranks must hold the same weights after training; returns the shared checksum."""
    local = torch.stack([p.detach().double().sum() for p in model.parameters()]).sum().cpu()
    gathered = [torch.zeros_like(local) for _ in range(world)]
    torch.distributed.all_gather(gathered, local)
    if any(abs(g.item() - local.item()) > 1e-6 * max(1.0, abs(local.item())) for g in gathered):
        raise NMTError(f"DDP ranks diverged: parameter checksums {[g.item() for g in gathered]}")
    return local.item()


def make_optimizer(model, cfg):
    """The `torch.optim` optimizer `cfg.optimizer` names, over the model's parameters."""
    params = list(model.parameters())
    # fused multi-tensor kernels instead of a dozen small ops per parameter (CPU and CUDA)
    fused = all(p.device.type in ("cpu", "cuda") for p in params)
    return getattr(torch.optim, OPTIMIZERS[cfg.optimizer])(
        params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay, fused=fused
    )


def _restore_fused(optimizer, device) -> None:
    """`load_state_dict` brings back the saved groups' `fused` flag; keep this run's choice."""
    fused = optimizer.defaults.get("fused")
    for group in optimizer.param_groups:
        group["fused"] = fused
    if fused:  # fused kernels keep the step count as a float32 tensor beside the parameters
        for st in optimizer.state.values():
            if "step" in st:
                st["step"] = st["step"].to(device, torch.float32)


def _autocast(precision: str, device: torch.device):
    """A context factory: bf16/fp16 autocast on the training device (CUDA, or CPU), or none."""
    if precision == "fp32":
        return nullcontext
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return lambda: torch.autocast(device.type, dtype=dtype)


def _grad_scaler(precision: str, device: torch.device):
    return torch.amp.GradScaler(device.type) if precision == "fp16" else None


def compile_model(model, backend: str = "inductor"):
    """Compile the model's regions (`compile_regions`: each layer of the Transformer, the whole
    RNN models) for training, in place: in training mode they run compiled, in eval mode
    (validation, search) eagerly, so decoding never triggers a compile. Dynamic shapes:
    token-bucketed batches change (B, S, T) at every step and one graph serves them all; duck
    shapes off, so that a first batch with S == T does not tie the two. Returns the model."""
    fx_config.use_duck_shape = False
    for region in model.compile_regions():
        compiled = torch.compile(region.forward, dynamic=True, backend=backend)
        region.forward = _training_only(region, compiled, region.forward)
    return model


def _training_only(module, compiled, eager):
    def forward(*args, **kwargs):
        return (compiled if module.training else eager)(*args, **kwargs)

    return forward


class Recompiles(logging.Handler):
    """Dynamo's recompile messages, one line each (function and the first failed guard), kept
    for the run's log."""

    def __init__(self):
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record) -> None:
        msg = record.getMessage().splitlines()
        guard = next((m.strip().lstrip("- ") for m in msg[1:] if m.strip().startswith("-")), "")
        self.lines.append(f"{msg[0].strip()}: {guard}"[:240])

    @classmethod
    def install(cls) -> Recompiles:
        """The process's handler (installed once), emptied."""
        torch._logging.set_logs(recompiles=True)
        logger = logging.getLogger("torch._dynamo.guards.__recompiles")
        logger.setLevel(logging.DEBUG)  # enabled even where TORCH_LOGS overrides set_logs
        logger.propagate = False  # into the run's log, not onto stderr
        handler = next((h for h in logger.handlers if isinstance(h, cls)), None)
        if handler is None:
            handler = cls()
            logger.addHandler(handler)
        handler.take()
        return handler

    def take(self) -> list[str]:
        lines, self.lines = self.lines, []
        return lines


def _compile_report(recompiles: int) -> str:
    """Dynamo's counters for the log: graphs built, graph breaks, frames compiled (one per
    compiled function plus one per recompile), recompiles."""
    counters = torch._dynamo.utils.counters
    breaks = sum(counters["graph_break"].values())
    return (
        f"compile: {counters['stats']['unique_graphs']} graphs, {breaks} graph breaks, "
        f"{counters['frames']['ok']} frame compiles, {recompiles} recompiles"
    )


def _wrap_for_training(model, cfg, device: torch.device, world: int):
    """The module the loop calls: compiled and/or wrapped in DDP as configured."""
    if cfg.compile:
        model = compile_model(model)
    if world > 1:
        ids = [device.index] if device.type == "cuda" else None
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=ids, gradient_as_bucket_view=True
        )
    return model


# ---------------------------------------------------------------------------------------------
# RNG state (torch and Python's `random`; numpy draws are seeded from torch)


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1])}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(state["python"]), None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---------------------------------------------------------------------------------------------
# Validation


@dataclass
class ValidData:
    batches: list[Batch]  # teacher-forced loss
    src: list[list[int]]  # source ids for BLEU
    refs: list[str]  # raw references, aligned with `src`
    tgt_lang: str | None  # the data's target language: picks the BLEU tokenizer
    ref_ratios: list[float]  # reference/source length in pieces: the trust flags' range


def validation_data(
    cfg: Config, device, data_dir: str | None = None, pair: str | None = None
) -> ValidData | None:
    """The valid split of `data_dir` (default: the run's), or of one `pair` of a multilingual
    data dir, within the model's length limit; None when the data dir has none."""
    data_dir = data_dir or cfg.data.dir
    if not datadir.has_split(data_dir, "valid"):
        return None
    ds = datadir.load_encoded(data_dir, "valid")
    meta = datadir.read_meta(data_dir)
    start, end = datadir.pair_rows(meta, "valid").get(pair, (0, len(ds)))
    rows, max_len = ds[start:end], cfg.model.max_len
    texts = rows.get("src_text")  # a blank source is EOS alone, or a tag and EOS
    blank = [not x.strip() for x in texts] if texts else [s <= 1 for s in rows["src_len"]]
    keep = [
        i
        for i, (s, t) in enumerate(zip(rows["src_len"], rows["tgt_len"]))
        if not blank[i] and s <= max_len and t <= max_len
    ]
    lens = np.asarray(rows["src_len"])[keep], np.asarray(rows["tgt_len"])[keep]
    batches = [
        collate(
            [rows["src_ids"][keep[j]] for j in b], [rows["tgt_ids"][keep[j]] for j in b], device
        )
        for b in bucket_batches(*lens, cfg.train.max_tokens)
    ]
    refs = files.read_text_lines(datadir.raw_text(data_dir, "valid")[1])[start:end]
    src = [rows["src_ids"][i] for i in keep]
    tgt_lang = datadir.pair_names(meta)[pair][1] if pair else meta.get("tgt_lang")
    ratios = [(rows["tgt_len"][i] - 1) / max(rows["src_len"][i] - 1, 1) for i in keep]
    return ValidData(batches, src, [refs[i] for i in keep], tgt_lang, ratios)


@torch.no_grad()
def validation_scores(model, cfg: Config, valid: ValidData, tokenizer, device) -> dict:
    """Validation loss/perplexity (no smoothing) and sacreBLEU of `train.valid_beam` search,
    tokenized for the data's target language."""
    model.eval()
    total, n_tok = 0.0, 0
    for b in valid.batches:  # summed cross-entropy, no smoothing; read back once
        total += model(b.src, b.tgt_in, b.tgt_out, src_lengths=b.src_lengths)
        n_tok += (b.tgt_out != PAD_ID).sum()
    result = {"loss": float(total) / max(int(n_tok), 1)}
    result["ppl"] = math.exp(min(result["loss"], 50))
    if cfg.train.valid_bleu and valid.src:
        n = cfg.train.valid_max_sentences or len(valid.src)
        opts = SearchOptions(beam=cfg.train.valid_beam)
        hyps = decode_corpus(model, valid.src[:n], opts, cfg.model.max_len, device)
        texts = [tokenizer.decode_tgt(h[0].tokens) for h in hyps]
        result["bleu"] = scores.bleu(texts, valid.refs[:n], valid.tgt_lang)
        logprobs = [mean_logprob(h[0], opts) for h in hyps]
        result["lines"] = (valid.ref_ratios, logprobs)  # for the trust flags' calibration
    model.train()
    return result


def _mean(results: list[dict]) -> dict:
    """Validation results averaged over pairs (the one result of a bilingual data dir)."""
    if len(results) == 1:
        return results[0]
    keys = [k for k in results[0] if all(k in r for r in results)]  # BLEU needs lines left
    mean = {k: sum(r[k] for r in results) / len(results) for k in keys}
    if "loss" in mean:
        mean["ppl"] = math.exp(min(mean["loss"], 50))
    return mean


# ---------------------------------------------------------------------------------------------
# Budgets, devices


@dataclass
class _Window:
    """Training loss and speed since the last log line."""

    loss: float = 0.0
    tokens: int = 0
    t0: float = field(default_factory=time.time)


def _sync_point(step: int, cfg) -> bool:
    """Steps at which the ranks of a DDP run decide together whether to stop (one all-reduce):
    logging, validation and the last step of the budget. Time budgets, signals and patience
    take effect at the next one."""
    return (
        step % cfg.log_every == 0
        or step % cfg.valid_every == 0
        or bool(cfg.max_steps and step >= cfg.max_steps)
    )


def backward_group(
    model,
    group: list[Batch],
    n_tokens: int,
    label_smoothing: float,
    autocast=nullcontext,
    scaler=None,
) -> torch.Tensor:
    """Forward and backward over the batches of one update, each loss divided by the target
    tokens of the whole group (`n_tokens`, counted on the host): the gradient of one batch
    holding them all. Under DDP that holds per rank: gradients are all-reduced (averaged over
    ranks) once, after the last batch. Returns the summed loss as a tensor on the device: nothing
    here waits for the device."""
    loss_sum = None
    no_sync = getattr(model, "no_sync", None)
    for k, b in enumerate(group):
        last = k == len(group) - 1
        with no_sync() if not last and no_sync else nullcontext(), autocast():
            loss = model(b.src, b.tgt_in, b.tgt_out, label_smoothing, b.src_lengths)
        scaled = loss / max(n_tokens, 1)
        (scaler.scale(scaled) if scaler else scaled).backward()
        loss = loss.detach().float()
        loss_sum = loss if loss_sum is None else loss_sum + loss
    return loss_sum


def _budget_reason(cfg: Config, progress: Progress) -> str | None:
    if cfg.train.max_steps and progress.step >= cfg.train.max_steps:
        return f"reached max_steps={cfg.train.max_steps}"
    if cfg.train.max_time and progress.train_seconds >= cfg.train.max_time * 60:
        return f"reached max_time={cfg.train.max_time} min"
    return None


def _pick_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise NMTError("train.device=cuda but no CUDA device is available")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and _dist_info()[1] > 1:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device(name)


# ---------------------------------------------------------------------------------------------
# The run


def train(cfg: Config, run_dir: Path, resume: bool = False, quiet: bool = False) -> dict:
    """Train a model as configured; returns a summary (steps, best score, paths, losses).

    The run dir is locked for the whole run: a second `nmt train` into it is refused."""
    run_dir = Path(run_dir)
    lock = files.DirLock(run_dir, "run dir") if _dist_info()[0] == 0 else nullcontext()
    with lock:
        return Trainer(cfg, run_dir, resume, quiet).loop()


class Trainer:
    """One run's state (model, optimizer, scheduler, batches, progress, logger).

    `loop` runs `step` over the batches of `batch_groups`, with `validate` and `save` when due."""

    def __init__(self, cfg: Config, run_dir: Path, resume: bool = False, quiet: bool = False):
        self.cfg, self.run_dir = cfg, Path(run_dir)
        self.device = _pick_device(cfg.train.device)
        use_fast_cuda_kernels(self.device)
        self.rank, self.world = _init_distributed(self.device)
        self.main = self.rank == 0
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        state = self._resume_state() if resume else self._check_fresh()
        self.meta = datadir.read_meta(cfg.data.dir)
        self.tokenizer = datadir.load_tokenizer(cfg.data.dir)
        train_ds = datadir.load_encoded(cfg.data.dir, "train")
        self.batches = TrainBatches(
            train_ds,
            cfg.train.max_tokens,
            cfg.train.seed,
            self.rank,
            self.world,
            self._sampling(train_ds),
            self.tokenizer,
            cfg.train.pair_temperature,
            self._tags(),
            datadir.pair_weights(self.meta),
        )
        self.model, self.optimizer, self.scheduler = self._build()
        # the moving average of the weights (train.ema_decay): kept by the rank that validates
        decay = cfg.train.ema_decay
        self.ema = EMA(self.model, decay) if decay and self.main else None
        self.progress = Progress()
        self.calibration: Calibration | None = None  # the trust flags', from the last validation
        if state is not None:
            self._restore(state)
        elif cfg.train.init_from:
            self._start_from(Path(cfg.train.init_from))
        if self.main:
            dump_config(cfg, self.run_dir / runlog.CONFIG)
        self.train_model = _wrap_for_training(self.model, cfg.train, self.device, self.world)
        self.recompiles = Recompiles.install() if cfg.train.compile else None
        self.n_recompiles, self.first_step_t = 0, None
        self.valid = self._validation_sets() if self.main else None
        self.extra = self._extra_valid() if self.main else {}
        self.metric = cfg.train.best_metric if self.valid is not None else "train_loss"
        self.log = runlog.Logger(self.run_dir, self.main, cfg.train.max_steps or None, quiet)
        self.autocast = _autocast(cfg.train.precision, self.device)
        self.scaler = _grad_scaler(cfg.train.precision, self.device)
        self.interrupt = StopRequest()
        self.losses: list[tuple[int, float]] = []  # (step, loss per target token), every step
        self.pending: list[tuple[int, torch.Tensor, int]] = []  # on the device until read
        self.window = _Window()
        self.data_wait, self.trained_before = 0.0, self.progress.train_seconds
        self._announce(resumed=state is not None)

    # --- setting up -----------------------------------------------------------------------

    def _resume_state(self) -> checkpoint.RunState:
        last = checkpoint.latest(self.run_dir)
        if last is None:
            raise NMTError(f"--resume: no checkpoint in {self.run_dir}")
        state = checkpoint.read(last)
        if state.optimizer is None:
            raise NMTError(f"--resume: {last} is inference-only (no optimizer state)")
        if state.config.model != self.cfg.model:
            raise NMTError(f"--resume: the model config differs from the one in {last}")
        old, new = state.config.train, self.cfg.train
        changed = [k for k in RESUME_FIXED if getattr(old, k) != getattr(new, k)]
        if changed:
            what = ", ".join(f"train.{k} ({getattr(old, k)} -> {getattr(new, k)})" for k in changed)
            raise NMTError(
                f"--resume cannot change {what}: the optimizer, schedule and batch order in "
                f"{last} carry the run's values; give the values its {runlog.CONFIG} records, "
                "or start a new run"
            )
        if datadir.load_tokenizer(self.cfg.data.dir).vocabulary != state.tokenizer.vocabulary:
            raise NMTError(
                f"--resume: the vocabulary of data dir {self.cfg.data.dir} is not the one "
                f"{last} was trained with"
            )
        return state

    def _sampling(self, train_ds) -> Sampling | None:
        """Subword regularisation of the training batches, when `train.subword_alpha` asks."""
        cfg = self.cfg.train
        if not cfg.subword_alpha:
            return None
        if not datadir.has_text(train_ds):
            raise NMTError(
                f"train.subword_alpha needs the training text, which data dir {self.cfg.data.dir} "
                "does not keep (an older nmt wrote it): re-run nmt preprocess"
            )
        return Sampling(cfg.subword_alpha, cfg.subword_nbest, self.cfg.model.max_len)

    def _start_from(self, path: Path) -> None:
        """A trained model's weights (the moving average where it kept one) and, with
        train.reset_optimizer=false, its optimizer state under this run's settings; the step
        count and the schedule start afresh."""
        cfg = self.cfg.train
        state = checkpoint.read_start(
            path, self.cfg.model, self.tokenizer, optimizer=not cfg.reset_optimizer
        )
        self.model.load_state_dict(state.weights)
        if self.ema is not None:
            self.ema.load_state_dict(state.weights)
        if not cfg.reset_optimizer:
            self.optimizer.load_state_dict(state.optimizer)
            _restore_fused(self.optimizer, self.device)
            for group in self.optimizer.param_groups:  # the moments carry over, not the settings
                group.update(initial_lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
            schedule = lr_lambda(cfg, self.cfg.model.d_model)
            self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, schedule)

    def _validation_sets(self) -> dict[str, ValidData] | None:
        """The validation split by pair name ({"": split} for a bilingual data dir); None
        when the data dir has none."""
        names = list(datadir.pair_rows(self.meta, "valid")) or [None]
        sets = {name or "": validation_data(self.cfg, self.device, pair=name) for name in names}
        return None if None in sets.values() else sets

    def _extra_valid(self) -> dict[str, ValidData]:
        """train.extra_valid: each data dir's validation split, by a short name (its dir's)."""
        dirs = self.cfg.train.extra_valid
        names = [Path(d).name for d in dirs]
        names = names if len(set(names)) == len(names) else list(dirs)
        extra = {}
        for name, d in zip(names, dirs):
            if datadir.load_tokenizer(d).vocabulary != self.tokenizer.vocabulary:
                raise NMTError(
                    f"train.extra_valid: data dir {d} has another vocabulary than {self.cfg.data.dir}"
                    f"; encode it with theirs: nmt preprocess --spm-model {self.cfg.data.dir} ..."
                )
            valid = validation_data(self.cfg, self.device, d)
            if valid is None:
                raise NMTError(f"train.extra_valid: data dir {d} has no valid split")
            extra[name] = valid
        return extra

    def _tags(self) -> list[int] | None:
        """Each pair's target-language tag id, where the vocabulary has tags."""
        if not self.tokenizer.tags:
            return None
        return [self.tokenizer.tag_id(tgt) for _, tgt in datadir.pairs(self.meta)]

    def _check_fresh(self) -> None:
        if self.main and (self.run_dir / checkpoint.LAST).exists():
            raise NMTError(
                f"run dir {self.run_dir} already has a checkpoint: use --resume or another run dir"
            )

    def _build(self):
        torch.manual_seed(self.cfg.train.seed)
        random.seed(self.cfg.train.seed)
        tok = self.tokenizer
        model = build_model(self.cfg.model, tok.src_vocab_size, tok.tgt_vocab_size, tok.joint)
        model.to(self.device)
        optimizer = make_optimizer(model, self.cfg.train)
        schedule = lr_lambda(self.cfg.train, self.cfg.model.d_model)
        return model, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)

    def _restore(self, state: checkpoint.RunState) -> None:
        self.model.load_state_dict(state.model)
        if self.ema is not None:
            self.ema.load_state_dict(state.ema)
        self.optimizer.load_state_dict(state.optimizer)
        _restore_fused(self.optimizer, self.device)
        self.scheduler.load_state_dict(state.scheduler)
        self.progress = Progress(**state.progress)
        self.calibration = Calibration.from_dict(state.calibration)
        _set_rng_state(state.rng)

    def _announce(self, resumed: bool) -> None:
        """The first log lines: what is trained, and what was repaired or cleaned up."""
        n_params = sum(p.numel() for p in self.model.parameters())
        step = self.progress.step if resumed else 0
        pairs = len(self.batches.ds)
        self.log.start(self.cfg.model.backend, n_params, pairs, self.device, self.world, step)
        if not self.main:
            return
        for p in files.remove_stale_temps(self.run_dir):
            self.log.line(f"removed {p.name}, left by a process that no longer runs")
        if self.valid is None:
            self.log.line(
                f"no validation split in {self.cfg.data.dir}: {checkpoint.BEST} is chosen by the training "
                "loss since the previous validation (train_loss), and patience applies to it"
            )
        warning = self.tokenizer.sampling_warning() if self.cfg.train.subword_alpha else None
        if warning:
            self.log.line(f"warning: {warning}")
        if resumed:
            self._repair_best()
        elif self.cfg.train.init_from:
            what = (
                "optimizer state kept" if not self.cfg.train.reset_optimizer else "fresh optimizer"
            )
            self.log.line(f"initialised from {self.cfg.train.init_from} ({what})")

    def _repair_best(self) -> None:
        """A kill between writing last.pt and best.pt leaves best.pt one improvement behind:
        the checkpoint resumed from then holds the best weights itself."""
        p, best = self.progress, self.run_dir / checkpoint.BEST
        if p.best is None or p.best_step != p.step:
            return
        try:
            if checkpoint.read(best).progress.get("step") == p.best_step:
                return
        except NMTError:
            pass
        self.save(checkpoint.BEST, inference_only=True)
        self.log.line(
            f"{best.name} rewritten with the weights of step {p.step} (the recorded best)"
        )

    # --- the loop ---------------------------------------------------------------------------

    def loop(self) -> dict:
        """Train until a budget, patience or a signal stops the run; returns the summary."""
        stop = _budget_reason(self.cfg, self.progress)  # a resumed run may already be done
        if self.extra and not self.progress.extra_base:  # the forgetting guard's reference
            self.progress.extra_base = self.validate_extra(warn=False)
        self.run_t0 = time.time() - self.progress.train_seconds
        self.loop_t0 = time.time()
        self.model.train()
        with self.interrupt:
            while stop is None:
                stop = self.epoch()
        return self.finish(stop)

    def epoch(self) -> str | None:
        """The rest of the current epoch; a stop reason, or None when the epoch is done."""
        if self.cfg.train.max_epochs and self.progress.epoch >= self.cfg.train.max_epochs:
            return f"reached max_epochs={self.cfg.train.max_epochs}"
        for group, n_tokens in self.batch_groups():
            stop = self.after_step(*self.step(group, n_tokens), self.cfg.train.accum)
            if stop is not None:
                return stop
        self.progress.epoch += 1
        self.progress.batch = 0
        return None

    def batch_groups(self) -> Iterator[tuple[list[Batch], int]]:
        """The updates left in this epoch, each `accum` collated batches on the device (more
        where subword sampling split one) and their target tokens (counted on the host): the
        one place training batches are fetched."""
        accum = self.cfg.train.accum
        order = self.batches.epoch(self.progress.epoch)
        epoch = self.progress.epoch
        loader = Prefetcher(self.batches, order, self.progress.batch, self.device, epoch)
        try:
            for start in range(self.progress.batch, len(order) - accum + 1, accum):
                parts = [loader.take(i) for i in order[start : start + accum]]
                yield [b for batches, _ in parts for b in batches], sum(n for _, n in parts)
        finally:
            self.data_wait += loader.close()

    def step(self, group: list[Batch], n_tokens: int) -> tuple[torch.Tensor, int]:
        """One optimizer update over `accum` batches; returns (summed loss on the device,
        target tokens)."""
        loss_sum = backward_group(
            self.train_model,
            group,
            n_tokens,
            self.cfg.train.label_smoothing,
            self.autocast,
            self.scaler,
        )
        self._update()
        return loss_sum, n_tokens

    def _update(self) -> None:
        """Clip, step the optimizer and the schedule, clear the gradients."""
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        if self.cfg.train.clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.train.clip_norm)
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.model, self.progress.step)

    def after_step(self, loss_sum: torch.Tensor, n_tok: int, n_batches: int) -> str | None:
        """Count the update, log it, validate and save when due; a stop reason or None. The
        step's loss stays on the device until a log line, a validation or the end reads the
        buffered losses back at once."""
        p, cfg = self.progress, self.cfg.train
        p.batch += n_batches
        p.step += 1
        self.pending.append((p.step, loss_sum, n_tok))
        if self.recompiles is not None:
            self.log_compile()
        if p.step % cfg.log_every == 0 or p.step == 1:
            self.log_train()
        p.train_seconds = time.time() - self.run_t0
        if self.world > 1 and not _sync_point(p.step, cfg):
            return None  # ranks agree on stopping at sync points only: no all-reduce per step
        stop = _budget_reason(self.cfg, p)
        if p.step % cfg.valid_every == 0 or stop:
            self.read_losses()  # waits for the step's kernels: training time, not validation's
            t0 = time.time()
            patience = self.validate_and_save()
            self.run_t0 += time.time() - t0  # validation time is not training time
            self.window.t0 += time.time() - t0
            stop = stop or patience
        if self.interrupt.requested and not stop:
            stop = "interrupted"
        if _any_rank(stop is not None, self.world):
            stop = stop or "stopped on another rank"
        return stop

    def log_compile(self) -> None:
        """With train.compile: the time to this process's first step, and each recompile with
        the guard that failed."""
        if self.first_step_t is None:
            self.first_step_t = time.time() - self.loop_t0
            self.log.line(f"compile: first step after {self.first_step_t:.1f}s")
        for line in self.recompiles.take():
            self.n_recompiles += 1
            self.log.line(f"compile: at step {self.progress.step}, {line}")

    def read_losses(self) -> None:
        """Read the buffered step losses back from the device (one sync) into the per-step
        list, the log window and the validation interval."""
        if not self.pending:
            return
        values = torch.stack([loss for _, loss, _ in self.pending]).tolist()
        p = self.progress
        for (step, _, n_tok), loss in zip(self.pending, values):
            self.losses.append((step, loss / max(n_tok, 1)))
            self.window.loss += loss
            self.window.tokens += n_tok
            p.since_valid_loss += loss
            p.since_valid_tokens += n_tok
        self.pending = []

    def log_train(self) -> None:
        self.read_losses()
        w, step = self.window, self.progress.step
        row = {
            "loss": w.loss / max(w.tokens, 1),
            "lr": self.scheduler.get_last_lr()[0],
            "tgt_tok_s": w.tokens * self.world / max(time.time() - w.t0, 1e-9),
        }
        self.log.train(step, self.progress.epoch + 1, row)
        self.window = _Window()

    # --- validation and checkpoints ---------------------------------------------------------

    def validate_and_save(self) -> str | None:
        """Validate, keep best/last checkpoints; a stop reason when patience has run out."""
        if not self.main:
            return None
        improved = self.track_best(self.validate())
        self.save_checkpoints(improved)
        patience = self.cfg.train.patience
        if patience and self.progress.bad_validations >= patience:
            return f"no improvement in {patience} validations"
        return None

    def validate(self) -> dict:
        self.read_losses()
        p = self.progress
        result = {}
        if self.metric == "train_loss" and p.since_valid_tokens:
            result["train_loss"] = p.since_valid_loss / p.since_valid_tokens
        p.since_valid_loss, p.since_valid_tokens = 0.0, 0
        if self.valid is not None:
            model = self.ema.model if self.ema is not None else self.model
            per_pair = {
                name: validation_scores(model, self.cfg, valid, self.tokenizer, self.device)
                for name, valid in self.valid.items()
            }
            lines = [r.pop("lines") for r in per_pair.values() if "lines" in r]
            if lines:  # the trust flags' thresholds, over every pair's lines
                ratios, logprobs = (sum((list(x[i]) for x in lines), []) for i in (0, 1))
                self.calibration = Calibration.from_validation(ratios, logprobs)
            result = _mean(list(per_pair.values()))
            if len(per_pair) > 1:  # a multilingual data dir: each pair, then their mean
                for name, r in per_pair.items():
                    self.log.extra_valid(p.step, name, r, p.train_seconds / 60)
        if result:
            self.log.valid(p.step, result, p.train_seconds / 60)
            p.history.append({"step": p.step, **result})
        self.validate_extra()
        return result

    def validate_extra(self, warn: bool = True) -> dict[str, float]:
        """Score the train.extra_valid splits and log them; warn where BLEU fell more than
        train.forget_warn below its value at step 0. Returns BLEU by name."""
        p, cfg, bleus = self.progress, self.cfg.train, {}
        model = self.ema.model if self.ema is not None else self.model
        for name, valid in self.extra.items():
            result = validation_scores(model, self.cfg, valid, self.tokenizer, self.device)
            result.pop("lines", None)
            self.log.extra_valid(p.step, name, result, p.train_seconds / 60)
            if "bleu" not in result:
                continue
            bleus[name] = result["bleu"]
            base = p.extra_base.get(name)
            if warn and base is not None and base - result["bleu"] > cfg.forget_warn:
                self.log.line(
                    f"warning: BLEU on {name} fell {base - result['bleu']:.2f} below its value "
                    f"at step 0 ({base:.2f} -> {result['bleu']:.2f}; train.forget_warn "
                    f"{cfg.forget_warn:g}): the model is forgetting it"
                )
        return bleus

    def track_best(self, result: dict) -> bool:
        """Update the best score and the patience count; True when this validation is the best."""
        p, value = self.progress, result.get(self.metric)
        if value is None:
            return False
        if p.best is None or (value > p.best if METRICS[self.metric] else value < p.best):
            p.best, p.best_step, p.bad_validations = value, p.step, 0
            return True
        p.bad_validations += 1
        return False

    def save_checkpoints(self, improved: bool) -> None:
        """step-N.pt, then last.pt, then best.pt: a kill at any point leaves a newest checkpoint
        whose recorded best best.pt holds (or that `_repair_best` restores on resume)."""
        step_path = self.save(checkpoint.step_name(self.progress.step))
        checkpoint.link(step_path, self.run_dir / checkpoint.LAST)
        if improved:
            self.save(checkpoint.BEST, inference_only=True)
        checkpoint.prune(self.run_dir, self.cfg.train.keep_last)

    def save(self, name: str, inference_only: bool = False) -> Path:
        """Write the run's state; best.pt is inference-only (what translate needs, a third of
        the size)."""
        self.read_losses()  # the progress saved counts every step's loss
        state = checkpoint.RunState(
            config=self.cfg,
            model=self.model.state_dict(),
            tokenizer=self.tokenizer,
            data=datadir.languages(self.meta),
            progress=dict(self.progress.__dict__),
            calibration=self.calibration.to_dict() if self.calibration else None,
            ema=self.ema.state_dict() if self.ema is not None else None,
        )
        if inference_only:
            state = state.inference_only()
        else:
            state.optimizer = self.optimizer.state_dict()
            state.scheduler = self.scheduler.state_dict()
            state.rng = _rng_state()
        checkpoint.save(state, self.run_dir / name)
        return self.run_dir / name

    def finish(self, stop: str) -> dict:
        """Save and report after a signal, or log the stop and write summary.json."""
        self.read_losses()
        p, log = self.progress, self.log
        if self.interrupt.requested:  # Ctrl-C / SIGTERM: save where we are, then say so
            name = signal.Signals(self.interrupt.signum).name
            what = "interrupted" if name == "SIGINT" else f"stopped by {name}"
            message = f"{what} at step {p.step}: saved {self.run_dir / checkpoint.LAST}"
            if self.main:
                self.save(checkpoint.LAST)
                log.line(message)
            log.close()
            raise Interrupted(message, 128 + self.interrupt.signum)
        log.line(f"stopped at step {p.step}: {stop}")
        wait_share = self.data_wait / max(p.train_seconds - self.trained_before, 1e-9)
        log.line(f"waited for data {self.data_wait:.2f}s, {100 * wait_share:.2f}% of training time")
        if self.cfg.train.compile:
            log.line(_compile_report(self.n_recompiles))
        if self.world > 1:
            log.line(
                f"ranks in sync: parameter checksum {_check_in_sync(self.model, self.world):.6e}"
            )
        log.close()
        summary = {
            "steps": p.step,
            "epochs": p.epoch,
            "best": p.best,
            "best_metric": self.metric,
            "train_seconds": p.train_seconds,
            "stop_reason": stop,
            "data_wait_share": wait_share,
            "losses": self.losses,
            "run_dir": str(self.run_dir),
        }
        if self.main:
            runlog.write_summary(self.run_dir, {k: v for k, v in summary.items() if k != "losses"})
        return summary | {"rank": self.rank}
