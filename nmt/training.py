"""`train()`: one loop for every backend over a data dir written by `nmt preprocess`.

A run's state lives in one `Trainer`: token-bucketed batches (`nmt.batching`), label-smoothed
cross-entropy accumulated over `train.accum` batches, Adam(W) with warmup schedules, clipping,
the moving average of the weights (`nmt.ema`), validation (`nmt.validation`), best/last
checkpoints with atomic writes, resume, Ctrl-C / SIGTERM and a lock on the run dir; mixed
precision (`nmt.precision`), `train.compile` (`nmt.compiling`) and DDP under `torchrun`
(`nmt.distributed`) are set up by their modules.
"""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch

from nmt import checkpoint, datadir, files, runlog
from nmt.batching import Batch, BatchPlan, Prefetcher, Sampling, TrainBatches
from nmt.compiling import Recompiles, compile_model, compile_report
from nmt.config import Config, dump_config
from nmt.distributed import (
    any_rank,
    check_in_sync,
    dist_info,
    init_distributed,
    pick_device,
    wrap_ddp,
)
from nmt.ema import EMA
from nmt.errors import Interrupted, NMTError
from nmt.flags import Calibration
from nmt.models.backends import build_model
from nmt.models.base import use_fast_cuda_kernels
from nmt.optim import METRICS, lr_lambda
from nmt.precision import autocast, grad_scaler, make_optimizer, restore_fused
from nmt.rng import rng_state, set_rng_state
from nmt.signals import StopRequest
from nmt.validation import Validator


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
# Budgets, batches


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


def _batch_plan(
    cfg: Config, meta: datadir.Meta, tokenizer, train_ds, rank: int, world: int
) -> BatchPlan:
    """How this process cuts its training batches: subword sampling where `train.subword_alpha`
    asks, each pair's target-language tag where the vocabulary has tags."""
    t, sampling = cfg.train, None
    if t.subword_alpha:
        if not datadir.has_text(train_ds):
            raise NMTError(
                f"train.subword_alpha needs the training text, which data dir {cfg.data.dir} "
                "does not keep (an older nmt wrote it): re-run nmt preprocess"
            )
        sampling = Sampling(t.subword_alpha, t.subword_nbest, cfg.model.max_len)
    tags = [tokenizer.tag_id(tgt) for _, tgt in datadir.pairs(meta)] if tokenizer.tags else None
    return BatchPlan(
        max_tokens=t.max_tokens,
        seed=t.seed,
        rank=rank,
        world=world,
        sampling=sampling,
        tokenizer=tokenizer,
        pair_temperature=t.pair_temperature,
        tags=tags,
        pair_weights=datadir.pair_weights(meta),
    )


# ---------------------------------------------------------------------------------------------
# The run


def train(cfg: Config, run_dir: Path, resume: bool = False, quiet: bool = False) -> dict:
    """Train a model as configured; returns a summary (steps, best score, paths, losses).

    The run dir is locked for the whole run: a second `nmt train` into it is refused."""
    run_dir = Path(run_dir)
    lock = files.DirLock(run_dir, "run dir") if dist_info()[0] == 0 else nullcontext()
    with lock:
        return Trainer(cfg, run_dir, resume, quiet).loop()


class Trainer:
    """One run's state (model, optimizer, scheduler, batches, progress, validator, logger).

    `loop` runs `step` over the batches of `batch_groups`, with `validate` and `save` when due."""

    def __init__(self, cfg: Config, run_dir: Path, resume: bool = False, quiet: bool = False):
        self.cfg, self.run_dir = cfg, Path(run_dir)
        self.device = pick_device(cfg.train.device)
        use_fast_cuda_kernels(self.device)
        self.rank, self.world = init_distributed(self.device)
        self.main = self.rank == 0
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        state = checkpoint.read_resume(self.run_dir, cfg) if resume else self._check_fresh()
        self.meta = datadir.read_meta(cfg.data.dir)
        self.tokenizer = datadir.load_tokenizer(cfg.data.dir)
        train_ds = datadir.load_encoded(cfg.data.dir, "train")
        plan = _batch_plan(cfg, self.meta, self.tokenizer, train_ds, self.rank, self.world)
        self.batches = TrainBatches(train_ds, plan)
        self.model, self.optimizer, self.scheduler = self._build()
        # the moving average of the weights (train.ema_decay): kept by the rank that validates
        decay = cfg.train.ema_decay
        self.ema = EMA(self.model, decay) if decay and self.main else None
        self.progress = Progress()
        if state is not None:
            self._restore(state)
        elif cfg.train.init_from:
            self._start_from(Path(cfg.train.init_from))
        if self.main:
            dump_config(cfg, self.run_dir / runlog.CONFIG)
        model = compile_model(self.model) if cfg.train.compile else self.model
        self.train_model = wrap_ddp(model, self.device, self.world)  # the module steps call
        self.recompiles = Recompiles.install() if cfg.train.compile else None
        self.n_recompiles, self.first_step_t = 0, None
        calibration = Calibration.from_dict(state.calibration) if state is not None else None
        self.validator = Validator(
            cfg, self.meta, self.tokenizer, self.device, self.main, calibration
        )
        self.log = runlog.Logger(self.run_dir, self.main, cfg.train.max_steps or None, quiet)
        self.autocast = autocast(cfg.train.precision, self.device)
        self.scaler = grad_scaler(cfg.train.precision, self.device)
        self.interrupt = StopRequest()
        self.losses: list[tuple[int, float]] = []  # (step, loss per target token), every step
        self.pending: list[tuple[int, torch.Tensor, int]] = []  # on the device until read
        self.window = _Window()
        self.data_wait, self.trained_before = 0.0, self.progress.train_seconds
        self._announce(resumed=state is not None)

    # --- setting up -----------------------------------------------------------------------

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
            restore_fused(self.optimizer, self.device)
            for group in self.optimizer.param_groups:  # the moments carry over, not the settings
                group.update(initial_lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
            schedule = lr_lambda(cfg, self.cfg.model.d_model)
            self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, schedule)

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
        restore_fused(self.optimizer, self.device)
        self.scheduler.load_state_dict(state.scheduler)
        self.progress = Progress(**state.progress)  # the calibration goes to the validator
        set_rng_state(state.rng)

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
        if self.validator.sets is None:
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
        p, v = self.progress, self.validator
        if v.extra and not p.extra_base:  # the forgetting guard's reference: BLEU at step 0
            p.extra_base = v.validate_extra(self.eval_model, p, self.log, warn=False)
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
        if any_rank(stop is not None, self.world):
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
        """The validator's result, with every step's loss read back first."""
        self.read_losses()
        return self.validator.validate(self.eval_model, self.progress, self.log)

    @property
    def eval_model(self):
        """The weights validation scores: the moving average where the run keeps one."""
        return self.ema.model if self.ema is not None else self.model

    def track_best(self, result: dict) -> bool:
        """Update the best score and the patience count; True when this validation is the best."""
        p, metric = self.progress, self.validator.metric
        value = result.get(metric)
        if value is None:
            return False
        if p.best is None or (value > p.best if METRICS[metric] else value < p.best):
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
        calibration = self.validator.calibration  # the trust flags', from the last validation
        state = checkpoint.RunState(
            config=self.cfg,
            model=self.model.state_dict(),
            tokenizer=self.tokenizer,
            data=datadir.languages(self.meta),
            progress=dict(self.progress.__dict__),
            calibration=calibration.to_dict() if calibration else None,
            ema=self.ema.state_dict() if self.ema is not None else None,
        )
        if inference_only:
            state = state.inference_only()
        else:
            state.optimizer = self.optimizer.state_dict()
            state.scheduler = self.scheduler.state_dict()
            state.rng = rng_state()
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
            log.line(compile_report(self.n_recompiles))
        if self.world > 1:
            log.line(
                f"ranks in sync: parameter checksum {check_in_sync(self.model, self.world):.6e}"
            )
        log.close()
        summary = {
            "steps": p.step,
            "epochs": p.epoch,
            "best": p.best,
            "best_metric": self.validator.metric,
            "train_seconds": p.train_seconds,
            "stop_reason": stop,
            "data_wait_share": wait_share,
            "losses": self.losses,
            "run_dir": str(self.run_dir),
        }
        if self.main:
            runlog.write_summary(self.run_dir, {k: v for k, v in summary.items() if k != "losses"})
        return summary | {"rank": self.rank}
