# geoshare: two commands on a fresh machine, `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test test-quick test-js bench bench-full install install-test lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e '.[bench]'
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed pyproject.toml
	$(PIP) install --quiet -e '.[test,bench]'
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test
	@bash scripts/install-browser.sh
	@bash scripts/install-deploy-tools.sh

# Serves with geoshare's uvicorn flags (geoshare/serving.py), as the tests and bench do.
run: export DEBUG ?= 1
run: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput -v 0
	$(PY) manage.py demo --host $(HOST) --port $(PORT)
	$(PY) -m geoshare.serving --host $(HOST) --port $(PORT)

test: install-test
	$(PY) -m pytest

# Without the tests that start real processes (uvicorn, Redis, PostgreSQL, Chromium).
test-quick: install-test
	$(PY) -m pytest -m "not slow"

# The pure JavaScript modules of static/maps/js under node's own test runner (node 20+,
# no npm packages); local-time functions read TZ, so it is fixed.
NODE ?= node
test-js:
	TZ=UTC $(NODE) --test tests/js/*.test.mjs

lint: install-test
	$(VENV)/bin/ruff check .

# Both end with the table of issue 16's targets (geoshare, bare control, ratio, met).
# Quick: S1 to 500, S2 at 2,000, S3, phone ingest (5 s a door), storms of 2,000+500
# sockets and a room of 500. Full: the whole grid, ingest 10 s a door, storms of
# 10,000+2,000 sockets and a room of 2,000. Both run bench.history last.
bench: install-test
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk >/dev/null)
	$(PY) -m bench.run --quick

bench-full: install-test
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk >/dev/null)
	$(PY) -m bench.run --full

clean:
	rm -rf $(VENV) staticfiles tests/artifacts
