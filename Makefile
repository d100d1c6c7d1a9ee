# geoshare: two commands on a fresh machine, `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test test-quick test-js bench bench-full install install-test lint lock clean

# Both install the versions pinned, with their hashes, in the lock files (`make lock`),
# then geoshare itself without dependencies: `make run` the runtime's (requirements.lock,
# what the Docker image installs), `make test` the runtime's, the test and the bench
# extras' (requirements-dev.lock, the same runtime versions).
$(VENV)/.installed: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet --require-hashes -r requirements.lock
	$(PIP) install --quiet --no-deps -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed requirements-dev.lock pyproject.toml
	$(PIP) install --quiet --require-hashes -r requirements-dev.lock
	$(PIP) install --quiet --no-deps -e .
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

# Lint first (ruff, the import layers, mypy), then the JavaScript and Python suites.
test: lint test-js
	$(PY) -m pytest --durations=15

# Without the tests that start real processes (uvicorn, Redis, PostgreSQL, Chromium).
test-quick: install-test
	$(PY) -m pytest -m "not slow"

# The pure JavaScript modules of static/maps/js under node's own test runner (node 20+,
# no npm packages); local-time functions read TZ, so it is fixed.
NODE ?= node
test-js:
	TZ=UTC $(NODE) --test tests/js/*.test.mjs

# ruff; import-linter holds the layers of .importlinter (docs/architecture.md); mypy
# with django-stubs over maps/ and geoshare/ (pyproject.toml's [tool.mypy]).
lint: install-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

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

# Regenerates both lock files from pyproject.toml, for Python 3.11 on Linux x86_64 (the
# image's platform; hashes of every file of each pinned release, so other machines
# verify theirs too), with uv in .venv. Pins already in a lock are kept where the ranges
# still allow them; `make lock UPGRADE=1` takes the newest releases the ranges allow.
# Each file's header holds its command.
UV_VERSION ?= 0.13.10
LOCK := $(VENV)/bin/uv pip compile pyproject.toml
LOCK_FLAGS := --generate-hashes --python-version 3.11 --python-platform x86_64-unknown-linux-gnu

lock:
	@test -x $(VENV)/bin/uv || { $(PYTHON) -m venv $(VENV) && $(PIP) install --quiet uv==$(UV_VERSION); }
	$(LOCK) $(LOCK_FLAGS) $(if $(UPGRADE),--upgrade) -o requirements.lock
	$(LOCK) --extra test --extra bench $(LOCK_FLAGS) $(if $(UPGRADE),--upgrade) -o requirements-dev.lock

clean:
	rm -rf $(VENV) staticfiles tests/artifacts
