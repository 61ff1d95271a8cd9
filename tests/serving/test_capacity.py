"""Capacity under SLOs: properties of the percentiles and the search against bisection."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvopt.serving.capacity import capacity
from kvopt.serving.lengths import fixed, parse_dist
from kvopt.serving.replica import build_replica
from kvopt.serving.results import Slo
from kvopt.serving.serve import (
    steady_model,
)

REP = build_replica(model="Llama-3.1-8B", gpu="H100-SXM")


MODEL = steady_model(REP, parse_dist("lognormal:mean=600,sigma=0.5"), fixed(150))


CAP = MODEL.capacity()[0]


OFFLINE_TOP = MODEL.offline(50_000).output_tok_s


@settings(max_examples=20, deadline=None)
@given(f1=st.floats(0.02, 0.95), f2=st.floats(0.02, 0.95))
def test_latency_percentiles_never_fall_as_rate_rises(f1: float, f2: float) -> None:
    lo, hi = sorted((f1, f2))
    a, b = MODEL.poisson(CAP * lo), MODEL.poisson(CAP * hi)
    for i in range(4):
        assert b.ttft_s[i] >= a.ttft_s[i] * (1 - 1e-9)
        assert b.tpot_s[i] >= a.tpot_s[i] * (1 - 1e-9)
    for x in (a, b):
        assert x.ttft_s[3] >= x.ttft_s[2] >= x.ttft_s[1]
        assert x.tpot_s[3] >= x.tpot_s[2] >= x.tpot_s[1]


@settings(max_examples=15, deadline=None)
@given(frac=st.floats(0.05, 3.0))
def test_throughput_never_exceeds_offline_maximum(frac: float) -> None:
    """A long offline run (the step recurrence, 50,000 requests: ramp and drain are 1% of
    it) bounds the Poisson throughput, capacity included. The capacity comes from the
    full-occupancy fixed point, a second model of the same loop: they agree within 0.5%."""
    top = OFFLINE_TOP
    assert MODEL.poisson(CAP * frac).output_tok_s <= top * 1.005


def test_capacity_meets_its_slo_and_tighter_slo_costs_goodput() -> None:
    inp, out = fixed(1000), fixed(200)
    loose = capacity(REP, input_dist=inp, output_dist=out, slo=Slo(tpot_p99_ms=20))
    tight = capacity(REP, input_dist=inp, output_dist=out, slo=Slo(tpot_p99_ms=12))
    assert 0 < tight.goodput_rps < loose.goodput_rps <= loose.saturation_rps
    assert tight.tpot_p99_ms is not None and tight.tpot_p99_ms <= 12
    assert tight.binding == "tpot_p99 SLO"
    never = capacity(REP, input_dist=inp, output_dist=out, slo=Slo(tpot_p99_ms=1))
    assert not never.feasible and never.goodput_rps == 0


@pytest.mark.parametrize("case", [
    ("Llama-3.1-8B", "H100-SXM", 1, "bf16", "vllm", "fixed:1000", "fixed:200"),
    ("Llama-3.1-70B", "H100-SXM", 4, "fp8", "trtllm", "lognormal:mean=1000,sigma=0.5",
     "fixed:200"),
    ("Llama-3.1-8B", "L40S", 1, "fp8", "sglang", "uniform:low=100,high=3000",
     "uniform:low=50,high=500"),
])
def test_level_search_agrees_with_bisection(case: tuple[str, ...]) -> None:
    """capacity() and capacity_levels() (shared rate grid, log-rate secant, all max-batch
    levels together) give the goodput that plain bisection on poisson() finds, within the
    search tolerance, for SLOs on TTFT, TPOT and end-to-end latency."""
    from kvopt.serving.capacity import capacity_levels
    from kvopt.serving.exact import capacity_of
    from kvopt.serving.lengths import parse_dist
    from kvopt.serving.replica import build_replica
    from kvopt.serving.serve import steady_model

    model, gpu, tp, weights, engine, i_spec, o_spec = case
    rep = build_replica(model=model, gpu=gpu, tp=int(tp), weights=weights, engine=engine)
    inp, out = parse_dist(i_spec), parse_dist(o_spec)
    levels = (8, 64, 512)
    for slo in (Slo(tpot_p99_ms=40), Slo(ttft_p99_ms=400), Slo(e2e_p99_ms=10_000), Slo()):
        found = capacity_levels(rep, input_dist=inp, output_dist=out, slo=slo,
                                batches=levels, rel_tol=0.005)
        for b, res in zip(levels, found, strict=True):
            ref = capacity_of(steady_model(rep, inp, out, max_num_seqs=b), slo,
                              rel_tol=0.001)
            assert res.goodput_rps == pytest.approx(ref.goodput_rps, rel=0.01), (slo, b)
            assert res.feasible == ref.feasible
        one = capacity(rep, input_dist=inp, output_dist=out, slo=slo)
        ref = capacity_of(steady_model(rep, inp, out), slo, rel_tol=0.001)
        assert one.goodput_rps == pytest.approx(ref.goodput_rps, rel=0.01), slo


def test_capacity_reports_every_latency_at_its_goodput() -> None:
    """`capacity` gives TTFT and end-to-end mean/p50/p90/p99 and TPOT mean/p99 at the
    goodput; its p99s are the ones the search judged the SLO on."""
    from kvopt import capacity as api_capacity

    cap = api_capacity(model="Llama-3.1-8B", gpu="H100-SXM", input_len=1024, output_len=256,
                       slo_ttft_p99_ms=500, slo_tpot_p99_ms=30)
    at = cap.to_dict()["at_goodput"]
    assert at["ttft_p99_ms"] == pytest.approx(cap.result.ttft_p99_ms, rel=1e-6)
    assert at["tpot_p99_ms"] == pytest.approx(cap.result.tpot_p99_ms, rel=1e-6)
    assert at["ttft_p50_ms"] <= at["ttft_p90_ms"] <= at["ttft_p99_ms"]
    assert at["e2e_p50_ms"] <= at["e2e_p90_ms"] <= at["e2e_p99_ms"]
    # a request's end-to-end time is its TTFT plus 255 more tokens at its own TPOT
    assert at["e2e_mean_ms"] == pytest.approx(at["ttft_mean_ms"] + 255 * at["tpot_mean_ms"],
                                              rel=0.02)


def test_a_plan_predicts_every_latency_at_its_planned_rate() -> None:
    from kvopt import plan

    p = plan(model="Llama-3.1-8B", rps=8, input_len=1024, output_len=256, gpus=["H100-SXM"],
             tp_options=[1], precisions="fp8/fp8", batches=[64], slo_ttft_p99_ms=500,
             slo_tpot_p99_ms=50, explain=False)
    [entry] = p.to_dict()["fleet"]
    pred = entry["predicted"]
    assert pred["ttft_p50_ms"] <= pred["ttft_p90_ms"] <= pred["ttft_p99_ms"] <= 500
    assert pred["tpot_mean_ms"] <= pred["tpot_p99_ms"] <= 50
    assert pred["ttft_p99_ms"] <= pred["e2e_p99_ms"]
    assert pred["e2e_mean_ms"] == pytest.approx(
        pred["ttft_mean_ms"] + 255 * pred["tpot_mean_ms"], rel=0.02)
