# ramparts: `make run` starts the gateway on the quickstart example, `make test` runs everything.
#
# The package is installed into .venv (not in editable mode): its request hot path is
# compiled with mypyc at install time, and it is rebuilt whenever a source file changes.
# RAMPARTS_PURE=1 installs it as plain Python instead.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DEPS := $(VENV)/.deps
STAMP := $(VENV)/.installed
SOURCES := $(shell find src -name '*.py') setup.py pyproject.toml
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: venv run test lint typecheck unit sysdeps bench bench-proxy bench-fw bench-fw-analysis bench-policies bench-waf bench-waf-stall waf-report docs clean pure

# The virtual environment with every dependency (runtime, tests, build). The compile step
# type-checks against the dependencies, so they come first, with a plain-Python install.
$(DEPS): pyproject.toml
	[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip 'setuptools>=68' wheel 'mypy==2.4.1'
	RAMPARTS_PURE=1 $(PY) -m pip install -q --no-build-isolation '.[test]'
	touch $(DEPS)

# ramparts itself, rebuilt when any source changes.
$(STAMP): $(DEPS) $(SOURCES)
	$(PY) -m pip install -q --no-build-isolation --no-deps --force-reinstall .
	touch $(STAMP)

venv: $(STAMP)

# System packages the tests and benchmarks drive as real peers.
sysdeps:
	@missing=""; \
	command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing="$$missing nginx"; \
	command -v wrk >/dev/null || missing="$$missing wrk"; \
	command -v curl >/dev/null || missing="$$missing curl"; \
	command -v nft >/dev/null || [ -x /usr/sbin/nft ] || missing="$$missing nftables"; \
	command -v iptables-save >/dev/null || [ -x /usr/sbin/iptables-save ] || missing="$$missing iptables"; \
	command -v ip >/dev/null || [ -x /usr/sbin/ip ] || [ -x /sbin/ip ] || missing="$$missing iproute2"; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	[ -d /usr/share/modsecurity-crs/rules ] || missing="$$missing modsecurity-crs"; \
	[ -e /usr/lib/nginx/modules/ngx_http_modsecurity_module.so ] || \
		missing="$$missing libnginx-mod-http-modsecurity"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

run: $(STAMP)
	@$(PY) -m ramparts.cli origin --listen 127.0.0.1:3000 & origin=$$!; \
	trap "kill $$origin" EXIT INT TERM; \
	$(PY) -m ramparts.cli serve examples/quickstart.yaml

lint: $(DEPS)
	$(VENV)/bin/ruff check src tests bench setup.py
	$(VENV)/bin/ruff format --check src tests bench setup.py

typecheck: $(DEPS)
	$(VENV)/bin/mypy

unit: $(STAMP)
	$(VENV)/bin/pytest -q tests/unit

test: $(STAMP) sysdeps lint typecheck
	$(VENV)/bin/pytest -q

bench: $(STAMP) sysdeps bench-proxy bench-policies bench-waf bench-fw bench-fw-analysis

bench-proxy: $(STAMP) sysdeps
	$(PY) bench/proxy.py

# The compiled firewall classifier against the linear reference on ClassBench (issue 3's bar).
bench-policies: $(STAMP) sysdeps
	$(PY) bench/policies.py

bench-waf: $(STAMP) sysdeps
	$(PY) bench/waf.py

bench-waf-stall: $(STAMP) sysdeps
	$(PY) bench/waf_stall.py

waf-report: $(STAMP) sysdeps
	$(PY) -m tests.crs.report --target ramparts

bench-fw: $(STAMP)
	$(PY) bench/firewall.py

# fw lint and fw diff on the 10K ClassBench sets (issue 6's bar: under 60 s each).
bench-fw-analysis: $(STAMP)
	$(PY) bench/fw_analysis.py

docs: $(STAMP)
	$(PY) -m ramparts.config.docs docs/

# Install the same sources as plain Python (quicker to rebuild while iterating).
pure: $(DEPS)
	RAMPARTS_PURE=1 $(PY) -m pip install -q --no-build-isolation --no-deps --force-reinstall .
	touch $(STAMP)

clean:
	rm -rf $(VENV) build src/*.egg-info .mypy_cache .ruff_cache .pytest_cache
