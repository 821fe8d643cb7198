# Two commands on a fresh clone: `make bench ARGS="-k vit"` and `make test`. Each creates .venv when it is
# missing or older than pyproject.toml, installs the project with its dev extra, then runs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.lvm-installed
ARGS ?=

.PHONY: all install test test-slow bench bench-smoke lint fmt clean browser-deps viz baseline mutation gpu-check accuracy dataset-deps docs

all: test

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

# Two pytest-xdist workers: the fast tests are independent (each writes under its own tmp_path) and the suite is
# mostly child processes and waits; two workers halve its time on a 2-core machine.
test: $(STAMP)
	$(PY) -m pytest tests/ -m "not slow" -n 2 $(ARGS)

# The multi-process end-to-end tests (xdist, shards, sweep, torchrun, TensorBoard, max-batch bisection); CI runs both.
test-slow: $(STAMP)
	$(PY) -m pytest tests/ -m slow $(ARGS)

# First thing on a machine with an NVIDIA GPU: the CUDA paths end to end, offline, under 9 minutes; logs under
# gpu-check/<UTC time>/ (docs/gpu-check.md). Without a usable GPU it stops at once, non-zero.
gpu-check: $(STAMP)
	$(PY) tools/gpu_check.py $(ARGS)

bench: $(STAMP)
	$(PY) -m pytest benches/ --benchmark-autosave $(ARGS)

bench-smoke: $(STAMP)
	$(PY) -m pytest benches/ --lvm-profile smoke $(ARGS)

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m mypy
	$(VENV)/bin/lint-imports   # the layers of docs/architecture.md ([tool.importlinter] in pyproject.toml)

# The documentation site into site/: the generated tables (docs/reference/) from the code, then a strict build
# (a broken link or anchor fails). Needs the docs extra, installed here on first use.
docs: $(STAMP)
	@$(PY) -c "import mkdocs, material, mkdocstrings_handlers.python" 2>/dev/null || $(PY) -m pip install --quiet -e ".[docs]"
	$(PY) tools/gen_docs.py
	$(PY) -m mkdocs build --strict $(ARGS)

fmt: $(STAMP)
	$(PY) -m ruff check --fix .

# Refresh the CI baseline of deterministic counts after an intended change to a model or the counter.
baseline: $(STAMP)
	rm -rf .baseline-run
	$(PY) -m pytest benches/bench_flops.py --lvm-profile smoke --lvm-out .baseline-run --lvm-run-id base -q
	$(PY) -m lvmharness baseline .baseline-run/base -o benches/baseline/smoke.json
	rm -rf .baseline-run

# Mutation testing of stats, compare, results, measure/latency, measure/flops (slow; not part of CI).
# MODULES="stats compare" picks some; MUTATION_TIMEOUT_S bounds each module's run.
mutation: $(STAMP)
	$(PY) tools/mutation.py $(MODULES)

viz: $(STAMP)
	$(PY) model_viz.py $(ARGS)

# Debian's chromium for the browser tests (root; CI runs this).
browser-deps:
	@command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

# The accuracy ladder on Fashion-MNIST (docs/accuracy.md): CONFIG=quick (minutes on a CPU) or CONFIG=full.
CONFIG ?= quick
accuracy: $(STAMP)
	$(PY) -m lvmharness accuracy --config $(CONFIG) $(ARGS)

# Debian's Fashion-MNIST IDX files under /usr/share/datasets/fashion-mnist (root; CI runs this).
dataset-deps:
	@test -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz || (apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .benchmarks .mutation site
