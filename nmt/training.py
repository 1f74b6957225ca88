"""`train()`: one loop for every backend over a data dir written by `nmt preprocess`.

Token-bucketed batches, label-smoothed cross-entropy, Adam(W) with warmup schedules, clipping,
accumulation, mixed precision on GPU, validation (loss, perplexity, greedy sacreBLEU), best/last
checkpoints with atomic writes, resume, Ctrl-C, and DDP under `torchrun`.
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from nmt import checkpoint
from nmt.batching import TrainBatches, collate
from nmt.config import Config, dump_config, from_dict, to_dict
from nmt.data import load_encoded, load_tokenizer, read_meta
from nmt.errors import NMTError
from nmt.models import build_model
from nmt.search import SearchOptions
from nmt.tokenizer import PAD_ID
from nmt.translate import decode_corpus


@dataclass
class Progress:
    """Where the run is: enough to continue it exactly."""

    step: int = 0
    epoch: int = 0
    batch: int = 0  # batches of `epoch` already consumed
    best: float | None = None
    bad_validations: int = 0
    train_seconds: float = 0.0
    history: list = field(default_factory=list)  # validation results


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


# ---------------------------------------------------------------------------------------------
# Optimisation


def lr_lambda(cfg, d_model: int):
    """Multiplier of the base lr at each step (inverse-sqrt and noam warm up linearly)."""
    w = max(1, cfg.warmup)

    def inverse_sqrt(step: int) -> float:
        step = max(step, 1)
        return min(step / w, math.sqrt(w / step))

    def noam(step: int) -> float:
        step = max(step, 1)
        return d_model**-0.5 * min(step**-0.5, step * w**-1.5)

    def constant(step: int) -> float:
        return min(1.0, max(step, 1) / w) if cfg.warmup else 1.0

    return {"inverse_sqrt": inverse_sqrt, "noam": noam, "constant": constant}[cfg.schedule]


def make_optimizer(model, cfg):
    Opt = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    params = list(model.parameters())
    # fused multi-tensor kernels instead of a dozen small ops per parameter (CPU and CUDA)
    fused = all(p.device.type in ("cpu", "cuda") for p in params)
    return Opt(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay, fused=fused)


def _restore_fused(optimizer, device) -> None:
    """`load_state_dict` brings back the saved groups' `fused` flag; keep this run's choice."""
    fused = optimizer.defaults.get("fused")
    for group in optimizer.param_groups:
        group["fused"] = fused
    if fused:  # fused kernels keep the step count as a float32 tensor beside the parameters
        for st in optimizer.state.values():
            if "step" in st:
                st["step"] = st["step"].to(device, torch.float32)


# ---------------------------------------------------------------------------------------------
# Checkpoint state


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1]), "numpy": None}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(state["python"]), None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _checkpoint_state(cfg, model, tokenizer, meta, optimizer, scheduler, progress) -> dict:
    tgt = None if tokenizer.joint else checkpoint.bytes_to_tensor(tokenizer.tgt_proto)
    return {
        "config": to_dict(cfg),
        "model": model.state_dict(),
        "tokenizer": {"src": checkpoint.bytes_to_tensor(tokenizer.src_proto), "tgt": tgt},
        "data": {k: meta[k] for k in ("src_lang", "tgt_lang", "joint_vocab")},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": _rng_state(),
        "progress": {k: v for k, v in progress.__dict__.items()},
    }


# ---------------------------------------------------------------------------------------------
# Validation


@torch.no_grad()
def validate(
    model, cfg: Config, valid_batches, valid_src, valid_refs, tokenizer, device, limit: int
):
    """Validation loss/perplexity (no smoothing) and greedy sacreBLEU."""
    import sacrebleu

    model.eval()
    total, n_tok = 0.0, 0
    for src, tgt_in, tgt_out in valid_batches:
        total += model(src, tgt_in, tgt_out).item()  # summed cross-entropy, no smoothing
        n_tok += int((tgt_out != PAD_ID).sum())
    result = {"loss": total / max(n_tok, 1)}
    result["ppl"] = math.exp(min(result["loss"], 50))
    if cfg.train.valid_bleu and valid_src:
        n = limit or len(valid_src)
        opts = SearchOptions(
            beam=cfg.train.valid_beam, alpha=0.6 if cfg.train.valid_beam > 1 else 0.0
        )
        hyps = decode_corpus(model, valid_src[:n], opts, cfg.model.max_len, 4000, device)
        texts = [tokenizer.decode_tgt(h[0].tokens) for h in hyps]
        result["bleu"] = sacrebleu.corpus_bleu(texts, [valid_refs[:n]]).score
    model.train()
    return result


def _is_better(metric: str, value: float, best: float | None) -> bool:
    if best is None:
        return True
    return value > best if metric == "bleu" else value < best


# ---------------------------------------------------------------------------------------------
# The loop


class Logger:
    """Plain-text log in the run dir, TensorBoard scalars, and a progress bar on stderr."""

    def __init__(self, run_dir: Path, enabled: bool, total: int | None, quiet: bool):
        self.enabled = enabled
        self.file = open(run_dir / "train.log", "a", encoding="utf-8") if enabled else None
        self.tb = None
        self.bar = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(run_dir / "tensorboard"))
            except ImportError:
                pass
            if not quiet:
                from tqdm import tqdm

                self.bar = tqdm(total=total, unit="step", dynamic_ncols=True, leave=False)

    def line(self, msg: str) -> None:
        if not self.enabled:
            return
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        self.file.write(f"{stamp} {msg}\n")
        self.file.flush()
        if self.bar is not None:
            self.bar.write(msg, file=None)
        else:
            print(msg, flush=True)

    def scalars(self, step: int, values: dict, prefix: str) -> None:
        if self.tb is not None:
            for k, v in values.items():
                self.tb.add_scalar(f"{prefix}/{k}", v, step)

    def tick(self, step: int, postfix: dict) -> None:
        if self.bar is not None:
            self.bar.n = step
            self.bar.set_postfix(postfix, refresh=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.tb is not None:
            self.tb.close()
        if self.file is not None:
            self.file.close()


def _pick_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise NMTError("train.device=cuda but no CUDA device is available")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and _dist_info()[1] > 1:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device(name)


def train(cfg: Config, run_dir: Path, resume: bool = False, quiet: bool = False) -> dict:
    """Train a model as configured; returns a summary (steps, best score, paths, losses)."""
    run_dir = Path(run_dir)
    device = _pick_device(cfg.train.device)
    rank, world = _init_distributed(device)
    main = rank == 0
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)

    state = None
    if resume:
        last = checkpoint.latest(run_dir)
        if last is None:
            raise NMTError(f"--resume: no checkpoint in {run_dir}")
        state = checkpoint.load(last)
        saved = from_dict(Config, state["config"])
        if to_dict(saved.model) != to_dict(cfg.model):
            raise NMTError(f"--resume: the model config differs from the one in {last}")
    elif main and (run_dir / "last.pt").exists():
        raise NMTError(
            f"run dir {run_dir} already has a checkpoint: use --resume or another run dir"
        )

    meta = read_meta(cfg.data.dir)
    tokenizer = load_tokenizer(cfg.data.dir)
    train_ds = load_encoded(cfg.data.dir, "train")
    batches = TrainBatches(train_ds, cfg.train.max_tokens, cfg.train.seed, rank, world)

    torch.manual_seed(cfg.train.seed)
    random.seed(cfg.train.seed)
    model = build_model(
        cfg.model, tokenizer.src_vocab_size, tokenizer.tgt_vocab_size, tokenizer.joint
    )
    model.to(device)
    optimizer = make_optimizer(model, cfg.train)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda(cfg.train, cfg.model.d_model)
    )
    progress = Progress()
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        _restore_fused(optimizer, device)
        scheduler.load_state_dict(state["scheduler"])
        progress = Progress(**state["progress"])
        _set_rng_state(state["rng"])

    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        dump_config(cfg, run_dir / "config.yaml")
    train_model = model
    if cfg.train.compile:
        train_model = torch.compile(model)
    if world > 1:
        ids = [device.index] if device.type == "cuda" else None
        train_model = torch.nn.parallel.DistributedDataParallel(train_model, device_ids=ids)

    valid = _validation_data(cfg, device) if main else None
    total = cfg.train.max_steps or None
    log = Logger(run_dir, main, total, quiet)
    n_params = sum(p.numel() for p in model.parameters())
    log.line(
        f"{cfg.model.backend}: {n_params / 1e6:.2f}M parameters, {len(train_ds)} training pairs, "
        f"device {device}, world size {world}"
        + (f", resuming at step {progress.step}" if state else "")
    )

    amp = _autocast(cfg.train.precision, device)
    scaler = (
        torch.amp.GradScaler("cuda")
        if cfg.train.precision == "fp16" and device.type == "cuda"
        else None
    )
    losses: list[tuple[int, float]] = []
    window_loss, window_tok, window_t0 = 0.0, 0, time.time()
    run_t0 = time.time() - progress.train_seconds
    stop_reason = _budget_reason(cfg, progress)  # a resumed run may already be done

    def save(tag: str, inference_only: bool = False) -> Path:
        st = _checkpoint_state(cfg, model, tokenizer, meta, optimizer, scheduler, progress)
        if inference_only:  # best.pt: what translate/evaluate need, a third of the size
            st = {k: v for k, v in st.items() if k not in ("optimizer", "scheduler", "rng")}
        path = run_dir / tag
        checkpoint.save(st, path)
        return path

    model.train()
    interrupt = _Interrupt()
    with interrupt:
        while stop_reason is None:
            if cfg.train.max_epochs and progress.epoch >= cfg.train.max_epochs:
                stop_reason = f"reached max_epochs={cfg.train.max_epochs}"
                break
            epoch_batches = batches.epoch(progress.epoch)
            while progress.batch + cfg.train.accum <= len(epoch_batches):
                group = epoch_batches[progress.batch : progress.batch + cfg.train.accum]
                loss_sum, n_tok = _train_step(
                    train_model,
                    batches,
                    group,
                    optimizer,
                    scheduler,
                    cfg,
                    device,
                    amp,
                    scaler,
                    world,
                )
                progress.batch += len(group)
                progress.step += 1
                losses.append((progress.step, loss_sum / max(n_tok, 1)))
                window_loss += loss_sum
                window_tok += n_tok
                if progress.step % cfg.train.log_every == 0 or progress.step == 1:
                    dt = time.time() - window_t0
                    row = {
                        "loss": window_loss / max(window_tok, 1),
                        "lr": scheduler.get_last_lr()[0],
                        "tgt_tok_s": window_tok * world / max(dt, 1e-9),
                    }
                    log.line(
                        f"step {progress.step} epoch {progress.epoch + 1} loss {row['loss']:.3f} "
                        f"lr {row['lr']:.2e} {row['tgt_tok_s']:.0f} tgt tok/s"
                    )
                    log.scalars(progress.step, row, "train")
                    log.tick(
                        progress.step,
                        {
                            "loss": f"{row['loss']:.3f}",
                            "lr": f"{row['lr']:.1e}",
                            "tok/s": f"{row['tgt_tok_s']:.0f}",
                        },
                    )
                    window_loss, window_tok, window_t0 = 0.0, 0, time.time()
                progress.train_seconds = time.time() - run_t0
                stop_reason = _budget_reason(cfg, progress)
                if progress.step % cfg.train.valid_every == 0 or stop_reason:
                    t_valid = time.time()
                    patience_hit = _validate_and_save(
                        cfg, model, valid, tokenizer, device, progress, log, save, main
                    )
                    run_t0 += time.time() - t_valid  # validation time is not training time
                    window_t0 += time.time() - t_valid
                    if patience_hit and not stop_reason:
                        stop_reason = f"no improvement in {cfg.train.patience} validations"
                if interrupt.requested and not stop_reason:
                    stop_reason = "interrupted"
                if _any_rank(stop_reason is not None, world):
                    stop_reason = stop_reason or "stopped on another rank"
                    break
            else:
                progress.epoch += 1
                progress.batch = 0
    if interrupt.requested:  # Ctrl-C: save where we are, then report the interruption
        if main:
            save("last.pt")
            log.line(f"interrupted at step {progress.step}: saved {run_dir / 'last.pt'}")
        log.close()
        raise KeyboardInterrupt
    log.line(f"stopped at step {progress.step}: {stop_reason}")
    if world > 1:
        log.line(f"ranks in sync: parameter checksum {_check_in_sync(model, world):.6e}")
    log.close()
    summary = {
        "steps": progress.step,
        "epochs": progress.epoch,
        "best": progress.best,
        "best_metric": cfg.train.best_metric,
        "train_seconds": progress.train_seconds,
        "stop_reason": stop_reason,
        "losses": losses,
        "run_dir": str(run_dir),
    }
    if main:
        (run_dir / "summary.json").write_text(
            json.dumps({k: v for k, v in summary.items() if k != "losses"}, indent=2)
        )
    return summary


def _check_in_sync(model, world: int) -> float:
    """All ranks must hold the same weights after training; returns the shared checksum."""
    local = torch.stack([p.detach().double().sum() for p in model.parameters()]).sum().cpu()
    gathered = [torch.zeros_like(local) for _ in range(world)]
    torch.distributed.all_gather(gathered, local)
    if any(abs(g.item() - local.item()) > 1e-6 * max(1.0, abs(local.item())) for g in gathered):
        raise NMTError(f"DDP ranks diverged: parameter checksums {[g.item() for g in gathered]}")
    return local.item()


class _Interrupt:
    """Ctrl-C asks the loop to stop after the current step (and save); a second one aborts."""

    def __init__(self):
        self.requested = False
        self.previous = None

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


def _autocast(precision: str, device: torch.device):
    if precision == "fp32" or device.type != "cuda":
        return nullcontext
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return lambda: torch.autocast("cuda", dtype=dtype)


def _train_step(model, batches, group, optimizer, scheduler, cfg, device, amp, scaler, world):
    """One optimizer update over `accum` batches; returns (summed loss, target tokens)."""
    loss_total, tok_total = 0.0, 0
    for k, idx in enumerate(group):
        src, tgt_in, tgt_out = batches.collate(idx, device)
        n_tok = int((tgt_out != PAD_ID).sum())
        sync = k == len(group) - 1 or world == 1
        ctx = model.no_sync() if not sync and hasattr(model, "no_sync") else nullcontext()
        with ctx, amp():
            loss = model(src, tgt_in, tgt_out, cfg.train.label_smoothing)  # summed over tokens
        # normalise by the tokens of the whole update (approximated per batch times accum)
        scaled = loss / max(n_tok * len(group), 1)
        (scaler.scale(scaled) if scaler else scaled).backward()
        loss_total += loss.item()
        tok_total += n_tok
    if scaler:
        scaler.unscale_(optimizer)
    if cfg.train.clip_norm > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.clip_norm)
    if scaler:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    scheduler.step()
    return loss_total, tok_total


def _budget_reason(cfg: Config, progress: Progress) -> str | None:
    if cfg.train.max_steps and progress.step >= cfg.train.max_steps:
        return f"reached max_steps={cfg.train.max_steps}"
    if cfg.train.max_time and progress.train_seconds >= cfg.train.max_time * 60:
        return f"reached max_time={cfg.train.max_time} min"
    return None


def _validation_data(cfg: Config, device):
    """Validation batches (teacher-forced) plus source ids and raw references for BLEU."""
    try:
        ds = load_encoded(cfg.data.dir, "valid")
    except NMTError:
        return None
    rows = ds[:]
    keep = [i for i, n in enumerate(rows["src_len"]) if 1 < n <= cfg.model.max_len]
    keep = [i for i in keep if rows["tgt_len"][i] <= cfg.model.max_len]
    from nmt.batching import bucket_batches

    lens = np.asarray(rows["src_len"])[keep], np.asarray(rows["tgt_len"])[keep]
    batches = [
        collate(
            [rows["src_ids"][keep[j]] for j in b], [rows["tgt_ids"][keep[j]] for j in b], device
        )
        for b in bucket_batches(*lens, cfg.train.max_tokens)
    ]
    refs_path = Path(cfg.data.dir) / "valid.tgt"
    refs = refs_path.read_text(encoding="utf-8").split("\n")[: len(rows["src_len"])]
    src = [rows["src_ids"][i][: cfg.model.max_len] for i in keep]
    return batches, src, [refs[i] for i in keep]


def _validate_and_save(cfg, model, valid, tokenizer, device, progress, log, save, main) -> bool:
    """Validate, keep best/last checkpoints; True when patience has run out."""
    if not main:
        return False
    result = {}
    if valid is not None:
        batches, src, refs = valid
        result = validate(
            model, cfg, batches, src, refs, tokenizer, device, cfg.train.valid_max_sentences
        )
        log.scalars(progress.step, result, "valid")
        log.line(
            f"validation at step {progress.step}: "
            + " ".join(f"{k} {v:.3f}" if k != "ppl" else f"{k} {v:.2f}" for k, v in result.items())
        )
        progress.history.append({"step": progress.step, **result})
    metric = cfg.train.best_metric
    improved = metric in result and _is_better(metric, result[metric], progress.best)
    if improved:
        progress.best = result[metric]
        progress.bad_validations = 0
    elif metric in result:
        progress.bad_validations += 1
    step_path = save(f"step-{progress.step}.pt")
    checkpoint.link(step_path, step_path.with_name("last.pt"))
    checkpoint.prune(step_path.parent, cfg.train.keep_last)
    if improved or valid is None:
        save("best.pt", inference_only=True)
    return bool(cfg.train.patience and progress.bad_validations >= cfg.train.patience)
