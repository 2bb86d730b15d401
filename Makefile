# Bellhop: `make run` starts the whole system, `make test` runs the suite.
# Both install what they need into .venv from a plain python3.

PYTHON ?= python3
VENV := .venv
UV_VERSION := 0.13.9
UV := $(VENV)/bin/uv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.synced
NODE_STAMP := services/gateway/node_modules/.installed

.PHONY: help install run demo test lint bench bench-quick clean

help:
	@echo "make run          start Redis (embedded unless REDIS_URL answers), the orchestrator and the gateway"
	@echo "make demo         filter the flights table through a running gateway (see scripts/demo.py --help)"
	@echo "make test         run the whole test suite"
	@echo "make bench        run every benchmark (several minutes); make bench-quick for a short pass"
	@echo "make lint         ruff check and format check"
	@echo "make install      install everything into .venv (every target above does it first)"
	@echo "make clean        remove .venv, .run and node_modules"

install: $(STAMP) $(NODE_STAMP)

# uv is installed into the project's own venv, then syncs the locked
# workspace into it; --inexact keeps uv itself installed.
$(STAMP): uv.lock pyproject.toml shared/pyproject.toml services/*/pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
	UV_PROJECT_ENVIRONMENT=$(VENV) $(UV) sync --frozen --inexact --all-packages --compile-bytecode
	@$(PY) -m compileall -q shared/src services/worker/src services/orchestrator/src services/gateway/src
	@touch $@

# The gateway serves socket.io-client to the browser page from npm's
# node_modules; the package is never copied into the repository.
$(NODE_STAMP): services/gateway/package.json services/gateway/package-lock.json
	cd services/gateway && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

run: install
	$(PY) scripts/run_local.py

demo: install
	$(PY) scripts/demo.py

test: install
	$(PY) -m pytest tests

# The full run takes several minutes and writes docs/benchmarks.md's
# end-to-end sections; the kernel and load benchmarks print their tables.
bench: install
	$(PY) bench/bench_kernel.py
	$(PY) bench/bench_load.py
	$(PY) bench/run_all.py

# Small sizes and short runs, so a change that breaks a benchmark shows fast.
bench-quick: install
	$(PY) bench/bench_kernel.py --quick
	$(PY) bench/bench_load.py --quick
	$(PY) bench/run_all.py --quick

lint: install
	$(PY) -m ruff check shared services tests bench scripts deploy
	$(PY) -m ruff format --check shared services tests bench scripts deploy

clean:
	rm -rf $(VENV) .run .pytest_cache services/gateway/node_modules
