# Two entry points for a fresh machine: `make demo` and `make test`.
# Each bootstraps what it needs (virtualenv, install, and for tests the Samba peer).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck unit interop peers bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

peers:
	bash scripts/install-peers.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench tools

typecheck: $(STAMP)
	$(VENV)/bin/mypy

unit: $(STAMP)
	$(PY) -m pytest -q -ra tests/unit

interop: $(STAMP) peers
	$(PY) -m pytest -q -ra tests/interop

test: $(STAMP) peers lint typecheck
	$(PY) -m pytest -q -ra

demo: $(STAMP)
	$(PY) -m smbsessions.demo

bench: $(STAMP) peers
	$(PY) -m bench.bench_codec
	$(PY) -m bench.bench_client
	$(PY) -m bench.bench_server
	$(PY) -m bench.bench_sweep

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
