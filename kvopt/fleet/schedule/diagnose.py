"""Why a schedule is infeasible, per period: an elastic re-solve in which inventory, power
and budgets may be exceeded at a price, minimizing the excess (GPU-equivalents: a kW or a
$/h counts as what one GPU of the fleet's most power-hungry or dearest kind would take),
then the cost. Its slacks say what each period lacks: "period 14 (Mon 13:00) needs 3 more
H100-SXM in us-east"."""

from __future__ import annotations

from typing import Any

import pyomo.environ as pyo

from kvopt.errors import InfeasiblePlanError
from kvopt.fleet.schedule.build import build_model
from kvopt.fleet.schedule.problem import ScheduleData
from kvopt.fleet.solve import solve_model

ELASTIC = ("inventory", "owned_cap", "power", "budget_period", "budget_horizon",
           "budget_upfront")
_SHOWN = 6  # periods named in the message


def _elastic(m: Any, name: str, scale: float) -> list[tuple[Any, Any]]:
    """Replace constraint ``name`` by body <= upper + slack; (index, slack var) pairs."""
    con = getattr(m, name, None)
    if con is None or not len(con):
        return []
    idx = list(con.keys())
    slack = pyo.Var(idx, domain=pyo.NonNegativeReals)
    m.add_component(f"{name}_slack", slack)
    rows = {i: (con[i].body, con[i].upper) for i in idx}

    def rule(m: Any, *i: Any) -> Any:
        key = i if len(i) > 1 else i[0]
        return rows[key][0] <= rows[key][1] + slack[key]

    m.add_component(f"{name}_elastic", pyo.Constraint(idx, rule=rule))
    con.deactivate()
    m.elastic_terms.append(scale * sum(slack[i] for i in idx))
    return [(i, slack[i]) for i in idx]


def explain_infeasible(d: ScheduleData, *, solver: str = "highs") -> InfeasiblePlanError:
    """The smallest excess of inventory, power and budgets that makes the schedule feasible,
    named per period; or, when demand alone cannot be met, which period and workload."""
    m, _, _ = build_model(d, capped=False)
    m.elastic_terms = []
    usd_gpu_h = max(p.usd_per_gpu_hour for o in d.options for p in o.pays)
    kw_gpu = max(o.option.candidate.power_kw / o.option.candidate.tp for o in d.options)
    H = sum(d.hours)
    scales = {"inventory": 1.0, "owned_cap": 1.0, "power": 1.0 / kw_gpu,
              "budget_period": 1.0 / usd_gpu_h, "budget_horizon": 1.0 / (usd_gpu_h * H),
              "budget_upfront": 1.0 / max(1.0, max(p.upfront_usd_per_gpu for o in d.options
                                                   for p in o.pays))}
    slacks = {name: _elastic(m, name, scales[name]) for name in ELASTIC}
    cost = m.objective.expr
    m.objective.deactivate()
    most = 1.0 + sum(d.upper(o.index) * o.option.candidate.tp * usd_gpu_h * H
                     for o in d.options)
    m.elastic_objective = pyo.Objective(expr=sum(m.elastic_terms) + cost / most)
    report = solve_model(m, solver=solver)
    if report.objective is None:
        return InfeasiblePlanError(
            "no schedule meets the demand even without inventory, power or budget limits: "
            + _demand_gap(d), data={"periods": []})
    prof = d.horizon.profile
    found: list[tuple[int, str]] = []
    data: dict[str, Any] = {"shortfalls": []}
    for name, pairs in slacks.items():
        for i, var in pairs:
            v = float(var.value or 0.0)
            if v <= 1e-6:
                continue
            t, text = _phrase(name, i, v)
            found.append((t, text))
            data["shortfalls"].append({"constraint": name, "index": str(i), "excess": v})
    if not found:
        return InfeasiblePlanError("the limits together exclude every schedule", data=data)
    found.sort(key=lambda x: x[0])
    parts = [(f"{prof.where(t)} " if t >= 0 else "") + text for t, text in found[:_SHOWN]]
    more = f"; and {len(found) - _SHOWN} more" if len(found) > _SHOWN else ""
    return InfeasiblePlanError("; ".join(parts) + more, data=data)


def _phrase(name: str, i: Any, v: float) -> tuple[int, str]:
    """(period or -1, what it needs)."""
    import math

    if name == "inventory":
        key, t = i
        region, _, gpu = str(key).rpartition(":")
        where = f" in {region}" if region else ""
        return int(t), f"needs {math.ceil(v - 1e-6)} more {gpu}{where}"
    if name == "owned_cap":
        region, _, gpu = str(i).rpartition(":")
        return -1, f"needs {math.ceil(v - 1e-6)} more owned {gpu}" + (
            f" in {region}" if region else "")
    if name == "power":
        return int(i), f"needs {v:.1f} kW more power"
    if name == "budget_period":
        return int(i), f"needs ${v:.2f}/h more budget"
    if name == "budget_horizon":
        return -1, f"the horizon needs ${v:,.0f} more budget"
    return -1, f"needs ${v:,.0f} more upfront budget"


def _demand_gap(d: ScheduleData) -> str:
    """The first period and workload whose rate no option can serve within its bounds."""
    for t in d.periods:
        for wi, w in enumerate(d.problem.workloads):
            best = max((o.option.rate_cap_rps * max(0, d.upper(o.index, t, capped=False)
                                                    - w.redundancy)
                        for o in d.options if o.workload == wi), default=0.0)
            if best < d.demand[wi][t]:
                return (f"{d.horizon.profile.where(t)} workload '{w.name}' needs "
                        f"{d.demand[wi][t]:.3g} req/s, at most {best:.3g} fit the replica "
                        "bounds")
    return "the spot rule or the ways to pay allowed leave too little capacity"
