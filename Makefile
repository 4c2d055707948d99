# Two commands do all set-up on a machine that has only python3 and make:
#   make demo   runs the main job
#   make test   runs the test suite
# Both create or update the local virtual environment in .venv first (idempotently:
# it is rebuilt only when pyproject.toml changes).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench soak clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) -m engine.cli demo

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy engine
	$(VENV)/bin/lint-imports

bench: $(STAMP)
	$(PY) -m benchmarks.core

soak: $(STAMP)
	$(PY) -m benchmarks.faults
	$(PY) -m benchmarks.soak

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
