"""Serving under load: analytic steady state vs the discrete-event simulator, properties,
capacity under SLOs, and bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvopt import InputError, estimate
from kvopt.serving.capacity import Slo, capacity
from kvopt.serving.lengths import fixed, parse_dist
from kvopt.serving.load import Load
from kvopt.serving.replica import build_replica
from kvopt.serving.serve import (
    estimate_under_load,
    simulate_under_load,
    steady_model,
    step_cost_for,
)
from kvopt.serving.sim import simulate

CASES = [
    ("Llama-3.1-8B", "H100-SXM", 1, "vllm", "lognormal:mean=800,sigma=0.6",
     "lognormal:mean=200,sigma=0.5"),
    ("Llama-3.1-8B", "L40S", 1, "vllm", "fixed:512", "fixed:128"),
    ("Qwen3-30B-A3B", "H100-SXM", 1, "vllm", "uniform:low=200,high=1500", "fixed:256"),
    ("Llama-3.1-70B", "H100-SXM", 4, "trtllm", "lognormal:mean=1000,sigma=0.4", "fixed:200"),
    ("Mistral-7B", "A100-SXM-80GB", 1, "sglang", "fixed:1024", "lognormal:mean=300,sigma=0.4"),
]
KNOWN: dict[tuple[str, float], str] = {}  # (model, load fraction): why the analytic
# model misses the simulator there (a strict xfail)


CHECKS = (("latency", "ttft_ms", 0.10), ("latency", "tpot_ms", 0.10),
          ("throughput", "output_tok_s", 0.10), ("latency", "ttft_p99_ms", 0.20),
          ("latency", "tpot_p99_ms", 0.20))  # the tolerances: 10% means, 20% p99s


def _agree(case, load, requests, checks=CHECKS):
    """The analytic and simulated JSON of ``case`` under ``load`` (``requests`` simulated),
    after asserting that they agree on ``checks``."""
    m, g, tp, eng, i, o = case
    rep = build_replica(model=m, gpu=g, tp=tp, engine=eng)
    kw = {"load": load, "input_dist": parse_dist(i), "output_dist": parse_dist(o)}
    a = estimate_under_load(rep, **kw).to_dict()
    s = simulate_under_load(rep, num_requests=requests, **kw).to_dict()
    for block, key, tol in checks:
        assert a[block][key] == pytest.approx(s[block][key], rel=tol), key
    return a, s


def _pair(case, frac):
    m, g, tp, eng, i, o = case
    rep = build_replica(model=m, gpu=g, tp=tp, engine=eng)
    inp, out = parse_dist(i), parse_dist(o)
    cap, _ = steady_model(rep, inp, out).capacity()
    load = Load(mode="rps", value=cap * frac)
    a = estimate_under_load(rep, load=load, input_dist=inp, output_dist=out).to_dict()
    s = simulate_under_load(rep, load=load, input_dist=inp, output_dist=out,
                            num_requests=4000).to_dict()
    return a, s


@pytest.mark.parametrize("frac", [0.15, 0.35, 0.6, 0.8])
@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-{c[1]}-{c[3]}" for c in CASES])
def test_analytic_matches_simulator_below_saturation(case, frac, request) -> None:
    reason = KNOWN.get((case[0], frac))
    if reason:
        request.applymarker(pytest.mark.xfail(reason=reason, strict=True))
    a, s = _pair(case, frac)
    assert not a["load"]["saturated"] and not s["load"]["saturated"]
    for block, key, tol in CHECKS:
        err = abs(a[block][key] - s[block][key]) / s[block][key]
        assert err <= tol, (key, a[block][key], s[block][key])


@pytest.mark.parametrize("case", [("Llama-3.1-70B", "H100-SXM", 4, "trtllm"),
                                  ("Llama-3.1-8B", "H100-SXM", 1, "sglang")],
                         ids=lambda c: f"{c[0]}-{c[3]}")
@pytest.mark.parametrize("clients", [4, 16])
def test_closed_loop_of_identical_requests_matches_simulator(case, clients) -> None:
    """Identical requests in a closed loop move in cohorts (prefilled together, finished
    together): the analytic model agrees with the simulator, which it did not while it
    assumed desynchronized clients (TTFT 60-80% low), and keeps Little's law (the batch is
    the clients)."""
    a, _ = _agree((*case, "fixed:1000", "fixed:200"), Load(mode="concurrency", value=clients),
                  2000, CHECKS[:4])
    assert a["load"]["steady_state_batch"] == pytest.approx(clients)


@pytest.mark.parametrize("case", [CASES[2], CASES[3]], ids=lambda c: f"{c[0]}-{c[4]}")
def test_closed_loop_of_varied_prompts_and_fixed_outputs_matches_simulator(case) -> None:
    """A fixed output length keeps clients in cohorts even when prompts vary; a cohort
    sheds the clients whose prompts overflow the budget until it rarely does (8 clients:
    5 + 3 for the 70B lognormal prompts, 6 + 2 for Qwen3's uniform ones in the simulator).
    Treated as desynchronized, TTFT came out 36-75% low; as one cohort of all 8 clients,
    27-86% high."""
    a, _ = _agree(case, Load(mode="concurrency", value=8), 4000)
    assert a["load"]["steady_state_batch"] == pytest.approx(8, rel=0.01)


@pytest.mark.parametrize("case,clients", [(CASES[4], 8), (CASES[0], 64)],
                         ids=lambda v: str(v[0]) if isinstance(v, tuple) else str(v))
def test_closed_loop_of_varied_outputs_matches_simulator(case, clients) -> None:
    """Varied output lengths desynchronize the clients, but those that finish in the same
    step still come back together (K ~ Poisson(lam t) of them) and share a prefill step:
    without them the TTFT p99 came out 50-63% low (Mistral) and the mean 18% low (8B at 64
    clients). 250 requests per client, so that the run reaches its steady state."""
    _agree(case, Load(mode="concurrency", value=clients), max(4000, 250 * clients))


def test_cohort_size_by_hand() -> None:
    """Uniform prompts of 200..1,500 tokens (mean 850, variance (1301^2 - 1) / 12 =
    141,050, sd 375.57), 8 clients, budget 8,192: k = 6 gives 6 x 849 + 2.33 x 375.57 x
    sqrt(6) = 7,237.5 <= 8,184; k = 7 gives 5,943 + 2,315.3 = 8,258.3 > 8,184. So cohorts
    of 6 and the 2 clients left over (a quarter of them). Fixed prompts of 1,000 tokens:
    (8,192 - 8) / 999 = 8.19 -> all 8 together."""
    rep = build_replica(model="Qwen3-30B-A3B", gpu="H100-SXM")
    sm = steady_model(rep, parse_dist("uniform:low=200,high=1500"), fixed(256))
    assert sm.budget == 8192 and sm.i_mean == pytest.approx(850)
    assert sm.i_var == pytest.approx(141_050)
    assert float(sm.cohort_size(8)) == 6
    assert sm.cohort_mix(8) == ((6.0, 0.75), (2.0, 0.25))
    sm = steady_model(rep, fixed(1000), fixed(256))
    assert float(sm.cohort_size(8)) == 8 and sm.cohort_mix(8) == ((8.0, 1.0),)


@pytest.mark.parametrize("case", [CASES[0], CASES[1], CASES[3], CASES[4]],
                         ids=lambda c: f"{c[0]}-{c[1]}")
def test_offline_batch_within_the_slots_matches_simulator(case) -> None:
    """200 requests submitted at once that all fit the slots: prefilled first come first
    served beside the decodes, then drained without replacement. The analytic
    model agrees with the simulator (it was up to 59% off in throughput while it treated
    the batch as a closed loop that keeps replacing finished requests)."""
    _agree(case, Load(mode="offline", value=200), 200)


@pytest.mark.parametrize("case", [CASES[0], CASES[1], CASES[3]], ids=lambda c: c[0] + "-" + c[1])
def test_offline_run_beyond_the_slots_matches_simulator(case) -> None:
    """2,000 requests at once, more than the slots: requests are admitted as slots free up.
    The first ones decode beside the prefill-heavy ramp, which sets the TPOT p99 (it was
    25-33% low while the run was a closed loop at the engine's concurrency). The 70B case
    runs TensorRT-LLM, which reserves KV for whole sequences and never preempts."""
    _agree(case, Load(mode="offline", value=2000), 2000)


@pytest.mark.parametrize("case", CASES[:3], ids=lambda c: c[0])
def test_both_agree_above_saturation(case) -> None:
    a, s = _pair(case, 1.6)
    assert a["load"]["saturated"] and s["load"]["saturated"]


def test_simulator_is_seeded() -> None:
    rep = build_replica(model="Llama-3.1-8B", gpu="H100-SXM")
    kw = dict(load=Load(mode="rps", value=5), input_dist=parse_dist("uniform:low=10,high=900"),
              output_dist=fixed(64), num_requests=300)
    a, b = simulate(rep, seed=3, **kw), simulate(rep, seed=3, **kw)
    assert np.array_equal(a.finish_s, b.finish_s)
    c = simulate(rep, seed=4, **kw)
    assert not np.array_equal(a.finish_s, c.finish_s)


def test_simulator_preempts_when_kv_runs_out() -> None:
    rep = build_replica(model="Qwen3-30B-A3B", gpu="H100-SXM")
    r = simulate(rep, load=Load(mode="rps", value=10),
                 input_dist=parse_dist("uniform:low=100,high=3000"), output_dist=fixed(300),
                 num_requests=600)
    assert r.preemptions > 0
    assert np.all(np.isfinite(r.finish_s))  # every request still completes


def test_fast_forward_prices_decode_runs_like_single_steps() -> None:
    """Runs of pure decode steps priced in one go (k steps at the mean of the first and
    last) give the same mean E2E as pricing every step, within 0.1%. A request may see an
    arrival land a step apart (the fast-forward stops at the step it expects it in), so
    single requests move by up to a step (~7-13 ms here); each such move shifts the mean
    TTFT of 300 requests (~16 ms) by ~0.2%, so the mean TTFT is held to 1% (seeds 1-6 give
    -0.8% to +0.7%; a 0.1% bound passed on seed 1 by chance and failed on 4 of 6 seeds)."""
    rep = build_replica(model="Llama-3.1-8B", gpu="H100-SXM")
    kw = dict(load=Load(mode="rps", value=3), input_dist=parse_dist("uniform:low=10,high=900"),
              output_dist=fixed(200), num_requests=300, seed=1)
    a = simulate(rep, **kw)
    b = simulate(rep, fast_forward=False, **kw)
    assert abs(b.steps - a.steps) <= 1e-3 * a.steps
    e2e_a, e2e_b = a.finish_s - a.arrival_s, b.finish_s - b.arrival_s
    ttft_a, ttft_b = a.first_token_s - a.arrival_s, b.first_token_s - b.arrival_s
    assert e2e_a.mean() == pytest.approx(e2e_b.mean(), rel=1e-3)
    assert ttft_a.mean() == pytest.approx(ttft_b.mean(), rel=1e-2)
    assert np.abs(e2e_a - e2e_b).max() < 0.02 and np.abs(ttft_a - ttft_b).max() < 0.02


def test_offline_run_that_fills_the_kv_cache_says_the_tpot_is_optimistic() -> None:
    """vLLM over-admits and preempts once N requests fill the KV cache; the analytic run
    does not model that, and says so. TensorRT-LLM reserves whole sequences: no note."""
    kw = dict(input_dist=parse_dist("uniform:low=200,high=1500"), output_dist=fixed(256))
    vllm = build_replica(model="Qwen3-30B-A3B", gpu="H100-SXM")
    notes = estimate_under_load(vllm, load=Load(mode="offline", value=2000), **kw).notes
    assert any("preempts" in n and "optimistic" in n for n in notes)
    few = estimate_under_load(vllm, load=Load(mode="offline", value=20), **kw).notes
    assert not any("preempts" in n for n in few)  # 20 fit at once
    trt = build_replica(model="Qwen3-30B-A3B", gpu="H100-SXM", engine="trtllm")
    notes = estimate_under_load(trt, load=Load(mode="offline", value=2000), **kw).notes
    assert not any("preempts" in n for n in notes)


def test_preemption_trace_by_hand(monkeypatch: pytest.MonkeyPatch) -> None:
    """vLLM V1 rules on a pool of 40 blocks of 16 tokens, 3 requests of 256 + 40 tokens at
    once (budget 8,192: every step can take all the prefill it has blocks for).

    step 1: r0 and r1 prefill 256 tokens (16 blocks each, 8 left); r2 gets the chunk its 8
      blocks hold: 128 tokens. Free 0.
    step 2: r0 and r1 write token 257: one new block each, none free -> preempt the newest,
      r2 (frees 8). It must recompute its 128 cached tokens and the 128 it never reached: 256
      left. Decoders take 2 blocks (6 free). No admission in a step that preempted.
    step 3: r2 readmitted with the chunk 6 blocks hold: 96 tokens. Free 0; r2 then starves.
    step 18 (token 273) and step 34 (token 289): the same again with 6 and 4 blocks freed ->
      r2 readmitted at steps 19 and 35 with 64 and 32 tokens.
    step 40: r0 and r1 have 40 tokens and finish (19 blocks each freed).
    step 41: r2 prefills its last 224 tokens (128 + 96 + 64 + 32 + 224 = 544 prefilled in
      all) and samples its first token; 39 decode steps later it finishes at step 80.
    """
    from kvopt.serving import replica as replica_mod

    monkeypatch.setattr(replica_mod.Replica, "kv_capacity_blocks", property(lambda self: 40))
    rep = build_replica(model="Llama-3.1-8B", gpu="H100-SXM")
    assert rep.engine.block_size == 16 and rep.engine.step_tokens >= 640
    sc = step_cost_for(rep)
    calls: list[tuple[int, list[float]]] = []

    class Recorder:
        def step_s(self, **kw: np.ndarray) -> float:
            calls.append((len(kw["decode_contexts"]), kw["prefill_new"].tolist()))
            return sc.step_s(**kw)  # type: ignore[arg-type]

    r = simulate(rep, load=Load(mode="offline", value=3), input_dist=fixed(256),
                 output_dist=fixed(40), step_cost=Recorder())  # type: ignore[arg-type]
    assert r.preemptions == 3 and r.steps == 80
    assert calls[0] == (0, [256.0, 256.0, 128.0])
    assert calls[1] == (2, [])  # preempted r2, admitted nobody
    prefills = {i + 1: c[1] for i, c in enumerate(calls[:41]) if c[1]}
    assert prefills == {1: [256.0, 256.0, 128.0], 3: [96.0], 19: [64.0], 35: [32.0],
                        41: [224.0]}
    assert all(c[0] == 2 for c in calls[1:40]) and calls[40][0] == 0
    assert np.all(np.isfinite(r.finish_s)) and r.first_token_s[2] > r.finish_s[0]


def test_full_sequence_admission_never_preempts() -> None:
    """TensorRT-LLM reserves KV for prompt + output at admission (GUARANTEED_NO_EVICT): 600
    requests of 512 + 2,048 tokens at once never preempt, and at most blocks // 80 run
    (2,560 tokens in 32-token blocks), where vLLM over-admits and preempts. The analytic
    slots are the same reservation with half a block of rounding: blocks / 80.5."""
    load = Load(mode="offline", value=600)
    trt = build_replica(model="Llama-3.1-70B", gpu="H100-SXM", tp=2, weights="fp8",
                        engine="trtllm")
    r = simulate(trt, load=load, input_dist=fixed(512), output_dist=fixed(2048))
    assert trt.engine.kv_admission == "full_sequence" and trt.engine.block_size == 32
    assert r.preemptions == 0 and np.all(np.isfinite(r.finish_s))
    assert 0 < r.mean_running <= trt.kv_capacity_blocks // 80
    sm = steady_model(trt, fixed(512), fixed(2048))
    assert sm.kv_seqs == pytest.approx(trt.kv_capacity_blocks / 80.5)
    vllm = build_replica(model="Llama-3.1-70B", gpu="H100-SXM", tp=2, weights="fp8")
    assert vllm.engine.kv_admission == "on_demand"
    assert simulate(vllm, load=load, input_dist=fixed(512),
                    output_dist=fixed(2048)).preemptions > 0


def test_on_demand_kv_slots_by_hand() -> None:
    """vLLM allocates KV as tokens are written: the slots are the sequences whose blocks
    overflow the pool in under 1% of steps. 512-token prompts, 256-token outputs, 16-token
    blocks: a sequence holds 512 + U(0, 256) tokens, mean (512 + 128) / 16 + 0.5 = 40.5
    blocks, sd 256 / sqrt(12) / 16 = 4.619 blocks; N solves N 40.5 + 2.33 sd sqrt(N) = pool.
    TensorRT-LLM reserves the whole sequence, so it has no overflow to allow for."""
    rep = build_replica(model="Llama-3.1-8B", gpu="H100-SXM")
    sm = steady_model(rep, fixed(512), fixed(256))
    pool = rep.kv_capacity_blocks
    m, sd = 40.5, 256 / math.sqrt(12) / 16
    assert sd == pytest.approx(4.6188, abs=1e-4)
    assert sm.kv_seqs == pytest.approx(pool / m)
    n = sm.kv_slots
    assert n * m + 2.33 * sd * math.sqrt(n) == pytest.approx(pool)
    assert sm.slots == pytest.approx(min(n, rep.engine.max_num_seqs))
    # e.g. 28,256 blocks: 697.7 at the mean, 2.33 x 4.619 x sqrt(690.7) / 40.5 = 7.0 fewer
    assert n < pool / m and pool / m - n == pytest.approx(2.33 * sd * math.sqrt(n) / m)
    trt = build_replica(model="Llama-3.1-8B", gpu="H100-SXM", engine="trtllm")
    st_ = steady_model(trt, fixed(512), fixed(256))
    assert st_.kv_slots == st_.kv_seqs


def test_prefill_noise_by_hand() -> None:
    """An arrival adds a decoder and holds the others up for its prefill: with steps twice
    their decode-only time, rho_p = 0.5; fixed prompts (cv = 0): f = 1 + 0.5 + 0.25 / 2 =
    1.625; varied prompts add their spread: 1.5 + 0.25 (1 + cv^2) / 2 (lognormal sigma 0.6:
    cv^2 = 0.39 on kvopt's discretized law, 0.43 untruncated). Decode-only steps (rho_p =
    0): f = 1, a Poisson count's noise."""
    rep = build_replica(model="Llama-3.1-8B", gpu="H100-SXM")
    fixed_m = steady_model(rep, fixed(800), fixed(200))
    n = np.array([50.0])
    decode = float(fixed_m._step(1.0 + n, 0.0)[0])
    assert fixed_m.prefill_noise(n, np.array([2 * decode]))[0] == pytest.approx(1.625)
    assert fixed_m.prefill_noise(n, np.array([decode]))[0] == pytest.approx(1.0)
    logn = steady_model(rep, parse_dist("lognormal:mean=800,sigma=0.6"), fixed(200))
    decode = float(logn._step(1.0 + n, 0.0)[0])
    cv2 = logn.i_var / logn.i_mean**2
    assert 0.35 < cv2 < math.exp(0.36) - 1
    assert logn.prefill_noise(n, np.array([2 * decode]))[0] == pytest.approx(
        1.5 + 0.25 * (1 + cv2) / 2)


def test_size_biased_pair_matches_the_negative_binomial() -> None:
    """The two points of the others a decoder sees match the mean, variance and third
    central moment of 1 + NegBin(r + 1, 1/v) - 1 (scipy), and of 1 + Poisson(n) - 1 at
    v = 1: e.g. n = 0.5, v = 1: skewness 1/sqrt(0.5) = 1.414, points 0.5 + x sqrt(0.5) with
    x = (1.414 -+ sqrt(2 + 4)) / 2 = -0.518, 1.932 -> 0.134 and 1.866, weights 0.789, 0.211."""
    from scipy.stats import nbinom

    from kvopt.serving.steady import _size_biased_pair

    x, w = _size_biased_pair(np.array([0.5]), np.array([1.0]))
    assert x[0] == pytest.approx([0.134, 1.866], abs=1e-3)
    assert w[0] == pytest.approx([0.789, 0.211], abs=1e-3)
    for n, v in ((0.5, 1.0), (9.55, 1.0), (9.55, 2.2), (100.0, 4.7), (0.3, 1.5)):
        x, w = _size_biased_pair(np.array([n]), np.array([v]))
        x, w = x[0], w[0]
        if v == 1.0:
            mean = var = third = n
        else:
            d = nbinom(n / (v - 1) + 1, 1 / v)
            mean, var = float(d.mean()), float(d.var())
            third = float(d.stats(moments="s")) * var**1.5
        m = float(np.dot(w, x))
        assert m == pytest.approx(mean, rel=1e-9)
        if np.all(x > 0):  # the lower point is not clipped: all three moments hold
            assert float(np.dot(w, (x - m) ** 2)) == pytest.approx(var, rel=1e-9)
            assert float(np.dot(w, (x - m) ** 3)) == pytest.approx(third, rel=1e-9)


def test_step_averages_over_the_decoders_in_it() -> None:
    """One token per decoder per step: the step a decoder sees is the harmonic mean of the
    step over the size-biased count of decoders, 1 + M (two points). Here 9 others on
    average and no prompts (lam t = 1e-11): for a dense model, whose step is nearly linear
    in the decoders, that is within 1% of the step at 1 + 9; for a mixture of experts,
    whose step is concave in them, more than 1% below it. A closed loop's clients are
    exactly themselves: the step at 1 + others."""
    from kvopt.serving.steady import _size_biased_pair

    for model, below in (("Llama-3.1-8B", False), ("Qwen3-30B-A3B", True)):
        rep = build_replica(model=model, gpu="H100-SXM")
        sm = steady_model(rep, fixed(512), fixed(256))
        n = np.array([9.0])
        lam, t = np.array([1e-9]), np.array([0.01])
        seen = float(sm._step_moments(lam, t, n)[0][0])
        (x_lo, x_hi), (w_lo, w_hi) = (a[0] for a in _size_biased_pair(n, np.array([1.0])))
        d_lo = float(sm._step(np.array([1.0 + x_lo]), 0.0)[0])
        d_hi = float(sm._step(np.array([1.0 + x_hi]), 0.0)[0])
        assert seen == pytest.approx(1.0 / (w_lo / d_lo + w_hi / d_hi), rel=1e-6)
        point = float(sm._step(1.0 + n, 0.0)[0])
        assert float(sm.step_seen(lam, t, others=n)[0]) == pytest.approx(point, rel=1e-9)
        if below:
            assert seen < point * 0.99
        else:
            assert seen == pytest.approx(point, rel=1e-2)


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
    from kvopt.serving.capacity import capacity_levels, capacity_of
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


def test_saturated_rate_runs_the_slots_and_fits() -> None:
    """Above capacity the engine runs its slots and the rest of the offered load queues:
    the reported batch is the slots (it was the offered load at capacity, 475 for 8B at
    1024/256 on H100, more sequences than the KV pool holds, so the memory block said "does
    not fit" for a model that fits)."""
    rep = build_replica(model="Llama-3.1-8B", gpu="H100-SXM")
    inp, out = fixed(1024), fixed(256)
    model = steady_model(rep, inp, out)
    est = estimate_under_load(rep, load=Load(mode="rps", value=500), input_dist=inp,
                              output_dist=out)
    assert est.load.saturated
    assert 0 < est.load.steady_state_batch <= model.slots
    assert est.memory.fits and est.memory.reason == ""


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
    for args, text in ((["--input-len", "100", "--rps", "0"],
                        "--rps=0.0: must be a finite number > 0"),
                       (["--input-len", "100", "--rps", "-3"], "must be a finite number > 0"),
                       (["--input-len", "100", "--rps", "inf"], "--rps=inf: must be a finite"),
                       (["--input-len", "100", "--concurrency", "0"], "--concurrency=0"),
                       (["--input-len-dist", f"csv:{tmp_path}/missing.csv", "--rps", "1"],
                        "cannot read the trace file"),
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


def test_csv_histogram_and_trace(tmp_path: Path) -> None:
    hist = tmp_path / "hist.csv"
    hist.write_text("length,count\n100,3\n300,1\n")
    d = parse_dist(f"csv:{hist}")
    assert d.mean == pytest.approx((100 * 3 + 300) / 4)
    trace = tmp_path / "trace.csv"
    trace.write_text("length\n5\n5\n20\n")
    assert parse_dist(f"csv:{trace}").mean == pytest.approx(10)


def test_api_estimate_with_load() -> None:
    e = estimate(model="Llama-3.1-8B", gpu="H100-SXM", input_dist="lognormal:mean=500,sigma=0.5",
                 output_len=100, load=Load(mode="concurrency", value=4))
    assert e.load.mode == "concurrency" and e.throughput.requests_s > 0
    with pytest.raises(InputError, match="fixed lengths"):
        estimate(model="Llama-3.1-8B", gpu="H100-SXM", input_dist="uniform:low=1,high=9",
                 output_len=5, batch=2)


def test_erlang_c_hand_values() -> None:
    """M/M/2 at offered load 1: Erlang B = (1/2) / (1 + 1 + 1/2) = 0.2; Erlang C =
    B / (1 - rho + rho B) with rho = 1/2: 0.2 / 0.6 = 1/3. M/M/1: C = rho. Saturated: 1."""
    import numpy as np

    from kvopt.serving.steady import erlang_c_many

    got = erlang_c_many(2, np.array([1.0, 0.0, 2.0, 3.0]))
    assert got == pytest.approx([1 / 3, 0.0, 1.0, 1.0])
    assert erlang_c_many(1, np.array([0.3]))[0] == pytest.approx(0.3)


def test_tpot_is_the_step_time_fixed_point() -> None:
    """tpot(lam) solves t = step_seen(lam, t): the step a decoding request sees at rate lam
    lasts t (to 1e-8); just below it the steps still last longer (it is the crossing);
    beyond what the replica sustains it is inf."""
    import numpy as np

    from kvopt.serving.lengths import fixed
    from kvopt.serving.replica import build_replica
    from kvopt.serving.serve import steady_model

    rep = build_replica(model="Llama-3.1-8B", gpu="H100-SXM")
    sm = steady_model(rep, fixed(1000), fixed(200))
    cap, _ = sm.capacity()
    lam = cap * np.array([1e-4, 0.1, 0.5, 0.9])
    t = sm.tpot(lam)
    assert np.all(np.isfinite(t))
    assert sm.step_seen(lam, t) == pytest.approx(t, rel=1e-8)
    below = t * (1 - 1e-4)
    assert np.all(sm.step_seen(lam, below) > below)
    assert np.all(np.diff(t) > 0)  # more load, longer steps
    assert np.isinf(sm.tpot(np.array([cap * 1e3]))[0])


@pytest.mark.parametrize("case", [
    ("Llama-3.1-8B", "H100-SXM", 1, "bf16", "vllm", "fixed:512", "fixed:128"),
    ("Llama-3.1-70B", "H100-SXM", 4, "fp8", "trtllm", "fixed:512", "fixed:128"),
    ("Llama-3.1-8B", "A100-SXM-80GB", 1, "bf16", "sglang", "lognormal:mean=1000,sigma=0.5",
     "fixed:200"),
    ("Mixtral-8x7B", "H100-SXM", 2, "fp8", "vllm", "fixed:4000", "fixed:1000"),
])
def test_step_time_curve_matches_the_fixed_point(case: tuple[str, ...]) -> None:
    """The traced step-time curve that every load solve interpolates gives the exact fixed
    point ``tpot(lam)`` (root finding per rate) within 1% at every rate below capacity
    (an earlier interpolation on a sparse rate grid was off by up to 6x near the slot
    limit). Close to the divergence the curve is nearly vertical (0.1% of rate can span
    20% of step time), so there the check is on the rate: the interpolated step time lies
    between the exact ones 0.5% below and above the rate."""
    import numpy as np

    from kvopt.serving.lengths import parse_dist
    from kvopt.serving.replica import build_replica
    from kvopt.serving.serve import steady_model

    model, gpu, tp, weights, engine, inp, out = case
    rep = build_replica(model=model, gpu=gpu, tp=int(tp), weights=weights, engine=engine)
    sm = steady_model(rep, parse_dist(inp), parse_dist(out))
    cap, _ = sm.capacity()
    lam = np.geomspace(cap * 1e-3, cap * 0.9, 60)
    assert sm.step_times(lam) == pytest.approx(sm.tpot(lam), rel=0.01)
    lam = np.linspace(cap * 0.9, cap * 0.999, 40)
    t = sm.step_times(lam)
    assert np.all(t >= sm.tpot(lam * 0.995) * 0.99)
    assert np.all(t <= sm.tpot(lam * 1.005) * 1.01)


def test_running_step_chain_two_states_by_hand() -> None:
    """Prompts that fill the whole budget (8,192 tokens, no chunked prefill) make the
    chain of prompts per step two states: an idle-prefill step (d0) and a full one (d1).
    From 0 the next step has a prompt with p01 = 1 - exp(-lam d0); from 1 it has none with
    p10 = exp(-lam d1). The stationary share of full steps is p01 / (p01 + p10)."""
    import math

    rep = build_replica(model="Llama-3.1-8B", gpu="H100-SXM", engine="trtllm")
    sm = steady_model(rep, fixed(8192), fixed(64))
    assert sm.budget == 8192 and sm.i_new == 8192
    lam, n_sys = np.array([0.5, 3.0]), np.array([2.0, 10.0])
    dur, pi = sm._chain_steps(lam, n_sys)
    assert dur.shape == (2, 2)
    for r in range(2):
        d0 = float(sm._step(1.0 + n_sys[r], 0.0))
        d1 = float(sm._step(1.0 + n_sys[r], 8192.0))
        assert dur[r] == pytest.approx([d0, d1])
        p01, p10 = 1 - math.exp(-lam[r] * d0), math.exp(-lam[r] * d1)
        assert pi[r] == pytest.approx([p10 / (p01 + p10), p01 / (p01 + p10)], rel=1e-9)


def test_running_step_chain_matches_a_simulated_chain() -> None:
    """With several states (2,048-token prompts, an 8,192-token budget: 0..4 prompts per
    step) the stationary law matches a long run of the chain K' ~ Poisson(lam d(K))."""
    rep = build_replica(model="Llama-3.1-8B", gpu="H100-SXM", engine="trtllm")
    sm = steady_model(rep, fixed(2048), fixed(64))
    lam, n_sys = np.array([20.0]), np.array([8.0])
    dur, pi = sm._chain_steps(lam, n_sys)
    assert dur.shape == (1, 5)
    rng = np.random.default_rng(7)
    k, counts = 0, np.zeros(5)
    for _ in range(100_000):
        k = min(int(rng.poisson(lam[0] * dur[0, k])), 4)
        counts[k] += 1
    assert counts / counts.sum() == pytest.approx(pi[0], abs=0.01)


def test_slot_wait_is_allen_cunneen() -> None:
    """The slot queue is M/G/c: an arrival waits with Erlang C's chance, then an
    exponential wait with M/M/c's mean 1 / (c / E2E - lam) scaled by (1 + SCV) / 2, SCV the
    squared coefficient of variation of the slot holding time. A fixed output length
    holds slots for nearly the same time (SCV near 0: waits halve); a spread of output
    lengths holds them longer on average than that."""
    from kvopt.serving.steady import _D, erlang_c_many

    rep = build_replica(model="Llama-3.1-8B", gpu="H100-SXM")
    for out, scv_range in ((fixed(200), (0.0, 0.05)),
                           (parse_dist("lognormal:mean=200,sigma=1.0"), (0.5, 3.0))):
        sm = steady_model(rep, fixed(1000), out, max_num_seqs=16)
        cap, _ = sm.capacity()
        lam = np.array([0.9 * cap])
        rows = sm.rows(lam, sm.step_times(lam))
        scv = float(rows.service_scv[0])
        assert scv_range[0] <= scv <= scv_range[1]
        wait = sm.slot_wait(rows)[0]
        e2e = float(rows.e2e_core[0])
        pw = float(erlang_c_many(16, np.array([lam[0] * e2e]))[0])
        waiting = _D["u2"] < pw
        assert 0 < pw < 1 and np.all(wait[~waiting] == 0)
        mean = (1 + scv) / 2 / (16 / e2e - lam[0])
        assert wait[waiting] == pytest.approx(_D["e"][waiting] * mean, rel=1e-12)


def test_sobol_points_match_scipy() -> None:
    """The quadrature's Sobol points (Joe-Kuo direction numbers typed into steady.py) are
    scipy's unscrambled Sobol sequence, and the digital shift keeps every coordinate a
    stratification of (0, 1): each of 512 equal cells holds exactly one point."""
    from scipy.stats import qmc

    from kvopt.serving.steady import _D, _QUAD, _sobol

    ours = _sobol(512, 13)
    ref = qmc.Sobol(d=13, scramble=False).random(512)
    assert np.abs(ours - ref).max() < 1e-9  # ours are centered by half a 30-bit step
    shifted = _sobol(512, 13, seed=7)
    for col in shifted.T:
        assert np.array_equal(np.sort(np.floor(col * 512)), np.arange(512))
    assert _QUAD == 1024 and set(_D) >= {"u", "u2", "u3", "z1", "e", "q"}
    assert abs(float(np.mean(_D["e"])) - 1.0) < 0.02 and abs(float(np.mean(_D["z1"]))) < 0.01


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
    (["--rps", "2,-1"], "'-1': every value must be > 0"),
    (["--concurrency", "2.5"], "'2.5' is not an integer"),
    (["--rps", "2", "--concurrency", "3"], "give --rps or --concurrency, not both"),
    (["--points", "1"], "--points"),
])
def test_curve_bad_input(run_cli, args: list[str], text: str) -> None:
    res = run_cli("curve", "--model", "Llama-3.1-8B", "--gpu", "H100-SXM", "--input-len", "100",
                  "--output-len", "10", *args)
    assert res.exit_code == 2 and text in res.output and "Traceback" not in res.output
