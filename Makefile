# Two commands on a fresh clone: `make bench ARGS="-k vit"` and `make test`. Each creates .venv when it is
# missing or older than pyproject.toml, installs the project with its dev extra, then runs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.lvm-installed
ARGS ?=

.PHONY: all install test bench bench-smoke lint fmt clean browser-deps

all: test

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest tests/ $(ARGS)

bench: $(STAMP)
	$(PY) -m pytest benches/ --benchmark-autosave $(ARGS)

bench-smoke: $(STAMP)
	$(PY) -m pytest benches/ --lvm-profile smoke $(ARGS)

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m mypy

fmt: $(STAMP)
	$(PY) -m ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .benchmarks
