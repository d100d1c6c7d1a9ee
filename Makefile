# geoshare: two commands on a fresh machine, `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
HOST ?= 127.0.0.1
PORT ?= 8000
# wsproto holds about a third of the memory per idle socket of the default
# websockets implementation (docs/benchmarks.md); compression is off because
# permessage-deflate costs hundreds of KiB per connection (docs/security.md).
UVICORN_FLAGS ?= --ws wsproto --ws-per-message-deflate false --ws-max-size 65536 \
	--ws-ping-interval 20 --ws-ping-timeout 20 --proxy-headers

.PHONY: run test bench bench-full install install-test lint clean

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

run: export DEBUG ?= 1
run: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput -v 0
	$(PY) manage.py demo --host $(HOST) --port $(PORT)
	$(VENV)/bin/uvicorn geoshare.asgi:application --host $(HOST) --port $(PORT) $(UVICORN_FLAGS)

test: install-test
	$(PY) -m pytest

lint: install-test
	$(VENV)/bin/ruff check .

bench: install-test
	$(PY) -m bench.run --quick

bench-full: install-test
	$(PY) -m bench.run --full

clean:
	rm -rf $(VENV) staticfiles tests/artifacts
