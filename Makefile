# citybase: `make demo` and `make test` are all a newcomer needs (Python 3.11+ on PATH).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO   ?= demo-city
DEMO_ARGS ?=

.PHONY: setup demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Reinstall when the dependencies change.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

## demo: generate a sample city, load it, run a tour of queries, then show it living in the
## console on http://127.0.0.1:8000/console/ (embedded, no services needed; Ctrl-C stops it)
demo: setup
	$(BIN)/citybase demo --root $(DEMO)/base --source $(DEMO)/source $(DEMO_ARGS)

## test: lint, type-check and run the test suite
test: setup lint
	$(BIN)/python -m pytest -q -p no:cacheprovider

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy

## bench: the spatio-temporal benchmark at 10M points (see BENCHMARKS.md)
bench: setup
	$(BIN)/python benchmarks/st_bench.py --points 10000000

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache .mypy_cache .ruff_cache
