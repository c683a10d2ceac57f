# `make demo` and `make test` work on a fresh clone: each creates .venv when missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export ANTRAY_DATA_ROOT ?= $(abspath ../shared/data)
export GIT_PYTHON_REFRESH := quiet
export RAY_AUTH_MODE ?= disabled

.PHONY: demo test test-all lint format bench clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/antray train --config configs/demo.yaml --run-dir runs/demo --overwrite

test: $(STAMP)
	$(BIN)/pytest -q tests

test-all: $(STAMP)
	$(BIN)/pytest -q tests --run-slow

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_modes.py

clean:
	rm -rf runs .pytest_cache
