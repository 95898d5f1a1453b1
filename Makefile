# nightrec: `make demo` and `make test` work on a fresh machine (see README).
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TF_CPP_MIN_LOG_LEVEL := 2
export PYSPARK_PYTHON := $(CURDIR)/$(PY)
export PYSPARK_DRIVER_PYTHON := $(CURDIR)/$(PY)

.PHONY: venv system-deps demo test test-fast lint audit format bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 (or run: make PYTHON=/path/to/python3.11)" >&2; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

system-deps:
	@bash scripts/system-deps.sh

demo: venv system-deps
	$(VENV)/bin/nightrec run --data data/ml-latest-small --out var
	$(VENV)/bin/nightrec serve --out var --port 8080

test: venv system-deps
	$(PY) -m pytest

test-fast: venv system-deps
	$(PY) -m pytest -m "not slow"

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# Known vulnerabilities in every pinned dependency (pip-audit in a venv of its own).
audit: .venv-audit/.installed
	.venv-audit/bin/python scripts/audit.py

.venv-audit/.installed: requirements-audit.txt
	test -x .venv-audit/bin/python || $(PYTHON) -m venv .venv-audit
	.venv-audit/bin/python -m pip install --quiet --no-deps -r requirements-audit.txt
	touch $@

format: venv
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: venv system-deps
	$(PY) -m benchmarks.job

clean:
	rm -rf var .pytest_cache spark-warehouse
