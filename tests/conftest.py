"""Shared fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from kvopt.cli.main import cli


@pytest.fixture
def run_cli():
    """Invoke the CLI in-process; returns the click Result (exit_code, stdout, stderr)."""
    runner = CliRunner()

    def _run(*args: str):
        return runner.invoke(cli, list(args), catch_exceptions=False)

    return _run


# a small real plan (one H100 replica of Llama-3.1-8B, FP8, at 5 req/s with p99 SLOs of
# 500 ms TTFT and 50 ms TPOT) for the ops, export and UI tests
PLAN_KW = dict(model="Llama-3.1-8B", rps=5.0, input_len=500, output_len=100,
               slo_ttft_p99_ms=500.0, slo_tpot_p99_ms=50.0, gpus=("H100-SXM",),
               tp_options=(1,), precisions="fp8/fp8", batches=(64,), explain=False)


@pytest.fixture(scope="session")
def plan_dict() -> dict:
    from kvopt import api

    return api.plan(**PLAN_KW).to_dict()


@pytest.fixture(scope="session")
def plan_file(plan_dict: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("plan") / "plan.json"
    p.write_text(json.dumps(plan_dict))
    return p
