# The two commands a new user needs:
#   make demo   set up a virtualenv and start inferledger on the embedded default
#   make test   set up a virtualenv and run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA_DIR ?= ./inferledger-data

.PHONY: demo serve test setup browser bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml setup.py $(wildcard collector/*.c collector/*.h) | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

setup: $(VENV)/.installed

# Browser tests (reports, dashboard) run Debian's Chromium by path; nothing downloads a browser.
CHROMIUM ?= /usr/bin/chromium
$(CHROMIUM):
	@command -v apt-get >/dev/null || { echo "install Chromium (Debian package chromium) for the browser tests" >&2; exit 1; }
	$$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get install -y -qq chromium >/dev/null

browser: $(CHROMIUM)

demo: setup
	$(BIN)/inferledger demo --data-dir $(DATA_DIR)

serve: setup
	$(BIN)/inferledger serve --data-dir $(DATA_DIR)

test: setup browser
	$(BIN)/python -m pytest -q tests

bench: setup
	$(BIN)/python bench/ingest.py

clean:
	rm -rf $(VENV) $(DATA_DIR) .pytest_cache
