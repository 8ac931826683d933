# Every target creates .venv itself, so each works on a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint run tools bench fuzz clean image generate

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/livestream-exporter --demo

# with no CONFIG and no config.yaml yet, start from the example (it names the variables to set)
run: $(STAMP)
	@if [ -z "$(CONFIG)" ] && [ ! -e config.yaml ]; then \
	  cp config.example.yaml config.yaml && echo "make run: created config.yaml from config.example.yaml; edit it for your sources"; fi
	$(BIN)/livestream-exporter --config.file $(or $(CONFIG),config.yaml)

# What the tests run besides Python, installed only when missing: from Debian, promtool,
# prometheus, alertmanager (rules and dashboards), chromium (the landing page in a real
# browser), podman, runc and debootstrap (the image, built with no registry), systemd (the
# unit checked by systemd-analyze) and redis-server
# (replicas sharing a budget); from npm into build/node, the schema checkers of the dashboards
# and of the prometheus-operator resources. hadolint, check-jsonschema and kubernetes-validate
# come from PyPI with the dev extras.
DEBIAN_TOOLS := promtool:prometheus prometheus:prometheus prometheus-alertmanager:prometheus-alertmanager \
  chromium:chromium podman:podman runc:runc debootstrap:debootstrap systemd-analyze:systemd \
  redis-server:redis-server
NPM_TOOLS := @grafana/schema typescript @kubernetes-models/prometheus-operator
NODE := build/node

tools:
	@missing=""; for pair in $(DEBIAN_TOOLS); do \
	  command -v $${pair%%:*} >/dev/null || missing="$$missing $${pair#*:}"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "make tools: installing$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "make tools: install the Debian packages$$missing" >&2; fi; fi
	@for pkg in $(NPM_TOOLS); do [ -d $(NODE)/node_modules/$$pkg ] || missing=1; done; \
	if [ -n "$$missing" ]; then \
	  if command -v npm >/dev/null; then \
	    echo "make tools: installing $(NPM_TOOLS) under $(NODE)"; \
	    npm install --silent --no-save --no-audit --no-fund --prefix $(NODE) $(NPM_TOOLS); \
	  else echo "make tools: install node and npm (Debian package npm)" >&2; fi; fi

test: $(STAMP) tools
	$(BIN)/python -m pytest -q

LINTED := exporter tests grafana bench deploytools

lint: $(STAMP)
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/mypy
	$(BIN)/lint-imports

# the rules and dashboards from deploy/mixin/config.yaml, then their Kubernetes copies
generate: $(STAMP)
	$(BIN)/python -m grafana.mixin
	$(BIN)/python -m deploytools.kubernetes

# the benchmarks of bench/README.md (several minutes; the numbers depend on the machine)
bench: $(STAMP)
	$(BIN)/python -m bench.scrape --lag
	$(BIN)/python -m bench.rss
	$(BIN)/python -m bench.throughput

# the parser and config fuzz tests with 2,000 fresh examples each (about 10 minutes)
fuzz: $(STAMP)
	$(BIN)/python -m bench.fuzz

# The container image: wheels built here (so the image build itself may run offline), then
# docker or podman. `make image BASE_IMAGE=$$(deploy/image/debian-base.sh)` builds on a local
# Debian root filesystem instead of the official Python image, with no registry at all, and OFFLINE=1 BUILD_NETWORK=none builds from the wheels alone.
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
IMAGE ?= livestream-exporter:$(VERSION)
BASE_IMAGE ?= docker.io/library/python:3.11-slim-bookworm
CONTAINER ?= $(shell command -v podman || command -v docker)
OFFLINE ?= 0
BUILD_NETWORK ?=

image: $(STAMP)
	rm -f deploy/image/wheelhouse/*.whl
	@# setuptools builds the package in the image; async-timeout is what redis needs on a
	@# Python older than 3.11.3 (Debian bookworm's), which this host's resolver would leave out
	$(BIN)/pip wheel --quiet --wheel-dir deploy/image/wheelhouse . 'setuptools>=77' 'async-timeout>=4.0.3'
	BUILDAH_FORMAT=docker $(CONTAINER) build $(if $(BUILD_NETWORK),--network=$(BUILD_NETWORK)) --tag $(IMAGE) \
	  --build-arg BASE_IMAGE=$(BASE_IMAGE) --build-arg PIP_NO_INDEX=$(OFFLINE) \
	  --build-arg VERSION=$(VERSION) .

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
