"""`validate`: error and bias arithmetic on hand-made bench files; malformed files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kvopt import estimate
from kvopt.bench.validate import compare
from kvopt.serving.load import Load


def bench(**over) -> dict:
    b = {"schema": "kvopt.bench/1", "model": "Llama-3.1-8B", "endpoint": "x",
         "load": {"mode": "rps", "value": 2.0}, "input_len": 500, "output_len": 100,
         "num_requests": 100, "completed": 100, "errors": 0, "duration_s": 50.0,
         "ttft_ms": {"mean": 40.0, "p50": 35.0, "p90": 60.0, "p99": 90.0},
         "itl_ms": {"mean": 8.0, "p50": 8.0, "p90": 9.0, "p99": 10.0},
         "e2e_ms": {"mean": 850.0, "p50": 840.0, "p90": 900.0, "p99": 950.0},
         "output_tok_s": 200.0, "requests_s": 2.0}
    b.update(over)
    return b


def test_error_and_bias_arithmetic() -> None:
    est = estimate(model="Llama-3.1-8B", gpu="H100-SXM", input_len=500, output_len=100,
                   load=Load(mode="rps", value=2.0))
    b = bench()
    checks = {c.metric: c for c in compare(est, b, 20.0)}
    lat = est.latency
    # error = (predicted - measured) / measured x 100
    assert checks["ttft_mean_ms"].error_pct == pytest.approx((lat.ttft_ms - 40.0) / 40.0 * 100)
    assert checks["itl_p99_ms"].error_pct == pytest.approx((lat.tpot_p99_ms - 10.0) / 10.0
                                                           * 100)
    assert checks["output_tok_s"].error_pct == pytest.approx(
        (est.throughput.output_tok_s - 200.0) / 200.0 * 100)
    for c in checks.values():
        assert c.bias == ("over" if c.predicted > c.measured else "under")
        assert c.passed == (abs(c.error_pct) <= 20.0)


def test_per_token_time_and_lengths_from_the_measurement(tmp_path: Path, run_cli) -> None:
    """A bench with per-request TPOT is compared on it (chunk gaps can be bursty), and the
    prediction uses the prompt/output tokens the server's usage reported."""
    est = estimate(model="Llama-3.1-8B", gpu="H100-SXM", input_len=540, output_len=100,
                   load=Load(mode="rps", value=2.0))
    lat = est.latency
    b = bench(tpot_ms={"mean": 10.0, "p50": 9.0, "p90": 11.0, "p99": 12.5},
              itl_ms={"mean": 14.0, "p50": 0.1, "p90": 30.0, "p99": 90.0},
              mean_input_tokens=539.6, mean_output_tokens=100.0)
    f = tmp_path / "b.json"
    f.write_text(json.dumps(b))
    res = run_cli("validate", "--bench", str(f), "--model", "Llama-3.1-8B", "--gpu",
                  "H100-SXM", "--json")
    checks = {c["metric"]: c for c in json.loads(res.stdout)["checks"]}
    assert "itl_mean_ms" not in checks
    # predicted at 540 input tokens (539.6 rounded), measured = the tpot block
    assert checks["tpot_mean_ms"]["predicted"] == pytest.approx(lat.tpot_ms)
    assert checks["tpot_mean_ms"]["error_pct"] == pytest.approx((lat.tpot_ms - 10.0) / 10.0
                                                                * 100)
    assert checks["tpot_p99_ms"]["measured"] == 12.5
    assert checks["ttft_mean_ms"]["predicted"] == pytest.approx(lat.ttft_ms)


def test_validate_cli(tmp_path: Path, run_cli) -> None:
    est = estimate(model="Llama-3.1-8B", gpu="H100-SXM", input_len=500, output_len=100,
                   load=Load(mode="rps", value=2.0))
    lat = est.latency
    exact = bench(ttft_ms={"mean": lat.ttft_ms, "p50": 1, "p90": 1, "p99": lat.ttft_p99_ms},
                  itl_ms={"mean": lat.tpot_ms, "p50": 1, "p90": 1, "p99": lat.tpot_p99_ms},
                  output_tok_s=est.throughput.output_tok_s)
    f = tmp_path / "b.json"
    f.write_text(json.dumps(exact))
    args = ["validate", "--bench", str(f), "--model", "Llama-3.1-8B", "--gpu", "H100-SXM"]
    res = run_cli(*args, "--json")
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert d["passed"] and all(abs(c["error_pct"]) < 1e-6 for c in d["checks"])
    off = bench(itl_ms={"mean": est.latency.tpot_ms * 2, "p50": 1, "p90": 1,
                        "p99": est.latency.tpot_p99_ms})
    f.write_text(json.dumps(off))
    res = run_cli(*args)
    assert res.exit_code == 1 and "itl_mean_ms" in res.stdout and "-50.0% (under) FAIL" in \
        res.stdout


def test_malformed_bench(tmp_path: Path, run_cli) -> None:
    f = tmp_path / "b.json"
    f.write_text(json.dumps(bench(load={"mode": "rps", "value": 0})))
    res = run_cli("validate", "--bench", str(f), "--model", "Llama-3.1-8B", "--gpu", "H100-SXM")
    assert res.exit_code == 1 and "field 'load'" in res.stderr
    f.write_text(json.dumps(bench(schema="other/2")))
    res = run_cli("validate", "--bench", str(f), "--model", "Llama-3.1-8B", "--gpu", "H100-SXM")
    assert res.exit_code == 1 and "is not 'kvopt.bench/1'" in res.stderr
