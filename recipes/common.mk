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
PREPROCESS_ARGS ?=
TRAIN_ARGS ?=
BEAM ?= 5
INPUT ?= $(DATA_BIN)/test.src
export HF_DATASETS_OFFLINE ?= 1

.PHONY: data $(addprefix train-,$(BACKENDS)) evaluate translate all

data: $(DATA_BIN)/meta.json

$(DATA_BIN)/meta.json:
	@test -e "$(DATA)" || { echo "no corpus at DATA=$(DATA): point DATA at it (see README.md)"; exit 1; }
	$(NMT) preprocess --src $(SRC) --tgt $(TGT) $(SPLITS) --out $(DATA_BIN) $(PREPROCESS_ARGS)

train-%: data
	$(NMT) train $(HERE)/$*.yaml -o $(RUNS)/$* -q data.dir=$(DATA_BIN) $(TRAIN_ARGS)

# Scores every trained backend on the test split; writes results.json and results.txt
# (sacreBLEU BLEU/chrF/TER with signatures) into each run dir.
evaluate:
	@for b in $(BACKENDS); do \
	  if [ -f $(RUNS)/$$b/best.pt ]; then \
	    echo "== $$b"; \
	    $(NMT) evaluate -c $(RUNS)/$$b/best.pt -d $(DATA_BIN) --split test --beam $(BEAM) \
	      --json $(RUNS)/$$b/results.json -o $(RUNS)/$$b/test.hyp | tee $(RUNS)/$$b/results.txt; \
	  fi; \
	done

translate:
	@for b in $(BACKENDS); do \
	  if [ -f $(RUNS)/$$b/best.pt ]; then \
	    $(NMT) translate -c $(RUNS)/$$b/best.pt --beam $(BEAM) -q $(INPUT) -o $(RUNS)/$$b/translations.txt \
	      && echo "$$b: $(RUNS)/$$b/translations.txt"; \
	  fi; \
	done

all: data $(addprefix train-,$(BACKENDS)) evaluate translate
