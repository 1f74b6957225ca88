"""Training and decoding throughput of a Transformer-base preset, with model FLOPs utilisation.

Called by bench/gpu.sh; usable alone:

    python bench/gpu_bench.py train DATA_DIR RUN_DIR --config CFG --steps N [overrides...]
    python bench/gpu_bench.py decode CKPT SRC_FILE --beam K
    python bench/gpu_bench.py report OUT.json PART.json...

MFU (model FLOPs utilisation) counts useful work per target token, forward and backward:

    FLOPs/token = 6 * (P_enc * S/T + P_dec + d * V)
                + 12 * d * (L_enc * S^2/T + L_dec * (T + S))

P_enc, P_dec: parameters of the encoder and decoder layers (embeddings excluded: lookups are not
matmuls); d * V: the output projection; S, T: mean real source and target tokens per sentence of
the training data (padding is not useful work); the attention term is QK^T and AV (2 matmuls x
2 FLOPs x 3 for forward + backward) over every key of every layer, causal or not.
MFU = target tokens/s x FLOPs/token / peak, with the GPU's dense bf16 peak (989 TFLOP/s for an
H100 SXM) for every precision.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12}


def peak_flops(gpu_name: str) -> float | None:
    return next((v for k, v in PEAK_BF16.items() if k in gpu_name), None)


def flops_per_target_token(model_cfg: dict, src_vocab: int, tgt_vocab: int, S: float, T: float):
    d, ff = model_cfg["d_model"], model_cfg["d_ff"]
    le, ld = model_cfg["encoder_layers"], model_cfg["decoder_layers"]
    p_enc_layer = 4 * d * d + 2 * d * ff  # self-attention (Q, K, V, O) + FFN, biases ignored
    p_dec_layer = 8 * d * d + 2 * d * ff  # self- and cross-attention + FFN
    dense = 6 * (le * p_enc_layer * S / T + ld * p_dec_layer + d * tgt_vocab)
    attention = 12 * d * (le * S * S / T + ld * (T + S))
    return dense + attention


def data_lengths(data_dir: Path) -> tuple[float, float, int, int]:
    """Mean source/target tokens per training sentence and the vocabulary sizes."""
    from nmt.datadir import load_encoded, load_tokenizer

    ds = load_encoded(data_dir, "train")
    import numpy as np

    S = float(np.asarray(ds["src_len"]).mean())
    T = float(np.asarray(ds["tgt_len"]).mean()) + 1  # + EOS: the loss counts it
    tok = load_tokenizer(data_dir)
    return S, T, tok.src_vocab_size, tok.tgt_vocab_size


def cmd_train(a) -> dict:
    """Train for --steps steps through the CLI; tok/s from the log after the first fifth."""
    run = Path(a.run_dir)
    args = [
        sys.executable,
        "-m",
        "nmt",
        "train",
        a.config,
        "-o",
        str(run),
        "-q",
        f"data.dir={a.data_dir}",
        f"train.max_steps={a.steps}",
        "train.valid_every=1000000",
        "train.valid_bleu=false",
        "train.best_metric=loss",
        "train.max_time=0",
        f"train.log_every={max(1, a.steps // 20)}",
        *a.overrides,
    ]
    t0 = time.time()
    proc = subprocess.run(args, capture_output=True, text=True)
    wall = time.time() - t0
    log = (run / "train.log").read_text() if (run / "train.log").exists() else ""
    if proc.returncode != 0:
        return {"name": a.name, "error": (proc.stderr or proc.stdout).strip().splitlines()[-1:]}
    rates = [float(x) for x in re.findall(r"(\d+) tgt tok/s", log)]
    steady = rates[max(2, len(rates) // 5) :] or rates[-1:]
    tok_s = sum(steady) / len(steady)
    import yaml

    cfg = yaml.safe_load((run / "config.yaml").read_text())
    S, T, src_v, tgt_v = data_lengths(Path(a.data_dir))
    fpt = flops_per_target_token(cfg["model"], src_v, tgt_v, S, T)
    res = {
        "name": a.name,
        "steps": a.steps,
        "wall_s": round(wall, 1),
        "tgt_tok_s": round(tok_s),
        "logged_intervals": len(rates),
        "intervals_used": len(steady),
        "flops_per_tgt_token": fpt,
        "mean_src_len": S,
        "mean_tgt_len": T,
        "overrides": a.overrides,
    }
    gpu = _gpu_name()
    if gpu and peak_flops(gpu):
        res["mfu"] = round(tok_s * fpt / peak_flops(gpu), 4)
    res.update(_compile_counters(log))
    return res


def _compile_counters(log: str) -> dict:
    m = re.search(r"compile: (\d+) graphs, (\d+) graph breaks, (\d+) frame compiles", log)
    if not m:
        return {}
    out = {"graphs": int(m[1]), "graph_breaks": int(m[2]), "frame_compiles": int(m[3])}
    first = re.search(r"compile: first step after ([\d.]+)s", log)
    if first:
        out["first_step_s"] = float(first[1])
    out["recompiles"] = re.findall(r"compile: at step \d+, (.*)", log)
    return out


def _gpu_name() -> str | None:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def cmd_decode(a) -> dict:
    """Translate a file with the Python API (model loaded once), timing decoding only."""
    import torch

    from nmt import Translator

    lines = Path(a.src).read_text(encoding="utf-8").splitlines()
    device = a.device if a.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    tr = Translator.load(a.ckpt, device=device)
    tr.translate(lines[:64], beam=a.beam)  # warm-up (kernels, allocator)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.time()
    out = tr.translate(lines, beam=a.beam, batch_tokens=a.batch_tokens)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    secs = time.time() - t0
    n_tok = sum(len(ids) + 1 for ids in tr.tokenizer.encode_tgt(out))  # + EOS
    return {
        "name": f"decode_beam{a.beam}",
        "sentences": len(lines),
        "seconds": round(secs, 3),
        "sents_per_s": round(len(lines) / secs, 1),
        "tgt_tok_s": round(n_tok / secs),
        "mean_out_tokens": round(n_tok / max(1, len(out)), 2),
        "batch_tokens": a.batch_tokens,
    }


def cmd_report(a) -> dict:
    import platform

    import torch

    parts = [json.loads(Path(p).read_text()) for p in a.parts if Path(p).exists()]
    gpu = _gpu_name()
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "gpu": gpu or "none (CPU)",
        "peak_bf16_flops": peak_flops(gpu) if gpu else None,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "mfu_formula": __doc__.split("\n\n")[2],
        "results": parts,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("data_dir")
    t.add_argument("run_dir")
    t.add_argument("--config", required=True)
    t.add_argument("--steps", type=int, default=200)
    t.add_argument("--name", default="train")
    t.add_argument("--json", required=True)
    t.add_argument("overrides", nargs="*")
    d = sub.add_parser("decode")
    d.add_argument("ckpt")
    d.add_argument("src")
    d.add_argument("--beam", type=int, default=1)
    d.add_argument("--device", default="auto")
    d.add_argument("--batch-tokens", type=int, default=8000)
    d.add_argument("--json", required=True)
    r = sub.add_parser("report")
    r.add_argument("--json", required=True)
    r.add_argument("parts", nargs="+")
    a = ap.parse_args()
    res = {"train": cmd_train, "decode": cmd_decode, "report": cmd_report}[a.cmd](a)
    Path(a.json).write_text(json.dumps(res, indent=2))
    print(json.dumps(res if a.cmd != "report" else {"gpu": res["gpu"]}, indent=None)[:600])


if __name__ == "__main__":
    main()
