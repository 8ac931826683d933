# Every target creates .venv itself, so each works on a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint run tools bench fuzz clean

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

# promtool, prometheus, alertmanager (rules and dashboards) and chromium (the landing page in
# a real browser) come from Debian's packages; installed only when missing.
tools:
	@command -v promtool >/dev/null && command -v prometheus >/dev/null && command -v prometheus-alertmanager >/dev/null && command -v chromium >/dev/null \
	  || { if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	         apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus prometheus-alertmanager chromium >/dev/null; \
	       else echo "make tools: install the Debian packages prometheus, prometheus-alertmanager and chromium" >&2; fi; }

test: $(STAMP) tools
	$(BIN)/python -m pytest -q

LINTED := exporter tests grafana bench

lint: $(STAMP)
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/mypy
	$(BIN)/lint-imports

# the benchmarks of bench/README.md (several minutes; the numbers depend on the machine)
bench: $(STAMP)
	$(BIN)/python -m bench.scrape --lag
	$(BIN)/python -m bench.rss
	$(BIN)/python -m bench.throughput

# the parser and config fuzz tests with 2,000 fresh examples each (about 10 minutes)
fuzz: $(STAMP)
	$(BIN)/python -m bench.fuzz

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
