"""The cost bound of ``capacity: confirm``: a replica that cannot match the cheapest fleet
found is proven costlier by at most one exact check (:func:`kvopt.confirm.prove_costlier`),
and the options drop what it would have searched (:func:`kvopt.fleet.options.cheapest_only`).
The MILP must get the exact search's options, and plan the cheapest fleet over every
candidate (brute force); the bound must stay off where an inventory, a power cap, several
workloads or another goal can make a dearer fleet optimal."""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import replace

import pytest

import kvopt.fleet.options as fo
import kvopt.serving.screen as screen_mod
from kvopt import caching
from kvopt.confirm import COSTLIER, Bound, replicas_enough, replicas_needed
from kvopt.fleet.build import objective_terms
from kvopt.fleet.options import build_options, cost_bound
from kvopt.fleet.plan import plan_fleet, solve_problem
from kvopt.fleet.problem import FleetProblem
from kvopt.serving.capacity import meets_at
from kvopt.serving.lengths import fixed
from kvopt.serving.replica import build_replica
from kvopt.serving.results import Slo
from kvopt.space import DOMINATED, Region, Space, Workload, evaluate, evaluate_pruned
from tests.fleet.test_fleet import brute_force
from tests.test_space import CHAT, RAG, _options, _same_as_exact

SPACE = Space(gpus=("H100-SXM", "A100-SXM-80GB", "L40S", "L4"), tps=(1, 2, 4),
              batches=(16, 64, 256))
BIG = Workload(name="big", model="Llama-3.1-70B", rate_rps=3, input_dist=fixed(1024),
               output_dist=fixed(256))
CASES = {
    "cost": FleetProblem(workloads=(CHAT,), space=SPACE),
    "gpus": FleetProblem(workloads=(CHAT,), space=SPACE, objective="gpus"),
    "lognormal": FleetProblem(workloads=(RAG,), space=SPACE),
    "no slo, 70B": FleetProblem(workloads=(BIG,), space=SPACE),
    "redundancy": FleetProblem(workloads=(replace(CHAT, redundancy=1),), space=SPACE),
    "budget": FleetProblem(workloads=(CHAT,), space=SPACE, budget_usd_h=40.0),
    "max replicas": FleetProblem(workloads=(CHAT,), space=SPACE, max_replicas=3),
    "e2e": FleetProblem(workloads=(replace(CHAT, slo=Slo(e2e_p99_ms=9000)),), space=SPACE),
}


@pytest.fixture(autouse=True)
def _fresh() -> None:
    caching.clear_all()


@pytest.mark.parametrize("name", list(CASES))
def test_confirm_with_the_bound_hands_the_milp_the_exact_options(name: str) -> None:
    """The options (after both filters) equal the exact search's on every candidate, and
    the bound did prove replicas costlier (the comparison is not vacuous)."""
    problem = CASES[name]
    bound = cost_bound(problem, 1e-4)
    assert bound is not None
    _same_as_exact(problem)
    caching.clear_all()
    w = problem.workloads[0]
    assert evaluate(w, SPACE, prune="cost", bound=bound).excluded[COSTLIER] > 0


@pytest.mark.parametrize("name", ["cost", "gpus", "lognormal", "no slo, 70B", "redundancy",
                                  "max replicas"])
def test_the_plan_is_the_cheapest_fleet_over_every_candidate(name: str) -> None:
    """Brute force over every exactly searched candidate (no pruning) and replica count:
    the cheapest fleet that meets the demand, fits and meets the SLOs (fewest GPUs, then
    cheapest, for the gpus goal)."""
    problem = CASES[name]
    w = problem.workloads[0]
    everything = evaluate(w, replace(SPACE, capacity="exact")).candidates
    best = (math.inf, math.inf)
    for c in everything:
        if c.memory_per_gpu_gib > c.gpu_memory_gib:
            continue
        for n in range(w.redundancy + 1, (problem.max_replicas or 200) + 1):
            if c.goodput_rps * (n - w.redundancy) >= w.rate_rps:
                key = ((c.gpus * n, c.usd_per_hour * n) if problem.objective == "gpus"
                       else (c.usd_per_hour * n, 0.0))
                best = min(best, key)
                break
    plan = plan_fleet(problem, explain=False, mip_gap=1e-9)
    got = ((plan.gpus, plan.usd_per_hour) if problem.objective == "gpus"
           else (plan.usd_per_hour, 0.0))
    assert math.isfinite(best[0])
    assert got == pytest.approx(best, rel=1e-9)


@pytest.mark.parametrize("extra", [{}, {"objective": "gpus"}, {"budget_usd_h": 25.0},
                                   {"max_replicas": 4}])
def test_cheapest_only_keeps_the_milp_optimum(monkeypatch: pytest.MonkeyPatch,
                                              extra: dict[str, object]) -> None:
    """The MILP over the filtered options reaches the brute-force optimum over the options
    without the filter (exact search, so every candidate is there)."""
    space = replace(SPACE, capacity="exact", gpus=("L40S", "A100-SXM-80GB"))
    problem = FleetProblem(workloads=(replace(CHAT, rate_rps=12),), space=space, **extra)
    kept = build_options(problem).options
    with monkeypatch.context() as m:
        m.setattr(fo, "cheapest_only", lambda opts, problem, bound: opts)
        everything = build_options(problem).options
    assert len(kept) < len(everything)
    plan, _ = solve_problem(problem, options=fo.OptionSet(kept, []), mip_gap=1e-9)
    kept_terms = objective_terms(problem, kept)
    if problem.objective == "gpus":  # the same tie-breaking weight on both sets
        o0 = kept[0].candidate
        e = (kept_terms.per_replica[0] - o0.gpus) / o0.usd_per_hour
        terms = replace(kept_terms, per_replica=[o.candidate.gpus + e * o.candidate.usd_per_hour
                                                 for o in everything])
    else:
        terms = objective_terms(problem, everything)
    assert plan is not None
    assert plan.report.objective == pytest.approx(brute_force(problem, everything, terms=terms),
                                                  rel=1e-9, abs=1e-6)


def test_the_bound_applies_only_where_the_cheapest_fleet_is_the_optimum() -> None:
    base = FleetProblem(workloads=(CHAT,), space=SPACE)
    assert cost_bound(base, 1e-4) == Bound(per_replica="usd", rel_gap=1e-4)
    assert cost_bound(replace(base, budget_usd_h=10.0), 1e-4) is not None
    assert cost_bound(replace(base, objective="gpus"), 1e-4) == Bound(per_replica="gpus",
                                                                      rel_gap=1e-4)
    for off in (replace(base, power_cap_kw=5.0), replace(base, availability=(("L4", 8),)),
                replace(base, workloads=(CHAT, RAG)), replace(base, allow_mixing=True),
                replace(base, objective="gpus", budget_usd_h=50.0),
                replace(base, objective="power"), replace(base, objective="quality"),
                replace(base, objective="latency"),
                replace(base, objective="throughput", budget_usd_h=50.0),
                replace(base, space=replace(SPACE, regions=(Region(
                    name="east", availability=(("L4", 4),)),)))):
        assert cost_bound(off, 1e-4) is None, off
        sets = build_options(off).candidates if off.objective != "latency" else []
        assert all(COSTLIER not in cs.excluded for cs in sets)
    assert cost_bound(base, 0.5) is None


def test_with_regions_the_bound_filters_options_but_evaluate_searches() -> None:
    """Regions price each GPU per region: evaluate leaves the bound off (the same-GPU
    dominance proofs run), the options filter still applies, and the options are exact."""
    space = replace(SPACE, regions=(Region(name="east", prices_usd_h=(("H100-SXM", 2.0),)),
                                    Region(name="west", prices_usd_h=(("L4", 0.5),))))
    problem = FleetProblem(workloads=(CHAT,), space=space)
    assert cost_bound(problem, 1e-4) is not None
    sets = build_options(problem).candidates
    assert COSTLIER not in sets[0].excluded and DOMINATED in sets[0].excluded
    _same_as_exact(problem)


def test_a_wrong_screen_costs_time_never_the_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the screen's ranking upside down the first fleet searched is a poor one; the
    checks then send better replicas to the exact search: the options stay exact."""
    real = screen_mod.screen_levels

    def upside_down(*args: object, **kwargs: object) -> list[list[object]]:
        found = real(*args, **kwargs)  # type: ignore[arg-type]
        return [[replace(r, goodput_rps=1.0 / r.goodput_rps) if r.feasible else r
                 for r in levels] for levels in found]

    problem = CASES["cost"]
    exact = _options(replace(problem, space=replace(SPACE, capacity="exact")))
    monkeypatch.setattr(screen_mod, "screen_levels", upside_down)
    caching.clear_all()
    assert _options(problem) == exact


def test_replica_counts_match_brute_force() -> None:
    """:func:`replicas_needed` is the cover constraint's count (at least k + 1);
    :func:`replicas_enough` the fewest that meet ``g (n - k) >= L`` within the option's
    replica bound (inf beyond it)."""
    rng = random.Random(3)
    cases = [(rng.uniform(0.1, 50), rng.randint(0, 2), rng.uniform(0.05, 20))
             for _ in range(2000)]
    cases += [(float(a * b), k, float(b)) for a, b, k in itertools.product(
        range(1, 7), (0.1, 0.3, 1 / 3, 0.7, 3.0), (0, 1))]  # L / g near integers
    for rate, k, g in cases:
        fewest = next(n for n in itertools.count(k + 1) if g * (n - k) >= rate)
        assert replicas_needed(rate, k, g) <= fewest
        cap = math.ceil(rate / g - 1e-9) + k
        assert replicas_enough(rate, k, g, None) == (fewest if fewest <= cap else math.inf)
        assert replicas_enough(rate, k, g, 2) == (fewest if fewest <= min(cap, 2)
                                                  else math.inf)
    assert replicas_needed(5.0, 1, 0.0) == math.inf


def test_known_misses_answer_like_a_fresh_check() -> None:
    """meets_at remembers misses (a miss implies misses at higher rates and tighter SLOs):
    answers with that memory equal fresh evaluations, in any order."""
    rep = build_replica(model="Llama-3.1-8B", gpu="L40S", tp=1, weights="fp8", kv_dtype="fp8")
    slos = [Slo(ttft_p99_ms=800, tpot_p99_ms=40), Slo(ttft_p99_ms=720, tpot_p99_ms=40),
            Slo(tpot_p99_ms=36), Slo(), Slo(e2e_p99_ms=6000)]
    rates = [2.0, 5.0, 9.0, 14.0, 20.0, 40.0]
    kw = dict(input_dist=CHAT.input_dist, output_dist=CHAT.output_dist, batches=(16, 64, 256))
    fresh = {}
    for slo, rate in itertools.product(slos, rates):
        caching.clear_all()
        fresh[(slo, rate)] = meets_at(rep, slo=slo, rate_rps=rate, **kw)
    caching.clear_all()
    pairs = list(fresh)
    random.Random(5).shuffle(pairs)
    for slo, rate in pairs:
        assert meets_at(rep, slo=slo, rate_rps=rate, **kw) == fresh[(slo, rate)], (slo, rate)
    assert not all(all(v) for v in fresh.values()) and any(any(v) for v in fresh.values())


def test_the_slo_sweep_is_the_exact_searchs() -> None:
    """The sensitivity lines (each SLO 10% tighter, re-planned) reuse the base evaluation's
    misses; they equal those of the exact search on every candidate."""
    space = replace(SPACE, gpus=("L40S", "A100-SXM-80GB"), tps=(1, 2))
    problem = FleetProblem(workloads=(CHAT,), space=space)
    confirm = plan_fleet(problem)
    caching.clear_all()
    exact = plan_fleet(replace(problem, space=replace(space, capacity="exact")))
    assert len(confirm.slo_marginal_cost) == 2
    assert confirm.slo_marginal_cost == exact.slo_marginal_cost
    assert confirm.to_dict()["fleet"] == exact.to_dict()["fleet"]


def test_evaluate_pruned_takes_the_bound() -> None:
    bound = Bound()
    pruned = evaluate_pruned(CHAT, SPACE, bound=bound)
    assert pruned.excluded[COSTLIER] > 0 and DOMINATED not in pruned.excluded
    # quality: the same-GPU dominance proofs, never the bound
    assert COSTLIER not in evaluate_pruned(CHAT, SPACE, by_quality=True,
                                           bound=bound).excluded
