# kubetask — everything a developer runs. `make run` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8000
STAMP := $(VENV)/.installed

.PHONY: all install run test lint format mypy bench clean

all: lint mypy test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev,ml]'
	touch $(STAMP)

install: $(STAMP)

## run: the embedded default — API + controller + local backend + a real Redis, on 127.0.0.1
run: install
	$(PY) -m api --port $(PORT)

## test: the whole suite (unit, component, integration); tiny data, a few minutes
test: install
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

mypy: install
	$(VENV)/bin/mypy

## bench: figures as ratios against baselines measured in the same run (not tests)
bench: install
	$(PY) -m bench

clean:
	rm -rf $(VENV) .kubetask .pytest_cache .mypy_cache .ruff_cache
