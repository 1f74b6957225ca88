"""Where a Transformer-base training step spends its time on a GPU, variant by variant.

    python bench/gpu_diag.py [--device cuda|cpu] [--small] [--out FILE] [--baseline DIR]
                             [--variants probe,V0,...] [overrides...]

No preprocessing: synthetic token-bucketed batches (the real `bucket_batches`, lengths drawn
around the corpus's ~27 tokens), the real model, fused loss, optimizer, clipping and schedule
(`nmt.training.backward_group`, `nmt.precision.make_optimizer`, `lr_lambda`). First an SDPA probe (host ms per
call for new and repeated shapes, cuDNN attention on and off), then each variant in its own
process:

    V0  the step with cuDNN's SDPA allowed          (from --baseline DIR: an older nmt/)
    V1  the step with cuDNN's SDPA off              (from --baseline DIR)
    V2  the step without host syncs, cuDNN off      (this checkout)
    V3  V2 on one repeated batch: the cost of changing shapes
    V4  V2 with train.compile's regional compile    (capped by --compile-cap seconds)
    V5  V2 with S and T padded up to multiples of 8 (tensor-core-friendly shapes, more padding)

For each: target tok/s, ms per step, MFU (bench/gpu_bench.py's formula), the ms the step's Python
call takes (where the step never waits, the host's own work: queueing kernels; where it syncs,
that wait too) and the host CPU ms per step, against kernel ms per step (GPU busy %), kernel
launches and host-device syncs per step (`torch.cuda.set_sync_debug_mode`; and Python-level
read-backs seen by `nmt.syncs`), the attention kernels that ran, the top 15 kernels, peak
memory; V4 also the time to the first step and each recompile with its guard. `--out` is a JSON
rewritten after every variant, so a run cut short keeps what it measured. On a CPU the fields a
CPU cannot measure are null (a dry run: `--device cpu --small`, a minute or two). Each variant is
cut off after --variant-timeout seconds (V4: --compile-cap), keeping what it measured; where one
command may run 10 minutes, run `--variants probe,V0,V1,V2,V3` and `--variants V4,V5` apart.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "recipes/multi30k-de-en/transformer-base.yaml"
SMALL = [
    "model.d_model=64",
    "model.n_heads=4",
    "model.d_ff=128",
    "model.encoder_layers=2",
    "model.decoder_layers=2",
    "train.max_tokens=2000",
]
VARIANTS = {
    "V0": {"about": "cuDNN SDPA allowed", "cudnn": True, "baseline": True},
    "V1": {"about": "cuDNN SDPA off", "cudnn": False, "baseline": True},
    "V2": {"about": "no host syncs, cuDNN off", "cudnn": False},
    "V3": {"about": "V2 on one repeated batch", "cudnn": False, "repeat": True},
    "V4": {"about": "V2 compiled per layer", "cudnn": False, "compile": True},
    "V5": {"about": "V2, lengths padded to multiples of 8", "cudnn": False, "pad8": True},
}
VOCAB = 10000
ATTENTION_WORDS = ("flash", "fmha", "attention", "sdpa")


# ---------------------------------------------------------------------------------------------
# the parent: probe, then one process per variant, the JSON rewritten after each


def main() -> None:
    a = parse_args()
    if a.worker:
        return worker(a)
    if a.baseline and not (Path(a.baseline) / "nmt" / "__init__.py").is_file():
        sys.exit(
            f"gpu_diag: --baseline {a.baseline} holds no nmt/ package (bench/gpu.sh --prepare)"
        )
    out = Path(a.out)
    report = {"meta": meta(a), "sdpa_probe": None, "variants": {}}
    write(out, report)
    if not a.variants or "probe" in a.variants.split(","):
        report["sdpa_probe"] = run_child(a, "probe", a.variant_timeout)
        write(out, report)
    for name, spec in VARIANTS.items():
        if a.variants and name not in a.variants.split(","):
            continue
        cap = a.compile_cap if spec.get("compile") else a.variant_timeout
        result = run_child(a, name, cap)
        report["variants"][name] = {"about": spec["about"], **result}
        write(out, report)
        print(f"{name}: {summary_line(report['variants'][name])}", flush=True)
    print(f"wrote {out}")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--small", action="store_true", help="a small model and batch (CPU dry run)")
    p.add_argument("--out", default="bench/results/gpu/diag.json")
    p.add_argument("--baseline", help="a dir holding an older nmt/ for V0 and V1")
    p.add_argument("--precision", default="bf16", choices=["bf16", "fp32"])
    p.add_argument("--warmup", type=int, default=8)
    p.add_argument("--steps", type=int, default=30, help="timed steps per variant")
    p.add_argument("--profile-steps", type=int, default=6)
    p.add_argument("--variants", help="a comma-separated subset, e.g. probe,V0,V1 (default: all)")
    p.add_argument("--variant-timeout", type=int, default=75, help="seconds per variant")
    p.add_argument("--compile-cap", type=int, default=180, help="seconds for V4")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--partial", help=argparse.SUPPRESS)
    p.add_argument("overrides", nargs="*", help="config overrides, key=value")
    return p.parse_args()


def meta(a) -> dict:
    import torch

    gpu = torch.cuda.get_device_name(0) if a.device == "cuda" else None
    cudnn = torch.backends.cudnn.version() if a.device == "cuda" else None
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "device": a.device,
        "gpu": gpu,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": cudnn,
        "precision": a.precision,
        "config": str(CONFIG.relative_to(ROOT)),
        "overrides": (SMALL if a.small else []) + a.overrides,
        "baseline": a.baseline,
        "mfu_formula": "MFU = target tok/s x FLOPs per target token / peak bf16 FLOP/s "
        "(bench/gpu_bench.py: 6 x (P_enc S/T + P_dec + d V) + 12 d (L_enc S^2/T + L_dec (T + S)))",
    }


def run_child(a, name: str, timeout: int) -> dict:
    """One variant (or the probe) in its own process; what it wrote so far if it is cut off."""
    partial = Path(a.out).with_suffix(f".{name}.part.json")
    partial.unlink(missing_ok=True)
    spec = VARIANTS.get(name, {})
    env = dict(os.environ)
    if spec.get("baseline") and a.baseline:
        env["PYTHONPATH"] = os.pathsep.join([str(Path(a.baseline).resolve()), str(ROOT)])
        env["NMT_DIAG_BASELINE"] = str(Path(a.baseline).resolve())
    else:
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    cmd = [sys.executable, __file__, "--worker", name, "--partial", str(partial)]
    cmd += [f"--{k.replace('_', '-')}={v}" for k, v in worker_options(a).items()]
    cmd += (["--small"] if a.small else []) + a.overrides
    t0 = time.time()
    try:
        proc = subprocess.run(cmd, env=env, timeout=timeout, capture_output=True, text=True)
        error = None if proc.returncode == 0 else (proc.stderr.strip().splitlines() or ["?"])[-1]
    except subprocess.TimeoutExpired:
        error = f"cut off after {timeout} s"
    try:
        result = json.loads(partial.read_text()) if partial.exists() else {}
    except ValueError:  # cut off while writing it
        result = {}
    partial.unlink(missing_ok=True)
    result["process_s"] = round(time.time() - t0, 1)
    if error:
        result["error"] = error
    return result


def has_module(name: str) -> bool:
    """Whether the nmt/ this process imported (this checkout's or --baseline's) has `nmt.<name>`:
    asked of its files, since an editable install's finder imports a module missing from the
    baseline from this checkout instead of failing."""
    import nmt

    return (Path(nmt.__file__).parent / f"{name}.py").is_file()


def worker_options(a) -> dict:
    keys = ("device", "precision", "warmup", "steps", "profile_steps", "compile_cap")
    return {k: getattr(a, k) for k in keys}


def write(path: Path, report: dict) -> None:
    from nmt.files import write_text  # atomic: a process cut off mid-write leaves the old file

    write_text(path, json.dumps(report, indent=1))


def summary_line(v: dict) -> str:
    if "tgt_tok_s" not in v:
        return v.get("error", "no result")
    mfu = f", MFU {100 * v['mfu']:.1f} %" if v.get("mfu") is not None else ""
    busy = f", GPU busy {v['gpu_busy_pct']} %" if v.get("gpu_busy_pct") is not None else ""
    return f"{v['tgt_tok_s']} tgt tok/s, {v['ms_per_step']} ms/step{mfu}{busy}"


# ---------------------------------------------------------------------------------------------
# a worker: one variant's measurements, written to --partial after each phase


def worker(a) -> None:
    import torch

    torch.manual_seed(0)
    out: dict = {}
    save = lambda: write(Path(a.partial), out)  # noqa: E731
    if a.worker == "probe":
        return sdpa_probe(torch.device(a.device), out, save)
    spec = VARIANTS[a.worker]
    run = Setup(a, spec)
    out.update(run.describe())
    save()
    baseline = os.environ.get("NMT_DIAG_BASELINE")
    if baseline and not out["nmt"].startswith(baseline):
        raise SystemExit(f"{a.worker} imported {out['nmt']}, not the baseline in {baseline}")
    if spec.get("compile"):
        out.update(run.compile_first_step())
        save()
    run.steps(a.warmup)
    out.update(run.timed(a.steps))
    save()
    out.update(run.syncs(min(5, a.steps)))
    save()
    out.update(run.profiled(a.profile_steps))
    out["peak_memory_gb"] = run.peak_memory()
    save()


class Setup:
    """The model, optimizer, schedule and synthetic batches of one variant, and its step."""

    def __init__(self, a, spec: dict):
        import torch

        from nmt.config import load_config
        from nmt.models.backends import build_model
        from nmt.models.base import use_fast_cuda_kernels
        from nmt.optim import lr_lambda

        if has_module("precision"):
            from nmt.precision import autocast, make_optimizer
        else:  # an nmt from before nmt.precision (--baseline): they were nmt.training's
            from nmt.training import _autocast as autocast
            from nmt.training import make_optimizer

        self.a, self.spec = a, spec
        self.device = torch.device(a.device)
        overrides = [f"train.precision={a.precision}", f"train.device={a.device}"]
        overrides += ["train.compile=false", "data.dir=unused"]
        self.cfg = load_config(str(CONFIG), overrides + (SMALL if a.small else []) + a.overrides)
        use_fast_cuda_kernels(self.device)
        if self.device.type == "cuda":
            torch.backends.cuda.enable_cudnn_sdp(spec["cudnn"])
        self.model = build_model(self.cfg.model, VOCAB, VOCAB, True).to(self.device).train()
        self.optimizer = make_optimizer(self.model, self.cfg.train)
        schedule = lr_lambda(self.cfg.train, self.cfg.model.d_model)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, schedule)
        self.autocast = autocast(a.precision, self.device)
        self.batches, self.lengths = synthetic_batches(self.cfg.train.max_tokens)
        if spec.get("pad8"):
            self.batches = [(pin(pad_to_multiple(b, 8)), n) for b, n in self.batches]
        if spec.get("repeat"):  # the batch of median size, every step
            median = sorted(self.batches, key=lambda b: b[1])[len(self.batches) // 2]
            self.batches = [median] * len(self.batches)
        self.i = 0
        self.compiled = False

    def describe(self) -> dict:
        import nmt

        src, tgt = self.lengths
        fpt = flops_per_token(self.cfg, src, tgt)
        self.fpt = fpt
        return {
            "nmt": str(Path(nmt.__file__).parent),
            "batches": len(self.batches),
            "max_tokens": self.cfg.train.max_tokens,
            "mean_src_len": round(src, 2),
            "mean_tgt_len": round(tgt, 2),
            "flops_per_tgt_token": fpt,
        }

    def step(self) -> int:
        """One update as `Trainer.step` does it; returns its target tokens."""
        import torch

        from nmt.training import backward_group

        cpu_batch, n_tokens = self.batches[self.i % len(self.batches)]
        self.i += 1
        batch = to_device(cpu_batch, self.device)
        loss = backward_group(self.model, [batch], n_tokens, 0.1, self.autocast)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.train.clip_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        if self.i % self.cfg.train.log_every == 0:
            float(loss)  # the log step's read-back (older code read every step)
        return n_tokens

    def steps(self, n: int) -> int:
        tokens = sum(self.step() for _ in range(n))
        self.sync()
        return tokens

    def sync(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def timed(self, n: int) -> dict:
        """Steps per second, tokens per second, MFU and the host's share of each step."""
        import torch

        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        host, tokens = 0.0, 0
        t0, cpu0 = time.perf_counter(), time.thread_time()
        for _ in range(n):
            h0 = time.perf_counter()
            tokens += self.step()
            host += time.perf_counter() - h0
        cpu = time.thread_time() - cpu0
        self.sync()
        wall = time.perf_counter() - t0
        tok_s = tokens / wall
        peak = peak_flops(self.device)
        return {
            "steps": n,
            "tgt_tok_s": round(tok_s),
            "ms_per_step": round(1000 * wall / n, 2),
            "call_ms_per_step": round(1000 * host / n, 2),
            "host_cpu_ms_per_step": round(1000 * cpu / n, 2),
            "mfu": round(tok_s * self.fpt / peak, 4) if peak else None,
        }

    def syncs(self, n: int) -> dict:
        """Host-device syncs per step: CUDA's own count, and Python-level read-backs."""
        import torch

        cuda = None
        if self.device.type == "cuda":
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                torch.cuda.set_sync_debug_mode("warn")
                try:
                    self.steps(n)
                finally:
                    torch.cuda.set_sync_debug_mode(0)
            found = [str(w.message) for w in caught if "synchroniz" in str(w.message)]
            cuda = round(len(found) / n, 2)
        try:
            from nmt.syncs import HostSyncs  # absent from older checkouts
        except ImportError:
            return {"syncs_per_step": cuda, "python_read_backs_per_step": None}
        if self.spec.get("compile"):  # a new torch function mode would retrace every layer
            return {"syncs_per_step": cuda, "python_read_backs_per_step": None}
        with HostSyncs() as rec:
            for _ in range(n):
                self.step()
        self.sync()
        kinds = sorted({f.split(" (")[0] for f in rec.found})
        return {
            "syncs_per_step": cuda,
            "python_read_backs_per_step": round(len(rec.found) / n, 2),
            "python_read_back_kinds": kinds,
        }

    def profiled(self, n: int) -> dict:
        """Kernel time, launches, attention kernels and the top kernels over n steps."""
        from torch.profiler import ProfilerActivity, profile

        cuda = self.device.type == "cuda"
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        t0 = time.perf_counter()
        with profile(activities=activities) as prof:
            self.steps(n)
        wall_ms = 1000 * (time.perf_counter() - t0) / n
        events = prof.key_averages()
        if not cuda:
            top = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:15]
            return {
                "kernel_ms_per_step": None,
                "gpu_busy_pct": None,
                "launches_per_step": None,
                "attention_kernels": None,
                "top_ops_cpu": [op_row(e, e.self_cpu_time_total, n) for e in top],
            }
        kernels = [e for e in events if device_time(e) > 0 and e.device_type.name == "CUDA"]
        kernel_ms = sum(device_time(e) for e in kernels) / 1000 / n
        launches = sum(e.count for e in events if "LaunchKernel" in e.key) / n
        top = sorted(kernels, key=device_time, reverse=True)[:15]
        return {
            "kernel_ms_per_step": round(kernel_ms, 2),
            "profiled_ms_per_step": round(wall_ms, 2),
            "gpu_busy_pct": round(100 * kernel_ms / wall_ms, 1),
            "launches_per_step": round(launches, 1),
            "attention_kernels": sorted(
                {e.key for e in kernels if any(w in e.key.lower() for w in ATTENTION_WORDS)}
            ),
            "top_kernels": [op_row(e, device_time(e), n) for e in top],
        }

    def compile_first_step(self) -> dict:
        """Compile as train.compile does; the time to the first step and each recompile."""
        if has_module("compiling"):
            from nmt.compiling import Recompiles, compile_model
        else:  # an nmt from before nmt.compiling (--baseline)
            from nmt.training import Recompiles, compile_model

        recompiles = Recompiles.install()
        compile_model(self.model)
        t0 = time.perf_counter()
        self.steps(1)
        first = time.perf_counter() - t0
        self.steps(self.a.warmup)  # new shapes, new masks: the recompiles come here
        return {
            "first_step_s": round(first, 1),
            "warmup_s": round(time.perf_counter() - t0, 1),
            "recompiles": recompiles.take(),
        }

    def peak_memory(self) -> float | None:
        import torch

        if self.device.type != "cuda":
            return None
        return round(torch.cuda.max_memory_allocated() / 2**30, 2)


def device_time(e) -> float:
    """An event's total device time in microseconds (the attribute's name moved in torch 2.x)."""
    if hasattr(e, "device_time_total"):
        return e.device_time_total
    return getattr(e, "cuda_time_total", 0)


def op_row(e, total_us: float, n: int) -> dict:
    return {
        "name": e.key[:120],
        "calls_per_step": round(e.count / n, 1),
        "ms_per_step": round(total_us / 1000 / n, 3),
    }


def synthetic_batches(max_tokens: int) -> tuple[list, tuple[float, float]]:
    """Token-bucketed batches of random ids, lengths around the corpus's (mean ~27), pinned CPU
    tensors as the prefetcher hands them over; and the mean real source/target lengths."""
    from nmt.batching import bucket_batches, collate
    from nmt.tokenizer import EOS_ID

    rng = np.random.default_rng(0)
    n = max(4000, 40 * max_tokens // 27)
    src_len = np.clip(rng.normal(27, 9, n), 3, 120).astype(int)
    tgt_len = np.clip(src_len + rng.normal(0, 4, n), 3, 120).astype(int)
    src = [rng.integers(4, VOCAB, k).tolist() + [EOS_ID] for k in src_len]
    tgt = [rng.integers(4, VOCAB, k).tolist() for k in tgt_len]
    batches = []
    for idx in bucket_batches(src_len + 1, tgt_len + 1, max_tokens, rng)[:64]:
        b = collate([src[i] for i in idx], [tgt[i] for i in idx], "cpu")
        batches.append((pin(b), int((tgt_len[idx] + 1).sum())))
    return batches, (float(src_len.mean() + 1), float(tgt_len.mean() + 1))


def pad_to_multiple(b, k: int):
    """The batch with its source and target widths padded (PAD columns) up to multiples of k."""
    import torch.nn.functional as F

    from nmt.tokenizer import PAD_ID

    def widen(t):
        return F.pad(t, (0, -t.size(1) % k), value=PAD_ID)

    return type(b)(widen(b.src), widen(b.tgt_in), widen(b.tgt_out), b.src_lengths)


def pin(b):
    import torch

    if not torch.cuda.is_available():
        return b
    return b.pin_memory() if hasattr(b, "pin_memory") else tuple(t.pin_memory() for t in b)


def to_device(b, device):
    """A `Batch` (this checkout) or a tuple of tensors (older ones) on the device."""
    if device.type == "cpu":
        return b
    if hasattr(b, "src_lengths"):
        return b.to(device, non_blocking=True)
    return tuple(t.to(device, non_blocking=True) for t in b)


def flops_per_token(cfg, src_len: float, tgt_len: float) -> float:
    sys.path.insert(0, str(ROOT / "bench"))
    from gpu_bench import flops_per_target_token

    m = cfg.model
    model_cfg = {k: getattr(m, k) for k in ("d_model", "d_ff", "encoder_layers", "decoder_layers")}
    return flops_per_target_token(model_cfg, VOCAB, VOCAB, src_len, tgt_len)


def peak_flops(device) -> float | None:
    import torch

    if device.type != "cuda":
        return None
    sys.path.insert(0, str(ROOT / "bench"))
    from gpu_bench import peak_flops as by_name

    return by_name(torch.cuda.get_device_name(0))


# ---------------------------------------------------------------------------------------------
# the SDPA probe


def sdpa_probe(device, out: dict, save) -> None:
    """Host ms per attention call (forward and backward, bf16 on a GPU) on 12 new shapes, then
    on one repeated shape, with a key mask and without, cuDNN attention allowed and not (on a
    CPU: its own kernels, once)."""
    import torch

    out["cudnn_on"] = None
    for cudnn in [True, False] if device.type == "cuda" else [None]:
        if cudnn is not None:
            torch.backends.cuda.enable_cudnn_sdp(cudnn)
        key = {True: "cudnn_on", False: "cudnn_off", None: "cpu"}[cudnn]
        out[key] = {masked: probe_calls(device, masked) for masked in ("masked", "unmasked")}
        save()


def probe_calls(device, masked: str) -> dict:
    import torch
    import torch.nn.functional as F

    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    H, dh = 8, 64
    g = torch.Generator().manual_seed(1)

    def call(B: int, S: int) -> float:
        q, k, v = (torch.randn(B, H, S, dh, generator=g).to(device, dtype) for _ in range(3))
        for t in (q, k, v):
            t.requires_grad_()
        mask = None
        if masked == "masked":
            mask = torch.ones(B, 1, 1, S, dtype=torch.bool, device=device)
            mask[0, ..., S // 2 :] = False
        sync(device)
        t0 = time.perf_counter()
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        out.sum().backward()
        host = time.perf_counter() - t0
        sync(device)
        return 1000 * host

    shapes = [(int(8 + 7 * i), int(12 + 3 * i)) for i in range(12)]
    call(16, 20)  # warm-up: kernels loaded, allocator primed
    new = [call(B, S) for B, S in shapes]
    same = [call(40, 30) for _ in range(12)][2:]
    return {
        "new_shape_host_ms": round(sorted(new)[len(new) // 2], 3),
        "new_shape_host_ms_max": round(max(new), 3),
        "same_shape_host_ms": round(sorted(same)[len(same) // 2], 3),
    }


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


if __name__ == "__main__":
    main()
