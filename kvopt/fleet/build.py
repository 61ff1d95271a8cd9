"""Build the Pyomo model: variables, the constraint families, the objective."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pyomo.core as pyo  # the modeling layer alone: see kvopt.fleet.solve._solver

from kvopt.fleet import constraints as cf
from kvopt.fleet.problem import FleetProblem, Option

FAMILIES = (
    ("link", cf.add_link), ("demand", cf.add_demand), ("redundancy", cf.add_redundancy),
    ("one_config", cf.add_choice), ("cover", cf.add_cover), ("memory", cf.add_memory),
    ("slo", cf.add_slo),
    ("budget", cf.add_budget), ("inventory", cf.add_inventory), ("power", cf.add_power),
)


@dataclass(frozen=True)
class Objective:
    """Objective = sum_j a_j x_j + b z (z = worst SLO ratio; b = 0 unless latency-aware)."""

    per_replica: list[float]
    worst_ratio: float
    sense_label: str


def objective_terms(problem: FleetProblem, opts: list[Option],
                    ranges: tuple[float, float, float, float] | None = None) -> Objective:
    """Coefficients of the objective. Secondary terms break ties toward cheaper fleets with
    a weight too small to trade against the primary term (``eps x total cost < 1 unit``)."""
    cost = [o.candidate.usd_per_hour for o in opts]
    max_total = sum(c * o.upper for c, o in zip(cost, opts, strict=True)) + 1.0
    eps = 1.0 / max_total
    kind = problem.objective
    if kind == "cost":
        return Objective(cost, 0.0, "$/h")
    if kind == "gpus":
        return Objective([o.candidate.gpus + eps * c for o, c in zip(opts, cost, strict=True)],
                         0.0, "GPUs")
    if kind == "power":
        return Objective([o.candidate.power_kw + eps * c for o, c in zip(opts, cost, strict=True)],
                         0.0, "kW")
    if kind == "latency":
        return Objective([1e-4 * eps * c for c in cost], 1.0, "worst p99/SLO ratio")
    if kind == "throughput":  # most capacity headroom: sum of replica caps / demand
        rate = {o.workload: problem.workloads[o.workload].rate_rps for o in opts}
        return Objective([-o.rate_cap_rps / rate[o.workload] + eps * c
                          for o, c in zip(opts, cost, strict=True)], 0.0,
                         "-(capacity / demand)")
    if kind == "quality":  # least quality loss; the cost breaks ties
        return Objective([eps * c for c in cost], 0.0, "quality loss (pct points)")
    # balanced: the knee of the (cost, worst ratio) front — each objective scaled to [0, 1]
    # by its range over the front, summed (kvopt.pareto.search.knee uses the same rule)
    c_min, c_max, z_min, z_max = ranges or (0.0, 1.0, 0.0, 1.0)
    c_span = c_max - c_min if c_max > c_min else 1.0
    z_span = z_max - z_min if z_max > z_min else 1.0
    return Objective([c / c_span for c in cost], 1.0 / z_span,
                     "cost and worst p99/SLO ratio, each scaled by its range on the front")


def build_model(problem: FleetProblem, opts: list[Option], *,
                ranges: tuple[float, float, float, float] | None = None
                ) -> tuple[Any, dict[str, int], float]:
    """(model, constraint count per family, build seconds)."""
    t0 = time.perf_counter()
    m = pyo.ConcreteModel(name="kvopt_fleet")
    m.J = pyo.Set(initialize=range(len(opts)), ordered=True)
    m.W = pyo.Set(initialize=range(len(problem.workloads)), ordered=True)
    m.x = pyo.Var(m.J, domain=pyo.NonNegativeIntegers,
                  bounds=lambda m, j: (0, opts[j].upper))
    m.y = pyo.Var(m.J, domain=pyo.Binary)
    counts = {name: builder(m, opts, problem) for name, builder in FAMILIES}
    obj = objective_terms(problem, opts, ranges)
    expr = sum(a * m.x[j] for j, a in enumerate(obj.per_replica))
    if problem.objective == "quality":
        expr = expr + sum(opts[j].candidate.quality_loss_pct * m.y[j] for j in m.J)
    if obj.worst_ratio:
        counts["worst_ratio"] = cf.add_worst_ratio(m, opts)
        expr = expr + obj.worst_ratio * m.z
    m.objective = pyo.Objective(expr=expr, sense=pyo.minimize)
    return m, counts, time.perf_counter() - t0
