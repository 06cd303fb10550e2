# The README's two commands: `make demo` and `make test`. Both set up .venv first (scripts/setup.sh).
PY := .venv/bin/python
export OMP_NUM_THREADS ?= 2
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: setup demo test lint

setup:
	bash scripts/setup.sh

demo: setup
	$(PY) -m robot_stack demo

test: setup
	$(PY) -m pytest -q --timeout=900 tests

# ruff, then the import contracts of pyproject.toml (the floors of docs/ARCHITECTURE.md).
lint: setup
	$(PY) -m ruff check .
	.venv/bin/lint-imports
