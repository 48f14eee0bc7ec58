# The README's two commands: `make run` (the main job) and `make test` (the test suite).
# Both create .venv if missing and install the package with all extras first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: run test test-all lint bench install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e '.[all]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/p2p-gym scenarios
	$(BIN)/p2p-gym run --scenario default --mechanism uniform --agents zi-c --days 7 --start-day 172 --grid ac --seed 0 --out out/run

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python benchmarks/grid_check.py
	$(BIN)/python benchmarks/clearing.py
	$(BIN)/python benchmarks/admm.py
	$(BIN)/python benchmarks/env_step.py
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/env_batched.py

clean:
	rm -rf $(VENV) out .pytest_cache .mypy_cache .ruff_cache
