"""Solve a sizing problem end to end: options -> model -> HiGHS -> plan, with explanations.

The plan is JSON with a versioned schema (``kvopt.plan/1``, documented by its JSON Schema:
``kvopt schema plan``), written atomically.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from kvopt._version import __version__
from kvopt.confirm import COSTLIER
from kvopt.errors import InfeasiblePlanError, InputError
from kvopt.fleet.build import build_model
from kvopt.fleet.diagnose import binding_constraints, elastic_shortfall
from kvopt.fleet.options import (
    Evaluator,
    OptionSet,
    build_options,
    operating_latency,
    operating_point,
)
from kvopt.fleet.problem import FleetProblem, Option
from kvopt.fleet.solve import SolveReport, relative_gap, solve_model
from kvopt.report import finite as _finite
from kvopt.space import DOMINATED, Workload, evaluate

SCHEMA = "kvopt.plan/1"


@dataclass(frozen=True, kw_only=True)
class FleetEntry:
    workload: str
    option: Option
    replicas: int
    rate_per_replica_rps: float
    ttft_p99_ms: float
    tpot_p99_ms: float
    # every latency at the planned rate (kvopt.fleet.options.LATENCY_KEYS), ms
    latency: dict[str, float] = field(default_factory=dict, compare=False)


@dataclass(frozen=True, kw_only=True)
class FleetPlan:
    problem: FleetProblem
    entries: tuple[FleetEntry, ...]
    report: SolveReport
    binding: tuple[str, ...] = ()
    slo_marginal_cost: tuple[dict[str, Any], ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def usd_per_hour(self) -> float:
        return sum(e.option.candidate.usd_per_hour * e.replicas for e in self.entries)

    @property
    def worst_ratio(self) -> float:
        """The worst p99/SLO ratio over the chosen options (at their operating points)."""
        return max((e.option.slo_ratio for e in self.entries), default=0.0)

    @property
    def gpus(self) -> int:
        return sum(e.option.candidate.gpus * e.replicas for e in self.entries)

    @property
    def power_kw(self) -> float:
        return sum(e.option.candidate.power_kw * e.replicas for e in self.entries)

    def to_dict(self) -> dict[str, Any]:
        fleet = []
        for e in self.entries:
            c = e.option.candidate
            w = next(w for w in self.problem.workloads if w.name == e.workload)
            out_tok_s = e.rate_per_replica_rps * w.output_dist.mean * e.replicas
            fleet.append({
                "workload": e.workload, "model": w.model, "gpu": c.gpu, "region": c.region,
                "usd_per_gpu_hour": c.usd_per_hour / c.gpus, "tp": c.tp, "ep": c.ep,
                "dp": c.dp, "pp": c.pp,
                "weights": c.weights, "kv_dtype": c.kv_dtype, "engine": c.engine,
                "max_batch": c.max_batch, "replicas": e.replicas, "gpus": c.gpus * e.replicas,
                "usd_per_hour": c.usd_per_hour * e.replicas,
                "usd_per_million_output_tokens": c.usd_per_hour * e.replicas
                / (out_tok_s * 3600) * 1e6 if out_tok_s > 0 else None,
                "rate_per_replica_rps": e.rate_per_replica_rps,
                "goodput_per_replica_rps": c.goodput_rps,
                "predicted": {**e.latency, "ttft_p99_ms": e.ttft_p99_ms,
                              "tpot_p99_ms": e.tpot_p99_ms},
                "headroom": {
                    "ttft_p99": 1 - e.ttft_p99_ms / w.slo.ttft_p99_ms
                    if w.slo.ttft_p99_ms else None,
                    "tpot_p99": 1 - e.tpot_p99_ms / w.slo.tpot_p99_ms
                    if w.slo.tpot_p99_ms else None,
                    "rate": 1 - e.rate_per_replica_rps / c.goodput_rps},
                "memory_per_gpu_gib": c.memory_per_gpu_gib,
                "gpu_memory_gib": c.gpu_memory_gib,
                "quality_loss_pct": c.quality_loss_pct,
                **({"kv_offload_gib": self.problem.space.kv_offload_gib}
                   if self.problem.space.kv_offload_gib > 0 else {}),
            })
        p = self.problem
        out: dict[str, Any] = _finite({
            "schema": SCHEMA, "kvopt_version": __version__,
            "inputs": {
                "objective": p.objective, "budget_usd_h": p.budget_usd_h,
                "power_cap_kw": p.power_cap_kw, "availability": p.inventory,
                "allow_mixing": p.allow_mixing,
                "workloads": [_workload_dict(w) for w in p.workloads],
                "space": {"gpus": list(p.space.gpus), "tps": list(p.space.tps),
                          "parallel": [x.label for x in p.space.parallel_layouts],
                          "precisions": [list(x) for x in p.space.precisions],
                          "batches": list(p.space.batches), "engine": p.space.engine,
                          **({"engine_version": p.space.engine_version}
                             if p.space.engine_version is not None else {}),
                          **({"engine_args": dict(p.space.engine_args)}
                             if p.space.engine_args else {}),
                          "capacity": p.space.capacity,
                          **({"kv_offload_gib": p.space.kv_offload_gib}
                             if p.space.kv_offload_gib > 0 else {}),
                          "calibrations": [c.to_dict() for c in p.space.calibrations]}},
            "fleet": fleet,
            "totals": {"usd_per_hour": self.usd_per_hour, "gpus": self.gpus,
                       "power_kw": self.power_kw},
            "solver": self.report.to_dict(),
            "binding": list(self.binding),
            "slo_marginal_cost": list(self.slo_marginal_cost),
            "notes": list(self.notes),
        })
        return out


def _workload_dict(w: Workload) -> dict[str, Any]:
    return {"name": w.name, "model": w.model, "rate_rps": w.rate_rps,
            "input_len": w.input_dist.label, "output_len": w.output_dist.label,
            "slo": {"ttft_p99_ms": w.slo.ttft_p99_ms, "tpot_p99_ms": w.slo.tpot_p99_ms,
                    "e2e_p99_ms": w.slo.e2e_p99_ms},
            "redundancy": w.redundancy, "max_quality_loss_pct": w.max_quality_loss_pct,
            "images": None if w.images is None else {
                "per_request": w.images.count, "width": w.images.width,
                "height": w.images.height}}


def solve_problem(problem: FleetProblem, *, solver: str = "highs",
                  time_limit_s: float | None = None, mip_gap: float | None = None,
                  options: OptionSet | None = None, evaluator: Evaluator | None = None
                  ) -> tuple[FleetPlan | None, OptionSet]:
    """Build and solve; None when the MILP is infeasible (see :func:`plan_fleet`)."""
    opts = options or build_options(problem, evaluator=evaluator,
                                    rel_gap=relative_gap(solver, mip_gap))
    ranges = None
    if problem.objective == "balanced":  # the front's ends: cheapest and fastest fleets
        ends = []
        for goal in ("cost", "latency"):
            end, _ = solve_problem(replace(problem, objective=goal), solver=solver,
                                   time_limit_s=time_limit_s, mip_gap=mip_gap, options=opts)
            if end is None:
                return None, opts
            ends.append(end)
        cheap, fast = ends
        ranges = (cheap.usd_per_hour, fast.usd_per_hour, fast.worst_ratio, cheap.worst_ratio)
    model, _, build_s = build_model(problem, opts.options, ranges=ranges)
    report = solve_model(model, solver=solver, time_limit_s=time_limit_s, mip_gap=mip_gap,
                         build_s=build_s)
    if report.objective is None:
        return None, opts
    entries = []
    x = {j: round(model.x[j].value or 0) for j in model.J}
    for j, n in x.items():
        if n <= 0:
            continue
        o = opts.options[j]
        w = problem.workloads[o.workload]
        # the rate a chosen option's replicas actually carry (load spread by their caps)
        total_cap = sum(opts.options[i].rate_cap_rps * x[i] for i in x
                        if opts.options[i].workload == o.workload and x[i] > 0)
        rate = w.rate_rps * o.rate_cap_rps / total_cap
        lat = operating_latency(w, o.candidate, rate, problem.space)
        entries.append(FleetEntry(workload=w.name, option=o, replicas=n,
                                  rate_per_replica_rps=rate, ttft_p99_ms=lat["ttft_p99_ms"],
                                  tpot_p99_ms=lat["tpot_p99_ms"], latency=lat))
    plan = FleetPlan(problem=problem, entries=tuple(entries), report=report,
                     binding=tuple(binding_constraints(model, problem, opts.options)),
                     notes=_capacity_notes(problem, opts))
    return plan, opts


def _capacity_notes(problem: FleetProblem, opts: OptionSet) -> tuple[str, ...]:
    """How the candidates' goodputs were found, when it is not the plain exact search."""
    sp = problem.space
    if sp.capacity == "screen":
        return ("goodputs from the screening model (capacity: screen), an approximation "
                "of the analytic model; re-plan with capacity confirm or exact before "
                "committing to the fleet",)
    proven = sum(cs.excluded[DOMINATED] + cs.excluded[COSTLIER] for cs in opts.candidates)
    if not proven:
        return ()
    total = (len(problem.workloads) * len(sp.gpus) * len(sp.parallel_layouts)
             * len(sp.precisions)
             * len(sp.batches))
    return (f"capacity confirm: {proven} of {total} configurations proven dominated or "
            "costlier than the cheapest fleet by at most one exact check each (not "
            "searched); the plan is the exact search's",)


def plan_fleet(problem: FleetProblem, *, solver: str = "highs",
               time_limit_s: float | None = None, mip_gap: float | None = None,
               explain: bool = True, evaluator: Evaluator | None = None) -> FleetPlan:
    """The optimal fleet, or :class:`InfeasiblePlanError` saying the smallest change that
    makes the problem feasible. ``explain`` adds the marginal cost of tightening each SLO.
    ``evaluator`` replaces :func:`kvopt.space.evaluate` for every candidate evaluation (a
    study passes a per-process cache)."""
    try:
        plan, opts = solve_problem(problem, solver=solver, time_limit_s=time_limit_s,
                                   mip_gap=mip_gap, evaluator=evaluator)
    except InfeasiblePlanError as exc:
        if exc.data.get("slo_excluded"):
            raise _slo_relaxation(problem, str(exc.data["workload"]), solver,
                                  evaluator) from None
        raise
    if plan is None:
        raise elastic_shortfall(problem, opts.options, solver=solver)
    if explain:
        plan = replace(plan, slo_marginal_cost=tuple(_slo_sweep(problem, plan, solver,
                                                                evaluator)))
    return plan


def _slo_relaxation(problem: FleetProblem, name: str, solver: str,
                    evaluator: Evaluator | None = None) -> InfeasiblePlanError:
    """The SLO a workload can reach: its best p99s at light load over every candidate, and
    the cheapest fleet at that SLO (+5%)."""
    wi = next(i for i, w in enumerate(problem.workloads) if w.name == name)
    w = problem.workloads[wi]
    loose = replace(w, slo=replace(w.slo, ttft_p99_ms=None, tpot_p99_ms=None))
    free = (evaluator or evaluate)(loose, problem.space)
    best_ttft = best_tpot = math.inf
    for c in free.candidates:
        ttft, tpot, sat = operating_point(loose, c, c.goodput_rps * 0.05, problem.space)
        if not sat:
            best_ttft, best_tpot = min(best_ttft, ttft), min(best_tpot, tpot)
    if not math.isfinite(best_ttft):
        return InfeasiblePlanError(f"workload '{name}': no candidate can serve it at any SLO",
                                   data={"workload": name})
    parts, new = [], {}
    for attr, best, label in (("ttft_p99_ms", best_ttft, "TTFT p99"),
                              ("tpot_p99_ms", best_tpot, "TPOT p99")):
        want = getattr(w.slo, attr)
        if want is not None and want < best * 1.05:
            new[attr] = math.ceil(best * 1.05)
            parts.append((label, want, new[attr]))
        elif want is not None:
            new[attr] = want
    relaxed = replace(w, slo=replace(w.slo, **new))
    wls = tuple(relaxed if i == wi else x for i, x in enumerate(problem.workloads))
    what = ("; ".join(f"{label} {old:g} ms is unreachable" for label, old, _ in parts)
            or "the SLOs are unreachable together")
    try:
        alt, _ = solve_problem(replace(problem, workloads=wls), solver=solver,
                               evaluator=evaluator)
    except (InfeasiblePlanError, InputError):
        alt = None
    data: dict[str, Any] = {"workload": name, "feasible_slo": new}
    if alt is None:
        return InfeasiblePlanError(f"workload '{name}': {what}; even "
                                   + ", ".join(f"{lab} {v} ms" for lab, _, v in parts)
                                   + " is infeasible with the other limits", data=data)
    fleet = ", ".join(f"{e.replicas}x {e.option.candidate.label}" for e in alt.entries
                      if e.workload == name)
    data["usd_per_hour"] = alt.usd_per_hour
    return InfeasiblePlanError(
        f"workload '{name}': {what}; "
        + ", ".join(f"{lab} {v} ms" for lab, _, v in parts)
        + f" is feasible at ${alt.usd_per_hour:.2f}/h on {fleet}", data=data)


def _slo_sweep(problem: FleetProblem, plan: FleetPlan, solver: str,
               evaluator: Evaluator | None = None) -> list[dict[str, Any]]:
    """Re-solve with each SLO 10% tighter: the extra $/h it costs (None: infeasible).

    Both sides are cost-optimal fleets (the tighter SLO's against the current SLO's: the
    plan itself when its goal is cost), so the difference is the cost of tightening and
    never negative: tightening only removes options. A plan optimized for another goal
    (latency, balanced, ...) may cost more than either."""
    base = plan.usd_per_hour
    if problem.objective != "cost":
        try:
            cheapest, _ = solve_problem(replace(problem, objective="cost"), solver=solver,
                                        evaluator=evaluator)
            base = cheapest.usd_per_hour if cheapest else base
        except (InfeasiblePlanError, InputError):
            pass
    out = []
    for wi, w in enumerate(problem.workloads):
        for attr in ("ttft_p99_ms", "tpot_p99_ms", "e2e_p99_ms"):
            value = getattr(w.slo, attr)
            if value is None:
                continue
            tight = replace(w, slo=replace(w.slo, **{attr: value * 0.9}))
            wls = tuple(tight if i == wi else x for i, x in enumerate(problem.workloads))
            try:
                alt, _ = solve_problem(replace(problem, workloads=wls, objective="cost"),
                                       solver=solver, evaluator=evaluator)
            except (InfeasiblePlanError, InputError):
                alt = None
            out.append({"workload": w.name, "slo": attr, "from": value, "to": value * 0.9,
                        "usd_per_hour": alt.usd_per_hour if alt else None,
                        "base_usd_per_hour": base,
                        "delta_usd_per_hour": alt.usd_per_hour - base if alt else None})
    return out
