# nmt: top-level tasks. `make demo` runs the whole job offline; `make test` runs the test suite.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test test-fast test-faults test-multinode lint format demo clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[dev,ct2]"
	touch $(STAMP)

# Tests run in WORKERS processes (one torch thread each), a test file per worker at a time.
WORKERS ?= 2
PYTEST := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/python -m pytest -n $(WORKERS) --dist loadfile

# import-linter's contracts (pyproject.toml: the module layers, no torch under the config) first;
# the 15 slowest tests are printed at the end
test: $(STAMP)
	$(BIN)/lint-imports
	$(PYTEST) --durations=15

# the edit loop: everything but the tests marked slow (about a minute)
test-fast: $(STAMP)
	$(PYTEST) -m "not slow and not faults and not multinode"

# Two torchrun agents rendezvous on localhost as two nodes (about a minute on 2 cores).
test-multinode: $(STAMP)
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/python -m pytest -m multinode

# slow: kill -9 at random moments of training and translate, hostile input (hypothesis)
test-faults: $(STAMP)
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/python -m pytest -m faults -s tests/faults

lint: $(STAMP)
	$(BIN)/ruff check nmt tests
	$(BIN)/ruff format --check nmt tests

format: $(STAMP)
	$(BIN)/ruff format nmt tests
	$(BIN)/ruff check --fix nmt tests

DEMO_DIR ?= demo
demo: $(STAMP)
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/nmt demo --out $(DEMO_DIR)

clean:
	rm -rf $(DEMO_DIR) .pytest_cache .ruff_cache
