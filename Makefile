# ramparts: `make run` starts the gateway on the quickstart example, `make test` runs everything.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test lint typecheck unit sysdeps bench bench-proxy docs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

# System packages the tests and benchmarks drive as real peers.
sysdeps:
	@missing=""; \
	command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing="$$missing nginx"; \
	command -v wrk >/dev/null || missing="$$missing wrk"; \
	command -v curl >/dev/null || missing="$$missing curl"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

run: $(STAMP)
	@$(PY) -m ramparts.cli origin --listen 127.0.0.1:3000 & origin=$$!; \
	trap "kill $$origin" EXIT INT TERM; \
	$(PY) -m ramparts.cli serve examples/quickstart.yaml

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

typecheck: $(STAMP)
	$(VENV)/bin/mypy

unit: $(STAMP)
	$(VENV)/bin/pytest -q tests/unit

test: $(STAMP) sysdeps lint typecheck
	$(VENV)/bin/pytest -q

bench: $(STAMP) sysdeps bench-proxy

bench-proxy: $(STAMP) sysdeps
	$(PY) bench/proxy.py

docs: $(STAMP)
	$(PY) -m ramparts.config.docs docs/

clean:
	rm -rf $(VENV) build src/*.egg-info .mypy_cache .ruff_cache .pytest_cache
