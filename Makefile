# Two commands do all set-up on a machine that has only python3 and make:
#   make demo   runs the main job
#   make test   runs the test suite
#   make lint   runs what a reviewer checks: lint, format (never suppressed), types, import
#               contracts, stale stubs
# Each creates or update the local virtual environment in .venv first (idempotently:
# it is rebuilt only when pyproject.toml changes).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo demo-cluster test lint check-stubs bench soak soak-quick clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) -m engine.cli demo

# The replicated deployment: a local PostgreSQL, two decide servers, a leading and a standby
# learner; one decide server and the leader are killed -9 midway.
demo-cluster: $(STAMP)
	$(PY) -m engine.cli demo --cluster

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP) check-stubs
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	@git grep -n -E '#[[:space:]]*(fmt:[[:space:]]*(skip|off)|yapf:[[:space:]]*disable)' -- '*.py'; \
		test $$? -eq 1 || { echo "formatter suppressed above (or git failed): let ruff format lay the code out"; exit 1; }

# The gRPC stubs are checked in: regenerate them from proto/ and fail when that changes a file
# (stale stubs, or a .proto edited without regenerating). Untracked new stubs count too.
check-stubs: $(STAMP)
	$(PY) -m engine.serving.codegen > /dev/null
	git diff --exit-code -- engine/serving/pb
	@test -z "$$(git status --porcelain -- engine/serving/pb)" || \
		{ git status --short -- engine/serving/pb; echo "untracked stubs: commit them"; exit 1; }

bench: $(STAMP)
	$(PY) -m benchmarks.core

soak: $(STAMP)
	$(PY) -m benchmarks.faults
	$(PY) -m benchmarks.soak

# The same two scripts at smoke size (3 kills, 500 fuzz cases, a 30 s soak): a few minutes.
soak-quick: $(STAMP)
	$(PY) -m benchmarks.faults --quick
	$(PY) -m benchmarks.soak --quick

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
