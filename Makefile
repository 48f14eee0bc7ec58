# The README's two commands: `make run` (the main job) and `make test` (the test suite).
# Both create .venv if missing and install the package with all extras first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: run test test-slow lint speed install clean

# pip installs the exact versions tested on this Python (constraints-py311.txt for 3.11) within the ranges of
# pyproject.toml. After an upgrade, once the tests pass, regenerate that file with
#   $(BIN)/python -m pip freeze --exclude-editable > constraints-py$(PYVER).txt   (keep its header comment)
PYVER := $(shell $(if $(wildcard $(BIN)/python),$(BIN)/python,$(PYTHON)) -c 'import sys;print(f"{sys.version_info[0]}{sys.version_info[1]}")')
CONSTRAINTS := constraints-py$(PYVER).txt

$(STAMP): pyproject.toml $(wildcard $(CONSTRAINTS))
	@test -f $(CONSTRAINTS) || { echo "make install: no $(CONSTRAINTS) for this Python ($(PYVER)); tested: $(wildcard constraints-py*.txt)" >&2; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c $(CONSTRAINTS) -e '.[all]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/p2p-gym scenarios
	$(BIN)/p2p-gym run --scenario default --mechanism uniform --agents zi-c --days 7 --start-day 172 --grid ac --seed 0 --out out/run

# The suite without the tests marked `slow` (~5 min on 2 cores); CI runs `test-slow` after it (~17 min more).
test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Speed benchmarks (benchmarks/, ratios measured side by side); the MARL benchmark is `p2p-gym bench`.
speed: $(STAMP)
	$(BIN)/python benchmarks/grid_check.py
	$(BIN)/python benchmarks/clearing.py
	$(BIN)/python benchmarks/admm.py
	$(BIN)/python benchmarks/env_step.py
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/env_batched.py

clean:
	rm -rf $(VENV) out .pytest_cache .mypy_cache .ruff_cache
