# geoshare: two commands on a fresh machine, `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test test-quick bench bench-full install install-test lint clean

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

lint: install-test
	$(VENV)/bin/ruff check .

bench: install-test
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk >/dev/null)
	$(PY) -m bench.run --quick
	$(PY) -m bench.ingest

bench-full: install-test
	$(PY) -m bench.run --full

clean:
	rm -rf $(VENV) staticfiles tests/artifacts
