# kubeforge's developer entry points. `make test` does all set-up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
VENV_PY := $(VENV)/bin/python
# Reinstall when the project's dependencies change.
VENV_STAMP := $(VENV)/.installed

.PHONY: help venv tools crds dev-cluster dev-cluster-down test test-unit lint

help:
	@echo "make dev-cluster       start the local control plane and S3 server (.dev-cluster/env)"
	@echo "make dev-cluster-down  stop it and remove its state"
	@echo "make test              set up everything and run the whole test suite"
	@echo "make lint              ruff, mypy and import-linter"
	@echo "make crds              regenerate the CRDs from the API models"

$(VENV_STAMP): pyproject.toml
	@test -x $(VENV_PY) || $(PYTHON) -m venv $(VENV)
	$(VENV_PY) -m pip install --quiet --upgrade pip
	$(VENV_PY) -m pip install --quiet -e '.[dev]'
	@touch $@

venv: $(VENV_STAMP)

tools:
	hack/build-tools.sh

crds: venv
	$(VENV_PY) -m kubeforge_operator.crds

dev-cluster: venv tools
	$(VENV_PY) hack/dev_cluster.py up

dev-cluster-down:
	@$(PYTHON) hack/dev_cluster.py down

test: venv tools lint
	$(VENV_PY) -m pytest

test-unit: venv
	$(VENV_PY) -m pytest tests/unit

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
