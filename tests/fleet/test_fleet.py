"""Fleet sizing MILP: brute force agreement, independent checks, known cases, structure,
docs table and bad input."""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import stat
from dataclasses import replace
from pathlib import Path

import pytest

from kvopt import InfeasiblePlanError, InputError
from kvopt.fleet.build import build_model, objective_terms
from kvopt.fleet.check import check_plan
from kvopt.fleet.fleetfile import load_fleet_file
from kvopt.fleet.options import build_options
from kvopt.fleet.plan import plan_fleet, solve_problem
from kvopt.fleet.problem import FleetProblem
from kvopt.serving.lengths import fixed
from kvopt.serving.results import Slo
from kvopt.space import Space, Workload
from tests.paths import ROOT

CHAT = Workload(name="chat", model="Llama-3.1-8B", rate_rps=12, input_dist=fixed(1000),
                output_dist=fixed(200), slo=Slo(ttft_p99_ms=800, tpot_p99_ms=40), redundancy=1)
SUM = Workload(name="sum", model="Qwen2.5-7B", rate_rps=4, input_dist=fixed(3000),
               output_dist=fixed(300), slo=Slo(ttft_p99_ms=2000, tpot_p99_ms=60))
SPACE = Space(gpus=("H100-SXM", "L40S", "A100-SXM-80GB"), tps=(1, 2),
              precisions=(("bf16", "bf16"), ("fp8", "fp8")), batches=(32, 256))
BASE = FleetProblem(workloads=(CHAT, SUM), space=SPACE, max_replicas=4,
                    availability=(("H100-SXM", 4),))
# solved to proven optimality where compared with brute force (the solver profile's
# mip_rel_gap of 1e-4 may stop at a near-tie within it); HiGHS still stops within its
# absolute gap (mip_abs_gap, default 1e-6), which the latency objectives can reach
EXACT_GAP = 1e-9
SOLVER_ABS_GAP = 1e-6


@pytest.fixture(scope="module")
def options_cost():
    return build_options(BASE)


@pytest.fixture(scope="module")
def options_latency():
    return build_options(replace(BASE, objective="latency", budget_usd_h=40))


def brute_force(problem: FleetProblem, opts, ranges=None, detail: bool = False, terms=None):
    """Best objective over every fleet with one option per workload, counted directly
    (``detail``: also its cost and worst SLO ratio; ``terms``: objective coefficients to
    use instead of those of ``opts``)."""
    terms = terms or objective_terms(problem, opts, ranges)
    per_w: list[list[tuple[int, int]]] = []
    for wi in range(len(problem.workloads)):
        choices = []
        for o in opts:
            if o.workload != wi:
                continue
            for n in range(1, o.upper + 1):
                choices.append((o.index, n))
        per_w.append(choices)
    best = math.inf
    avail = dict(problem.availability)
    for combo in itertools.product(*per_w):
        cost = gpus_h100 = power = 0.0
        ok = True
        z = 0.0
        quality = 0.0
        for (j, n) in combo:
            o = opts[j]
            w = problem.workloads[o.workload]
            c = o.candidate
            if o.rate_cap_rps * (n - w.redundancy) < w.rate_rps - 1e-9 or n < w.redundancy + 1:
                ok = False
            if c.memory_per_gpu_gib > c.gpu_memory_gib:
                ok = False
            if (w.slo.ttft_p99_ms is not None and o.ttft_p99_ms > w.slo.ttft_p99_ms) or (
                    w.slo.tpot_p99_ms is not None and o.tpot_p99_ms > w.slo.tpot_p99_ms):
                ok = False
            cost += c.usd_per_hour * n
            power += c.power_kw * n
            if c.gpu in avail:
                gpus_h100 += c.gpus * n
            z = max(z, o.slo_ratio)
            quality += c.quality_loss_pct
        if not ok:
            continue
        if problem.budget_usd_h is not None and cost > problem.budget_usd_h + 1e-9:
            continue
        if "H100-SXM" in avail and gpus_h100 > avail["H100-SXM"]:
            continue
        if problem.power_cap_kw is not None and power > problem.power_cap_kw + 1e-9:
            continue
        value = sum(terms.per_replica[j] * n for j, n in combo) + terms.worst_ratio * z
        if problem.objective == "quality":
            value += quality
        if value < best:
            best, best_cost, best_z = value, cost, z
    if detail:
        return (best, best_cost, best_z) if math.isfinite(best) else (best, None, None)
    return best


@pytest.mark.parametrize("objective,extra", [
    ("cost", {}), ("gpus", {}), ("power", {}), ("quality", {}),
    ("cost", {"budget_usd_h": 30.0}), ("cost", {"power_cap_kw": 3.0}),
    ("throughput", {"budget_usd_h": 30.0}),
])
def test_milp_matches_brute_force(options_cost, objective, extra) -> None:
    problem = replace(BASE, objective=objective, **extra)
    plan, opts = solve_problem(problem, options=options_cost, mip_gap=EXACT_GAP)
    expected = brute_force(problem, opts.options)
    if math.isinf(expected):
        assert plan is None
        return
    assert plan is not None and plan.report.status == "optimal"
    assert plan.report.objective == pytest.approx(expected, rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("objective", ["latency", "balanced"])
def test_latency_objectives_match_brute_force(options_latency, objective) -> None:
    """Within HiGHS's absolute MIP gap (1e-6, its default) of the brute-force optimum. The
    balanced objective is normalized by the front's ends; its ends are the MILP's (each
    within that gap of its brute-force optimum): near-tied ends of other costs would
    otherwise normalize the brute force differently."""
    problem = replace(BASE, objective=objective, budget_usd_h=40)
    plan, opts = solve_problem(problem, options=options_latency, mip_gap=EXACT_GAP)
    ranges = None
    if objective == "balanced":  # the front's ends, each checked by brute force too
        ends = []
        for goal in ("cost", "latency"):
            end, _ = solve_problem(replace(problem, objective=goal), options=options_latency,
                                   mip_gap=EXACT_GAP)
            want = brute_force(replace(problem, objective=goal), opts.options)
            assert end is not None
            assert end.report.objective == pytest.approx(want, rel=1e-6, abs=SOLVER_ABS_GAP)
            ends.append(end)
        cheap, fast = ends
        ranges = (cheap.usd_per_hour, fast.usd_per_hour, fast.worst_ratio, cheap.worst_ratio)
    expected = brute_force(problem, opts.options, ranges)
    assert plan is not None
    assert plan.report.objective == pytest.approx(expected, rel=1e-6, abs=SOLVER_ABS_GAP)


def test_plan_passes_the_independent_checker(options_cost) -> None:
    plan, _ = solve_problem(BASE, options=options_cost)
    d = plan.to_dict()
    assert check_plan(d, BASE) == []
    assert d["solver"]["gap"] is not None and d["solver"]["gap"] <= 1e-4
    # the checker can fail: overload one entry
    bad = json.loads(json.dumps(d))
    bad["fleet"][0]["rate_per_replica_rps"] *= 50
    assert check_plan(bad, BASE)


def test_structure_without_solver(options_cost) -> None:
    problem = replace(BASE, budget_usd_h=50.0, power_cap_kw=10.0)
    model, counts, _ = build_model(problem, options_cost.options)
    n = len(options_cost.options)
    assert counts["link"] == n and len(model.link) == n
    assert counts["demand"] == 2 and len(model.demand) == 2
    n_chat = sum(1 for o in options_cost.options if o.workload == 0)
    assert counts["redundancy"] == n_chat  # only chat has k = 1
    assert counts["one_config"] == 2 and counts["memory"] == n and counts["cover"] == n
    assert counts["slo"] == 2 * n and len(model.ttft_slo) == n and len(model.tpot_slo) == n
    assert counts["budget"] == 1 and counts["power"] == 1
    assert counts["inventory"] == 1 and list(model.inventory) == ["H100-SXM"]
    assert len(model.x) == n and len(model.y) == n
    mixing = replace(problem, allow_mixing=True)
    _, c2, _ = build_model(mixing, options_cost.options)
    assert c2["one_config"] == 0 and c2["cover"] == 0


def test_docs_table_lists_every_component(options_latency) -> None:
    problem = replace(BASE, objective="latency", budget_usd_h=40, power_cap_kw=10.0)
    model, _, _ = build_model(problem, options_latency.options)
    import pyomo.environ as pyo

    names = {c.name for c in model.component_objects((pyo.Constraint, pyo.Objective))}
    # the developer's page of the MILP: kvopt/fleet/README.md, "Constraints and objective"
    readme = (ROOT / "kvopt" / "fleet" / "README.md").read_text(encoding="utf-8")
    table = set(re.findall(r"\| `(\w+)` \| `kvopt\.fleet\.[\w.]+` \|", readme))
    assert names == table, (names ^ table)
    import kvopt.fleet.build as fb
    import kvopt.fleet.constraints as cf
    builders = re.findall(r"\| `(\w+)` \| `kvopt\.fleet\.(constraints|build)\.(\w+)` \|", readme)
    for _, module, builder in builders:
        assert hasattr({"constraints": cf, "build": fb}[module], builder), builder
    # every constraint builder is in the table
    adders = {n for n in dir(cf) if n.startswith("add_")}
    assert adders == {b for _, m, b in builders if m == "constraints"}, adders


def test_infeasible_budget_reports_shortfall(options_cost) -> None:
    problem = replace(BASE, budget_usd_h=5.0)
    with pytest.raises(InfeasiblePlanError, match=r"budget short by \$") as info:
        _plan(problem, options_cost)
    cheapest = solve_problem(BASE, options=options_cost)[0].usd_per_hour
    assert info.value.data["budget_shortfall_usd_per_hour"] == pytest.approx(cheapest - 5.0)


def _plan(problem, opts):
    from kvopt.fleet.diagnose import elastic_shortfall

    plan, _ = solve_problem(problem, options=opts)
    if plan is None:
        raise elastic_shortfall(problem, opts.options)
    return plan


def test_inventory_shortfall_named(options_cost) -> None:
    problem = replace(BASE, availability=(("H100-SXM", 0), ("L40S", 0), ("A100-SXM-80GB", 1)))
    with pytest.raises(InfeasiblePlanError, match=r"more .* GPUs"):
        _plan(replace(problem, max_replicas=None), build_options(replace(problem,
                                                                          max_replicas=None)))


ONE = Workload(name="w", model="Llama-3.1-8B", rate_rps=8, input_dist=fixed(1000),
               output_dist=fixed(200), slo=Slo(ttft_p99_ms=1000, tpot_p99_ms=40))
SMALL = Space(gpus=("H100-SXM", "L40S"), tps=(1, 2), precisions=(("bf16", "bf16"),
                                                                ("fp8", "fp8")), batches=(64,))


def _cost(workload: Workload, space: Space = SMALL) -> float:
    return plan_fleet(FleetProblem(workloads=(workload,), space=space),
                      explain=False).usd_per_hour


def test_known_monotone_cases() -> None:
    base = _cost(ONE)
    tighter = _cost(replace(ONE, slo=Slo(ttft_p99_ms=1000, tpot_p99_ms=20)))
    assert tighter >= base
    doubled = _cost(replace(ONE, rate_rps=16))
    assert doubled >= base
    more_gpus = _cost(ONE, replace(SMALL, gpus=("H100-SXM", "L40S", "A100-SXM-80GB")))
    assert more_gpus <= base


def test_model_that_fits_no_single_gpu_gets_tp_or_bigger_gpu() -> None:
    w = replace(ONE, model="Llama-3.1-70B", rate_rps=1,
                slo=Slo(ttft_p99_ms=3000, tpot_p99_ms=100))
    plan = plan_fleet(FleetProblem(workloads=(w,), space=Space(
        gpus=("L40S", "H100-SXM"), tps=(1, 2, 4), precisions=(("bf16", "bf16"),),
        batches=(64,))), explain=False)
    e = plan.entries[0]
    assert e.option.candidate.tp >= 2  # 141 GB of bf16 weights fit no single 48/80 GB GPU


def test_bad_input(tmp_path: Path, run_cli) -> None:
    with pytest.raises(InputError, match="rate_rps"):
        replace(ONE, rate_rps=-1)
    with pytest.raises(InputError, match="physical minimum"):
        plan_fleet(FleetProblem(workloads=(replace(ONE, slo=Slo(ttft_p99_ms=1)),),
                                space=SMALL), explain=False)
    with pytest.raises(InputError, match="candidate set is empty"):
        Space(gpus=())
    f = tmp_path / "fleet.yaml"
    f.write_text("gpus: [H100-SXM]\nworkloads:\n  - name: a\n    model: Llama-3.1-8B\n"
                 "    rate_rps: -3\n    input_len: 100\n    output_len: 10\n")
    with pytest.raises(InputError, match=r"fleet\.yaml:5: workloads\[0\]\.rate_rps"):
        load_fleet_file(f)
    f.write_text("gpus: [H100-SMX]\nworkloads:\n  - name: a\n    model: Llama-3.1-8B\n"
                 "    rate_rps: 3\n    input_len: 100\n    output_len: 10\n")
    res = run_cli("size", str(f), "--no-explain")
    assert res.exit_code == 1 and "H100-SXM" in res.stderr
    f.write_text("gpus: [H100-SXM]\nbudget: 3\nworkloads: []\n")
    with pytest.raises(InputError, match=r"fleet\.yaml:2: budget: unknown key"):
        load_fleet_file(f)


def test_plan_cli_writes_json_atomically(tmp_path: Path, run_cli) -> None:
    out = tmp_path / "plan.json"
    res = run_cli("plan", "--model", "Llama-3.1-8B", "--rps", "5", "--input-len", "500",
                  "--output-len", "100", "--gpus", "H100-SXM,L40S", "--tp-options", "1",
                  "--precisions", "fp8/fp8", "--batches", "64", "--slo-tpot-p99-ms", "40",
                  "--output", str(out), "--json")
    assert res.exit_code == 0, res.output
    d = json.loads(out.read_text())
    assert d["schema"] == "kvopt.plan/1" and d["fleet"] and d["solver"]["status"] == "optimal"
    assert d["slo_marginal_cost"] and d["binding"]
    assert not list(tmp_path.glob(".plan.json.*"))  # no temp file left behind
    # readable like any file the user writes (the temporary file was 0600 and kept it)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask
    res = run_cli("compare", "--model", "Llama-3.1-8B", "--rps", "5", "--input-len", "500",
                  "--output-len", "100", "--gpus", "H100-SXM,L4", "--tp-options", "1",
                  "--precisions", "fp8/fp8", "--batches", "64", "--json")
    rows = json.loads(res.stdout)
    assert [r["gpu"] for r in rows] == ["H100-SXM", "L4"]


def test_unavailable_solver_is_a_clear_error(options_cost) -> None:
    from kvopt.errors import SolverError
    from kvopt.fleet.solve import solve_model

    model, _, _ = build_model(BASE, options_cost.options)
    try:
        solve_model(model, solver="gurobi")
    except SolverError as exc:
        assert "not installed" in str(exc)


def test_unreachable_slo_names_a_feasible_one() -> None:
    # an SLO 0.01 ms above one decode step at batch 1 on an L40S (the physical minimum the
    # planner checks first): the p99 under any load is above it
    import numpy as np

    from kvopt.serving.replica import build_replica
    from kvopt.serving.serve import step_cost_for

    sc = step_cost_for(build_replica(model="Llama-3.1-8B", gpu="L40S", weights="bf16"))
    one_step_ms = sc.step_s(decode_contexts=np.array([1000.0]), prefill_new=np.zeros(0),
                            prefill_past=np.zeros(0), prefill_rows=0) * 1e3
    slo = round(one_step_ms + 0.01, 2)
    w = replace(ONE, rate_rps=2, slo=Slo(tpot_p99_ms=slo))
    space = Space(gpus=("L40S",), tps=(1,), precisions=(("bf16", "bf16"),), batches=(64,))
    with pytest.raises(InfeasiblePlanError,
                       match=rf"TPOT p99 {slo:g} ms is unreachable; TPOT p99 \d+ ms is "
                             r"feasible at \$[\d.]+/h on \d+x L40S") as info:
        plan_fleet(FleetProblem(workloads=(w,), space=space), explain=False)
    assert info.value.data["feasible_slo"]["tpot_p99_ms"] > slo


def test_regions_have_their_own_prices_and_caps() -> None:
    from kvopt.space import Region

    space = replace(SMALL, gpus=("H100-SXM",), regions=(
        Region(name="east", prices_usd_h=(("H100-SXM", 2.0),), availability=(("H100-SXM", 1),)),
        Region(name="west", prices_usd_h=(("H100-SXM", 3.0),))))
    problem = FleetProblem(workloads=(replace(ONE, rate_rps=30),), space=space,
                           allow_mixing=True)
    plan = plan_fleet(problem, explain=False)
    d = plan.to_dict()
    by_region = {e["region"]: e for e in d["fleet"]}
    assert by_region["east"]["gpus"] <= 1  # capped region is used up first (cheaper)
    assert "west" in by_region
    assert check_plan(d, problem) == []


def test_end_to_end_slo() -> None:
    w = replace(ONE, slo=Slo(e2e_p99_ms=6000))
    problem = FleetProblem(workloads=(w,), space=SMALL)
    plan = plan_fleet(problem, explain=False)
    d = plan.to_dict()
    assert check_plan(d, problem) == []
    tighter = plan_fleet(replace(problem, workloads=(replace(w, slo=Slo(e2e_p99_ms=3000)),)),
                         explain=False)
    assert tighter.usd_per_hour >= plan.usd_per_hour
    model, counts, _ = build_model(problem, build_options(problem).options)
    assert len(model.e2e_slo) == counts["slo"] > 0


@pytest.mark.parametrize("objective,extra", [
    ("cost", {}), ("gpus", {}), ("power", {}), ("quality", {}),
    ("cost", {"budget_usd_h": 30.0}), ("cost", {"power_cap_kw": 3.0}),
    ("latency", {"budget_usd_h": 40.0}),
])
def test_dropping_dominated_options_keeps_the_optimum(monkeypatch, objective, extra) -> None:
    """The MILP over the undominated options reaches the brute-force optimum over all of
    them (the filter removes options, never the best fleet)."""
    import kvopt.fleet.options as fo

    problem = replace(BASE, objective=objective, **extra)
    kept = build_options(problem).options
    with monkeypatch.context() as m:
        m.setattr(fo, "undominated", lambda opts, problem: opts)
        everything = build_options(problem).options
    assert len(kept) < len(everything)
    plan, _ = solve_problem(problem, options=fo.OptionSet(kept, []), mip_gap=EXACT_GAP)
    # the same objective coefficients on both sets: primary term + e x cost, where the
    # tie-breaking weight e depends on the option list (cost: primary 0, e = 1)
    kept_terms = objective_terms(problem, kept)
    primary = {"gpus": lambda c: float(c.gpus), "power": lambda c: c.power_kw}.get(
        objective, lambda c: 0.0)
    o0 = kept[0].candidate
    e = (kept_terms.per_replica[0] - primary(o0)) / o0.usd_per_hour
    terms = replace(kept_terms, per_replica=[primary(o.candidate) + e * o.candidate.usd_per_hour
                                             for o in everything])
    expected = brute_force(problem, everything, terms=terms)
    assert plan is not None
    assert plan.report.objective == pytest.approx(expected, rel=1e-6, abs=SOLVER_ABS_GAP)


def test_atomic_write_keeps_an_existing_files_mode(tmp_path: Path) -> None:
    from kvopt.fileio import write_atomic

    path = tmp_path / "report.csv"
    path.write_text("old")
    path.chmod(0o640)
    write_atomic(path, "new")
    assert path.read_text() == "new" and stat.S_IMODE(path.stat().st_mode) == 0o640


def test_gpu_groups_expand_the_same_everywhere(run_cli, tmp_path: Path) -> None:
    """`--gpus` (plan, compare, pareto), fleet files and study files take a group word
    (all, nvidia, amd, datacenter, desktop, laptop) for every catalog GPU in it; the CLI
    used to reject `--gpus all` ("unknown gpu 'all'") while study files took it."""
    from kvopt.catalog.gpus import gpu_group, list_gpus
    from kvopt.fleet.fleetfile import load_fleet_file

    assert gpu_group("all") == [g.id for g in list_gpus()]
    assert gpu_group("Laptop") == [g.id for g in list_gpus("laptop")] != []
    assert gpu_group("H100-SXM") is None
    res = run_cli("plan", "--model", "Llama-3.2-1B", "--rps", "2", "--input-len", "200",
                  "--output-len", "50", "--gpus", "amd", "--tp-options", "1",
                  "--precisions", "fp8/fp8", "--batches", "8", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["fleet"][0]["gpu"] in (gpu_group("amd") or [])
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text("gpus: amd\nworkloads:\n  - {name: a, model: Llama-3.1-8B, rate_rps: 4, "
                     "input_len: 512, output_len: 128}\n")
    assert load_fleet_file(fleet).space.gpus == tuple(gpu_group("amd") or ())
