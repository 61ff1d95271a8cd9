"""The analytic steady state's pieces by hand: cohorts, KV slots, prefill noise, the decoders'
law, the fixed point, the running-step chain, slot waits and the quadrature."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kvopt.serving.lengths import fixed, parse_dist
from kvopt.serving.load import Load
from kvopt.serving.replica import build_replica
from kvopt.serving.serve import (
    estimate_under_load,
    steady_model,
)


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
    decode = float(fixed_m.step(1.0 + n, 0.0)[0])
    assert fixed_m.prefill_noise(n, np.array([2 * decode]))[0] == pytest.approx(1.625)
    assert fixed_m.prefill_noise(n, np.array([decode]))[0] == pytest.approx(1.0)
    logn = steady_model(rep, parse_dist("lognormal:mean=800,sigma=0.6"), fixed(200))
    decode = float(logn.step(1.0 + n, 0.0)[0])
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

    from kvopt.serving.quadrature import size_biased_pair as _size_biased_pair

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
    from kvopt.serving.quadrature import size_biased_pair as _size_biased_pair

    for model, below in (("Llama-3.1-8B", False), ("Qwen3-30B-A3B", True)):
        rep = build_replica(model=model, gpu="H100-SXM")
        sm = steady_model(rep, fixed(512), fixed(256))
        n = np.array([9.0])
        lam, t = np.array([1e-9]), np.array([0.01])
        seen = float(sm.step_moments(lam, t, n)[0][0])
        (x_lo, x_hi), (w_lo, w_hi) = (a[0] for a in _size_biased_pair(n, np.array([1.0])))
        d_lo = float(sm.step(np.array([1.0 + x_lo]), 0.0)[0])
        d_hi = float(sm.step(np.array([1.0 + x_hi]), 0.0)[0])
        assert seen == pytest.approx(1.0 / (w_lo / d_lo + w_hi / d_hi), rel=1e-6)
        point = float(sm.step(1.0 + n, 0.0)[0])
        assert float(sm.step_seen(lam, t, others=n)[0]) == pytest.approx(point, rel=1e-9)
        if below:
            assert seen < point * 0.99
        else:
            assert seen == pytest.approx(point, rel=1e-2)


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
    dur, pi = sm.running_step_law(lam, n_sys)
    assert dur.shape == (2, 2)
    for r in range(2):
        d0 = float(sm.step(1.0 + n_sys[r], 0.0))
        d1 = float(sm.step(1.0 + n_sys[r], 8192.0))
        assert dur[r] == pytest.approx([d0, d1])
        p01, p10 = 1 - math.exp(-lam[r] * d0), math.exp(-lam[r] * d1)
        assert pi[r] == pytest.approx([p10 / (p01 + p10), p01 / (p01 + p10)], rel=1e-9)


def test_running_step_chain_matches_a_simulated_chain() -> None:
    """With several states (2,048-token prompts, an 8,192-token budget: 0..4 prompts per
    step) the stationary law matches a long run of the chain K' ~ Poisson(lam d(K))."""
    rep = build_replica(model="Llama-3.1-8B", gpu="H100-SXM", engine="trtllm")
    sm = steady_model(rep, fixed(2048), fixed(64))
    lam, n_sys = np.array([20.0]), np.array([8.0])
    dur, pi = sm.running_step_law(lam, n_sys)
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
    from kvopt.serving.queueing import erlang_c
    from kvopt.serving.steady.draws import D

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
        pw = float(erlang_c(16, np.array([lam[0] * e2e]))[0])
        waiting = D.arrival_state < pw
        assert 0 < pw < 1 and np.all(wait[~waiting] == 0)
        mean = (1 + scv) / 2 / (16 / e2e - lam[0])
        assert wait[waiting] == pytest.approx(D.wait_exp[waiting] * mean, rel=1e-12)


def test_sobol_points_match_scipy() -> None:
    """The quadrature's stored Sobol net is scipy's unscrambled Sobol sequence (regenerated
    here), and the digital shift keeps every coordinate a stratification of (0, 1): each of
    1,024 equal cells holds exactly one draw. The named draws have the laws they claim."""
    from kvopt.serving.steady import draws

    stored = np.load(draws.SOBOL_FILE)
    assert np.array_equal(stored, draws.sobol_from_scipy()), (
        "run `python -m kvopt.serving.steady.draws` to rewrite the stored net")
    d = draws.D
    for name in ("prompt", "output", "arrival_state", "running_step", "others_count",
                 "ahead_share", "co_arrivals", "prefix_hit", "cohort_pick"):
        col = getattr(d, name)
        assert col.size == draws.QUAD == 1024
        assert np.array_equal(np.sort(np.floor(col * 1024)), np.arange(1024)), name
    assert d.residual is d.output  # one coordinate, two uses (as documented)
    assert abs(float(np.mean(d.wait_exp)) - 1.0) < 0.02
    for name in ("others_normal", "step_noise_normal", "ahead_spread_normal",
                 "others_count_normal"):
        assert abs(float(np.mean(getattr(d, name)))) < 0.01, name


def test_erlang_c_hand_values() -> None:
    """M/M/2 at offered load 1: Erlang B = (1/2) / (1 + 1 + 1/2) = 0.2; Erlang C =
    B / (1 - rho + rho B) with rho = 1/2: 0.2 / 0.6 = 1/3. M/M/1: C = rho. Saturated: 1."""
    import numpy as np

    from kvopt.serving.queueing import erlang_c as erlang_c_many

    got = erlang_c_many(2, np.array([1.0, 0.0, 2.0, 3.0]))
    assert got == pytest.approx([1 / 3, 0.0, 1.0, 1.0])
    assert erlang_c_many(1, np.array([0.3]))[0] == pytest.approx(0.3)


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
