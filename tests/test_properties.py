"""Consistency properties (hypothesis, over the catalog and random workloads) that must hold
whatever the numbers: memory counts every model a replica loads (a speculative draft
included); a tighter SLO never lowers the optimal cost (and the SLO sensitivity never shows
a negative cost of tightening); validate and calibrate refuse files that cannot be
measurements, and accept those that can."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kvopt import api
from kvopt.errors import InfeasiblePlanError, InputError
from kvopt.units import GIB

TARGETS = ("Llama-3.1-8B", "Llama-3.1-70B", "Qwen2.5-14B", "Qwen2.5-32B", "Mistral-7B")
DRAFTS = ("Llama-3.2-1B", "Qwen2.5-0.5B", "Qwen2.5-1.5B", "Llama-3.1-8B", "Llama-3.1-405B")
GPUS = ("H100-SXM", "A100-SXM-80GB", "L40S", "H200")


@settings(max_examples=10, deadline=None)
@given(target=st.sampled_from(TARGETS), draft=st.sampled_from(DRAFTS),
       gpu=st.sampled_from(GPUS), tp=st.sampled_from([1, 2, 4]))
def test_memory_counts_the_draft_model(target: str, draft: str, gpu: str, tp: int) -> None:
    """Weights per GPU = the model's + the draft's (each sized alone), KV per token = both
    models' KV; a pair that does not fit is an input error naming the draft."""
    from kvopt.serving.replica import build_replica

    try:
        alone = build_replica(model=target, gpu=gpu, tp=tp)
        d = build_replica(model=draft, gpu=gpu, tp=tp)
    except Exception:  # TP or precision the pair cannot run at all: not this property
        return
    if not alone.fits:
        return
    kw: dict[str, Any] = dict(model=target, gpu=gpu, tp=tp, input_len=512, output_len=64,
                              rps=0.5, spec_k=4, spec_acceptance=0.7, spec_draft=draft)
    room = alone.kv_pool_bytes - d.weights_bytes - max(0.0, d.activation_bytes
                                                       - alone.activation_bytes)
    if room <= 0:
        with pytest.raises(InputError, match="draft"):
            api.estimate(**kw)
        return
    mem = api.estimate(**kw).memory
    assert mem.weights_gib * GIB == pytest.approx(alone.weights_bytes + d.weights_bytes)
    assert mem.kv_bytes_per_token == pytest.approx(alone.kv_bytes_per_token
                                                   + d.kv_bytes_per_token)
    assert mem.total_gib >= (alone.weights_bytes + d.weights_bytes) / GIB


SPACE: dict[str, Any] = dict(gpus=("H100-SXM", "L40S"), tp_options=(1,),
                             precisions=("fp8/fp8", "bf16/bf16"), batches=(32, 256),
                             capacity="exact")


def _cost(**kw: Any) -> float | None:
    try:
        return api.plan(model="Llama-3.1-8B", explain=False, **SPACE, **kw).usd_per_hour
    except (InfeasiblePlanError, InputError):
        return None  # no fleet meets it (or below the physical minimum)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rps=st.floats(1, 80), prompt=st.integers(100, 3000), output=st.integers(20, 400),
       slo=st.sampled_from(["slo_ttft_p99_ms", "slo_tpot_p99_ms"]),
       value=st.floats(10, 400), factor=st.floats(0.3, 0.95))
def test_a_tighter_slo_never_lowers_the_optimal_cost(rps: float, prompt: int, output: int,
                                                     slo: str, value: float,
                                                     factor: float) -> None:
    base = dict(rps=rps, input_len=prompt, output_len=output)
    loose = _cost(**base, **{slo: value})
    tight = _cost(**base, **{slo: value * factor})
    if tight is not None:  # feasible when tight: also when loose, and no dearer there
        assert loose is not None and loose <= tight * (1 + 1e-6)


@pytest.mark.parametrize("goal", ["cost", "balanced", "latency"])
def test_the_slo_sensitivity_is_never_negative(goal: str) -> None:
    """The issue's case: under goal balanced or latency the plan costs more than the
    cheapest fleet, and tightening printed that difference as a negative cost."""
    plan = api.plan(model="Llama-3.1-8B", rps=20, input_len=1024, output_len=256,
                    gpus=("H100-SXM", "A100-SXM-80GB", "L40S"), batches=(32, 128, 512),
                    slo_ttft_p99_ms=500, slo_tpot_p99_ms=50, goal=goal)
    rows = plan.to_dict()["slo_marginal_cost"]
    assert len(rows) == 2
    for m in rows:
        assert m["delta_usd_per_hour"] is not None and m["delta_usd_per_hour"] >= -1e-9
        assert m["usd_per_hour"] == pytest.approx(m["base_usd_per_hour"]
                                                  + m["delta_usd_per_hour"])
        assert m["base_usd_per_hour"] <= plan.usd_per_hour + 1e-9


def _bench(stats: list[float], out_tok_s: float, completed: int) -> dict[str, Any]:
    ttft = sorted(stats[:3])
    itl = sorted(stats[3:6])
    e2e0 = max(ttft) + 64 * max(itl)
    return {"schema": "kvopt.bench/1", "model": "Llama-3.1-8B", "endpoint": "x",
            "load": {"mode": "rps", "value": 2.0}, "input_len": 500, "output_len": 64,
            "num_requests": completed + 1, "completed": completed, "errors": 1,
            "duration_s": 30.0,
            "ttft_ms": dict(zip(("mean", "p50", "p90", "p99"),
                                [sum(ttft) / 3, *ttft], strict=True)),
            "itl_ms": dict(zip(("mean", "p50", "p90", "p99"), [sum(itl) / 3, *itl],
                               strict=True)),
            "e2e_ms": {"mean": e2e0, "p50": e2e0, "p90": e2e0 * 1.1, "p99": e2e0 * 1.2},
            "output_tok_s": out_tok_s, "requests_s": 2.0}


LATENCY = st.floats(0.5, 5000)
BENCHES = st.builds(_bench, st.lists(LATENCY, min_size=6, max_size=6),
                    st.floats(1, 1e5), st.integers(1, 10_000))
CORRUPT = st.sampled_from([
    ("ttft_ms.mean", -1.0), ("ttft_ms.p99", 0.0), ("itl_ms.p50", -3.0), ("e2e_ms.p90", -5.0),
    ("completed", 0), ("output_tok_s", -10.0), ("output_tok_s", 0.0), ("duration_s", 0.0),
    ("load.value", -4.0), ("load.value", 0.0), ("swap", None), ("e2e_early", None),
    ("more_completed", None), ("ttft_ms.p50", math.nan), ("itl_ms.mean", math.inf)])


def _write(tmp: Path, data: dict[str, Any], name: str = "b.json") -> Path:
    f = tmp / name
    f.write_text(json.dumps(data))  # NaN and inf as Python writes them: not JSON
    return f


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(bench=BENCHES, corrupt=CORRUPT)
def test_files_that_cannot_be_measurements_are_refused(tmp_path: Path, bench: dict[str, Any],
                                                       corrupt: tuple[str, Any]) -> None:
    from kvopt.bench.result import load_bench

    assert load_bench(_write(tmp_path, bench))["completed"] == bench["completed"]
    key, value = corrupt
    if key == "swap":  # percentiles out of order
        b = bench["ttft_ms"]
        b["p50"], b["p99"] = b["p99"] + 1.0, b["p50"]
    elif key == "e2e_early":  # a request that ends before its first token
        bench["e2e_ms"] = {q: bench["ttft_ms"]["mean"] / 2 for q in ("mean", "p50", "p90",
                                                                   "p99")}
    elif key == "more_completed":
        bench["completed"] = bench["num_requests"] + 1
    elif "." in key:
        block, stat = key.split(".")
        bench[block][stat] = value
    else:
        bench[key] = value
    with pytest.raises(InputError):
        load_bench(_write(tmp_path, bench))


def test_validate_and_calibrate_refuse_them_on_the_command_line(tmp_path: Path,
                                                                run_cli) -> None:
    good = _bench([30, 35, 50, 7, 8, 9], 300.0, 100)
    bad = json.loads(json.dumps(good))
    bad["itl_ms"]["mean"] = -8.0
    g, b = _write(tmp_path, good, "good.json"), _write(tmp_path, bad, "bad.json")
    res = run_cli("validate", "--bench", str(b), "--model", "Llama-3.1-8B", "--gpu",
                  "H100-SXM")
    assert res.exit_code == 1 and "cannot be a measurement" in res.stderr
    res = run_cli("calibrate", str(g), str(b), "--gpu", "H100-SXM", "--out",
                  str(tmp_path / "p.yaml"))
    assert res.exit_code == 1 and "itl_ms.mean=-8.0" in res.stderr
    assert not (tmp_path / "p.yaml").exists()
