"""The one-replica commands: estimate, simulate, capacity and curve."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def test_estimate_json_under_load_has_new_keys(run_cli) -> None:
    res = run_cli("estimate", "--model", "Llama-3.1-8B", "--gpu", "H100-SXM", "--input-len",
                  "467", "--output-len", "256", "--rps", "4", "--json")
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    for key in ("ttft_p50_ms", "ttft_p90_ms", "ttft_p99_ms", "tpot_p50_ms", "tpot_p90_ms",
                "tpot_p99_ms", "queue_ms", "prefill_ms", "ttft_ms", "tpot_ms", "e2e_ms"):
        assert d["latency"][key] is not None and d["latency"][key] >= 0, key
    assert set(d["load"]) >= {"mode", "value", "steady_state_batch", "utilization", "saturated"}
    assert d["load"]["mode"] == "rps" and d["load"]["saturated"] is False
    sat = json.loads(run_cli("estimate", "--model", "Llama-3.1-8B", "--gpu", "H100-SXM",
                             "--input-len", "467", "--output-len", "256", "--rps", "500",
                             "--json").stdout)
    assert sat["load"]["saturated"] is True and sat["load"]["capacity_rps"] > 0
    assert any("sustains at most" in n for n in sat["notes"])


def test_simulate_and_capacity_commands(run_cli) -> None:
    res = run_cli("simulate", "--model", "Llama-3.1-8B", "--gpu", "H100-SXM", "--input-len",
                  "300", "--output-len", "50", "--concurrency", "8", "--num-requests", "200",
                  "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["load"]["mode"] == "concurrency"
    res = run_cli("capacity", "--model", "Llama-3.1-8B", "--gpu", "H100-SXM", "--input-len",
                  "1000", "--output-len", "200", "--slo-tpot-p99-ms", "15", "--json")
    d = json.loads(res.stdout)
    assert d["goodput_rps"] > 0 and d["tpot_p99_ms"] <= 15
    # an SLO no rate meets: the table says which, and what light load gives
    res = run_cli("capacity", "--model", "Llama-3.1-8B", "--gpu", "H100-SXM", "--input-len",
                  "100", "--output-len", "10", "--slo-ttft-p99-ms", "0.5")
    assert res.exit_code == 0, res.output
    assert "no rate meets the ttft_p99 SLO: even at light load" in res.stdout
    # a replica that does not fit says so (it read "no rate meets the does not fit in
    # memory: no rate is sustainable")
    res = run_cli("capacity", "--model", "Llama-3.1-70B", "--gpu", "L40S", "--weights", "fp8",
                  "--input-len", "100", "--output-len", "10")
    assert res.exit_code == 0, res.output
    assert "does not fit on 1x L40S" in res.stdout and "GiB of weights" in res.stdout
    assert "no rate meets the does" not in res.stdout


def test_bad_serving_input(run_cli, tmp_path: Path) -> None:
    base = ["estimate", "--model", "Llama-2-7B", "--gpu", "H100-SXM", "--output-len", "64"]
    # out-of-range option values are usage errors (exit 2, the option named on one line)
    for args, text in ((["--input-len", "100", "--rps", "0"], "--rps"),
                       (["--input-len", "100", "--rps", "-3"], "--rps"),
                       (["--input-len", "100", "--rps", "inf"], "'inf': must be a finite"),
                       (["--input-len", "100", "--concurrency", "0"], "--concurrency")):
        res = run_cli(*base, *args)
        assert res.exit_code == 2, (args, res.output)
        assert text in res.stderr and res.stderr.count("\n") == 1, (args, res.stderr)
    for args, text in ((["--input-len-dist", f"csv:{tmp_path}/missing.csv", "--rps", "1"],
                        "cannot read it"),
                       (["--input-len-dist", "lognormal:mean=3000,sigma=1", "--rps", "1"],
                        "beyond Llama-2-7B's context of 4096"),
                       (["--input-len-dist", "zipf:a=2", "--rps", "1"],
                        "unknown distribution")):
        res = run_cli(*base, *args)
        assert res.exit_code == 1, (args, res.output)
        assert text in res.stderr, (args, res.stderr)
    bad = tmp_path / "bad.csv"
    bad.write_text("length\n10\nabc\n")
    res = run_cli(*base, "--input-len-dist", f"csv:{bad}", "--rps", "1")
    assert res.exit_code == 1 and "line 3" in res.stderr
    res = run_cli(*base, "--input-len", "10", "--rps", "1", "--batch", "2")
    assert res.exit_code == 2


def test_curve_command_draws_the_load_curve(run_cli) -> None:
    """`kvopt curve`: by default 10 Poisson rates from 5% to 95% of capacity and one at 110%;
    every point is what `estimate --rps` gives at that rate, the p99s never fall as the rate
    rises, and only the point above capacity is saturated."""
    base = ["--model", "Llama-3.1-8B", "--gpu", "H100-SXM", "--input-len", "1024",
            "--output-len", "256"]
    res = run_cli("curve", *base, "--json")
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    pts, cap = d["points"], d["capacity_rps"]
    assert d["mode"] == "rps" and len(pts) == 11 and cap > 0
    assert [p["value"] for p in pts] == pytest.approx(
        [cap * (0.05 + 0.1 * i) for i in range(10)] + [cap * 1.1])
    assert [p["saturated"] for p in pts] == [False] * 10 + [True]
    assert pts[-1]["ttft_p99_ms"] is None  # the queue never drains: null in JSON
    below = pts[:-1]
    for key in ("ttft_p99_ms", "tpot_p99_ms", "steady_state_batch", "output_tok_s"):
        vals = [p[key] for p in below]
        assert vals == sorted(vals), key
    one = json.loads(run_cli("estimate", *base, "--rps", str(below[3]["value"]),
                             "--json").stdout)
    assert one["latency"]["ttft_p99_ms"] == pytest.approx(below[3]["ttft_p99_ms"])
    assert one["latency"]["tpot_p99_ms"] == pytest.approx(below[3]["tpot_p99_ms"])
    res = run_cli("curve", *base, "--concurrency", "8,1,8", "--json")
    d = json.loads(res.stdout)
    assert d["mode"] == "concurrency" and [p["value"] for p in d["points"]] == [1.0, 8.0]
    res = run_cli("curve", *base, "--rps", "2,4")
    assert res.exit_code == 0 and "TTFT p99" in res.stdout and "capacity" in res.stdout


@pytest.mark.parametrize(("args", "text"), [
    (["--rps", "2,x"], "'x' is not a number"),
    (["--rps", "2,-1"], "'-1': must be a finite number with 0.001 <= value"),
    (["--concurrency", "2.5"], "'2.5' is not an integer"),
    (["--rps", "2", "--concurrency", "3"], "give --rps or --concurrency, not both"),
    (["--points", "1"], "--points"),
])
def test_curve_bad_input(run_cli, args: list[str], text: str) -> None:
    res = run_cli("curve", "--model", "Llama-3.1-8B", "--gpu", "H100-SXM", "--input-len", "100",
                  "--output-len", "10", *args)
    assert res.exit_code == 2 and text in res.output and "Traceback" not in res.output
