# Quickstart targets (README): `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
EXAMPLE := plan --model Llama-3.1-8B --rps 20 --input-len 1024 --output-len 256 --gpus H100-SXM,A100-SXM-80GB,L40S --slo-ttft-p99-ms 500 --slo-tpot-p99-ms 50 --batches 32,128,512

.PHONY: run test lint venv-run venv-dev clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip >/dev/null

venv-run: $(BIN)/python
	$(BIN)/python -m pip install -q -e .

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
