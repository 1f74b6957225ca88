# Shared recipe rules. A recipe's Makefile sets CORPUS, SRC, TGT, DATA and the split prefixes,
# then includes this file. Every path can be overridden on the command line:
#   make -C recipes/multi30k-de-en all DATA=/path/to/multi30k RUNS=/tmp/runs
ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))/..)
HERE := $(abspath $(dir $(firstword $(MAKEFILE_LIST))))
NMT ?= $(if $(wildcard $(ROOT)/.venv/bin/nmt),$(ROOT)/.venv/bin/nmt,nmt)
NAME ?= $(notdir $(HERE))
DATA_BIN ?= $(ROOT)/data-bin/$(NAME)
RUNS ?= $(ROOT)/runs/$(NAME)
BACKENDS ?= rnn rnn_attention transformer
# train-transformer-base: the one-GPU preset (bf16, compile), not part of `all`
GPU_PRESETS ?= transformer-base
PREPROCESS_ARGS ?=
TRAIN_ARGS ?=
BEAM ?= 5
AVERAGE ?= 5
INPUT ?= $(DATA_BIN)/test.src
export HF_DATASETS_OFFLINE ?= 1

.PHONY: data $(addprefix train-,$(BACKENDS) $(GPU_PRESETS)) average export evaluate translate report all

data: $(DATA_BIN)/meta.json

$(DATA_BIN)/meta.json:
	@test -e "$(DATA)" || { echo "no corpus at DATA=$(DATA): point DATA at it (see README.md)"; exit 1; }
	$(NMT) preprocess --src $(SRC) --tgt $(TGT) $(SPLITS) --out $(DATA_BIN) $(PREPROCESS_ARGS)

$(addprefix train-,$(BACKENDS) $(GPU_PRESETS)): train-%: data
	$(NMT) train $(HERE)/$*.yaml -o $(RUNS)/$* -q data.dir=$(DATA_BIN) $(TRAIN_ARGS)

# Averages each run's last $(AVERAGE) step checkpoints into averaged.pt, scores it and best.pt
# on the validation split, and points final.pt at the better one (test data is not looked at).
valid_bleu = $(NMT) evaluate -c $(1) -d $(DATA_BIN) --split valid --beam $(BEAM) | awk '/^BLEU/ {print $$2}'
average:
	@for b in $(BACKENDS); do \
	  r=$(RUNS)/$$b; [ -f $$r/best.pt ] || continue; \
	  $(NMT) average --run-dir $$r -n $(AVERAGE) -o $$r/averaged.pt || exit 1; \
	  avg=$$($(call valid_bleu,$$r/averaged.pt)); best=$$($(call valid_bleu,$$r/best.pt)); \
	  pick=best.pt; if awk "BEGIN {exit !($$avg > $$best)}"; then pick=averaged.pt; fi; \
	  ln -sf $$pick $$r/final.pt; \
	  echo "$$b: valid BLEU best.pt $$best, averaged.pt $$avg -> final.pt = $$pick"; \
	done

# Exports the Transformer run's final.pt (best.pt before `average`) to CTranslate2 in
# $(RUNS)/transformer/ct2 ($(QUANTIZATION) weights); `nmt translate/evaluate -c` run it without torch.
QUANTIZATION ?= int8
export:
	@b=transformer; [ -f $(RUNS)/$$b/best.pt ] || { echo "no $(RUNS)/$$b/best.pt: train-transformer first"; exit 1; }; \
	$(NMT) export $(checkpoint) -o $(RUNS)/$$b/ct2 --quantization $(QUANTIZATION) --force && \
	$(NMT) evaluate -c $(RUNS)/$$b/ct2 -d $(DATA_BIN) --split test --beam $(BEAM) --json $(RUNS)/$$b/results-ct2.json

# Scores every trained backend (final.pt when `average` has run, else best.pt) on the test
# split; writes results.json and results.txt (sacreBLEU scores with signatures) into its run dir.
checkpoint = $$( [ -e $(RUNS)/$$b/final.pt ] && echo $(RUNS)/$$b/final.pt || echo $(RUNS)/$$b/best.pt )
evaluate:
	@for b in $(BACKENDS); do \
	  if [ -f $(RUNS)/$$b/best.pt ]; then \
	    echo "== $$b ($(checkpoint))"; \
	    $(NMT) evaluate -c $(checkpoint) -d $(DATA_BIN) --split test --beam $(BEAM) \
	      --json $(RUNS)/$$b/results.json -o $(RUNS)/$$b/test.hyp | tee $(RUNS)/$$b/results.txt; \
	  fi; \
	done

translate:
	@for b in $(BACKENDS); do \
	  if [ -f $(RUNS)/$$b/best.pt ]; then \
	    $(NMT) translate -c $(checkpoint) --beam $(BEAM) -q $(INPUT) -o $(RUNS)/$$b/translations.txt \
	      && echo "$$b: $(RUNS)/$$b/translations.txt"; \
	  fi; \
	done

# Compares the trained backends in $(RUNS)/report/report.md (curves, scores, BLEU by length).
report:
	@dirs=$$(for b in $(BACKENDS); do [ -d $(RUNS)/$$b ] && echo $(RUNS)/$$b; done); \
	  [ -n "$$dirs" ] || { echo "no runs in $(RUNS) to report on"; exit 1; }; \
	  $(NMT) report $$dirs -o $(RUNS)/report

all: data $(addprefix train-,$(BACKENDS)) average evaluate translate report
