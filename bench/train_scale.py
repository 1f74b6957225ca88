"""Start-up, RSS and speed of `nmt train` on a data dir (BENCHMARKS.md, "Millions of pairs").

usage: train_scale.py CONFIG DATA_DIR RUN_DIR [overrides...]
Runs `nmt train` for train.max_steps (default 200) and prints one JSON line: seconds from launch
to the first step, RSS at the last logged step, target tokens/s over the logged windows after the
first, and the share of training time spent waiting for data.
"""

import json
import re
import subprocess
import sys
import time
from pathlib import Path


def rss_mb(pid: int) -> dict:
    """VmRSS and its parts: anonymous memory and file-backed pages (the memory-mapped data)."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key = line.split(":")[0]
        if key in ("VmRSS", "RssAnon", "RssFile"):
            out[key] = round(int(line.split()[1]) / 1024)
    return out


def main() -> None:
    config, data, run = sys.argv[1:4]
    steps = 200
    extra = sys.argv[4:]
    for x in extra:
        if x.startswith("train.max_steps="):
            steps = int(x.split("=")[1])
    cmd = [sys.executable, "-m", "nmt", "train", config, "-o", run, "-q", f"data.dir={data}"]
    cmd += [f"train.max_steps={steps}", "train.log_every=50", "train.valid_every=100000"]
    cmd += ["train.valid_bleu=false", "train.best_metric=loss", *extra]
    log = Path(run) / "train.log"
    t0 = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    first = rss = None
    while proc.poll() is None:
        text = log.read_text() if log.is_file() else ""
        if first is None and re.search(r"\bstep 1 ", text):
            first = time.time() - t0
        if rss is None and re.search(rf"\bstep {steps} ", text):
            rss = rss_mb(proc.pid)
        time.sleep(0.05)
    err = proc.stderr.read().decode()
    if proc.returncode != 0:
        sys.exit(err[-2000:])
    text = log.read_text()
    tok = [float(x) for x in re.findall(r"(\d+) tgt tok/s", text)][1:]  # windows after step 1
    wait = re.search(r"waited for data [\d.]+s, ([\d.]+)% of training time", text)
    result = {
        "data": data,
        "first_step_s": round(first, 1),
        "rss_mb_at_last_step": rss.get("VmRSS") if rss else None,
        "rss_anon_file_mb": [rss.get("RssAnon"), rss.get("RssFile")] if rss else None,
        "tgt_tok_s": round(sum(tok) / len(tok)) if tok else None,
        "data_wait_pct": float(wait.group(1)) if wait else None,
        "pairs": re.search(r"(\d+) training pairs", text).group(1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
