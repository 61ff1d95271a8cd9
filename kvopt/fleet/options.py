"""The discrete options of the MILP: each workload's candidates at their operating points.

Throughput versus batch and tail latency are nonlinear; they are evaluated here, per
option, with the serving model, and the MILP selects options with binaries (see
kvopt/fleet/README.md, the linearization).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Protocol

from kvopt.confirm import Bound, replicas_enough, replicas_needed
from kvopt.errors import InfeasiblePlanError
from kvopt.fleet.problem import LOAD_LEVELS, FleetProblem, Option, replica_bound, slo_ratio
from kvopt.serving.replica import build_replica
from kvopt.serving.serve import steady_model
from kvopt.space import Candidate, CandidateSet, Space, Workload, evaluate


class Evaluator(Protocol):
    """Evaluates a workload's candidates like :func:`kvopt.space.evaluate` (its default; a
    study passes a cached one), ``prune`` and ``bound`` included (an evaluator may ignore
    them: they only let it skip candidates the options drop anyway)."""

    def __call__(self, workload: Workload, space: Space, *, prune: str | None = None,
                 bound: Bound | None = None) -> CandidateSet: ...


@dataclass(frozen=True)
class OptionSet:
    options: list[Option]
    candidates: list[CandidateSet]  # per workload


def operating_point(w: Workload, c: Candidate, rate_rps: float, space: Space
                    ) -> tuple[float, float, bool]:
    """(TTFT p99 ms, TPOT p99 ms, saturated) of one replica of ``c`` at ``rate_rps``."""
    ttft, tpot, _, sat = operating_point_e2e(w, c, rate_rps, space)
    return ttft, tpot, sat


def operating_point_e2e(w: Workload, c: Candidate, rate_rps: float, space: Space
                        ) -> tuple[float, float, float, bool]:
    """(TTFT p99, TPOT p99, end-to-end p99 in ms, saturated) at ``rate_rps`` per replica,
    on the (possibly calibrated) hardware ``space`` evaluated ``c`` with."""
    gpu, engine = space.hardware(c.gpu)
    rep = build_replica(model=w.model, gpu=gpu, tp=c.tp, weights=c.weights,
                        kv_dtype=c.kv_dtype, engine=engine, ep=c.ep, dp=c.dp, pp=c.pp,
                        images=w.images)
    st = steady_model(rep, w.input_dist, w.output_dist, max_num_seqs=c.max_batch).poisson(
        rate_rps)
    return st.ttft_s[3] * 1e3, st.tpot_s[3] * 1e3, st.e2e_p99_s * 1e3, st.saturated


LATENCY_KEYS = ("ttft_mean_ms", "ttft_p50_ms", "ttft_p90_ms", "ttft_p99_ms", "tpot_mean_ms",
                "tpot_p99_ms", "e2e_mean_ms", "e2e_p50_ms", "e2e_p90_ms", "e2e_p99_ms")


def latency_dict(st: object) -> dict[str, float]:
    """A steady state's latencies in ms (:data:`LATENCY_KEYS`): TTFT mean/p50/p90/p99, TPOT
    mean/p99, end-to-end mean/p50/p90/p99."""
    ttft, tpot, e2e = (getattr(st, f) for f in ("ttft_s", "tpot_s", "e2e_s"))
    values = (*ttft, tpot[0], tpot[3], *e2e)
    return {k: float(v) * 1e3 for k, v in zip(LATENCY_KEYS, values, strict=True)}


def operating_latency(w: Workload, c: Candidate, rate_rps: float, space: Space
                      ) -> dict[str, float]:
    """:func:`latency_dict` of one replica of ``c`` at ``rate_rps`` (Poisson arrivals)."""
    gpu, engine = space.hardware(c.gpu)
    rep = build_replica(model=w.model, gpu=gpu, tp=c.tp, weights=c.weights,
                        kv_dtype=c.kv_dtype, engine=engine, ep=c.ep, dp=c.dp, pp=c.pp,
                        images=w.images)
    return latency_dict(steady_model(rep, w.input_dist, w.output_dist,
                                     max_num_seqs=c.max_batch).poisson(rate_rps))


def build_options(problem: FleetProblem, *, evaluator: Evaluator | None = None,
                  rel_gap: float = 1e-4) -> OptionSet:
    """Every workload's candidates at their operating points. ``evaluator`` replaces
    :func:`kvopt.space.evaluate` (it must return what ``evaluate`` would); ``rel_gap`` is
    the MILP's relative gap (options within it of the cheapest fleet are kept)."""
    levels = LOAD_LEVELS if problem.objective in ("latency", "balanced") else (1.0,)
    options: list[Option] = []
    sets: list[CandidateSet] = []
    bound = cost_bound(problem, rel_gap)
    for wi, w in enumerate(problem.workloads):
        cs = (evaluator or evaluate)(w, problem.space, prune=_prune(problem), bound=bound)
        sets.append(cs)
        if not cs.candidates:
            reasons = "; ".join(f"{n} configurations: {r}" for r, n in cs.excluded.most_common())
            raise InfeasiblePlanError(
                f"workload '{w.name}': no candidate configuration can serve it ({reasons}); "
                "add GPUs or TP degrees, allow more precisions, or relax the SLO",
                data={"workload": w.name, "excluded": dict(cs.excluded),
                      "slo_excluded": any(r.startswith("SLO") for r in cs.excluded)})
        for c in cs.candidates:
            if w.regions and c.region not in w.regions:  # the workload's allow-list
                continue
            for lv in levels:
                rate = c.goodput_rps * lv
                if lv == 1.0:
                    ttft, tpot, e2e = c.ttft_p99_ms, c.tpot_p99_ms, c.e2e_p99_ms
                else:
                    ttft, tpot, e2e, _ = operating_point_e2e(w, c, rate, problem.space)
                upper = replica_bound(w, rate, c.gpus, problem, c.inventory_key)
                options.append(Option(
                    index=len(options), workload=wi, candidate=c, level=lv, rate_cap_rps=rate,
                    ttft_p99_ms=ttft, tpot_p99_ms=tpot, e2e_p99_ms=e2e,
                    slo_ratio=slo_ratio(w, ttft, tpot, e2e),
                    upper=upper))
    if not problem.allow_mixing and problem.objective != "throughput":
        options = undominated(options, problem)
        if bound is not None:
            options = cheapest_only(options, problem, bound)
        options = [replace(o, index=i) for i, o in enumerate(options)]
    return OptionSet(options, sets)


def cost_bound(problem: FleetProblem, rel_gap: float) -> Bound | None:
    """The :class:`kvopt.confirm.Bound` of a problem whose optimum is one workload's
    cheapest single-configuration fleet — goal cost (any budget only decides whether it is
    feasible) or GPUs (no budget), no mixing, no GPU inventory and no power cap (either
    could make the cheapest fleet infeasible and a dearer one optimal) and a gap below 0.5;
    None otherwise."""
    if (problem.allow_mixing or len(problem.workloads) != 1 or problem.inventory
            or not rel_gap < 0.5
            or problem.power_cap_kw is not None or problem.objective not in ("cost", "gpus")
            or (problem.objective == "gpus" and problem.budget_usd_h is not None)):
        return None
    return Bound(per_replica="usd" if problem.objective == "cost" else "gpus",
                 rel_gap=rel_gap, max_replicas=problem.max_replicas)


def cheapest_only(options: list[Option], problem: FleetProblem, bound: Bound
                  ) -> list[Option]:
    """The options whose fewest replicas cost no more than ``bound.limit`` of the workload's
    cheapest fleet (:func:`cost_bound`). The cheapest fleet ``C`` is the least ``weight x
    replicas`` over the options that can serve alone (fit, meet the SLOs, enough replicas
    within their bound); an option whose fewest replicas cost more than ``limit(C)`` is in
    no solution within the MILP's gap, so the optimum (and HiGHS's answer) is unchanged.
    The exact search and ``capacity: confirm`` (which proves such options costlier
    without searching them, :func:`kvopt.confirm.prove_costlier`) hand the MILP the same
    options."""
    slo = {wi: w.slo for wi, w in enumerate(problem.workloads)}

    def meets(o: Option) -> bool:
        s = slo[o.workload]
        return (o.candidate.memory_per_gpu_gib <= o.candidate.gpu_memory_gib
                and (s.ttft_p99_ms is None or o.ttft_p99_ms <= s.ttft_p99_ms)
                and (s.tpot_p99_ms is None or o.tpot_p99_ms <= s.tpot_p99_ms)
                and (s.e2e_p99_ms is None or o.e2e_p99_ms <= s.e2e_p99_ms))

    cheapest: dict[int, float] = {}
    for o in options:
        w = problem.workloads[o.workload]
        n = replicas_enough(w.rate_rps, w.redundancy, o.rate_cap_rps, bound.max_replicas)
        if meets(o) and math.isfinite(n):
            cost = bound.weight(o.candidate.usd_per_hour, o.candidate.gpus) * n
            cheapest[o.workload] = min(cheapest.get(o.workload, cost), cost)

    def needed(o: Option) -> bool:
        if o.workload not in cheapest:
            return True
        w = problem.workloads[o.workload]
        low = bound.weight(o.candidate.usd_per_hour, o.candidate.gpus) * replicas_needed(
            w.rate_rps, w.redundancy, o.rate_cap_rps)
        return low <= bound.limit(cheapest[o.workload])

    return [o for o in options if needed(o)]


def _prune(problem: FleetProblem) -> str | None:
    """The goal :func:`undominated` prunes for, as :func:`kvopt.space.evaluate` takes it
    (None: nothing is pruned, every candidate is needed)."""
    if problem.allow_mixing or problem.objective not in ("cost", "gpus", "power", "quality"):
        return None
    return "quality" if problem.objective == "quality" else "cost"


def undominated(options: list[Option], problem: FleetProblem) -> list[Option]:
    """The options no other option of the same workload and inventory key dominates.

    With one configuration per workload and an objective that never gains from more
    replicas, an option ``b`` is never needed when some ``a`` (same workload, same GPU
    inventory key) is at least as good in everything the MILP reads: rate cap, $/h, GPUs
    and kW per replica, the memory fit, whether each p99 meets its SLO, and — only where the
    objective reads them — the worst SLO ratio (latency, balanced) and the quality loss
    (quality). Swapping a solution's ``b`` replicas for ``ceil(L / cap_a) + k`` replicas of
    ``a`` keeps every constraint (demand, cover, redundancy, link, SLOs, memory, budget,
    inventory, power) and does not raise the objective, so the optimum is unchanged
    (tests compare with brute force over all options). Of identical options the first is
    kept. The throughput objective and mixing are left alone (more replicas of a smaller
    option can be worth it there)."""
    import numpy as np

    slo = {wi: w.slo for wi, w in enumerate(problem.workloads)}

    def misses(limit: float | None, value: float) -> float:
        return float(limit is not None and value > limit)

    def row(o: Option) -> list[float]:
        c, s = o.candidate, slo[o.workload]
        r = [-o.rate_cap_rps, c.usd_per_hour, float(c.gpus), c.power_kw,
             float(c.memory_per_gpu_gib > c.gpu_memory_gib), misses(s.ttft_p99_ms, o.ttft_p99_ms),
             misses(s.tpot_p99_ms, o.tpot_p99_ms), misses(s.e2e_p99_ms, o.e2e_p99_ms)]
        if problem.objective in ("latency", "balanced"):
            r.append(o.slo_ratio)
        if problem.objective == "quality":
            r.append(c.quality_loss_pct)
        return r

    groups: dict[tuple[int, str], list[int]] = {}
    for i, o in enumerate(options):
        groups.setdefault((o.workload, o.candidate.inventory_key), []).append(i)
    keep = np.ones(len(options), dtype=bool)
    for idx in groups.values():
        if len(idx) < 2:
            continue
        a = np.array([row(options[i]) for i in idx])  # smaller is better in every column
        le = (a[:, None, :] <= a[None, :, :]).all(axis=2)  # le[p, q]: p at least as good
        lt = (a[:, None, :] < a[None, :, :]).any(axis=2)
        earlier = np.tri(len(idx), k=-1, dtype=bool).T  # [p, q] = p < q: p keeps a tie
        dominated = (le & (lt | earlier)).any(axis=0)
        keep[np.asarray(idx)[dominated]] = False
    return [o for o, k in zip(options, keep, strict=True) if k]
