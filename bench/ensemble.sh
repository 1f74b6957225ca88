#!/usr/bin/env bash
# Ensembles against their best single member and against checkpoint averaging, one queue.
#
#   bench/ensemble.sh DATA_DIR RUN_DIR...      (e.g. the recipe's Transformer with seeds 1-4)
#
# For every run: best.pt, and averaged.pt (its last AVERAGE step checkpoints, `nmt average`);
# then ensembles of the first two runs' best.pt and of all of them. Each is scored on the
# validation and the test split (beam BEAM, THREADS threads); prints BLEU and test sentences/s.
set -euo pipefail
DATA=$1; shift
RUNS=("$@")
NMT=${NMT:-nmt}
BEAM=${BEAM:-5}
THREADS=${THREADS:-2}
AVERAGE=${AVERAGE:-3}
OUT=${OUT:-$(mktemp -d)}

score() {  # name, checkpoint args...
  local name=$1; shift
  local row="$name"
  for split in valid test; do
    $NMT evaluate "$@" -d "$DATA" --split $split --beam "$BEAM" --threads "$THREADS" \
      --json "$OUT/$name.$split.json" > /dev/null
    row+=$(python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(f\"\t{r['bleu']:.2f}\" + (f\"\t{r['sents_per_s']:.1f}\" if sys.argv[2] == 'test' else ''), end='')" "$OUT/$name.$split.json" $split)
  done
  echo "$row"
}

echo -e "model\tvalid BLEU\ttest BLEU\ttest sents/s"
members=()
for r in "${RUNS[@]}"; do
  name=$(basename "$r")
  $NMT average --run-dir "$r" -n "$AVERAGE" -o "$r/averaged.pt" 2> /dev/null
  score "$name" -c "$r/best.pt"
  score "$name-averaged" -c "$r/averaged.pt"
  members+=(-c "$r/best.pt")
done
score "ensemble-2" "${members[@]:0:4}"
[ ${#RUNS[@]} -gt 2 ] && score "ensemble-${#RUNS[@]}" "${members[@]}"
echo "JSON in $OUT" >&2
