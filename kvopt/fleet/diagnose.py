"""Explanations: which constraints bind in a plan, and — for an infeasible problem — an
elastic re-solve that finds the smallest change that makes it feasible."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from typing import Any

from kvopt.errors import InfeasiblePlanError
from kvopt.fleet.problem import FleetProblem, Option, replica_bound

_TOL = 1e-6


def binding_constraints(model: Any, problem: FleetProblem, opts: list[Option]) -> list[str]:
    """Human-readable list of constraints at (or within 5% of) their limit."""
    out: list[str] = []
    x = {j: round(model.x[j].value or 0) for j in model.J}
    cost = sum(opts[j].candidate.usd_per_hour * n for j, n in x.items())
    if problem.budget_usd_h is not None and cost >= problem.budget_usd_h * (1 - 1e-6):
        out.append(f"budget: ${cost:.2f}/h of ${problem.budget_usd_h:.2f}/h")
    power = sum(opts[j].candidate.power_kw * n for j, n in x.items())
    if problem.power_cap_kw is not None and power >= problem.power_cap_kw * 0.95:
        out.append(f"power: {power:.1f} kW of {problem.power_cap_kw:.1f} kW")
    used: dict[str, int] = defaultdict(int)
    for j, n in x.items():
        used[opts[j].candidate.inventory_key] += opts[j].candidate.gpus * n
    for gpu, cap in problem.inventory.items():
        if used.get(gpu, 0) >= cap and cap > 0:
            out.append(f"inventory: all {cap} {gpu} in use")
    for j, n in x.items():
        if n <= 0:
            continue
        o = opts[j]
        w = problem.workloads[o.workload]
        for name, value, slo in (("TTFT p99", o.ttft_p99_ms, w.slo.ttft_p99_ms),
                                 ("TPOT p99", o.tpot_p99_ms, w.slo.tpot_p99_ms)):
            if slo is not None and value >= 0.95 * slo:
                out.append(f"{w.name}: {name} SLO ({value:.0f} of {slo:.0f} ms at the "
                           "replica's rate cap) limits the rate per replica")
    if not out:
        out.append("demand: the fleet is sized by the request rate (no budget, inventory, "
                   "power or SLO limit binds)")
    return out


def elastic_shortfall(problem: FleetProblem, opts: list[Option], *,
                      solver: str = "highs") -> InfeasiblePlanError:
    """Re-solve with the budget, power cap and inventories relaxed by penalized slacks;
    the slacks the cheapest relaxation needs say what must change."""
    from kvopt.fleet.build import build_model
    from kvopt.fleet.solve import solve_model

    relaxed = replace(problem, budget_usd_h=None, power_cap_kw=None, availability=(),
                      objective="cost", space=replace(problem.space, regions=tuple(
                          replace(r, availability=()) for r in problem.space.regions)))
    opts = [replace(o, upper=replica_bound(relaxed.workloads[o.workload], o.rate_cap_rps,
                                           o.candidate.tp, relaxed,
                                           o.candidate.inventory_key))
            for o in opts]
    model, _, _ = build_model(relaxed, opts)
    report = solve_model(model, solver=solver)
    if report.objective is None:
        return InfeasiblePlanError(
            "no fleet satisfies the SLOs even without budget, power or inventory limits; "
            "relax the SLOs or allow more GPU types, TP degrees or precisions")
    x = {j: round(model.x[j].value or 0) for j in model.J}
    cost = sum(opts[j].candidate.usd_per_hour * n for j, n in x.items())
    power = sum(opts[j].candidate.power_kw * n for j, n in x.items())
    used: dict[str, int] = defaultdict(int)
    for j, n in x.items():
        used[opts[j].candidate.inventory_key] += opts[j].candidate.gpus * n
    parts: list[str] = []
    data: dict[str, Any] = {"cheapest_usd_per_hour": cost, "fleet": {
        opts[j].candidate.label: n for j, n in x.items() if n}}
    if problem.budget_usd_h is not None and cost > problem.budget_usd_h + _TOL:
        short = cost - problem.budget_usd_h
        parts.append(f"budget short by ${short:.2f}/h (the cheapest fleet that meets the SLOs "
                     f"costs ${cost:.2f}/h)")
        data["budget_shortfall_usd_per_hour"] = short
    if problem.power_cap_kw is not None and power > problem.power_cap_kw + _TOL:
        parts.append(f"power cap short by {power - problem.power_cap_kw:.1f} kW")
        data["power_shortfall_kw"] = power - problem.power_cap_kw
    for gpu, cap in problem.inventory.items():
        if used.get(gpu, 0) > cap:
            parts.append(f"needs {used[gpu] - cap} more {gpu} GPUs")
            data.setdefault("inventory_shortfall", {})[gpu] = used[gpu] - cap
    if not parts:  # the limits together bind; report them all
        parts.append(f"the budget, power and inventory limits together exclude every fleet "
                     f"(cheapest unconstrained fleet: ${cost:.2f}/h, {power:.1f} kW)")
    return InfeasiblePlanError("; ".join(parts), data=data)
