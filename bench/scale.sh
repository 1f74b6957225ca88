#!/usr/bin/env bash
# Scale benchmarks behind BENCHMARKS.md ("Millions of pairs").
# Usage: bench/scale.sh preprocess PREFIX NUM_PROC OUT_DIR   (one run, prints wall / pairs/s / peak RSS)
# The corpora come from ../shared/bench/make_big_corpus.py N PREFIX [--gzip].
# Env: NMT (default .venv/bin/nmt), VALID (a valid prefix, optional).
set -euo pipefail
NMT=${NMT:-.venv/bin/nmt}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1

preprocess() {
  local prefix=$1 np=$2 out=$3 log; log=$(mktemp)
  rm -rf "$out"
  /usr/bin/time -v -o "$log.time" "$NMT" preprocess --src de --tgt en --train-prefix "$prefix" \
    ${VALID:+--valid-prefix "$VALID"} --num-proc "$np" --out "$out" 2> "$log" || { cat "$log"; exit 1; }
  cat "$log"
  local n; n=$(python3 -c "import json; print(json.load(open('$out/meta.json'))['counts']['train']['read'])")
  local wall; wall=$(awk '/Elapsed/ {print $NF}' "$log.time" | awk -F: '{print ($1 * 60) + $2}')
  local rss; rss=$(awk '/Maximum resident/ {printf "%.2f", $NF / 1048576}' "$log.time")
  echo "RESULT prefix=$prefix num_proc=$np pairs=$n wall_s=$wall pairs_per_s=$(python3 -c "print(round($n / $wall))") peak_rss_gb=$rss"
  rm -f "$log" "$log.time"
}

"$@"
