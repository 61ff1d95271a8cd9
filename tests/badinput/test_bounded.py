"""Bounded work: Ctrl-C is honoured within a second in long runs (the simulator, a plan's
candidate evaluation, an NSGA-II search), and the largest run each limit allows finishes
under the suite's memory cap."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time

import pytest

from tests.paths import ROOT

M = ["--model", "Llama-3.1-8B", "--gpu", "H100-SXM"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1"}


def _cap() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
    # a test runner started in the background of a non-interactive shell inherits SIGINT
    # ignored, and so would the child (Python then installs no KeyboardInterrupt handler):
    # give the child the default disposition a user's terminal gives it
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("argv", [
    ["simulate", *M, "--input-len", "1000", "--output-len", "100", "--rps", "40",
     "--num-requests", "100000"],
    ["plan", "--model", "Llama-3.1-8B", "--rps", "5", "--input-len", "500", "--output-len",
     "50", "--gpus", "all", "--capacity", "exact"],
    ["pareto", "--model", "Llama-3.1-8B", "--rps", "5", "--input-len", "500", "--output-len",
     "50", "--pop", "400", "--gens", "500"],
], ids=["simulate", "plan", "pareto"])
def test_ctrl_c_is_honoured_within_a_second(argv: list[str]) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "kvopt.cli.main", *argv], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_cap)
    try:
        time.sleep(2.5)  # imported and into the long part
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=10)
        waited = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    err = proc.stderr.read() if proc.stderr else ""
    assert code == 130 and err.strip() == "kvopt: interrupted", err[-2000:]
    assert waited < 1.0, waited


def test_the_largest_allowed_analytic_run_fits_the_cap() -> None:
    t0 = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "kvopt.cli.main", "estimate", *M,
                          "--input-len", "1000", "--output-len", "100", "--offline", "1000000",
                          "--json"], env=ENV, capture_output=True, text=True, timeout=60,
                         preexec_fn=_cap)
    assert res.returncode == 0, res.stderr[-2000:]
    assert time.monotonic() - t0 < 30
