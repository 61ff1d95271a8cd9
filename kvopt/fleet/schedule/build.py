"""Build the schedule model: sets, variables, the constraint families and the objective."""

from __future__ import annotations

import time
from typing import Any

import pyomo.environ as pyo

from kvopt.fleet.schedule import constraints as cf
from kvopt.fleet.schedule.problem import Pay, ScheduleData, SOption

FAMILIES = (
    ("link", cf.add_link), ("demand", cf.add_demand), ("redundancy", cf.add_redundancy),
    ("one_config", cf.add_choice), ("cover", cf.add_cover), ("spot", cf.add_spot_rule),
    ("inventory", cf.add_inventory), ("budget", cf.add_budget), ("power", cf.add_power),
)


def tie_break(d: ScheduleData) -> float:
    """eps: a weight on cost too small to trade against one unit of the primary goal
    (eps x the most the horizon could cost < 1)."""
    most = sum(o.option.candidate.tp * max(p.usd_per_gpu_hour for p in o.pays)
               * d.upper(o.index) for o in d.options) * sum(d.hours)
    return 1.0 / (most + 1.0)


def weights(d: ScheduleData, o: SOption, p: Pay, eps: float) -> float:
    """The objective's weight per replica-hour of option o paid with p."""
    c = o.option.candidate
    usd = c.tp * p.usd_per_gpu_hour
    goal = d.problem.objective
    if goal == "gpus":
        return c.tp + eps * usd
    if goal == "power":
        return c.power_kw + eps * usd
    if goal == "quality":
        return eps * usd
    return usd


def build_model(d: ScheduleData, *, options: list[int] | None = None, capped: bool = True
                ) -> tuple[Any, dict[str, int], float]:
    """(model, constraint count per family, build seconds); ``options``: build on these
    option indices only (a restricted model); ``capped``: replica bounds include the
    inventory (an elastic model drops it from the bounds)."""
    t0 = time.perf_counter()
    js = list(range(len(d.options))) if options is None else sorted(options)
    m = pyo.ConcreteModel(name="kvopt_schedule")
    m.J = pyo.Set(initialize=js, ordered=True)
    m.W = pyo.Set(initialize=range(len(d.problem.workloads)), ordered=True)
    m.T = pyo.Set(initialize=d.periods, ordered=True)
    m.by_w = {w: [j for j in js if d.options[j].workload == w] for w in m.W}
    m.kc = {j: tuple(p.kind for p in d.options[j].committed) for j in js}
    m.kf = {j: tuple(p.kind for p in d.options[j].flexible) for j in js}
    pay = {(j, p.kind): p for j in js for p in d.options[j].pays}
    m.price = {k: p.usd_per_gpu_hour for k, p in pay.items()}
    m.upfront = {k: p.upfront_usd_per_gpu for k, p in pay.items()}
    m.avail = {k: p.availability for k, p in pay.items()}
    m.u = {j: d.upper(j, capped=capped) for j in js}
    m.ut = {(j, t): d.upper(j, t, capped=capped) for j in js for t in d.periods}
    cidx = [(j, p) for j in js for p in m.kc[j]]
    fidx = [(j, p, t) for j in js for p in m.kf[j] for t in d.periods]
    m.y = pyo.Var(m.J, domain=pyo.Binary)
    m.c = pyo.Var(cidx, domain=pyo.NonNegativeIntegers, bounds=lambda m, j, p: (0, m.u[j]))
    m.f = pyo.Var(fidx, domain=pyo.NonNegativeIntegers,
                  bounds=lambda m, j, p, t: (0, m.ut[j, t]))
    counts = {name: builder(m, d) for name, builder in FAMILIES}
    eps = tie_break(d)
    H = sum(d.hours)
    w = {k: weights(d, d.options[k[0]], p, eps) for k, p in pay.items()}
    expr = sum(w[j, p] * H * m.c[j, p] for j, p in cidx) + sum(
        w[j, p] * d.hours[t] * m.f[j, p, t] for j, p, t in fidx)
    if d.problem.objective == "quality":
        expr = expr + sum(d.options[j].option.candidate.quality_loss_pct * m.y[j] for j in js)
    m.objective = pyo.Objective(expr=expr, sense=pyo.minimize)
    return m, counts, time.perf_counter() - t0


def size(m: Any) -> dict[str, int]:
    """Variables (integer and binary) and constraints of a built model."""
    ints = sum(1 for v in m.component_data_objects(pyo.Var) if v.is_integer()
               and not v.is_binary())
    bins = sum(1 for v in m.component_data_objects(pyo.Var) if v.is_binary())
    rows = sum(1 for _ in m.component_data_objects(pyo.Constraint))
    return {"integer_variables": ints, "binary_variables": bins, "constraints": rows}
