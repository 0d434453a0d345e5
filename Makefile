# Two commands do everything on a fresh machine (README.md):
#   make run   - the embedded devnet stack: anvil, web, workers, beat, demo workload
#   make test  - virtualenv, pinned requirements, node tools, PostgreSQL + Redis, whole suite
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
DEPS_STAMP := $(VENV)/.deps-$(shell cat requirements/base.txt requirements/dev.txt | sha1sum | cut -c1-12)
NODE_STAMP := node_modules/.deps-$(shell cat package.json package-lock.json | sha1sum | cut -c1-12)

.PHONY: run test lint fmt services contracts lock bench faults check clean deps chromium

$(PY):
	$(PYTHON) -m venv $(VENV)

$(DEPS_STAMP): $(PY) requirements/base.txt requirements/dev.txt
	$(BIN)/pip install --disable-pip-version-check -q -r requirements/dev.txt
	rm -f $(VENV)/.deps-* && touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	rm -f node_modules/.deps-* && touch $@

deps: $(DEPS_STAMP) $(NODE_STAMP) chromium

# Headless Chromium from Debian's package (no browser download) for the admin
# screenshot test; skipped, saying why, where it cannot be installed.
chromium:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif ! command -v apt-get >/dev/null 2>&1; then \
	  echo "chromium: not installed and apt-get is unavailable; the admin screenshot test will be skipped"; \
	elif [ "$$(id -u)" != 0 ] && ! sudo -n true 2>/dev/null; then \
	  echo "chromium: not installed and apt-get needs root; the admin screenshot test will be skipped"; \
	else \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo "sudo -n"); \
	  echo "chromium: installing Debian's package"; \
	  ( DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y --no-install-recommends chromium \
	    || { $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y --no-install-recommends chromium; } ) \
	    >/dev/null || echo "chromium: apt-get install failed; the admin screenshot test will be skipped"; \
	fi

services:
	@scripts/ensure-services.sh

run: deps
	$(PY) manage.py run

test: deps services
	$(BIN)/ruff check .
	$(PY) manage.py makemigrations --check --dry-run
	$(BIN)/pytest $(PYTEST_ARGS)

faults: deps services
	FAULTS_FULL=1 $(BIN)/pytest -m faults tests/faults $(PYTEST_ARGS)

lint: deps
	$(BIN)/ruff check .

fmt: deps
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Rebuild the devnet contracts' committed artifacts from contracts/src with solcjs.
contracts: $(NODE_STAMP)
	node contracts/build.mjs

# Re-pin requirements/*.txt from requirements/*.in.
lock: $(PY)
	scripts/lock-requirements.sh

clean:
	rm -rf $(VENV) node_modules var
