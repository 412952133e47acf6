# streamrec: `make demo` runs the whole thing locally, `make test` runs every test.
# Both install what they need: system packages (Debian), a virtualenv, Kafka's jars.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help system venv infra-up infra-down lint test test-unit demo bench clean

help:
	@echo "make demo       local Kafka + Redis, the worker, an ML-1M replay, live sessions"
	@echo "make test       every test: unit, and integration against the real Kafka and Redis"
	@echo "make test-unit  only the tests that need no services"
	@echo "make lint       the import-linter contracts: layers, no cycles (make test runs it too)"
	@echo "make bench      streamrec bench ingest --layers, figures in var/bench-ingest.json"
	@echo "make infra-down stop the local Kafka and Redis"

system:
	@deploy/install-system.sh

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,train]'
	touch $(STAMP)

venv: $(STAMP)

infra-up: system venv
	$(BIN)/streamrec infra up

infra-down: venv
	$(BIN)/streamrec infra down

lint: venv
	$(BIN)/lint-imports

test: infra-up lint
	$(BIN)/python -m pytest

test-unit: lint
	$(BIN)/python -m pytest -m "not integration"

demo: infra-up
	deploy/demo.sh

bench: infra-up
	mkdir -p var && $(BIN)/streamrec bench ingest --layers --rate 1000,2500 --json var/bench-ingest.json

clean: infra-down
	rm -rf var .cache $(VENV)
