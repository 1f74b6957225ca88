#!/usr/bin/env bash
# Benchmarks behind BENCHMARKS.md. Usage: bench/run.sh {preprocess|startup|throughput|translate|pairs} [args]
# Env: NMT (default .venv/bin/nmt), DATA (Multi30k raw dir, default ../shared/data/multi30k),
#      DATA_BIN (default data-bin/multi30k-de-en), OUT (results dir, default bench/results),
#      CKPT (checkpoint for translate/startup), SECS (throughput seconds, default 240),
#      PAIRS (pairs: alternating nmt / OpenNMT-py runs, default 3), PEERS (default ../shared/bench/peers).
set -euo pipefail
cd "$(dirname "$0")/.."
NMT=${NMT:-.venv/bin/nmt}
DATA=${DATA:-../shared/data/multi30k}
DATA_BIN=${DATA_BIN:-data-bin/multi30k-de-en}
OUT=${OUT:-bench/results}
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1

peak() { grep -E "Maximum resident" "$1" | awk '{printf "%.0f MB", $NF/1024}'; }

preprocess() { # full Multi30k de-en, joint 8k unigram, fresh output dir
  local dst; dst=$(mktemp -d)/m30k
  /usr/bin/time -v -o "$OUT/preprocess.time" "$NMT" preprocess --src de --tgt en \
    --train-prefix "$DATA/train" --valid-prefix "$DATA/val" --test-prefix "$DATA/test_2016_flickr" \
    --vocab-size 8000 --out "$dst" 2> "$OUT/preprocess.log"
  echo "preprocess: $(grep -oE 'wrote .* in [0-9.]+s' "$OUT/preprocess.log"), wall $(grep -oE 'Elapsed.*: .*' "$OUT/preprocess.time" | awk '{print $NF}'), peak $(peak "$OUT/preprocess.time")"
  rm -rf "$(dirname "$dst")"
}

startup() { # --help, and one sentence from the shell (start-up + model load + decode)
  local t0 t1
  for i in 1 2 3; do
    t0=$(date +%s.%N); "$NMT" --help > /dev/null; t1=$(date +%s.%N)
    echo "nmt --help: $(echo "$t1 - $t0" | bc) s"
  done
  for i in 1 2 3; do
    t0=$(date +%s.%N); echo "Ein Mann fährt Fahrrad." | "$NMT" translate -c "$CKPT" --beam 5 -q > /dev/null; t1=$(date +%s.%N)
    echo "nmt translate, 1 sentence, beam 5: $(echo "$t1 - $t0" | bc) s"
  done
}

throughput() { # training throughput: Transformer 3+3, d_model 256, 4 heads, d_ff 1024, 4096-token batches
  local run="$OUT/thr_run" secs=${SECS:-240}
  rm -rf "$run"
  /usr/bin/time -v -o "$OUT/throughput.time" "$NMT" train -o "$run" -q \
    data.dir="$DATA_BIN" model.backend=transformer model.d_model=256 model.encoder_layers=3 \
    model.decoder_layers=3 model.n_heads=4 model.d_ff=1024 model.dropout=0.1 \
    model.attention_dropout="${ATT_DROPOUT:-0.1}" train.max_tokens=4096 train.lr=1e-3 train.warmup=4000 \
    train.max_time=$(echo "$secs / 60" | bc -l) train.valid_every=1000000 train.valid_bleu=false \
    train.best_metric=loss train.log_every=5 > "$OUT/throughput.log" 2>&1
  .venv/bin/python - "$run/train.log" <<'PY'
import re, sys
rows = [float(x) for x in re.findall(r"(\d+) tgt tok/s", open(sys.argv[1]).read())]
w = rows[max(1, len(rows) // 5):]
print(f"nmt train: logged intervals={len(rows)} used={len(w)} tgt_tok/s={sum(w)/len(w):.0f} (min {min(w):.0f} max {max(w):.0f})")
PY
  echo "peak $(peak "$OUT/throughput.time")"
  rm -rf "$run"
}

translate() { # Multi30k test2016 (1000 sentences), greedy and beam 5, pure decoding time and wall time
  local src="$DATA_BIN/test.src" ref="$DATA_BIN/test.tgt"
  for beam in 1 5; do
    local out="$OUT/test.b$beam.en" t0 t1
    t0=$(date +%s.%N)
    /usr/bin/time -v -o "$OUT/translate.b$beam.time" "$NMT" translate -c "$CKPT" --beam "$beam" -q "$src" -o "$out"
    t1=$(date +%s.%N)
    "$NMT" evaluate --hypothesis "$out" --reference "$ref" --tgt-lang en --json "$OUT/test.b$beam.json" > /dev/null
    "$NMT" evaluate -c "$CKPT" -d "$DATA_BIN" --split test --beam "$beam" --json "$OUT/decode.b$beam.json" > /dev/null
    .venv/bin/python - "$out" "$t0" "$t1" "$beam" "$OUT/test.b$beam.json" "$OUT/decode.b$beam.json" "$DATA_BIN/spm.model" "$(peak "$OUT/translate.b$beam.time")" <<'PY'
import json, sys
out, t0, t1, beam, sj, dj, spm_path, peak = sys.argv[1:9]
import sentencepiece as spm
sp = spm.SentencePieceProcessor(model_file=spm_path)
hyp = [l.rstrip("\n") for l in open(out)]
ntok = sum(len(sp.encode(h)) + 1 for h in hyp)
wall = float(t1) - float(t0)
s, d = json.load(open(sj)), json.load(open(dj))
print(f"beam={beam} sents={len(hyp)} wall_s={wall:.2f} (incl. start-up) sent/s={len(hyp)/wall:.1f} "
      f"trg_tokens={ntok} | pure decoding {d['seconds']} s -> sent/s={d['sents_per_s']} "
      f"trg_tok/s={ntok/d['seconds']:.0f} | BLEU {s['bleu']} | peak {peak}")
PY
  done
}

pairs() { # throughput against OpenNMT-py in alternating runs (PAIRS, default 3): nmt, peer, nmt, peer, ...
  local peers=${PEERS:-../shared/bench/peers} i
  for i in $(seq "${PAIRS:-3}"); do
    echo "== pair $i $(date -u +%T)"
    SECS=${SECS:-200} throughput
    THRU_SECS=${SECS:-200} bash "$peers/opennmt/run.sh" throughput | grep -E "trg_tok|Maximum"
  done
}

"${1:?usage: bench/run.sh preprocess|startup|throughput|translate|pairs}"
