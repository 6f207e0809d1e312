# The two commands of the README: `make demo` and `make test`.
# Each creates the project's virtual environments when missing and installs
# what they need from pyproject.toml; nothing has to be installed by hand.

PYENV_ROOT ?= $(shell pyenv root 2>/dev/null || echo $(HOME)/.pyenv)
# Oldest and newest supported Pythons (pyenv builds; override on the command line).
PYTHON_OLDEST ?= $(lastword $(sort $(wildcard $(PYENV_ROOT)/versions/3.10.*/bin/python3.10)))
PYTHON_NEWEST ?= $(lastword $(sort $(wildcard $(PYENV_ROOT)/versions/3.13.*/bin/python3.13)))

VENV := .venv
VENV_OLDEST := .venv-oldest
PY := $(VENV)/bin/python
PY_OLDEST := $(VENV_OLDEST)/bin/python

.PHONY: demo test lint typecheck pytest pytest-oldest docs bench bench-bulk clean check-pythons

check-pythons:
	@test -n "$(PYTHON_NEWEST)" || { echo "Python 3.13 not found under $(PYENV_ROOT)/versions; set PYTHON_NEWEST=/path/to/python3.13"; exit 1; }
	@test -n "$(PYTHON_OLDEST)" || { echo "Python 3.10 not found under $(PYENV_ROOT)/versions; set PYTHON_OLDEST=/path/to/python3.10"; exit 1; }

$(VENV)/.installed: pyproject.toml | check-pythons
	test -x $(PY) || $(PYTHON_NEWEST) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

$(VENV_OLDEST)/.installed: pyproject.toml | check-pythons
	test -x $(PY_OLDEST) || $(PYTHON_OLDEST) -m venv $(VENV_OLDEST)
	$(PY_OLDEST) -m pip install --quiet --upgrade pip
	$(PY_OLDEST) -m pip install --quiet -e '.[test]'
	touch $@

demo: $(VENV)/.installed
	$(PY) -m parallelkit demo

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

typecheck: $(VENV)/.installed
	$(VENV)/bin/mypy
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/pyright
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/pyright --verifytypes parallelkit --ignoreexternal

pytest: $(VENV)/.installed
	$(PY) -m pytest

pytest-oldest: $(VENV_OLDEST)/.installed
	$(PY_OLDEST) -m pytest

# The documentation site (mkdocs.yml) into site/. --strict: a broken link or
# anchor, or an API reference that does not resolve, fails the build.
docs: $(VENV)/.installed
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

test: lint typecheck docs pytest pytest-oldest

bench: $(VENV)/.installed
	$(PY) -m pip install --quiet joblib
	$(PY) benchmarks/bench_executor.py

# Big payloads through shared memory, beside multiprocessing, faster-fifo and
# joblib (installed here, for the benchmark only: they are no dependencies).
bench-bulk: $(VENV)/.installed
	$(PY) -m pip install --quiet numpy joblib faster-fifo
	$(PY) benchmarks/bench_bulk.py

clean:
	rm -rf $(VENV) $(VENV_OLDEST) build site src/*.egg-info
