"""Solve with a profile from ``solvers/`` (HiGHS by default) and report status, objective,
best bound, gap and times."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any

from kvopt.catalog.paths import solvers_dir
from kvopt.catalog.yamlio import read_yaml
from kvopt.errors import InputError, SolverError


@dataclass(frozen=True, kw_only=True)
class SolveReport:
    solver: str
    status: str  # optimal | time_limit | infeasible | ...
    objective: float | None
    best_bound: float | None
    gap: float | None  # relative: |objective - bound| / max(|objective|, 1e-9)
    build_s: float
    solve_s: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def solver_names() -> list[str]:
    return sorted(p.stem for p in solvers_dir().glob("*.yaml") if p.stem != "nsga2")


def load_profile(name: str) -> dict[str, Any]:
    path = solvers_dir() / f"{name}.yaml"
    if not path.is_file():
        raise InputError("solver", name, f"no profile solvers/{name}.yaml",
                         f"use one of: {', '.join(solver_names())}")
    data = read_yaml(path)
    if not isinstance(data, dict) or "pyomo_solver" not in data:
        raise InputError("solver", name, f"{path} needs 'pyomo_solver'")
    return data


def relative_gap(solver: str, mip_gap: float | None = None) -> float:
    """The relative optimality gap a solve stops at: ``mip_gap``, else the profile's
    ``mip_rel_gap``, else HiGHS's default 1e-4."""
    if mip_gap is not None:
        return float(mip_gap)
    opts = load_profile(solver).get("options") or {}
    return float(opts.get("mip_rel_gap", 1e-4))


def _solver(name: str) -> Any:
    """Pyomo's solver ``name``. HiGHS (``appsi_highs``, the default) is built the way
    ``SolverFactory("appsi_highs")`` builds it, without loading every plugin of
    ``pyomo.environ`` (~0.1 s of a plan); other solvers come from the factory."""
    if name == "appsi_highs":
        from pyomo.contrib.appsi.base import LegacySolverInterface
        from pyomo.contrib.appsi.solvers import Highs

        class AppsiHighs(LegacySolverInterface, Highs):  # type: ignore[misc]
            pass

        return AppsiHighs()
    import pyomo.environ as pyo

    return pyo.SolverFactory(name)


def solve_model(model: Any, *, solver: str = "highs", time_limit_s: float | None = None,
                mip_gap: float | None = None, build_s: float = 0.0) -> SolveReport:
    """Solve ``model`` in place (the solution is loaded when one exists)."""
    import pyomo.core as pyo
    from pyomo.opt import TerminationCondition as TC

    prof = load_profile(solver)
    opts = dict(prof.get("options") or {})
    if time_limit_s is not None:
        opts["time_limit_s"] = time_limit_s
    if mip_gap is not None:
        opts["mip_rel_gap"] = mip_gap
    opt = _solver(prof["pyomo_solver"])
    if opt is None or not opt.available(exception_flag=False):
        raise SolverError(f"solver '{solver}' ({prof['pyomo_solver']}) is not installed; "
                          f"{prof.get('install', 'install it or use --solver highs')}")
    t0 = time.perf_counter()
    if prof["pyomo_solver"] == "appsi_highs":
        opt.config.time_limit = float(opts.get("time_limit_s", 60))
        opt.config.mip_gap = float(opts.get("mip_rel_gap", 1e-4))
        opt.highs_options = {"threads": int(opts.get("threads", 1)),
                             "random_seed": int(opts.get("random_seed", 0))}
        res = opt.solve(model, load_solutions=False)
    else:
        mapped = {prof.get("option_names", {}).get(k, k): v for k, v in opts.items()}
        res = opt.solve(model, options=mapped, load_solutions=False)
    solve_s = time.perf_counter() - t0
    tc = res.solver.termination_condition
    status = {TC.optimal: "optimal", TC.infeasible: "infeasible",
              TC.maxTimeLimit: "time_limit", TC.unbounded: "unbounded",
              TC.infeasibleOrUnbounded: "infeasible"}.get(tc, str(tc))
    objective = bound = gap = None
    if status in ("optimal", "time_limit") and len(res.solution) > 0:
        try:
            model.solutions.load_from(res)
            objective = float(pyo.value(model.objective))
        except (RuntimeError, ValueError):
            objective = None
        lb = res.problem.lower_bound
        bound = float(lb) if lb is not None and math.isfinite(float(lb)) else objective
        if objective is not None and bound is not None:
            gap = abs(objective - bound) / max(abs(objective), 1e-9)
    return SolveReport(solver=solver, status=status, objective=objective, best_bound=bound,
                       gap=gap, build_s=build_s, solve_s=solve_s)
