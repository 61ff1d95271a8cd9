"""Schedules side by side: one per region (``compare --by region``) or per way to pay
(``--by payment``: each alone, then the best mix), on the same workloads and demand."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from kvopt.catalog.payments import payment_book
from kvopt.choices import PAYMENT_KINDS
from kvopt.errors import KvoptError
from kvopt.fleet.options import Evaluator
from kvopt.fleet.problem import FleetProblem
from kvopt.fleet.schedule.problem import Horizon
from kvopt.fleet.schedule.run import schedule_fleet
from kvopt.space import Region

BY = ("gpu", "region", "payment")


def _row(label: str, problem: FleetProblem, **kw: Any) -> dict[str, Any]:
    try:
        d = schedule_fleet(problem, **kw).to_dict()
    except KvoptError as exc:
        return {"label": label, "note": str(exc)}
    f = d["fleet"]
    return {"label": label,
            "fleet": "; ".join(f"{e['workload']}: {e['gpu']} tp{e['tp']} "
                               f"{e['weights']}/{e['kv_dtype']}"
                               + (f" @{e['region']}" if e["region"] else "") for e in f),
            "total_usd": d["cost"]["total_usd"],
            "usd_per_hour_mean": d["cost"]["usd_per_hour_mean"],
            "by_kind_usd": d["cost"]["by_kind_usd"], "upfront_usd": d["cost"]["upfront_usd"],
            "peak_gpus": max(p["gpus"] for p in d["periods"]),
            "vs_peak_on_demand_fraction": d["savings"]["vs_peak_on_demand_fraction"],
            "note": ""}


def compare_by(problem: FleetProblem, by: str, *, regions: tuple[str, ...] = (),
               solver: str = "highs", evaluator: Evaluator | None = None
               ) -> list[dict[str, Any]]:
    """One row per region (the fleet's, else ``regions``, else the price book's) or per
    way to pay (each alone, then all of the horizon's together)."""
    hz = problem.horizon or Horizon()
    kw: dict[str, Any] = {"solver": solver, "evaluator": evaluator}
    rows = []
    if by == "region":
        names = regions or tuple(r.name for r in problem.space.regions) or tuple(
            payment_book(hz.price_book).regions())
        known = {r.name: r for r in problem.space.regions}
        for name in names:
            space = replace(problem.space, regions=(known.get(name, Region(name=name)),))
            wls = tuple(replace(w, regions=()) for w in problem.workloads)
            rows.append(_row(name, replace(problem, space=space, workloads=wls,
                                           horizon=hz), **kw))
        return rows
    for kind in hz.payments:
        kinds: tuple[str, ...] = (kind,)
        if kind == "spot" and "on_demand" in hz.payments:
            kinds = ("spot", "on_demand")  # the N+k spares are never spot
        label = " + ".join(kinds) if len(kinds) > 1 else kind
        rows.append(_row(label, replace(problem, horizon=replace(hz, payments=kinds)), **kw))
    if len(hz.payments) > 1:
        rows.append(_row("best mix: " + ", ".join(k for k in PAYMENT_KINDS
                                                  if k in hz.payments), problem, **kw))
    return rows
