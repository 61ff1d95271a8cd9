"""`pareto`: build the table, search (NSGA-II or exact), compare with the exact front, and
report.

The front is bounded to sensible fleets: no point costs more than ``cost_cap_multiple``
times the cheapest feasible single-configuration fleet (found by the exact enumeration), nor
more than the budget. The knee is the point a reviewer would pick
(:data:`kvopt.pareto.front.KNEE_RULE`). Both rules are in :meth:`ParetoResult.report`."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kvopt.pareto.evaluation import check_objectives
from kvopt.pareto.exact import cheapest_feasible, enumerate_all
from kvopt.pareto.front import KNEE_RULE, Front, Normalizer, hypervolume, knee
from kvopt.pareto.search import run_nsga2
from kvopt.pareto.table import ConfigTable, CostBound, build_table
from kvopt.space import Space, Workload


@dataclass
class ParetoResult:
    front: Front
    exact: Front | None
    table: ConfigTable
    objectives: tuple[str, ...]
    norm: Normalizer
    table_s: float
    hv_ratio: float | None
    hv_history: list[float] = field(default_factory=list)
    knee: int = -1  # index into front.F of the knee (-1: an empty front)
    cheapest_usd_h: float | None = None  # cheapest feasible single-configuration fleet
    cost_cap_usd_h: float | None = None  # no point of the front costs more
    cost_cap_multiple: float | None = None

    def report(self) -> dict[str, Any]:
        f = self.front
        cap = ("none" if self.cost_cap_usd_h is None else
               f"fleets costing at most {self.cost_cap_usd_h:.4g} $/h: the lesser of the "
               f"budget and {self.cost_cap_multiple:g} x the cheapest feasible fleet "
               f"({self.cheapest_usd_h or 0:.4g} $/h)")
        return {
            "cheapest_usd_per_hour": self.cheapest_usd_h,
            "cost_cap_usd_per_hour": self.cost_cap_usd_h, "cost_cap_rule": cap,
            "knee_rule": KNEE_RULE,
            "method": f.method, "points": int(f.F.shape[0]), "evaluations": f.evaluations,
            "search_s": f.seconds, "evaluations_per_s": f.evaluations / max(f.seconds, 1e-9),
            "table_s": self.table_s, "configs": int(self.table.valid.size),
            "valid_configs": int(self.table.valid.sum()),
            "exact_points": int(self.exact.F.shape[0]) if self.exact else None,
            "exact_s": self.exact.seconds if self.exact else None,
            "hv_ratio_to_exact": self.hv_ratio, "hv_per_generation": self.hv_history,
        }


def pareto(workload: Workload, space: Space, objectives: tuple[str, ...], *,
           method: str = "nsga2", max_replicas: int = 16, budget_usd_h: float | None = None,
           pop: int = 100, gens: int = 100, seed: int = 0, compare_exact: bool = True,
           progress: Any = None, mixed: bool = False, disagg: bool = False,
           table_builder: Callable[[Workload, Space, str], ConfigTable] | None = None,
           cost_cap_multiple: float | None = 4.0) -> ParetoResult:
    """Front for one workload. ``table_builder`` replaces :func:`build_table` (it must
    return what ``build_table`` would; a study passes a cached one). ``mixed``:
    heterogeneous fleets of two configuration groups (NSGA-II only: enumeration explodes);
    its hypervolume is reported relative to the exact single-configuration front (above 1
    when mixing helps). ``disagg``: disaggregated
    prefill/decode pools (group a = prefill pool, group b = decode pool), likewise.
    ``cost_cap_multiple``: bound the front to fleets costing at most this multiple of the
    cheapest feasible single-configuration fleet (None: only the budget bounds it)."""
    check_objectives(objectives)
    t0 = time.perf_counter()
    build = table_builder or build_table
    if table_builder is None:  # configurations above the front's cost bound are left out
        table = build_table(workload, space, "colocated", bound=CostBound(
            cost_cap_multiple, max_replicas, budget_usd_h, whole_rate=not mixed))
    else:
        table = build(workload, space, "colocated")
    table_s = time.perf_counter() - t0
    cheapest = cheapest_feasible(table, workload, max_replicas, budget_usd_h)
    cap = budget_usd_h
    if cost_cap_multiple is not None and cheapest is not None:
        cap = min(cap if cap is not None else float("inf"), cost_cap_multiple * cheapest)
    budget_usd_h = cap
    exact = None
    if method == "exact" or compare_exact:
        exact = enumerate_all(table, workload, objectives, max_replicas, budget_usd_h)
    if method == "exact":
        if mixed or disagg:
            from kvopt.errors import InputError

            raise InputError("--method", "exact", "mixed fleets are searched by NSGA-II "
                             "(enumeration explodes)", "use --method nsga2")
        assert exact is not None
        front = exact
    else:
        pre = dec = None
        if disagg:
            pre = build(workload, space, "prefill")
            dec = build(workload, space, "decode")
        front = run_nsga2(pre or table, workload, objectives, max_replicas=max_replicas,
                          budget_usd_h=budget_usd_h, pop=pop, gens=gens, seed=seed,
                          progress=progress, mixed=mixed, decode_table=dec)
    refs = [front.F] + ([exact.F] if exact is not None else [])
    norm = Normalizer.of(*refs) if any(r.size for r in refs) else Normalizer(
        np.zeros(len(objectives)), np.ones(len(objectives)))
    hv_ratio = None
    history: list[float] = []
    if exact is not None and exact.F.size:
        ref_hv = hypervolume(exact.F, norm)
        hv_ratio = hypervolume(front.F, norm) / ref_hv if ref_hv > 0 else None
        for gen_f in front.generations:
            history.append(hypervolume(gen_f, norm) / ref_hv if ref_hv > 0 else 0.0)
    k = knee(front.F, objectives=objectives,
             slo_ms={"ttft_p99": workload.slo.ttft_p99_ms,
                     "tpot_p99": workload.slo.tpot_p99_ms}) if front.F.shape[0] else -1
    return ParetoResult(front, exact, table, objectives, norm, table_s, hv_ratio, history,
                        knee=k, cheapest_usd_h=cheapest, cost_cap_usd_h=cap,
                        cost_cap_multiple=cost_cap_multiple)
