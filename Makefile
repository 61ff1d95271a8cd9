# Quickstart targets (README): `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
EXAMPLE := estimate --model Llama-3.1-8B --gpu H100-SXM --input-len 1024 --output-len 256 --batch 32

.PHONY: run test lint venv-run venv-dev clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip >/dev/null

venv-run: $(BIN)/python
	$(BIN)/python -m pip install -q .

venv-dev: $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev]'

run: venv-run
	$(BIN)/kvopt $(EXAMPLE)

test: venv-dev
	$(BIN)/python -m pytest

lint: venv-dev
	$(BIN)/python -m ruff check kvopt tests benchmarks
	$(BIN)/python -m mypy --strict kvopt

clean:
	rm -rf $(VENV) build dist *.egg-info
