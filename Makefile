# The two commands a new user needs:
#   make demo   set up a virtualenv and start inferledger on the embedded default
#   make test   set up a virtualenv and run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA_DIR ?= ./inferledger-data

.PHONY: demo serve test setup bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(BIN)/inferledger demo --data-dir $(DATA_DIR)

serve: setup
	$(BIN)/inferledger serve --data-dir $(DATA_DIR)

test: setup
	$(BIN)/python -m pytest -q tests

bench: setup
	$(BIN)/python bench/ingest.py

clean:
	rm -rf $(VENV) $(DATA_DIR) .pytest_cache
