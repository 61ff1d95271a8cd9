"""Schedules over time: brute force equals the MILP (and its pruning and decomposition) for
every payment mix, the serving model re-checks every period, a flat profile gives today's
plan, infeasibility is named per period, and the formulation table is complete."""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from kvopt import InfeasiblePlanError
from kvopt.catalog.payments import payment_book
from kvopt.fleet.demand import Profile, week_labels
from kvopt.fleet.plan import plan_fleet
from kvopt.fleet.problem import FleetProblem
from kvopt.fleet.schedule.check import check_schedule
from kvopt.fleet.schedule.problem import Horizon, ScheduleData, SpotRule, schedule_data
from kvopt.fleet.schedule.run import schedule_fleet, solve_data
from kvopt.serving.lengths import fixed
from kvopt.serving.results import Slo
from kvopt.space import Region, Space, Workload, evaluate

KINDS = ("on_demand", "reserved_1y", "reserved_3y", "spot", "owned")
CHAT = Workload(name="chat", model="Llama-3.1-8B", rate_rps=40, input_dist=fixed(1000),
                output_dist=fixed(200), slo=Slo(ttft_p99_ms=800, tpot_p99_ms=40))
SPACE = Space(gpus=("H100-SXM", "L40S"), tps=(1,), precisions=(("fp8", "fp8"),),
              batches=(64,), regions=(Region(name="r1"),))


@pytest.fixture(scope="module")
def book(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A price book with every way to pay for both GPUs in region r1 (test numbers)."""
    offers = {}
    for g, od in (("H100-SXM", 4.0), ("L40S", 1.5)):
        offers[g] = {"on_demand": {"usd_per_gpu_hour": od, "source": "test"},
                     "reserved_1y": {"usd_per_gpu_hour": od * 0.6, "upfront_usd_per_gpu": 500,
                                     "source": "test"},
                     "reserved_3y": {"usd_per_gpu_hour": od * 0.45,
                                     "upfront_usd_per_gpu": 3000, "source": "test"},
                     "spot": {"usd_per_gpu_hour": od * 0.35, "interruption_rate": 0.25,
                              "source": "test"}}
    site = {k: {"value": v, "source": "test"} for k, v in
            (("pue", 1.5), ("usd_per_kwh", 0.1), ("hosting_usd_per_kw_month", 150))}
    gpus = {g: {"purchase_usd_per_gpu": {"value": p, "source": "test"},
                "amortization_years": {"value": 4, "source": "test"},
                "server_kw_per_gpu": {"value": kw, "source": "test"}}
            for g, p, kw in (("H100-SXM", 30000, 1.2), ("L40S", 9000, 0.5))}
    path = tmp_path_factory.mktemp("book") / "book.yaml"
    path.write_text(yaml.safe_dump({"payments": {"default_region": "r1", "regions": {
        "r1": {"source": "test", "offers": offers}}, "owned": {"site": site, "gpus": gpus}}}))
    return str(path)


def _problem(book: str, rates: tuple[float, ...], kinds: tuple[str, ...] = KINDS,
             **kw: object) -> FleetProblem:
    hours = (1.0, 2.0, 1.0)[: len(rates)]
    prof = Profile(hours=hours, labels=week_labels(hours), rps=(("chat", rates),))
    hz = Horizon(profile=prof, payments=kinds, price_book=book,
                 **{k: v for k, v in kw.items() if k in ("spot_rule", "budget_usd",
                                                         "upfront_budget_usd", "owned_gpus")})
    rest = {k: v for k, v in kw.items() if k in ("budget_usd_h", "power_cap_kw",
                                                  "availability")}
    return FleetProblem(workloads=(CHAT,), space=SPACE, horizon=hz, **rest)  # type: ignore[arg-type]


def brute_force(d: ScheduleData) -> float:
    """The cheapest schedule by enumeration: an option, committed replicas per committed
    kind (0..N, N the option's peak need with k spares), and per period every (on-demand,
    spot) pair (0..N/availability + 1), each constraint
    checked directly from the data. One workload; per-period constraints separate the
    periods once the option and committed counts are fixed (the horizon and upfront
    budgets are checked on the totals)."""
    w = d.problem.workloads[0]
    k = w.redundancy
    rule = d.horizon.spot_rule
    inv = d.problem.inventory
    owned_cap = dict(d.horizon.owned_gpus)
    best = math.inf
    for o in d.options:
        c = o.option.candidate
        g, n = o.option.rate_cap_rps, c.tp
        ckinds = [p for p in o.pays if p.committed]
        flex = {p.kind: p for p in o.pays if not p.committed}
        top = max(math.ceil(L / g + k) for L in d.demand[0])
        ftop = math.ceil(top / flex["spot"].availability) + 1 if "spot" in flex else top + 1
        for counts in itertools.product(range(top + 1), repeat=len(ckinds)):
            C = sum(counts)
            com_usd_h = sum(n * x * p.usd_per_gpu_hour for x, p in zip(counts, ckinds,
                                                                       strict=True))
            upfront = sum(n * x * p.upfront_usd_per_gpu for x, p in zip(counts, ckinds,
                                                                        strict=True))
            owned = sum(n * x for x, p in zip(counts, ckinds, strict=True) if p.kind == "owned")
            if d.horizon.upfront_budget_usd is not None and upfront > \
                    d.horizon.upfront_budget_usd + 1e-9:
                continue
            if c.inventory_key in owned_cap and owned > owned_cap[c.inventory_key]:
                continue
            total = 0.0
            for t, h in enumerate(d.hours):
                L = d.demand[0][t]
                cheapest = math.inf
                for od, sp in itertools.product(range(ftop + 1), repeat=2):
                    if (od and "on_demand" not in flex) or (sp and "spot" not in flex):
                        continue
                    a = flex["spot"].availability if sp else 1.0
                    x = C + od + sp
                    if g * (C + od + a * sp - k) < L - 1e-9 or (k and x < k + 1):
                        continue
                    if "spot" in flex and rule.spares_not_spot and k and C + od < k:
                        continue
                    if sp and (1 - rule.max_share) * a * g * sp > \
                            rule.max_share * g * (C + od) + 1e-9:
                        continue
                    if c.inventory_key in inv and n * x > inv[c.inventory_key]:
                        continue
                    usd_h = com_usd_h + n * (od * flex["on_demand"].usd_per_gpu_hour if od
                                             else 0) + n * (sp * flex["spot"].usd_per_gpu_hour
                                                            if sp else 0)
                    if d.problem.budget_usd_h is not None and usd_h > \
                            d.problem.budget_usd_h + 1e-9:
                        continue
                    cheapest = min(cheapest, usd_h * h)
                total += cheapest
            if d.horizon.budget_usd is not None and total > d.horizon.budget_usd + 1e-9:
                continue
            best = min(best, total)
    return best


MIXES = [("on_demand",), ("on_demand", "spot"), ("reserved_1y",), ("on_demand", "reserved_1y"),
         ("on_demand", "reserved_3y", "owned"), ("owned", "spot"), KINDS]


@pytest.mark.parametrize("kinds", MIXES, ids=lambda k: "+".join(k))
def test_every_payment_mix_matches_brute_force(book: str, kinds: tuple[str, ...]) -> None:
    for w in ((CHAT,), (replace(CHAT, redundancy=1),)):
        prob = replace(_problem(book, (20.0, 70.0, 35.0), kinds), workloads=w)
        d = schedule_data(prob)
        expected = brute_force(d)
        milp, _ = solve_data(d, prune=False, decompose=False)
        fast, _ = solve_data(d)
        if math.isinf(expected):
            assert milp is None and fast is None
            continue
        assert milp is not None and fast is not None
        assert milp.total_usd == pytest.approx(expected, rel=1e-6)
        assert fast.total_usd == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("extra", [
    {"availability": (("r1:H100-SXM", 2),)}, {"budget_usd_h": 6.5},
    {"upfront_budget_usd": 1000.0}, {"owned_gpus": (("r1:H100-SXM", 1),)},
    {"spot_rule": SpotRule(max_share=0.3)}, {"spot_rule": SpotRule(spares_not_spot=False)},
    {"budget_usd": 40.0},
], ids=lambda e: next(iter(e)))
def test_shared_limits_match_brute_force(book: str, extra: dict[str, object]) -> None:
    prob = _problem(book, (20.0, 70.0, 35.0), **extra)
    prob = replace(prob, workloads=(replace(CHAT, redundancy=1),))
    d = schedule_data(prob)
    expected = brute_force(d)
    for kw in ({"prune": False, "decompose": False}, {}):
        got, _ = solve_data(d, **kw)  # type: ignore[arg-type]
        if math.isinf(expected):
            assert got is None
        else:
            assert got is not None and got.total_usd == pytest.approx(expected, rel=1e-6)


def test_schedule_meets_every_period_in_the_serving_model(book: str) -> None:
    prob = replace(_problem(book, (20.0, 70.0, 35.0)),
                   workloads=(replace(CHAT, redundancy=1),))
    d = schedule_fleet(prob).to_dict()
    assert check_schedule(d, prob) == []
    bad = yaml.safe_load(yaml.safe_dump(d))
    bad["fleet"][0]["rate_per_replica_rps"] *= 0.2  # claims 5x the capacity it has
    for f in bad["fleet"]:
        f["committed"] = {}
        f["per_period"] = {"on_demand": [1, 1, 1]}
    assert check_schedule(bad, prob)


def test_flat_profile_on_demand_is_todays_plan() -> None:
    problem = FleetProblem(workloads=(CHAT,), space=replace(SPACE, regions=()))
    plan = plan_fleet(problem, explain=False)
    sched = schedule_fleet(replace(problem, horizon=Horizon(payments=("on_demand",))))
    assert sched.total_usd == pytest.approx(plan.usd_per_hour, rel=1e-9)
    e = sched.to_dict()["fleet"][0]
    p = plan.to_dict()["fleet"][0]
    assert (e["gpu"], e["tp"], max(e["per_period"]["on_demand"])) == (
        p["gpu"], p["tp"], p["replicas"])


def test_infeasible_periods_are_named(book: str) -> None:
    prob = _problem(book, (20.0, 200.0, 35.0), kinds=("on_demand",),
                    availability=(("r1:H100-SXM", 2), ("r1:L40S", 1)))
    with pytest.raises(InfeasiblePlanError, match=r"period 2 \(Mon 01:00\) needs \d+ more "
                       r"(H100-SXM|L40S) in r1") as info:
        schedule_fleet(prob)
    assert "period 1 " not in str(info.value)
    with pytest.raises(InfeasiblePlanError, match=r"period 2 \(Mon 01:00\) needs \$[\d.]+/h "
                       "more budget"):
        schedule_fleet(_problem(book, (20.0, 200.0, 35.0), kinds=("on_demand",),
                                budget_usd_h=5.0))


def test_formulation_table_lists_every_component(book: str) -> None:
    import pyomo.environ as pyo

    import kvopt.fleet.schedule.build as sb
    import kvopt.fleet.schedule.constraints as cf

    prob = replace(_problem(book, (20.0, 70.0, 35.0), spot_rule=SpotRule(max_share=0.5),
                            budget_usd=500.0, upfront_budget_usd=1e5,
                            owned_gpus=(("r1:H100-SXM", 4),), budget_usd_h=50.0,
                            power_cap_kw=10.0, availability=(("r1:H100-SXM", 8),)),
                   workloads=(replace(CHAT, redundancy=1),))
    model, _, _ = sb.build_model(schedule_data(prob))
    names = {c.name for c in model.component_objects((pyo.Constraint, pyo.Objective))}
    table = re.findall(r"^\| .+ \| `(\w+)` \| `(\w+)` \|$", cf.__doc__ or "", re.M)
    assert names == {n for n, _ in table}, names ^ {n for n, _ in table}
    for _, builder in table:
        assert hasattr(cf, builder) or hasattr(sb, builder), builder


def test_payment_book_is_sourced() -> None:
    b = payment_book()
    assert b.offers and b.default_region in b.regions()
    for o in b.offers.values():
        assert o.source and o.usd_per_gpu_hour > 0
        if o.kind == "spot":
            assert 0 < o.interruption_rate < 1
    tco = b.for_gpu("H100-SXM", "aws-us-east-1")["owned"].tco
    assert tco is not None
    assert tco.usd_per_gpu_hour == pytest.approx(
        tco.purchase_usd_per_gpu / (tco.amortization_years * 8760)
        + tco.tdp_w / 1000 * tco.pue * tco.usd_per_kwh
        + tco.hosting_usd_per_kw_month * tco.server_kw_per_gpu / 730)


def test_cli_schedule_export_tco_compare(tmp_path: Path, run_cli, book: str) -> None:
    import json

    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(yaml.safe_dump({
        "gpus": ["H100-SXM", "L40S"], "tps": [1], "precisions": ["fp8/fp8"],
        "batches": [64], "price_book": book, "regions": {"r1": {}},
        "demand": {"hours": 1, "scale": [0.5, 1.0, 0.25]},
        "workloads": [{"name": "chat", "model": "Llama-3.1-8B", "rate_rps": 40,
                       "input_len": 1000, "output_len": 200,
                       "slo": {"ttft_p99_ms": 800, "tpot_p99_ms": 40}}]}))
    out = tmp_path / "s.json"
    res = run_cli("schedule", str(fleet), "--output", str(out))
    assert res.exit_code == 0, res.output
    assert "against peak provisioning on demand" in res.stdout
    d = json.loads(out.read_text())
    assert d["schema"] == "kvopt.schedule/1" and len(d["periods"]) == 3
    md = tmp_path / "s.md"
    res = run_cli("export", str(out), "--format", "markdown", "--output", str(md))
    assert res.exit_code == 0, res.output
    assert "![GPUs per period by way to pay](s.png)" in md.read_text()
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"
    res = run_cli("tco", "--gpu", "H100-SXM", "--json")
    assert json.loads(res.stdout)["rent"][0]["breakeven_months"] > 0
    res = run_cli("show", "gpu", "H100-SXM", "--json")
    assert json.loads(res.stdout)["owned_tco"]["tco_usd_per_gpu_hour"] > 0
    res = run_cli("compare", "--model", "Llama-3.1-8B", "--rps", "40", "--input-len", "1000",
                  "--output-len", "200", "--gpus", "H100-SXM,L40S", "--tp-options", "1",
                  "--precisions", "fp8/fp8", "--batches", "64", "--by", "payment",
                  "--price-book", book, "--json")
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert rows[-1]["label"].startswith("best mix")
    costs = [r["total_usd"] for r in rows if r.get("total_usd") is not None]
    assert rows[-1]["total_usd"] == pytest.approx(min(costs))
    res = run_cli("schedule", str(fleet), "--demand", str(tmp_path / "missing.csv"))
    assert res.exit_code == 1 and "--demand" in res.stderr
    res = run_cli("compare", "--model", "Llama-3.1-8B", "--rps", "40", "--input-len", "1000",
                  "--output-len", "200", "--gpus", "H100-SXM,L40S", "--tp-options", "1",
                  "--precisions", "fp8/fp8", "--batches", "64", "--by", "region",
                  "--regions", "r1,aws-us-east-1", "--price-book", book, "--json")
    assert res.exit_code == 0, res.output
    assert [r["label"] for r in json.loads(res.stdout)] == ["r1", "aws-us-east-1"]
    trace = tmp_path / "t.jsonl"
    trace.write_text("\n".join(json.dumps({"timestamp": i * 90.0, "input_len": 800 + i,
                                           "output_len": 150}) for i in range(120)) + "\n")
    res = run_cli("schedule", str(fleet), "--trace", str(trace), "--json")
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert len(d["periods"]) == 3 and d["inputs"]["workloads"][0]["input_len"].startswith(
        "trace:")


def test_two_workloads_sharing_limits_match_brute_force(book: str) -> None:
    """Two workloads on the same region's GPUs: inventory per period and the owned cap are
    shared, so the decomposition cannot hold and the pruned MILP must match enumeration."""
    small = replace(CHAT, name="small", rate_rps=10)
    prof = Profile(hours=(1.0, 3.0), labels=("day", "night"),
                   rps=(("chat", (50.0, 20.0)), ("small", (10.0, 25.0))))
    hz = Horizon(profile=prof, payments=("on_demand", "spot", "owned"), price_book=book,
                 owned_gpus=(("r1:H100-SXM", 1),))
    # H100s for both day rates on H100s alone (from the serving model's goodput, so the
    # case stays feasible and tight as the physics is refitted)
    [g_h100] = [c.goodput_rps for c in evaluate(CHAT, SPACE).candidates if c.gpu == "H100-SXM"]
    h100s = math.ceil(50.0 / g_h100) + math.ceil(10.0 / g_h100)
    prob = FleetProblem(workloads=(CHAT, small), space=SPACE, horizon=hz,
                        availability=(("r1:H100-SXM", h100s), ("r1:L40S", 1)))
    d = schedule_data(prob)
    per_w = [[o for o in d.options if o.workload == w] for w in (0, 1)]
    inv, cap = d.problem.inventory, dict(hz.owned_gpus)

    def choices(o, t, owned):  # (on-demand, spot) counts meeting period t alone
        g, a = o.option.rate_cap_rps, o.pay("spot").availability
        top = math.ceil(d.demand[o.workload][t] / g / a) + 1
        return [(od, sp) for od in range(top + 1) for sp in range(top + 1)
                if g * (owned + od + a * sp) >= d.demand[o.workload][t] - 1e-9]

    best = math.inf
    for o1, o2 in itertools.product(*per_w):
        tops = [math.ceil(max(d.demand[o.workload]) / o.option.rate_cap_rps) for o in (o1, o2)]
        for c1, c2 in itertools.product(range(tops[0] + 1), range(tops[1] + 1)):
            if sum(o.option.candidate.tp * c for o, c in ((o1, c1), (o2, c2))
                   if o.option.candidate.inventory_key in cap) > 1:
                continue
            total = sum(o.option.candidate.tp * c * o.pay("owned").usd_per_gpu_hour
                        * sum(d.hours) for o, c in ((o1, c1), (o2, c2)))
            for t, h in enumerate(d.hours):
                cheapest = math.inf
                for (a1, s1), (a2, s2) in itertools.product(choices(o1, t, c1),
                                                            choices(o2, t, c2)):
                    used: dict[str, int] = {}
                    usd = 0.0
                    for o, c, od, sp in ((o1, c1, a1, s1), (o2, c2, a2, s2)):
                        key = o.option.candidate.inventory_key
                        used[key] = used.get(key, 0) + o.option.candidate.tp * (c + od + sp)
                        usd += o.option.candidate.tp * (
                            od * o.pay("on_demand").usd_per_gpu_hour
                            + sp * o.pay("spot").usd_per_gpu_hour)
                    if all(n <= inv.get(k, n) for k, n in used.items()):
                        cheapest = min(cheapest, usd * h)
                total += cheapest
            best = min(best, total)
    milp, _ = solve_data(d, prune=False, decompose=False)
    fast, info = solve_data(d)
    assert milp is not None and fast is not None
    assert not info.get("decomposed")  # the shared limits bind
    assert milp.total_usd == pytest.approx(best, rel=1e-6)
    assert fast.total_usd == pytest.approx(best, rel=1e-6)


def test_example_schedule_file_solves_and_rechecks() -> None:
    from kvopt.fleet.fleetfile import load_fleet_file
    from kvopt.schemas import problems
    from tests.paths import ROOT

    path = ROOT / "benchmarks" / "schedule_example.yaml"
    assert problems("fleet", yaml.safe_load(path.read_text())) == []
    prob = load_fleet_file(path)
    assert prob.horizon is not None and prob.horizon.profile.periods == 168
    d = schedule_fleet(prob).to_dict()
    assert d["savings"]["vs_peak_on_demand_fraction"] > 0
    assert {f["region"] for f in d["fleet"] if f["workload"] == "summarize"} == {
        "gcp-us-central1"}
    assert check_schedule(d, prob) == []
