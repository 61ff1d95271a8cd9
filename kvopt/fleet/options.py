"""The discrete options of the MILP: each workload's candidates at their operating points.

Throughput versus batch and tail latency are nonlinear; they are evaluated here, per
option, with the serving model, and the MILP selects options with binaries (see
README.md, "Fleet sizing", the linearization).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol

from kvopt.errors import InfeasiblePlanError
from kvopt.fleet.problem import LOAD_LEVELS, FleetProblem, Option, replica_bound, slo_ratio
from kvopt.serving.replica import build_replica
from kvopt.serving.serve import steady_model
from kvopt.space import Candidate, CandidateSet, Space, Workload, evaluate


class Evaluator(Protocol):
    """Evaluates a workload's candidates like :func:`kvopt.space.evaluate` (its default; a
    study passes a cached one), ``prune`` included."""

    def __call__(self, workload: Workload, space: Space, *, prune: str | None = None
                 ) -> CandidateSet: ...


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
                        kv_dtype=c.kv_dtype, engine=engine)
    st = steady_model(rep, w.input_dist, w.output_dist, max_num_seqs=c.max_batch).poisson(
        rate_rps)
    return st.ttft_s[3] * 1e3, st.tpot_s[3] * 1e3, st.e2e_p99_s * 1e3, st.saturated


def build_options(problem: FleetProblem, *, evaluator: Evaluator | None = None) -> OptionSet:
    """Every workload's candidates at their operating points. ``evaluator`` replaces
    :func:`kvopt.space.evaluate` (it must return what ``evaluate`` would)."""
    levels = LOAD_LEVELS if problem.objective in ("latency", "balanced") else (1.0,)
    options: list[Option] = []
    sets: list[CandidateSet] = []
    for wi, w in enumerate(problem.workloads):
        cs = (evaluator or evaluate)(w, problem.space, prune=_prune(problem))
        sets.append(cs)
        if not cs.candidates:
            reasons = "; ".join(f"{n} configurations: {r}" for r, n in cs.excluded.most_common())
            raise InfeasiblePlanError(
                f"workload '{w.name}': no candidate configuration can serve it ({reasons}); "
                "add GPUs or TP degrees, allow more precisions, or relax the SLO",
                data={"workload": w.name, "excluded": dict(cs.excluded),
                      "slo_excluded": any(r.startswith("SLO") for r in cs.excluded)})
        for c in cs.candidates:
            for lv in levels:
                rate = c.goodput_rps * lv
                if lv == 1.0:
                    ttft, tpot, e2e = c.ttft_p99_ms, c.tpot_p99_ms, c.e2e_p99_ms
                else:
                    ttft, tpot, e2e, _ = operating_point_e2e(w, c, rate, problem.space)
                upper = replica_bound(w, rate, c.tp, problem, c.inventory_key)
                options.append(Option(
                    index=len(options), workload=wi, candidate=c, level=lv, rate_cap_rps=rate,
                    ttft_p99_ms=ttft, tpot_p99_ms=tpot, e2e_p99_ms=e2e,
                    slo_ratio=slo_ratio(w, ttft, tpot, e2e),
                    upper=upper))
    if not problem.allow_mixing and problem.objective != "throughput":
        options = [replace(o, index=i)
                   for i, o in enumerate(undominated(options, problem))]
    return OptionSet(options, sets)


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
