#!/usr/bin/env bash
# The torch path against its CTranslate2 export (float32, int8) on Multi30k test2016, side by side.
# Usage: CKPT=runs/deen/best.pt DATA_BIN=data-bin/multi30k-de-en OUT=/tmp/bench-export bench/export.sh
# For each path and beam (1, 5): `nmt evaluate` under /usr/bin/time -v (pure decoding time, BLEU,
# output tokens, peak RSS, wall incl. start-up); then one sentence from the shell per path, 5 runs
# each, alternating with `python -c "import torch"`.
set -euo pipefail
cd "$(dirname "$0")/.."
NMT=${NMT:-.venv/bin/nmt}
CKPT=${CKPT:?checkpoint}
DATA_BIN=${DATA_BIN:-data-bin/multi30k-de-en}
OUT=${OUT:-/tmp/bench-export}
mkdir -p "$OUT"
peak() { awk -F': ' '/Maximum resident/ {printf "%.0f MB", $2 / 1024}' "$1"; }

for q in float32 int8; do
  "$NMT" export "$CKPT" -o "$OUT/ct2-$q" --quantization "$q" --force
done
for path in "$CKPT" "$OUT/ct2-float32" "$OUT/ct2-int8"; do
  name=$(basename "$path")
  for beam in 1 5; do
    t0=$(date +%s.%N)
    /usr/bin/time -v -o "$OUT/$name.b$beam.time" "$NMT" evaluate -c "$path" -d "$DATA_BIN" \
      --split test --beam "$beam" --json "$OUT/$name.b$beam.json" -o "$OUT/$name.b$beam.en" > /dev/null
    t1=$(date +%s.%N)
    .venv/bin/python - "$OUT/$name.b$beam" "$DATA_BIN" "$t0" "$t1" "$(peak "$OUT/$name.b$beam.time")" "$name" "$beam" <<'PY'
import json, sys
import sentencepiece as spm
stem, data, t0, t1, peak, name, beam = sys.argv[1:8]
r = json.load(open(f"{stem}.json"))
sp = spm.SentencePieceProcessor(model_file=f"{data}/spm.model")
hyp = [line.rstrip("\n") for line in open(f"{stem}.en")]
ntok = sum(len(sp.encode(h)) + 1 for h in hyp)
print(f"{name} beam={beam}: decoding {r['seconds']} s, {r['sents_per_s']} sent/s, "
      f"{ntok / r['seconds']:.0f} tgt tok/s, {ntok} output tokens | BLEU {r['bleu']} chrF {r['chrf']} "
      f"| wall {float(t1) - float(t0):.2f} s | peak {peak}")
PY
  done
done
echo "one sentence from the shell (beam 5), against python -c 'import torch':"
for path in "$CKPT" "$OUT/ct2-float32" "$OUT/ct2-int8"; do
  echo "== $path"
  cmd="echo 'Ein Mann fährt Fahrrad.' | $NMT translate -c $path > /dev/null"
  if command -v "${BENCH_PAIR:-}" > /dev/null 2>&1; then
    "$BENCH_PAIR" --timeout 300 --vs ".venv/bin/python -c 'import torch'" -- sh -c "$cmd"
  else
    for i in 1 2 3 4 5; do
      /usr/bin/time -f "one sentence %e s" sh -c "$cmd"
      /usr/bin/time -f "import torch %e s" .venv/bin/python -c "import torch"
    done
  fi
done
