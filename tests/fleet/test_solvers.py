"""Solvers other than HiGHS reach the same optimum: the brute-force suite of test_fleet.py
run with each solver profile in solvers/ whose solver is installed (CI installs CBC from
Debian's coinor-cbc and SCIP from the pyscipopt wheel; a machine without one skips it),
and every profile says whether and where it is tested."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import yaml

from kvopt.fleet.plan import solve_problem
from kvopt.fleet.solve import load_profile, solver_names
from tests.fleet.test_fleet import BASE, brute_force
from tests.paths import ROOT

TESTED = ("highs", "cbc", "scip")  # run here; gurobi needs a license


def _available(name: str) -> bool:
    import pyomo.environ as pyo

    opt = pyo.SolverFactory(load_profile(name)["pyomo_solver"])
    return opt is not None and bool(opt.available(exception_flag=False))


def test_every_profile_says_whether_it_is_tested() -> None:
    assert set(solver_names()) == {"highs", "cbc", "scip", "gurobi"}
    for name in solver_names():
        data = yaml.safe_load((ROOT / "solvers" / f"{name}.yaml").read_text())
        said = str(data.get("tested", ""))
        assert said, name
        assert ("test_solvers.py" in said or "tests/fleet" in said) == (name in TESTED), name


CASES = [("cost", {}), ("gpus", {}), ("power", {}), ("quality", {}),
         ("cost", {"budget_usd_h": 30.0}), ("cost", {"power_cap_kw": 3.0}),
         ("throughput", {"budget_usd_h": 30.0}), ("latency", {"budget_usd_h": 40.0})]


@pytest.fixture(scope="module")
def options():
    from kvopt.fleet.options import build_options

    return {"cost": build_options(BASE),
            "latency": build_options(replace(BASE, objective="latency", budget_usd_h=40))}


@pytest.mark.parametrize("solver", ["cbc", "scip"])
def test_other_solvers_reach_the_brute_force_optimum(options, solver: str) -> None:
    if not _available(solver):
        pytest.skip(f"{solver} is not installed here (.ci/run installs it)")
    for objective, extra in CASES:
        problem = replace(BASE, objective=objective, **extra)
        opts = options["latency" if objective == "latency" else "cost"]
        plan, built = solve_problem(problem, options=opts, solver=solver)
        expected = brute_force(problem, built.options)
        if math.isinf(expected):
            assert plan is None, (solver, objective, extra)
            continue
        assert plan is not None and plan.report.status == "optimal", (solver, objective)
        assert plan.report.objective == pytest.approx(expected, rel=1e-4, abs=1e-6), (
            solver, objective, extra)
        assert plan.report.solver == solver


def test_highs_plans_without_loading_every_pyomo_plugin() -> None:
    """The default solver is built without ``pyomo.environ`` (its plugins cost ~0.1 s of
    a plan); it is the object ``SolverFactory("appsi_highs")`` gives."""
    import subprocess
    import sys

    code = ("import sys; from kvopt import api; p = api.plan(model='Llama-3.1-8B', rps=5, "
            "input_len=500, output_len=100, gpus=('L40S',), tp_options=(1,), "
            "batches=(64,), explain=False); "
            "print(p.report.status, 'pyomo.environ' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout.split()
    assert out == ["optimal", "False"]
    import pyomo.environ as pyo

    from kvopt.fleet.solve import _solver

    factory = type(pyo.SolverFactory("appsi_highs"))
    assert type(_solver("appsi_highs")).__mro__[1:] == factory.__mro__[1:]
