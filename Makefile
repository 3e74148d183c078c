# hotplug-agent: the two commands a newcomer needs are `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# `make run` needs only the runtime dependencies; the test extras come with `make test` (same venv).
RUN_STAMP := $(VENV)/.installed-run

.PHONY: run test lint bench venv clean cluster controlplane-bin controlplane kubevirt-bin chart-test helm lock image \
	test-pythons

$(RUN_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $(RUN_STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP) $(RUN_STAMP)

venv: $(STAMP)

## run: the simulated KubeVirt cluster with the agent, default scenario, summary at the end
run: $(RUN_STAMP)
	$(BIN)/hotplug-agent simulate

## cluster: only the simulated cluster (kubeconfig written to ./hotplug-sim.kubeconfig)
cluster: $(RUN_STAMP)
	$(BIN)/hotplug-agent cluster --kubeconfig-out hotplug-sim.kubeconfig

## lint: ruff, mypy --strict, dead code (vulture, hack/deadcode.sh) and the layering (import-linter); pre-commit runs the same
lint: $(STAMP)
	$(BIN)/ruff check agent metrics simulator tests bench
	$(BIN)/ruff format --check agent metrics simulator tests bench
	$(BIN)/mypy
	VULTURE=$(BIN)/vulture hack/deadcode.sh
	$(BIN)/lint-imports

## controlplane-bin: build kube-apiserver and etcd for the control-plane tier (no-op when cached)
controlplane-bin:
	hack/controlplane/build.sh

## controlplane: the real-control-plane tier alone
controlplane: $(STAMP) controlplane-bin
	$(BIN)/python -m pytest -q -m controlplane $(PYTEST_ARGS)

## kubevirt-bin: build virt-controller, virt-api, virtctl of every pinned KubeVirt release (no-op when cached)
kubevirt-bin:
	hack/kubevirt/build.sh --all

## helm: build the pinned helm v3 into .cache/bin (once; needs Go)
helm:
	hack/tools/install-helm.sh

## chart-test: Helm chart (lint, offline schemas, RBAC, real kube-apiserver), Dockerfile and image contents
chart-test: $(STAMP) helm controlplane-bin
	$(BIN)/python -m pytest -q tests/chart $(PYTEST_ARGS)

## lock: re-pin the runtime dependencies in requirements.lock after changing pyproject's dependencies
lock:
	hack/lock-requirements.sh

## image: build the container image (needs a Docker daemon; not available on the dev machines)
image:
	docker build -t hotplug-agent:0.1.0 .

## test-pythons: the pure-logic tiers on Python 3.12 and 3.13 too (.venv-3.12, .venv-3.13; CI=true
## fails when one is missing)
test-pythons:
	hack/test-pythons.sh

## test: lint, the pure-logic tiers on the other Pythons, then the whole suite (tools it needs must be
## installed; .ci/run does that)
test: lint test-pythons controlplane-bin helm kubevirt-bin
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

## bench: every benchmark, figures printed and written to bench/results/
bench: $(STAMP)
	$(BIN)/python -m bench.run_all

clean:
	rm -rf $(VENV) $(VENV)-3.* .mypy_cache .ruff_cache .pytest_cache build dist *.egg-info
