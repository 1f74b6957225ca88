#!/usr/bin/env bash
# Flat memory over long inputs: a small model translates 10,000 and 1,000,000 lines (file to
# file, greedy, one thread) under /usr/bin/time -v; prints wall time, peak RSS and output lines.
# Usage: bench/translate_flat.sh [WORK_DIR]   (default /tmp/nmt-translate-flat; ~3 min on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
W=${1:-/tmp/nmt-translate-flat}
mkdir -p "$W"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
.venv/bin/python - "$W" <<'PY'
import random, sys
from pathlib import Path
sys.path.insert(0, ".")
from tests.conftest import reverse_pairs, write_parallel
W = Path(sys.argv[1])
for split, n, seed in (("train", 2000, 11), ("valid", 50, 12)):
    write_parallel(W / "raw", split, reverse_pairs(n, seed), "xx", "yy")
rng = random.Random(0)
words = "red blue green cat dog bird tree house river stone fish moon sun star cloud rain".split()
with open(W / "in-1m.txt", "w") as f:
    for _ in range(1_000_000):
        f.write(" ".join(rng.choices(words, k=rng.randint(2, 6))) + "\n")
PY
head -n 10000 "$W/in-1m.txt" > "$W/in-10k.txt"
[ -f "$W/data/meta.json" ] || .venv/bin/nmt preprocess --src xx --tgt yy --train-prefix "$W/raw/train" \
  --valid-prefix "$W/raw/valid" --vocab-size 36 --out "$W/data"
[ -f "$W/run/best.pt" ] || .venv/bin/nmt train -o "$W/run" -q data.dir="$W/data" model.d_model=32 \
  model.d_ff=64 model.encoder_layers=1 model.decoder_layers=1 model.dropout=0.0 \
  model.attention_dropout=0.0 model.max_len=40 train.max_tokens=1500 train.lr=3e-3 \
  train.warmup=50 train.max_steps=500 train.valid_every=250 train.log_every=100
for n in 10k 1m; do
  /usr/bin/time -v .venv/bin/nmt translate -c "$W/run/best.pt" --beam 1 --threads 1 -q \
    "$W/in-$n.txt" -o "$W/out-$n.txt" 2> "$W/time-$n.txt"
  echo "$n lines: $(grep -E 'Elapsed' "$W/time-$n.txt" | awk '{print $NF}') wall," \
    "peak RSS $(awk '/Maximum resident/ {print $NF}' "$W/time-$n.txt") KB," \
    "$(wc -l < "$W/out-$n.txt") output lines"
done
