"""Solve a schedule end to end: options (physics once per workload and candidate) ->
exact pruning -> model -> HiGHS -> schedule, with savings; an infeasible one is explained
per period (:mod:`kvopt.fleet.schedule.diagnose`)."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from kvopt.fleet.demand import Profile
from kvopt.fleet.options import Evaluator
from kvopt.fleet.problem import FleetProblem
from kvopt.fleet.schedule.build import build_model, size
from kvopt.fleet.schedule.decompose import combine
from kvopt.fleet.schedule.diagnose import explain_infeasible
from kvopt.fleet.schedule.problem import Horizon, Pay, ScheduleData, SOption, schedule_data
from kvopt.fleet.schedule.prune import (
    best_per_workload,
    lagrangian,
    lower_bounds,
    survivors,
    survivors_with,
    tighten,
)
from kvopt.fleet.schedule.result import Schedule, extract
from kvopt.fleet.solve import SolveReport, solve_model

RESTRICTED = 3  # options per workload in the model that finds the first schedule
MAX_INTEGERS = 150_000  # integer variables of the largest pruned model built


def _ints(d: ScheduleData, options: list[int]) -> int:
    return sum(len(d.options[j].committed) + len(d.options[j].flexible) * len(d.hours)
               for j in options)


def solve_data(d: ScheduleData, *, solver: str = "highs", time_limit_s: float | None = None,
               mip_gap: float | None = None, prune: bool = True, decompose: bool = True
               ) -> tuple[Schedule | None, dict[str, Any]]:
    """The schedule over ``d`` (None: infeasible) and what the solve did. With one
    configuration per workload: every option's lower bound (exact alone for the ones that
    can be their workload's best); the decomposition shortcut when its combination keeps
    the coupling constraints (``decompose``); else a restricted MILP over each workload's
    best options for a first schedule, the options it proves out pruned (``prune``), and
    the MILP over the rest."""
    info: dict[str, Any] = {"options": len(d.options)}
    keep: list[int] | None = None
    first: tuple[Any, SolveReport, float] | None = None
    if prune and not d.problem.allow_mixing:
        t0 = time.perf_counter()
        lbs, found = tighten(d, lower_bounds(d))
        info["bounds_s"] = time.perf_counter() - t0
        floor = sum(min(lbs[j] for j, o in enumerate(d.options) if o.workload == wi)
                    for wi in range(len(d.problem.workloads)))
        entries = combine(d, found) if decompose else None
        if entries is not None:
            rep = SolveReport(solver="decomposition", status="optimal", objective=floor,
                              best_bound=floor, gap=0.0, build_s=0.0,
                              solve_s=time.perf_counter() - t0)
            info["decomposed"] = True
            return Schedule(data=d, entries=entries, report=rep, model_size={
                "integer_variables": 0, "binary_variables": 0, "constraints": 0,
                "options_in_model": 0, "options_evaluated": len(d.options),
                "periods": len(d.hours)}), info
        restricted = best_per_workload(d, lbs, RESTRICTED)
        if {d.options[j].workload for j in restricted} != set(range(len(d.problem.workloads))):
            return None, info  # a workload with no finite bound: nothing can serve it
        m, _, build_s = build_model(d, options=restricted)
        rep = solve_model(m, solver=solver, time_limit_s=time_limit_s, mip_gap=mip_gap,
                          build_s=build_s)
        info["restricted_options"] = len(restricted)
        info["restricted_solve_s"] = rep.solve_s
        if rep.objective is not None:
            keep = survivors(d, lbs, rep.objective)
            target = 1e-4 if mip_gap is None else mip_gap
            if d.horizon.owned_gpus and rep.objective - floor > target * abs(rep.objective):
                t1 = time.perf_counter()
                lag, const, _ = lagrangian(d, rep.objective)
                info["lagrangian_s"] = time.perf_counter() - t1
                floor_lag = const + sum(
                    min(lag[j] for j, o in enumerate(d.options) if o.workload == wi)
                    for wi in range(len(d.problem.workloads)))
                if floor_lag > floor:
                    floor = floor_lag
                    keep = sorted(set(keep) & set(survivors_with(d, lag, const,
                                                                 rep.objective)))
            info["pruned_options"] = len(d.options) - len(keep)
            if rep.objective - floor <= target * abs(rep.objective):
                # the sum of the bounds proves the restricted schedule within the gap
                rep = replace(rep, best_bound=floor,
                              gap=(rep.objective - floor) / max(abs(rep.objective), 1e-9))
                keep = list(m.J)
                info["proven_by_bounds"] = True
            first = (m, rep, build_s)
    if first is not None and keep is not None and set(keep) <= set(first[0].J):
        m, rep, build_s = first  # the restricted model holds every option that can win
    elif first is not None and keep is not None and _ints(d, keep) > MAX_INTEGERS:
        # too many options can still win for one model: the restricted schedule, its gap
        # proven against the sum of the bounds (not closed)
        m, rep, build_s = first
        obj = float(rep.objective or 0.0)
        rep = replace(rep, status="bounded", best_bound=floor,
                      gap=(obj - floor) / max(abs(obj), 1e-9))
        info["unresolved_options"] = len(keep)
    else:
        m, _, build_s = build_model(d, options=keep)
        rep = solve_model(m, solver=solver, time_limit_s=time_limit_s, mip_gap=mip_gap,
                          build_s=build_s)
    info["model_options"] = len(m.J)
    if rep.objective is None:
        return None, info
    sched = Schedule(data=d, entries=extract(d, m), report=rep,
                     model_size={**size(m), "options_in_model": len(m.J),
                                 "options_evaluated": len(d.options),
                                 "periods": len(d.hours)})
    return sched, info


def peak_on_demand(d: ScheduleData, *, solver: str = "highs") -> float | None:
    """$ of the cheapest fleet sized for every workload's peak, bought on demand for the
    whole horizon (budgets dropped; inventory and power kept)."""
    H = sum(d.hours)
    prof = Profile(hours=(H,), labels=("peak",))
    hz = Horizon(profile=prof, payments=("on_demand",))
    opts: list[SOption] = []
    for o in d.options:
        od = o.pay("on_demand")
        c = o.option.candidate
        pay = od or Pay(kind="on_demand", usd_per_gpu_hour=c.usd_per_hour / c.tp)
        opts.append(SOption(index=len(opts), option=o.option, pays=(pay,)))
    problem = replace(d.problem, budget_usd_h=None, objective="cost", horizon=hz)
    peak = ScheduleData(problem=problem, horizon=hz, options=opts,
                        demand=[(max(r),) for r in d.demand])
    sched, _ = solve_data(peak, solver=solver)
    return sched.total_usd if sched else None


def schedule_fleet(problem: FleetProblem, *, solver: str = "highs",
                   time_limit_s: float | None = None, mip_gap: float | None = None,
                   evaluator: Evaluator | None = None, prune: bool = True) -> Schedule:
    """The cheapest schedule (or the goal's best) over the problem's horizon, or an
    :class:`InfeasiblePlanError` naming what each period lacks."""
    d = schedule_data(problem, evaluator=evaluator)
    sched, info = solve_data(d, solver=solver, time_limit_s=time_limit_s, mip_gap=mip_gap,
                             prune=prune)
    if sched is None:
        raise explain_infeasible(d, solver=solver)
    notes = list(d.notes)
    if info.get("decomposed"):
        notes.append("solved exactly by decomposition: each workload's best schedule alone "
                     "keeps every shared limit (inventory, budgets, power), so their sum is "
                     "optimal (gap 0) without HiGHS")
    if info.get("proven_by_bounds"):
        notes.append("the first (restricted) MILP's schedule is within the gap of the sum of "
                     "every workload's best alone, a lower bound of the whole problem")
    if info.get("unresolved_options"):
        notes.append(f"{info['unresolved_options']} options could still win (the shared limits "
                     "bind) and would not fit one model: the schedule is the best over each "
                     f"workload's {RESTRICTED} best options, its gap proven against the sum of "
                     "the lower bounds (status 'bounded')")
    if info.get("pruned_options"):
        notes.append(f"{info['pruned_options']} of {info['options']} options proven out of "
                     "every optimal schedule by their lower bounds (exact pruning)")
    if d.horizon.profile.periods > 1 or len(d.horizon.payments) > 1:
        peak = peak_on_demand(d, solver=solver)
    else:
        peak = sched.total_usd
    if peak is None:
        notes.append("peak provisioning on demand is infeasible under the inventory or "
                      "power limits: no savings against it")
    return replace(sched, peak_on_demand_usd=peak, notes=tuple(notes))

