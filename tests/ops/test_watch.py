"""`kvopt watch` against fake engine endpoints on 127.0.0.1 (one per alert) and the
metric arithmetic (histogram quantiles, counter resets, replicas combined)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from kvopt.choices import WATCH_EXIT_CODES
from kvopt.ops import metrics
from kvopt.ops.watch import Thresholds, Watcher, target
from tests.ops.fake_engine import Behaviour, FakeEngine, exposition


def _watch(run_cli, plan_file: Path, url: str, *extra: str) -> tuple[int, list[dict]]:
    res = run_cli("watch", str(plan_file), "--metrics-url", url, "--interval-s", "0.25",
                  "--json", *extra)
    return res.exit_code, [json.loads(x) for x in res.stdout.splitlines()]


def _kinds(reports: list[dict]) -> set[str]:
    return {a["kind"] for r in reports for a in r["alerts"]}


@pytest.fixture(scope="module")
def predicted(plan_file) -> dict:
    """kvopt's p99s at the planned 5 req/s, as watch predicts them (the healthy engine
    serves exactly these)."""
    from click.testing import CliRunner

    from kvopt.cli.main import cli

    def run(*args: str):
        return CliRunner().invoke(cli, list(args), catch_exceptions=False)

    with FakeEngine(Behaviour(rate_rps=5.0)) as url:
        _, reports = _watch(run, plan_file, url, "--count", "1", "--min-requests", "1")
    return dict(reports[-1]["predicted"])


def _healthy(predicted: dict, **kw: float) -> Behaviour:
    return Behaviour(ttft_s=predicted["ttft_p99_ms"] / 1e3,
                     tpot_s=predicted["tpot_p99_ms"] / 1e3, **kw)


def test_healthy_deployment_reads_back_what_it_serves(run_cli, plan_file, plan_dict,
                                                      predicted) -> None:
    with FakeEngine(_healthy(predicted, rate_rps=5.0)) as url:
        code, reports = _watch(run_cli, plan_file, url, "--count", "2", "--min-requests", "1")
    assert code == WATCH_EXIT_CODES["ok"], reports
    assert len(reports) == 2 and {r["status"] for r in reports} == {"ok"}
    r = reports[-1]
    obs, entry = r["observed"], plan_dict["fleet"][0]
    assert obs["requests_s"] == pytest.approx(5.0, rel=0.1)
    assert obs["output_tok_s"] == pytest.approx(500.0, rel=0.1)
    ttft, tpot = predicted["ttft_p99_ms"], predicted["tpot_p99_ms"]
    assert ttft <= obs["ttft_p99_ms"] <= ttft * 1.1 and tpot <= obs["tpot_p99_ms"] <= tpot * 1.1
    assert r["planned"]["rate_rps"] == entry["rate_per_replica_rps"]
    assert r["planned"]["goodput_rps"] == entry["goodput_per_replica_rps"]
    # kvopt's prediction at the observed rate, and the money at the observed load
    assert r["predicted"]["ttft_p99_ms"] > 0 and r["predicted"]["tpot_p99_ms"] > 0
    assert r["cost"]["usd_per_hour"] == pytest.approx(entry["usd_per_hour"])
    assert r["cost"]["usd_per_million_output_tokens"] == pytest.approx(
        entry["usd_per_hour"] / (obs["output_tok_s"] * 3600) * 1e6)


@pytest.mark.parametrize("behaviour, extra, kind, status", [
    (Behaviour(rate_rps=100.0), (), "over_utilized", "critical"),  # goodput is ~65 req/s
    (Behaviour(waiting=64), (), "over_utilized", "critical"),  # a full batch queued
    (Behaviour(kv_usage=0.97), (), "over_utilized", "critical"),
    (Behaviour(ttft_s=0.46), (), "slo_at_risk", "warning"),  # >= 90% of 500 ms
    (Behaviour(ttft_s=0.8), (), "slo_at_risk", "critical"),  # above the SLO
], ids=["rate", "queue", "kv", "slo-risk", "slo-breach"])
def test_each_alert_fires_with_its_exit_code(run_cli, plan_file, behaviour, extra, kind,
                                             status) -> None:
    with FakeEngine(behaviour) as url:
        code, reports = _watch(run_cli, plan_file, url, "--count", "1", "--min-requests", "1",
                               *extra)
    assert kind in _kinds(reports), reports
    assert reports[-1]["status"] == status
    assert code == WATCH_EXIT_CODES[status]
    others = _kinds(reports) - {kind, "prediction_drift"}  # an SLO breach drifts too
    assert not others, reports


@pytest.mark.parametrize("engine, extra", [("vllm", ()), ("sglang", ("--engine", "sglang"))])
def test_prediction_drift_fires_at_twice_the_predicted_tpot(run_cli, plan_file, predicted,
                                                             engine, extra) -> None:
    b = _healthy(predicted)
    with FakeEngine(Behaviour(engine=engine, ttft_s=b.ttft_s, tpot_s=2 * b.tpot_s)) as url:
        code, reports = _watch(run_cli, plan_file, url, "--count", "1", "--min-requests", "1",
                               *extra)
    assert _kinds(reports) == {"prediction_drift"}, reports
    assert reports[-1]["status"] == "warning" and code == WATCH_EXIT_CODES["warning"]


def test_under_utilized_only_after_the_window(run_cli, plan_file) -> None:
    with FakeEngine(Behaviour(rate_rps=1.0)) as url:  # 20% of the planned 5 req/s
        code, reports = _watch(run_cli, plan_file, url, "--count", "6",
                               "--under-window-s", "1.0")
    low = ["under_utilized" in {a["kind"] for a in r["alerts"]} for r in reports]
    assert low[:2] == [False, False] and low[-1], low  # 0.25 s, 0.5 s: not yet; 1.5 s: yes
    assert code == WATCH_EXIT_CODES["warning"]


def test_unreachable_endpoint_exits_5_and_readable_lines(run_cli, plan_file) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    res = run_cli("watch", str(plan_file), "--metrics-url", f"http://127.0.0.1:{port}/metrics",
                  "--once")
    assert res.exit_code == WATCH_EXIT_CODES["unreachable"]
    assert "UNREACHABLE" in res.stdout and f"127.0.0.1:{port}" in res.stdout
    with FakeEngine(Behaviour(rate_rps=100.0)) as url:
        res = run_cli("watch", str(plan_file), "--metrics-url", url, "--once",
                      "--interval-s", "0.25")
    lines = res.stdout.splitlines()
    assert "CRITICAL" in lines[0] and "req/s (plan 5" in lines[0]
    assert lines[1].startswith("  CRITICAL over_utilized:")


def test_bad_entry_is_a_one_line_error(run_cli, plan_file) -> None:
    res = run_cli("watch", str(plan_file), "--metrics-url", "http://127.0.0.1:1/metrics",
                  "--entry", "nope")
    assert res.exit_code == 1
    assert res.stderr.count("\n") == 1 and "--entry='nope'" in res.stderr


def test_histogram_quantile_is_prometheus_interpolation() -> None:
    h = metrics.Histogram((0.1, 0.2, 0.4, float("inf")), (10.0, 50.0, 100.0, 100.0), 0, 100)
    # rank 99 lies in (0.2, 0.4] holding 50 (cumulative 50 -> 100): 0.2 + 0.2 x 49/50
    assert h.quantile(0.99) == pytest.approx(0.2 + 0.2 * 49 / 50)
    assert h.quantile(0.05) == pytest.approx(0.05)  # first bucket from 0
    tail = metrics.Histogram((0.1, float("inf")), (1.0, 100.0), 0, 100)
    assert tail.quantile(0.99) == 0.1  # in +Inf: the highest finite bound
    assert metrics.Histogram((), (), 0, 0).quantile(0.99) is None


def test_window_rates_reset_and_replicas() -> None:
    b = Behaviour(rate_rps=4.0)
    a1 = metrics.parse(exposition(b, 10.0), engine="vllm", t=100.0)
    a2 = metrics.parse(exposition(b, 12.0), engine="vllm", t=102.0)
    w = metrics.window(a1, a2)
    assert w.requests_s == pytest.approx(4.0)  # both finish reasons summed
    assert w.completed == pytest.approx(8.0)
    assert w.prompt_tok_s == pytest.approx(4.0 * 500)
    restarted = metrics.parse(exposition(b, 1.0), engine="vllm", t=102.0)
    assert metrics.window(a1, restarted).requests_s == pytest.approx(4.0 / 2)  # 4 since 0
    two = metrics.combine([a2, metrics.parse(exposition(Behaviour(rate_rps=2.0, kv_usage=0.6),
                                                     12.0), engine="vllm", t=102.0)])
    one = metrics.combine([a1, metrics.parse(exposition(Behaviour(rate_rps=2.0), 10.0),
                                             engine="vllm", t=100.0)])
    assert metrics.window(one, two).requests_s == pytest.approx(6.0)
    assert two.gauges["kv_usage"] == pytest.approx(0.4)  # the mean of 0.2 and 0.6
    assert metrics.detect_engine(exposition(Behaviour(engine="sglang"), 1.0)) == "sglang"


def test_older_vllm_names_and_untyped_counters() -> None:
    text = ("vllm:gpu_cache_usage_perc 0.5\nvllm:num_requests_waiting 3\n"
            "vllm:request_success_total 40\n")
    s = metrics.parse(text, engine="vllm", t=0.0)
    assert s.gauges == {"kv_usage": 0.5, "waiting": 3.0}
    assert s.counters == {"requests": 40.0}
    with pytest.raises(Exception, match="metrics"):
        metrics.parse("this is { not prometheus", engine="vllm", t=0.0)


def test_under_utilization_clock_resets_when_load_returns(plan_dict) -> None:
    w = Watcher(target=target(plan_dict, entry=None, replicas=1),
                thresholds=Thresholds(under_window_s=10))
    low = metrics.Window(seconds=5, requests_s=0.5, prompt_tok_s=None, output_tok_s=None,
                         completed=2, ttft_p99_ms=None, tpot_p99_ms=None, e2e_p99_ms=None,
                         running=None, waiting=None, kv_usage=None)
    ok = metrics.Window(**{**low.to_dict(), "requests_s": 5.0})
    assert w.evaluate(low, 105).status == "ok"  # low since 100
    assert w.evaluate(low, 115).status == "warning"  # 15 s > 10 s
    assert w.evaluate(ok, 120).status == "ok"
    assert w.evaluate(low, 125).status == "ok"  # the clock started again at 120


def test_the_prediction_runs_with_the_plans_engine_release(plan_dict) -> None:
    """A plan made with --engine-version is watched against predictions with that release's
    overheads (vLLM 0.19.0's fitted request overhead lands on every TTFT)."""
    import copy

    from kvopt.catalog.engines import load_engine
    from kvopt.ops.watch import KvoptPredictor

    assert plan_dict["fleet"][0]["engine"] == "vllm"
    named = copy.deepcopy(plan_dict)
    named["inputs"]["space"]["engine_version"] = "0.19.0"
    plain_t, named_t = (target(p, entry=None, replicas=1) for p in (plan_dict, named))
    assert (plain_t.engine_version, named_t.engine_version) == (None, "0.19.0")
    rate = float(plan_dict["fleet"][0]["rate_per_replica_rps"])
    plain, fitted = (KvoptPredictor(t)(rate)[0] for t in (plain_t, named_t))
    extra = load_engine("vllm", None, "0.19.0").request_overhead_ms
    assert plain is not None and fitted is not None and extra > 10
    assert fitted - plain > 0.8 * extra


def test_the_prediction_runs_with_the_plans_engine_args(plan_dict) -> None:
    """A plan made with --engine-arg is watched against predictions with those flags: a
    40 ms request overhead set as a flag lands on the p99 TTFT."""
    import copy

    from kvopt.catalog.engines import load_engine
    from kvopt.ops.watch import KvoptPredictor

    flagged = copy.deepcopy(plan_dict)
    flagged["inputs"]["space"]["engine_args"] = {"request_overhead_ms": 40.0}
    plain_t, flagged_t = (target(p, entry=None, replicas=1) for p in (plan_dict, flagged))
    assert flagged_t.engine_args == (("request_overhead_ms", 40.0),)
    rate = float(plan_dict["fleet"][0]["rate_per_replica_rps"])
    plain, slow = (KvoptPredictor(t)(rate)[0] for t in (plain_t, flagged_t))
    assert plain is not None and slow is not None
    # the profile's own request overhead is replaced, not added to (queueing moves p99 a bit)
    own = load_engine("vllm").request_overhead_ms
    assert slow - plain == pytest.approx(40.0 - own, abs=8.0)


def test_the_prediction_runs_with_the_plans_calibration(plan_dict) -> None:
    """A plan made with a calibrated profile (plan --profile) is watched against predictions
    with that calibration, as `kvopt validate --plan` predicts: a 40 ms request overhead and
    a 5 ms step overhead (the vLLM profile's: 1.5 ms) fitted for the entry's GPU and engine
    land on the p99 TTFT and TPOT (3.5 ms more a step); a calibration of another GPU does
    not apply; a malformed one is an input error."""
    import copy

    from kvopt.errors import InputError
    from kvopt.ops.watch import KvoptPredictor

    e = plan_dict["fleet"][0]
    cal = {"gpu": e["gpu"], "engine": e["engine"], "compute_scale": 1.0, "memory_scale": 1.0,
           "step_overhead_ms": 5.0, "request_overhead_ms": 40.0, "fitted_on": ["x.json"]}
    calibrated, other, broken = (copy.deepcopy(plan_dict) for _ in range(3))
    calibrated["inputs"]["space"]["calibrations"] = [cal]
    other["inputs"]["space"]["calibrations"] = [{**cal, "gpu": "A100-SXM-80GB"}]
    broken["inputs"]["space"]["calibrations"] = [{**cal, "memory_scale": "fast"}]
    rate = float(e["rate_per_replica_rps"])
    (p_ttft, p_tpot), (c_ttft, c_tpot), (o_ttft, o_tpot) = (
        KvoptPredictor(target(p, entry=None, replicas=1))(rate)
        for p in (plan_dict, calibrated, other))
    assert (o_ttft, o_tpot) == (p_ttft, p_tpot)
    assert p_ttft is not None and c_ttft is not None and p_tpot is not None
    assert c_ttft - p_ttft > 40.0 and c_tpot is not None and c_tpot > p_tpot + 3.0
    with pytest.raises(InputError, match="calibrations"):
        KvoptPredictor(target(broken, entry=None, replicas=1))
