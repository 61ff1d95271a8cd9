"""Shared fixtures."""

from __future__ import annotations

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
