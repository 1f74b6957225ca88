#!/usr/bin/env bash
# The GPU benchmark, one script, one JSON: the test suite on the device, Transformer-base training
# throughput and MFU (eager vs torch.compile, bf16 vs fp32) on a synthetic corpus, then greedy and
# beam-5 decoding throughput. Nothing is fetched from the network.
#
#   bench/gpu.sh --prepare                  # here, beside ../shared: fill .gpudata/ and .whl/
#                                           # (and .gpudata/base/: nmt/ at BASE_REV, for gpu_diag.py)
#   bench/gpu.sh [--device cuda|cpu] [--steps N] [--pairs N] [--out DIR] [--skip-tests]
#
# --prepare copies the corpus generator and Multi30k into .gpudata/ (both ignored by git, so they
# travel with a checkout copied to a GPU machine) and downloads wheels for the Python packages a
# bare CUDA image lacks (datasets, dill, multiprocess) into .whl/. The run installs those wheels
# into a temporary folder if `datasets` is missing and imports the project from the checkout
# (no pip install, no network). A CPU dry run: bench/gpu.sh --device cpu --steps 20.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DEVICE=cuda STEPS=200 PAIRS= OUT=bench/results/gpu TESTS=1

prepare() {
  mkdir -p .gpudata .whl
  cp ../shared/bench/make_big_corpus.py .gpudata/
  # nmt/ as of BASE_REV (its training step still reads the loss back every step): the V0/V1
  # variants of bench/gpu_diag.py --baseline .gpudata/base
  rm -rf .gpudata/base && mkdir -p .gpudata/base
  git archive "${BASE_REV:-4dc9aef}" nmt | tar -x -C .gpudata/base
  mkdir -p .gpudata/data && cp -r ../shared/data/multi30k .gpudata/data/
  local v
  for pkg in datasets dill multiprocess; do
    v=$(.venv/bin/python -c "import importlib.metadata as m; print(m.version('$pkg'))")
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
      --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
      -d .whl "$pkg==$v"
  done
  du -sh .gpudata .whl
}

while [ $# -gt 0 ]; do
  case $1 in
    --prepare) prepare; exit 0 ;;
    --device) DEVICE=$2; shift 2 ;;
    --steps) STEPS=$2; shift 2 ;;
    --pairs) PAIRS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --skip-tests) TESTS=0; shift ;;
    *) echo "gpu.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
[ -d .gpudata/data/multi30k ] || { echo "gpu.sh: run bench/gpu.sh --prepare first" >&2; exit 2; }
[ -x .venv/bin/python ] && PY=${PY:-.venv/bin/python} || PY=${PY:-python3}
[ -n "$PAIRS" ] || { [ "$DEVICE" = cpu ] && PAIRS=20000 || PAIRS=200000; }
if ! "$PY" -c "import datasets" 2>/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/nmt-site .whl/*.whl
  export PYTHONPATH=/tmp/nmt-site
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d)
t_start=$(date +%s)
stage() { echo "== $(date -u +%T) (+$(( $(date +%s) - t_start ))s) $*"; }

# 1. tests: parametrised over cuda where a GPU exists
if [ "$TESTS" = 1 ]; then
  stage "test suite"
  set +e
  "$PY" -m pytest -q -x -p no:cacheprovider tests 2>&1 | tail -n 15 | tee "$OUT/tests.txt"
  set -e
fi

# 2. data: a synthetic corpus (joined Multi30k pairs), joint 10k vocabulary
stage "corpus ($PAIRS pairs) and preprocess"
M30K=.gpudata/data/multi30k
"$PY" .gpudata/make_big_corpus.py "$PAIRS" "$WORK/big" --data "$M30K"
"$PY" -m nmt preprocess --src de --tgt en --train-prefix "$WORK/big" --valid-prefix "$M30K/val" \
  --test-prefix "$M30K/test_2016_flickr" --vocab-size 10000 --num-proc "$(nproc)" --out "$WORK/bin" \
  2>&1 | tail -n 3

# 3. training throughput, Transformer-base: eager/compile x bf16/fp32
CFG=recipes/multi30k-de-en/transformer-base.yaml
SMALL=()
if [ "$DEVICE" = cpu ]; then  # the dry run: same code paths, a model and batch a CPU can step
  SMALL=(model.d_model=64 model.n_heads=4 model.d_ff=128 model.encoder_layers=2
         model.decoder_layers=2 train.max_tokens=2000 train.device=cpu)
fi
parts=()
for variant in "eager-bf16 train.compile=false train.precision=bf16" \
               "compile-bf16 train.compile=true train.precision=bf16" \
               "eager-fp32 train.compile=false train.precision=fp32" \
               "compile-fp32 train.compile=true train.precision=fp32"; do
  set -- $variant
  name=$1; shift
  stage "train $name"
  "$PY" bench/gpu_bench.py train "$WORK/bin" "$WORK/run-$name" "${SMALL[@]}" "$@" \
    --config "$CFG" --steps "$STEPS" --name "$name" --json "$OUT/train-$name.json" || true
  cp "$WORK/run-$name/train.log" "$OUT/train-$name.log" 2>/dev/null || true
  parts+=("$OUT/train-$name.json")
done

# 4. decoding throughput on Multi30k test2016 (1000 sentences) with the compiled bf16 model
CKPT=$(ls "$WORK"/run-compile-bf16/last.pt "$WORK"/run-eager-bf16/last.pt 2>/dev/null | head -n 1)
if [ -n "$CKPT" ]; then
  gunzip -c "$M30K/test_2016_flickr.de.gz" > "$WORK/test.de"
  for beam in 1 5; do
    stage "decode beam $beam"
    "$PY" bench/gpu_bench.py decode "$CKPT" "$WORK/test.de" --beam "$beam" --device "$DEVICE" \
      --batch-tokens "$( [ "$DEVICE" = cuda ] && echo 32000 || echo 8000 )" --json "$OUT/decode-b$beam.json" || true
    parts+=("$OUT/decode-b$beam.json")
  done
fi

stage "report"
"$PY" bench/gpu_bench.py report --json "$OUT/gpu.json" "${parts[@]}"
cat "$OUT/gpu.json"
rm -rf "$WORK"
stage "done"
