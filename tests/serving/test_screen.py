"""The screening capacity model (kvopt.serving.screen): its pieces against the analytic
model's and by hand, its goodput against the exact search, properties, and the API."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from kvopt import InputError
from kvopt.serving.capacity import capacity_levels, capacity_many
from kvopt.serving.lengths import fixed, parse_dist
from kvopt.serving.queueing import erlang_c
from kvopt.serving.replica import build_replica
from kvopt.serving.results import Slo
from kvopt.serving.serve import steady_model, step_cost_for
from kvopt.serving.steady import SteadyModel

INP = parse_dist("lognormal:mean=800,sigma=0.5")
OUT = parse_dist("lognormal:mean=200,sigma=0.4")
REPS = [build_replica(model="Llama-3.1-8B", gpu="H100-SXM"),
        build_replica(model="Llama-3.1-8B", gpu="L40S", weights="fp8", engine="sglang"),
        build_replica(model="Qwen3-30B-A3B", gpu="H100-SXM", tp=2),
        build_replica(model="Llama-3.1-70B", gpu="A100-SXM-80GB", tp=4, engine="trtllm")]


def _screen(reps=REPS, inp=INP, out=OUT):
    from kvopt.serving.screen import Screen

    return Screen(reps, inp, out)


def test_stacked_steps_are_the_step_cost() -> None:
    """The stacked step model is the analytic model's step of each replica (StepCost's token
    tables resampled on one geometric grid; a prefill pass and a decode pass for SGLang's
    prefill-first scheduler): within 1.5% over decoders 0..600 and prefill tokens 0..6000,
    exact where the tables' points coincide (no prefill, few decoders)."""
    sc = _screen()
    rng = np.random.default_rng(7)
    for i, rep in enumerate(REPS):
        cost = step_cost_for(rep)
        m = SteadyModel(cost, INP, OUT)
        n = rng.uniform(0, 600, 400)
        p = rng.choice([0.0, 1.0, 10.0, 300.0, 2000.0, 6000.0], 400) * rng.uniform(0, 1, 400)
        want = m.step(n, p)
        got = sc.st.step(np.full(n.size, i), n, p)
        np.testing.assert_allclose(got, want, rtol=0.015)
        assert sc.st.step(np.array([i]), 0.0, 0.0)[0] == 0.0  # an empty step takes no time


def test_step_time_curve_is_the_fixed_point() -> None:
    """Each replica's curve is the analytic model's fixed point t = step_seen(lam, t): at
    the traced points the step seen is t within 1% (the screen's 16-point Poisson
    quadrature, the same dispersion table); from light load to 95% of the divergence
    t(lam) is the directly solved fixed point (SteadyModel.tpot) within 2%, except near a
    knee, where the fixed point jumps (more than 5% within 0.5% of a rate within 15% of it:
    the screen traces the curve at a few points a decade and interpolates across the jump;
    there, and close to the divergence, the rate is what is defined, not the step); the
    divergence is the analytic model's within 1%."""
    sc = _screen()
    for i, rep in enumerate(REPS):
        m = steady_model(rep, INP, OUT)
        lam_div = m.step_curve()[0]
        assert sc.curves.lam_div[i] == pytest.approx(lam_div, rel=0.01)
        pts = np.unique(sc.curves.lam[i])
        pts = pts[(pts > 1e-9) & (pts < lam_div * 0.99)]
        t_pts, _ = sc.curves.at(np.full(pts.size, i), pts)
        np.testing.assert_allclose(m.step_seen(pts, t_pts), t_pts, rtol=0.01)
        lams = lam_div * np.array([0.01, 0.2, 0.4, 0.6, 0.8, 0.9, 0.95])
        t, _ = sc.curves.at(np.full(lams.size, i), lams)
        near = lams[:, None] * np.geomspace(0.85, 1.15, 61)[None, :]  # 0.5% apart
        tn = m.tpot(near.ravel()).reshape(near.shape)
        with np.errstate(invalid="ignore"):  # beyond the divergence: inf / inf
            knee = (tn[:, 1:] / tn[:, :-1] > 1.05).any(axis=1)
        assert (~knee).sum() >= 3
        np.testing.assert_allclose(t[~knee], m.tpot(lams[~knee]), rtol=0.02)


def test_exponential_smoothing_in_closed_form() -> None:
    """E[S(x - m E)] for a piecewise-linear survival S and a unit exponential E, against
    numerical integration of (1/m) int S(y) exp(-(x - y)/m) dy (S = 1 below its grid, its
    last value above)."""
    from kvopt.serving.screen.prefill import exp_smooth, interp_rows

    xg = np.array([[0.1, 0.2, 0.35, 0.5, 0.9]])
    sg = np.array([[1.0, 0.6, 0.2, 0.05, 0.01]])
    y = np.linspace(-20.0, 3.0, 400_001)
    for x, m in ((0.05, 0.1), (0.3, 0.05), (0.6, 0.2), (2.0, 0.4)):
        s = np.where(y < xg[0, 0], 1.0, interp_rows(np.repeat(xg, y.size, 0),
                                                    np.repeat(sg, y.size, 0), y))
        dens = np.where(y <= x, np.exp(-(x - y) / m) / m, 0.0)
        want = float(np.sum(s * dens) * (y[1] - y[0]))
        got = float(exp_smooth(xg, sg, np.array([x]), np.array([m]))[0])
        assert got == pytest.approx(want, abs=2e-4), (x, m)


def test_other_prompts_in_the_step_by_hand() -> None:
    """K ~ Poisson(mu) other prompts of lengths I: none with chance exp(-mu), else two
    atoms whose mean and variance are the compound Poisson sum's given K >= 1, so the whole
    law has mean mu E[I] and variance mu E[I^2]. Fixed prompts of 500 at mu = 0.3:
    mean 150, variance 0.3 x 250000 = 75000."""
    from kvopt.serving.screen.prefill import PromptLaw

    law = PromptLaw.of(fixed(500))
    shifts, w = law.extra(np.array([0.3]))
    mean = float(np.sum(shifts * w))
    var = float(np.sum(shifts**2 * w)) - mean**2
    assert w[0, 0] == pytest.approx(math.exp(-0.3))
    assert mean == pytest.approx(150.0, rel=1e-9)
    assert var == pytest.approx(75_000.0, rel=1e-9)


def test_erlang_c_per_row_is_erlang_c_many() -> None:

    slots = np.array([1.0, 2.0, 2.7, 8.0, 64.0, 64.0])
    offered = np.array([0.3, 1.0, 1.0, 6.5, 50.0, 70.0])
    want = [erlang_c(c, np.array([a]))[0] for c, a in zip(slots, offered, strict=True)]
    np.testing.assert_allclose(erlang_c(slots, offered), want, rtol=1e-12)


def test_light_load_ttft_p99_is_the_idle_prefill() -> None:
    """At a rate near zero almost every arrival finds the replica idle: the TTFT p99 is
    the request overhead plus the prefill of the p99 prompt in budget-sized chunks. Fixed
    prompts of 3,000 tokens on L40S under sglang: the idle prefill, by the step model."""
    from kvopt.serving.screen.search import FRACTIONS

    rep = REPS[1]
    inp, out = fixed(3000), fixed(100)
    res = capacity_many([rep], input_dist=inp, output_dist=out, slo=Slo(ttft_p99_ms=1e6),
                        method="screen")[0]
    assert res.feasible
    m = steady_model(rep, inp, out)
    cost = step_cost_for(rep)
    budget = m.budget
    chunks = math.ceil(3000 / budget)
    last = 3000 - (chunks - 1) * budget
    idle = (chunks - 1) * float(cost.mean_step_s(n_decode=0.0, mean_context=m.ctx,
                                                   prefill_tokens=budget, prompt_len=3000))
    idle += float(cost.mean_step_s(n_decode=0.0, mean_context=m.ctx, prefill_tokens=last,
                                   prompt_len=3000))
    from kvopt.serving.screen import Screen

    sc = Screen([rep], inp, out)
    laws = sc.laws(np.array([0]), sc.top * FRACTIONS[:1], Slo())
    from kvopt.serving.screen.prefill import crossing

    p99 = float(crossing(laws.ttft.x, laws.ttft.surv, 0.01)[0])
    assert p99 == pytest.approx(m.req_s + idle, rel=0.01)


CASES = [
    (REPS[0], INP, OUT),
    (REPS[2], parse_dist("uniform:low=200,high=1500"), fixed(256)),
    (REPS[3], fixed(2000), fixed(300)),
]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_screen_agrees_with_the_exact_search(case: int) -> None:
    """The screen's goodput against capacity_levels (the analytic model's search) for
    SLOs on TTFT, TPOT and end-to-end latency: within 5% (so is the median), or,
    where a p99 barely moves with the rate (an SLO on an almost flat part, or at a step of
    the TTFT tail: with fixed prompts one more prompt ahead adds a whole prefill), the
    analytic model's p99 at the screen's goodput is within 12% of the SLO."""
    rep, inp, out = CASES[case]
    from kvopt.serving.screen import screen_levels

    levels = (8, 64, 512)
    m_lo = steady_model(rep, inp, out).poisson(1e-6)
    slos = [Slo(), Slo(tpot_p99_ms=m_lo.tpot_s[3] * 1e3 * 1.6),
            Slo(ttft_p99_ms=m_lo.ttft_s[3] * 1e3 * 1.8),
            Slo(e2e_p99_ms=m_lo.e2e_p99_s * 1e3 * 1.7)]
    errors = []
    for slo in slos:
        exact = capacity_levels(rep, input_dist=inp, output_dist=out, slo=slo,
                                batches=levels, rel_tol=0.005)
        screen = screen_levels([rep], input_dist=inp, output_dist=out, slo=slo,
                               batches=levels)[0]
        for b, e, s in zip(levels, exact, screen, strict=True):
            assert s.feasible == e.feasible, (slo, b)
            if not e.feasible:
                continue
            err = s.goodput_rps / e.goodput_rps - 1
            errors.append(abs(err))
            # the p99 it reports at its goodput is at the limit that binds there
            for name, got, lim in (("ttft_p99 SLO", s.ttft_p99_ms, slo.ttft_p99_ms),
                                   ("tpot_p99 SLO", s.tpot_p99_ms, slo.tpot_p99_ms),
                                   ("e2e_p99 SLO", s.e2e_p99_ms, slo.e2e_p99_ms)):
                if s.binding == name:
                    assert got is not None and lim is not None
                    assert 0.95 * lim <= got <= lim * (1 + 1e-9), (name, got, lim)
            if abs(err) > 0.05:
                st = steady_model(rep, inp, out, max_num_seqs=b).poisson(s.goodput_rps)
                ratios = [v * 1e3 / lim for v, lim in ((st.ttft_s[3], slo.ttft_p99_ms),
                                                       (st.tpot_s[3], slo.tpot_p99_ms),
                                                       (st.e2e_p99_s, slo.e2e_p99_ms))
                          if lim is not None]
                assert ratios and max(ratios) == pytest.approx(1.0, abs=0.12), (slo, b, err)
    assert float(np.median(errors)) < 0.05


def test_goodput_grows_with_the_slots_and_the_slo() -> None:
    """More sequence slots never lower the goodput (they only shorten the slot wait and
    raise the saturation), a looser SLO never lowers it, and no goodput exceeds the
    saturation rate."""
    from kvopt.serving.screen import screen_levels

    levels = (4, 16, 64, 256, 1024)
    tight = screen_levels(REPS, input_dist=INP, output_dist=OUT, batches=levels,
                          slo=Slo(ttft_p99_ms=400, tpot_p99_ms=40))
    loose = screen_levels(REPS, input_dist=INP, output_dist=OUT, batches=levels,
                          slo=Slo(ttft_p99_ms=800, tpot_p99_ms=80))
    for rows_t, rows_l in zip(tight, loose, strict=True):
        good_t = [r.goodput_rps for r in rows_t]
        good_l = [r.goodput_rps for r in rows_l]
        assert all(b >= a * (1 - 1e-3) for a, b in itertools.pairwise(good_t))
        assert all(lo >= t * (1 - 1e-3) for t, lo in zip(good_t, good_l, strict=True))
        assert all(r.goodput_rps <= r.saturation_rps * (1 + 1e-9) for r in rows_l)


def test_capacity_many_by_the_screen() -> None:
    """method="screen": one result per candidate (duplicates share one), a replica that
    does not fit is unserved with the reason, and an unknown method is an input error."""
    big = build_replica(model="Llama-3.1-70B", gpu="L4")
    reps = [REPS[0], big, REPS[0]]
    res = capacity_many(reps, input_dist=INP, output_dist=OUT, slo=Slo(tpot_p99_ms=50),
                        method="screen")
    assert len(res) == 3 and res[0] == res[2] and res[0].feasible
    assert not res[1].feasible and res[1].binding == "does not fit in memory"
    exact = capacity_many([REPS[0]], input_dist=INP, output_dist=OUT,
                          slo=Slo(tpot_p99_ms=50))[0]
    assert res[0].goodput_rps == pytest.approx(exact.goodput_rps, rel=0.03)
    with pytest.raises(InputError, match="method"):
        capacity_many(reps, input_dist=INP, output_dist=OUT, method="fast")
    from kvopt.serving.screen import screen_levels

    assert screen_levels([], input_dist=INP, output_dist=OUT, batches=(8,)) == []
    with pytest.raises(InputError, match="batch levels"):
        screen_levels([REPS[0]], input_dist=INP, output_dist=OUT, batches=(0, 8))
    with pytest.raises(InputError, match="context"):  # a request longer than the context
        screen_levels([REPS[0]], input_dist=fixed(200_000), output_dist=OUT)


def test_plan_by_the_screen_picks_the_exact_plan(run_cli) -> None:
    """Sizing with capacity="screen" (every candidate at once) gives a plan as cheap as the
    exact search's, on the same GPU and TP (and precision, unless two tie on cost), and the
    same candidates with
    goodputs within 5% (the max batch chosen may differ where options tie on cost); the
    CLI takes --capacity and refuses an unknown method."""
    from dataclasses import replace

    from kvopt.fleet.plan import solve_problem
    from kvopt.fleet.problem import FleetProblem
    from kvopt.space import Space, Workload, evaluate

    chat = Workload(name="chat", model="Llama-3.1-8B", rate_rps=12, input_dist=fixed(1000),
                    output_dist=fixed(200), slo=Slo(ttft_p99_ms=800, tpot_p99_ms=40))
    space = Space(gpus=("H100-SXM", "L40S", "A100-SXM-80GB"), tps=(1, 2),
                  precisions=(("bf16", "bf16"), ("fp8", "fp8")), batches=(32, 256))
    fast = replace(space, capacity="screen")
    exact, _ = solve_problem(FleetProblem(workloads=(chat,), space=space))
    screen, _ = solve_problem(FleetProblem(workloads=(chat,), space=fast))
    assert exact is not None and screen is not None
    assert screen.usd_per_hour == pytest.approx(exact.usd_per_hour)
    a, b = exact.entries[0].option, screen.entries[0].option
    assert (a.candidate.gpu, a.candidate.tp) == (b.candidate.gpu, b.candidate.tp)
    if a.candidate.weights != b.candidate.weights:  # a tie: both serve the load at one cost
        assert a.candidate.usd_per_hour == pytest.approx(b.candidate.usd_per_hour)

    def key(c):
        return (c.gpu, c.tp, c.weights, c.max_batch)

    ex = {key(c): c.goodput_rps for c in evaluate(chat, space).candidates}
    sc = {key(c): c.goodput_rps for c in evaluate(chat, fast).candidates}
    # a batch level above what the replica runs is the replica itself: both keep the smallest
    # level of equal goodput; the exact search separates them by its tolerance (a cap that
    # binds only in the tail), the screen does not, so the screen may keep fewer levels
    assert set(sc) <= set(ex)
    for k, g in ex.items():
        if k not in sc:
            k = next(s for s in sorted(sc) if s[:3] == k[:3] and s[3] < k[3])
        assert sc[k] == pytest.approx(g, rel=0.05), k
    with pytest.raises(InputError, match="capacity"):
        Space(gpus=("H100-SXM",), capacity="fast")
    res = run_cli("plan", "--model", "Llama-3.1-8B", "--rps", "12", "--input-len", "1000",
                  "--output-len", "200", "--gpus", "H100-SXM,L40S", "--slo-tpot-p99-ms", "40",
                  "--capacity", "screen", "--json")
    assert res.exit_code == 0, res.output
    bad = run_cli("plan", "--model", "Llama-3.1-8B", "--rps", "12", "--input-len", "1000",
                  "--output-len", "200", "--gpus", "H100-SXM", "--capacity", "fast")
    assert bad.exit_code == 2 and "--capacity" in bad.output
