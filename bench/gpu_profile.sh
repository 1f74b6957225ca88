#!/usr/bin/env bash
# Where a Transformer-base training step spends its time on a GPU: a cProfile of N eager bf16
# steps (top functions by cumulative and own time), then a compiled run. Needs bench/gpu.sh
# --prepare first; OUT=DIR N=50000 STEPS=60 bench/gpu_profile.sh (DEV=cpu for a dry run).
set -u
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
PY=${PY:-python3}; DEV=${DEV:-cuda}; N=${N:-50000}; STEPS=${STEPS:-60}; O=${OUT:-/tmp/probe-out}
if ! $PY -c "import datasets" 2>/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/nmt-site .whl/*.whl
  export PYTHONPATH=/tmp/nmt-site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$O"; W=$(mktemp -d); M=.gpudata/data/multi30k
nproc; $PY -c "import os,torch;print('threads',torch.get_num_threads(),'cpus',os.cpu_count())"
t0=$(date +%s)
$PY .gpudata/make_big_corpus.py $N $W/big --data $M
echo "corpus $(( $(date +%s)-t0 ))s"
timeout 120 $PY -m nmt preprocess --src de --tgt en --train-prefix $W/big --valid-prefix $M/val \
  --test-prefix $M/test_2016_flickr --vocab-size ${VS:-10000} --num-proc ${NP:-4} --out $W/bin 2>&1 | tail -n 12
echo "preprocess done $(( $(date +%s)-t0 ))s"
SMALL=""; [ $DEV = cpu ] && SMALL="model.d_model=64 model.n_heads=4 model.d_ff=128 model.encoder_layers=2 model.decoder_layers=2 train.max_tokens=2000 train.device=cpu"
timeout ${PT:-150} $PY -m cProfile -o $W/prof -m nmt train recipes/multi30k-de-en/transformer-base.yaml -o $W/run -q \
  data.dir=$W/bin train.max_steps=$STEPS train.valid_every=1000000 train.valid_bleu=false train.best_metric=loss \
  train.max_time=0 train.log_every=10 train.compile=false train.precision=bf16 $SMALL
tail -n 9 $W/run/train.log; cp $W/run/train.log $O/probe-train.log
$PY -c "
import pstats; p=pstats.Stats('$W/prof'); p.sort_stats('cumulative').print_stats(40); p.sort_stats('tottime').print_stats(30)" > $O/profile.txt 2>&1
head -c 6000 <(grep -A 32 'tottime' $O/profile.txt | tail -n 33)
echo "profile done $(( $(date +%s)-t0 ))s"
timeout ${CT:-160} $PY bench/gpu_bench.py train $W/bin $W/run-c $SMALL train.compile=true train.precision=bf16 \
  --config recipes/multi30k-de-en/transformer-base.yaml --steps ${CSTEPS:-150} --name compile-bf16 --json $O/compile.json
cp $W/run-c/train.log $O/compile-train.log 2>/dev/null
echo "all done $(( $(date +%s)-t0 ))s"
