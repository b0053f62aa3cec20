# liveroom: `make run` serves the app, `make test` runs the whole suite. Both set themselves up.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
# daphne with liveroom's extensions and limits (liveroom/server/__main__.py), as everywhere else.
SERVER := $(BIN)/python -m liveroom.server
# `make test-services` (and CI's second pass) uses these local servers.
SERVICES_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/liveroom
SERVICES_REDIS_URL ?= redis://127.0.0.1:6379/0

.PHONY: run test test-services bench lint lock format migrations-check screenshots chromium haproxy gettext messages clean

$(VENV)/.app: requirements.txt .python-version
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 12) and "liveroom needs Python 3.12 or newer (Django 6); found " + sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements.txt
	touch $@

$(VENV)/.dev: $(VENV)/.app requirements-dev.txt
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements-dev.txt
	touch $@

run: $(VENV)/.app
	DEBUG=$${DEBUG-1} $(BIN)/python manage.py migrate --no-input
	@DEBUG=$${DEBUG-1} MALLOC_ARENA_MAX=2 $(SERVER) -b $(HOST) -p $(PORT) & pid=$$!; \
	trap 'kill $$pid 2>/dev/null' INT TERM EXIT; \
	until $(BIN)/python -c 'import urllib.request as u; u.urlopen("http://$(HOST):$(PORT)/readyz", timeout=1)' 2>/dev/null; do \
		kill -0 $$pid 2>/dev/null || exit 1; sleep 0.2; \
	done; \
	echo "liveroom is ready at http://$(HOST):$(PORT)/ (Ctrl+C stops it)"; \
	wait $$pid

test: $(VENV)/.dev chromium haproxy gettext
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-services: $(VENV)/.dev chromium haproxy gettext
	DATABASE_URL=$(SERVICES_DATABASE_URL) REDIS_URL=$(SERVICES_REDIS_URL) $(BIN)/python -m pytest $(PYTEST_ARGS)

# The benchmarks of docs/performance.md on PostgreSQL + Redis (slow: about half an hour): fan-out
# from 100 to 10,000 pages (two processes at 10,000), a room of 50,000 members, a burst of 2,000
# joins, 1,000 arrivals against the bare reference and the floor (bench/floor.py). Results go to
# a dated folder of docs/results/.
RESULTS := docs/results/$(shell date +%F)
bench: $(VENV)/.dev
	mkdir -p $(RESULTS)
	export DATABASE_URL=$(SERVICES_DATABASE_URL) REDIS_URL=$(SERVICES_REDIS_URL); \
	$(BIN)/python -m bench.fanout --json $(RESULTS)/fanout.json && \
	$(BIN)/python -m bench.crowd --json $(RESULTS)/crowd.json && \
	$(BIN)/python -m bench.burst --json $(RESULTS)/burst.json && \
	$(BIN)/python -m bench.arrival --floor --json $(RESULTS)/arrival.json
	$(BIN)/python -m bench.plot $(RESULTS)/fanout.json $(RESULTS)/fanout-latency.svg

# The browser tests drive Debian's Chromium; Playwright never downloads a browser of its own.
chromium:
	@command -v chromium >/dev/null || { \
		[ "$$(id -u)" = 0 ] || { echo "Browser tests need Chromium: sudo apt-get install chromium"; exit 1; }; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# The proxy tests run Debian's HAProxy with deploy/haproxy.cfg, as compose.yaml runs the image.
haproxy:
	@command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || { \
		[ "$$(id -u)" = 0 ] || { echo "Proxy tests need HAProxy: sudo apt-get install haproxy"; exit 1; }; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy >/dev/null; }

# The catalogues of locale/ (docs/languages.md): every marked string of the code and templates
# found again, then compiled. The .mo files are committed, so running needs no gettext; the
# suite checks both are current (tests/test_languages.py).
MESSAGES := --no-location --no-obsolete --ignore=.venv --ignore=tests --ignore=bench \
	--ignore=harness --ignore=examples --ignore=docs --ignore=deploy
LOCALES := $(patsubst locale/%/,-l %,$(wildcard locale/*/))
messages: $(VENV)/.dev gettext
	$(BIN)/python manage.py makemessages $(LOCALES) $(MESSAGES)
	$(BIN)/python manage.py compilemessages --ignore=.venv

# Django's makemessages and compilemessages run GNU gettext.
gettext:
	@command -v xgettext >/dev/null && command -v msgfmt >/dev/null || { \
		[ "$$(id -u)" = 0 ] || { echo "Catalogue checks need GNU gettext: sudo apt-get install gettext"; exit 1; }; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gettext >/dev/null; }

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

# Recompile the lock files from requirements.in and requirements-dev.in (README: upgrading).
LOCK := $(BIN)/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras \
	--no-emit-index-url --no-emit-find-links
lock: $(VENV)/.dev
	$(LOCK) $(LOCK_ARGS) -o requirements.txt requirements.in
	$(LOCK) $(LOCK_ARGS) -o requirements-dev.txt requirements-dev.in

format: $(VENV)/.dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

migrations-check: $(VENV)/.app
	DEBUG=1 $(BIN)/python manage.py makemigrations --check --dry-run

screenshots: $(VENV)/.dev chromium
	LIVEROOM_UPDATE_SCREENSHOTS=1 $(BIN)/python -m pytest tests/test_browser.py

clean:
	rm -rf $(VENV) db.sqlite3 db.sqlite3-wal db.sqlite3-shm
