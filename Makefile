# tinybert — `make demo` runs the end-to-end job on ../shared; `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup test test-slow test-all lint format demo bench docs clean

setup: $(STAMP)

# Re-install only when the dependency list changes: a second `make setup` is near-instant.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

# `make test`: the fast set (well under 3 minutes on 2 cores); the slow end-to-end tests (marked
# @pytest.mark.slow: DDP, subprocess runs, whole pipelines, long training) run in `make
# test-slow`; `make test-all` runs both at once. .ci/run runs `make test` then `make test-slow`.
test: setup
	$(BIN)/python -m pytest -m "not slow"

test-slow: setup
	$(BIN)/python -m pytest -m slow

test-all: setup
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

# The documentation site from docs/ into site/; --strict: a broken link, anchor or page fails.
# The reference pages are generated from the code at build time (scripts/gen_docs.py, a hook).
docs: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) runs build site *.egg-info src/*.egg-info .mypy_cache .import_linter_cache
