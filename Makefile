# tinybert — `make demo` runs the end-to-end job on ../shared; `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup test lint format demo bench clean

setup: $(STAMP)

# Re-install only when the dependency list changes: a second `make setup` is near-instant.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

test: setup
	$(BIN)/python -m pytest

# Style, then types (mypy over src/, configured in pyproject.toml), then the import layers.
lint: setup
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts
	$(BIN)/mypy
	$(BIN)/lint-imports --no-logo

format: setup
	$(BIN)/ruff check --fix src tests bench scripts
	$(BIN)/ruff format src tests bench scripts

demo: setup
	$(BIN)/python -u scripts/demo.py   # = tinybert run --config configs/demo.yaml, + a baseline

clean:
	rm -rf $(VENV) runs build *.egg-info src/*.egg-info .mypy_cache .import_linter_cache
