# kubeforge's developer entry points. `make test` does all set-up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
VENV_PY := $(VENV)/bin/python
# Reinstall when the project's dependencies change.
VENV_STAMP := $(VENV)/.installed

.PHONY: help venv tools crds manifests dev-cluster dev-cluster-down test test-unit lint demo \
	images e2e-kind kind-node-image kind-up kind-down

help:
	@echo "make demo              crawl a local web, train a small GPT on it with a failure, report"
	@echo "make dev-cluster       start the local control plane and S3 server (.dev-cluster/env)"
	@echo "make dev-cluster-down  stop it and remove its state"
	@echo "make test              set up everything and run the whole test suite"
	@echo "make lint              ruff, mypy and import-linter"
	@echo "make crds              regenerate the CRDs from the API models"
	@echo "make manifests         regenerate the CRDs, then manifests/install from the Helm chart"
	@echo "make images            build the operator, trainer and crawler images (Docker; local base)"
	@echo "make e2e-kind          kind cluster + images + chart, then tests/e2e (needs a kind node image)"
	@echo "make kind-node-image   build a kind node image offline (Debian packages, Go modules)"
	@echo "make kind-up           kind cluster with the images and the chart; make kind-down deletes it"

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

manifests: crds
	$(VENV_PY) hack/render_install.py

dev-cluster: venv tools
	$(VENV_PY) hack/dev_cluster.py up

dev-cluster-down:
	@$(PYTHON) hack/dev_cluster.py down

demo: venv
	$(VENV)/bin/kubeforge demo

images: venv
	hack/images.sh

e2e-kind: venv
	hack/e2e-kind.sh

kind-node-image:
	hack/kind-node-image.sh

kind-up: venv
	hack/kind.sh up

kind-down:
	hack/kind.sh down

test: venv tools lint
	$(VENV_PY) -m pytest

test-unit: venv
	$(VENV_PY) -m pytest tests/unit

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
