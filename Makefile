# CapyDeploy for Decky: set up, demo, test, benchmark, package.
# `make demo` and `make test` are the README's two commands; both set everything up first.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PNPM   := npx --yes pnpm@9
PY_STAMP   := $(VENV)/.installed
NODE_STAMP := node_modules/.installed

.PHONY: setup demo test test-python test-frontend lint typecheck screenshots bench fuzz faults load plugin-zip clean chromium

setup: $(PY_STAMP) $(NODE_STAMP)

$(PY_STAMP): backend/pyproject.toml constraints-test.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11 or newer is needed"'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints-test.txt -e './backend[dev]'
	touch $@

$(NODE_STAMP): package.json pnpm-lock.yaml
	$(PNPM) install --frozen-lockfile
	touch $@

# Debian's Chromium renders the panel's pictures; installed once when missing.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the panel screenshots"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

demo: $(PY_STAMP)
	$(PY) scripts/demo.py

lint: setup
	$(VENV)/bin/ruff check backend tests scripts

typecheck: $(PY_STAMP)
	$(VENV)/bin/mypy

test-python: $(PY_STAMP)
	$(VENV)/bin/pytest

test-frontend: $(NODE_STAMP)
	$(PNPM) run typecheck
	$(PNPM) run lint
	$(PNPM) run build
	$(PNPM) run test

screenshots: $(NODE_STAMP) chromium
	$(PNPM) run screenshots

test: setup chromium
	$(VENV)/bin/ruff check backend tests scripts
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest
	$(MAKE) --no-print-directory test-frontend screenshots

bench: setup
	$(PY) scripts/bench.py $(BENCH_ARGS)

fuzz: setup
	$(PY) scripts/fuzz.py $(FUZZ_ARGS)

faults: setup
	$(PY) scripts/faults.py $(FAULT_ARGS)

load: setup
	$(PY) scripts/load.py $(LOAD_ARGS)

plugin-zip: setup
	$(PNPM) run build
	$(PY) scripts/plugin_zip.py

clean:
	rm -rf $(VENV) node_modules dist out .pytest_cache .mypy_cache .ruff_cache .hypothesis
