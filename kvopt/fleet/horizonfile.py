"""The time keys of ``fleet.yaml`` (``kvopt schedule``): ``demand``, ``payments``,
``spot_rule``, ``budget_usd``, ``upfront_budget_usd``, ``price_book`` and the regions'
``owned_gpus``; and the CLI's ``--demand`` / ``--trace`` on top of a fleet. A fleet without
them has no horizon (one rate, on-demand prices: ``kvopt size``)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from kvopt.errors import InputError
from kvopt.fleet.demand import profile_from, read_demand_csv, read_trace
from kvopt.fleet.problem import FleetProblem
from kvopt.fleet.schedule.problem import Horizon, SpotRule

TIME_KEYS = ("demand", "payments", "spot_rule", "budget_usd", "upfront_budget_usd",
             "price_book")


def horizon_from(data: dict[str, Any], base: Path, names: tuple[str, ...]) -> Horizon | None:
    """The horizon a fleet file's time keys describe (None when it gives none; relative
    files are relative to ``base``). Raises :class:`InputError` naming the key."""
    owned = tuple((f"{r}:{g}", int(n)) for r, rd in (data.get("regions") or {}).items()
                  for g, n in ((rd or {}).get("owned_gpus") or {}).items())
    kw: dict[str, Any] = {}
    if "demand" in data:
        node = dict(data["demand"])
        if "csv" in node:
            kw["profile"] = read_demand_csv(base / str(node["csv"]), names)
        else:
            kw["profile"] = profile_from(node, names)
    if "payments" in data:
        kw["payments"] = tuple(str(p) for p in data["payments"])
    if "spot_rule" in data:
        kw["spot_rule"] = SpotRule(**dict(data["spot_rule"]))
    for key in ("budget_usd", "upfront_budget_usd"):
        if data.get(key) is not None:
            kw[key] = float(data[key])
    if data.get("price_book"):
        kw["price_book"] = str(base / str(data["price_book"]))
    if owned:
        kw["owned_gpus"] = owned
    hz = Horizon(**kw)
    return None if hz == Horizon() else hz


def with_demand(problem: FleetProblem, *, demand: str | None = None,
                trace: str | None = None, trace_workload: str | None = None,
                period_hours: float = 1.0, price_book: str | None = None) -> FleetProblem:
    """``problem`` with its demand from a CSV (``--demand``) or a request trace
    (``--trace``: the named workload's rates and its prompt/output lengths), and a user's
    price book (``--price-book``)."""
    hz = problem.horizon or Horizon()
    names = tuple(w.name for w in problem.workloads)
    if demand and trace:
        raise InputError("--demand", demand, "give --demand or --trace, not both")
    if demand:
        hz = replace(hz, profile=read_demand_csv(demand, names))
    if trace:
        name = trace_workload or (names[0] if len(names) == 1 else None)
        if name not in names:
            raise InputError("--trace-workload", trace_workload,
                             "name the workload the trace is for; allowed: "
                             + ", ".join(names))
        tr = read_trace(trace, period_hours=period_hours, name=str(name))
        hz = replace(hz, profile=tr.profile)
        problem = replace(problem, workloads=tuple(
            replace(w, input_dist=tr.input_dist, output_dist=tr.output_dist,
                    rate_rps=max(max(tr.profile.rps[0][1]), 1e-9))
            if w.name == name else w for w in problem.workloads))
    if price_book:
        hz = replace(hz, price_book=price_book)
    return replace(problem, horizon=hz)
