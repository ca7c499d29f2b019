# One entry point for set-up tasks. `make demo` runs the fleet, `make test` runs the tests;
# both install everything they need first (Python deps, Redis, a cached FerretDB build).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo test lint typecheck check services-up services-down services-status bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

## setup: Python deps in .venv, redis-server (apt-get) and the FerretDB binary (cached in .fleet/bin)
setup: $(STAMP)
	$(BIN)/fleet services install

## demo: start the local services and run the fleet live in the terminal
demo: setup
	$(BIN)/fleet demo

## test: the whole test suite against real Redis, FerretDB and Celery workers (and a headless chromium)
test: setup
	$(BIN)/fleet services install --browser
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check fleet tasks tests bench beat_schedule.py examples
	$(BIN)/ruff format --check fleet tasks tests bench beat_schedule.py examples

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test

services-up: setup
	$(BIN)/fleet services up

services-down: $(STAMP)
	$(BIN)/fleet services down

services-status: $(STAMP)
	$(BIN)/fleet services status

bench: setup
	$(BIN)/python -m bench

clean: services-down
	rm -rf $(VENV) .fleet
