"""Share of training time spent waiting for batches (BENCHMARKS.md, "Millions of pairs").

usage: data_wait.py CONFIG DATA_DIR RUN_DIR [overrides...]
Times every synchronous `TrainBatches.collate` call made by the training loop (how batches were
read before the background prefetcher) and reads the prefetcher's own wait from the summary;
prints one JSON line with both shares of the training time.
"""

import json
import sys
import time

import nmt.batching as batching
from nmt.config import load_config
from nmt.training import train

spent = [0.0]
_collate = getattr(batching.TrainBatches, "collate", None)  # versions before the prefetcher


def timed_collate(self, idx, device):
    t0 = time.perf_counter()
    out = _collate(self, idx, device)
    spent[0] += time.perf_counter() - t0
    return out


if _collate is not None:
    batching.TrainBatches.collate = timed_collate
config, data, run = sys.argv[1:4]
cfg = load_config(
    config,
    [f"data.dir={data}", "train.valid_every=100000", "train.valid_bleu=false"]
    + ["train.best_metric=loss", *sys.argv[4:]],
)
summary = train(cfg, run, quiet=True)
print(
    json.dumps(
        {
            "steps": summary["steps"],
            "train_seconds": round(summary["train_seconds"], 1),
            "sync_collate_share_pct": round(100 * spent[0] / summary["train_seconds"], 2)
            if _collate is not None
            else None,
            "prefetch_wait_share_pct": round(100 * summary["data_wait_share"], 2)
            if "data_wait_share" in summary
            else None,
        }
    )
)
