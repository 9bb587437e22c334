# eiperf -- the two entry points are `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.eiperf-installed
NOTEBOOKS_STAMP := $(VENV)/.eiperf-notebooks
NOTEBOOK_PORT ?= 8888

.PHONY: demo test notebooks setup system-deps bench-deps lint bench down clean

## demo: set everything up, start the testbed, verify it, and show where to look next
demo: setup
	$(BIN)/eiperf demo

## test: set everything up and run the whole test suite
test: setup
	$(BIN)/python -m pytest

## notebooks: set everything up, then JupyterLab on notebooks/ at 127.0.0.1 (prints its URL)
notebooks: setup $(NOTEBOOKS_STAMP)
	$(BIN)/eiperf notebook --lab --port $(NOTEBOOK_PORT)

$(NOTEBOOKS_STAMP): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install -q -e '.[notebooks]'
	@touch $(NOTEBOOKS_STAMP)

setup: system-deps $(STAMP)

system-deps:
	@bash scripts/install_system_deps.sh

bench-deps:
	@bash scripts/install_system_deps.sh --bench

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	@touch $(STAMP)

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/lint-imports

bench: setup bench-deps
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

down:
	$(BIN)/eiperf down

clean:
	-$(BIN)/eiperf down
	rm -rf $(VENV) build *.egg-info
