"""``capacity: confirm``: the planner screens the candidates, searches exactly only where it
can change the plan and proves every other candidate dominated with one exact check. The
options it hands the MILP must be those of the exact search on every candidate."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

import kvopt.serving.screen as screen_mod
import kvopt.space as space_mod
from kvopt import caching
from kvopt.fleet.fleetfile import FleetFileError, load_fleet_file
from kvopt.fleet.options import build_options
from kvopt.fleet.plan import plan_fleet
from kvopt.fleet.problem import FleetProblem
from kvopt.serving.capacity import capacity_levels, meets_at
from kvopt.serving.lengths import fixed, parse_dist
from kvopt.serving.replica import build_replica
from kvopt.serving.results import Slo
from kvopt.space import DOMINATED, Region, Space, Workload, evaluate, evaluate_pruned

SPACE = Space(gpus=("H100-SXM", "A100-SXM-80GB", "L40S"), tps=(1, 2, 4),
              batches=(16, 64, 256))
CHAT = Workload(name="chat", model="Llama-3.1-8B", rate_rps=30, input_dist=fixed(1000),
                output_dist=fixed(200), slo=Slo(ttft_p99_ms=800, tpot_p99_ms=40))
RAG = Workload(name="rag", model="Qwen2.5-7B", rate_rps=6,
               input_dist=parse_dist("lognormal:mean=3000,sigma=0.5"), output_dist=fixed(300),
               slo=Slo(ttft_p99_ms=1500))


@pytest.fixture(autouse=True)
def _fresh_proofs() -> None:
    """Each test proves its own dominance (the proofs are cached per replica set)."""
    caching.clear_all()


def _options(problem: FleetProblem) -> list[tuple[object, ...]]:
    """Everything the MILP reads of each option."""
    out = build_options(problem)
    return sorted((o.workload, o.candidate.label, o.level, o.rate_cap_rps, o.ttft_p99_ms,
                   o.tpot_p99_ms, o.e2e_p99_ms, o.candidate.usd_per_hour,
                   o.candidate.memory_per_gpu_gib, o.upper) for o in out.options)


def _same_as_exact(problem: FleetProblem) -> None:
    exact = _options(replace(problem, space=replace(problem.space, capacity="exact")))
    confirm = _options(replace(problem, space=replace(problem.space, capacity="confirm")))
    assert confirm == exact


@pytest.mark.parametrize("objective", ["cost", "gpus", "power", "quality"])
def test_confirm_hands_the_milp_the_exact_options(objective: str) -> None:
    """Two workloads (TTFT+TPOT and TTFT-only SLOs, fixed and lognormal prompts), every
    objective it prunes for: the same options, rate caps and p99s as the exact search on
    every candidate, and the pruning did happen (the comparison is not vacuous)."""
    problem = FleetProblem(workloads=(CHAT, RAG), space=SPACE, objective=objective)
    _same_as_exact(problem)
    pruned = evaluate_pruned(CHAT, SPACE, by_quality=objective == "quality")
    assert pruned.excluded[DOMINATED] > 0


def test_confirm_with_regions_and_price_overrides() -> None:
    space = replace(SPACE, prices_usd_h=(("L40S", 0.5),), regions=(
        Region(name="east", prices_usd_h=(("H100-SXM", 2.0),)),
        Region(name="west", prices_usd_h=(("A100-SXM-80GB", 1.0),))))
    _same_as_exact(FleetProblem(workloads=(CHAT,), space=space))


def test_a_wrong_screen_costs_time_never_the_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the screen's ranking turned upside down, the checks fail where the screen was
    wrong and those candidates get the exact search: the options stay the exact ones."""
    real = screen_mod.screen_levels
    calls = {"exact": 0}

    def upside_down(*args: object, **kwargs: object) -> list[list[object]]:
        found = real(*args, **kwargs)  # type: ignore[arg-type]
        return [[replace(r, goodput_rps=1.0 / r.goodput_rps) if r.feasible else r
                 for r in levels] for levels in found]

    real_levels = space_mod.capacity_levels

    def counted(*args: object, **kwargs: object) -> object:
        calls["exact"] += 1
        return real_levels(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(screen_mod, "screen_levels", upside_down)
    problem = FleetProblem(workloads=(CHAT,), space=SPACE)
    exact = _options(replace(problem, space=replace(SPACE, capacity="exact")))
    monkeypatch.setattr(space_mod, "capacity_levels", counted)
    caching.clear_all()
    wrong = evaluate_pruned(CHAT, SPACE)
    survivors = calls["exact"]
    assert _options(problem) == exact
    caching.clear_all()
    # the upside-down screen keeps the slowest replicas; the checks sent others to the
    # exact search (fallbacks) on top of them
    monkeypatch.setattr(screen_mod, "screen_levels", real)
    calls["exact"] = 0
    right = evaluate_pruned(CHAT, SPACE)
    assert survivors > calls["exact"]
    assert wrong.excluded[DOMINATED] < right.excluded[DOMINATED]


def test_objectives_it_cannot_prune_for_search_everything() -> None:
    """Latency objectives read p99s at lower loads and mixing or throughput can use a
    dominated option: confirm evaluates every candidate there (nothing proven dominated)."""
    for problem in (FleetProblem(workloads=(CHAT,), space=SPACE, objective="latency"),
                    FleetProblem(workloads=(CHAT,), space=SPACE, allow_mixing=True),
                    FleetProblem(workloads=(CHAT,), space=SPACE, objective="throughput",
                                 budget_usd_h=100)):
        sets = build_options(problem).candidates
        assert DOMINATED not in sets[0].excluded


def test_meets_at_brackets_the_exact_goodput() -> None:
    """One-rate check against the search: each level meets the SLO at its goodput and
    misses it just above the search's bracket (the bracket's upper end failed); above the
    saturation rate it misses; a replica that does not fit misses everywhere."""
    rep = build_replica(model="Llama-3.1-8B", gpu="L40S", tp=1, weights="fp8", kv_dtype="fp8")
    batches = (16, 64, 256)
    found = capacity_levels(rep, input_dist=CHAT.input_dist, output_dist=CHAT.output_dist,
                            slo=CHAT.slo, batches=batches, rel_tol=0.005)
    for b, res in zip(batches, found, strict=True):
        assert res.feasible and res.goodput_rps > 0
        kw = dict(input_dist=CHAT.input_dist, output_dist=CHAT.output_dist, slo=CHAT.slo,
                  batches=(b,))
        assert meets_at(rep, rate_rps=res.goodput_rps, **kw) == [True]
        # the bracket (lo, hi] has hi - lo <= 0.005 hi, and hi failed
        assert meets_at(rep, rate_rps=res.goodput_rps / (1 - 0.005) * 1.001, **kw) == [False]
        assert meets_at(rep, rate_rps=res.saturation_rps * 1.01, **kw) == [False]
    big = build_replica(model="Llama-3.1-70B", gpu="L40S", tp=1, weights="bf16",
                        kv_dtype="bf16")
    assert meets_at(big, input_dist=CHAT.input_dist, output_dist=CHAT.output_dist,
                    slo=CHAT.slo, batches=batches, rate_rps=0.1) == [False] * 3


def test_fleet_file_capacity_key_and_plan_json(tmp_path: Path) -> None:
    text = ("gpus: [L40S]\ntps: [1]\nbatches: [64]\ncapacity: {cap}\nworkloads:\n"
            "  - {{name: chat, model: Llama-3.1-8B, rate_rps: 5, input_len: 500, "
            "output_len: 100, slo: {{tpot_p99_ms: 60}}}}\n")
    path = tmp_path / "fleet.yaml"
    path.write_text(text.format(cap="screen"))
    problem = load_fleet_file(path)
    assert problem.space.capacity == "screen"
    plan = plan_fleet(problem, explain=False)
    assert json.loads(json.dumps(plan.to_dict()))["inputs"]["space"]["capacity"] == "screen"
    path.write_text(text.format(cap="fast"))
    with pytest.raises(FleetFileError, match=r"fleet.yaml:4: capacity: 'fast'; allowed: "
                                             r"exact, screen, confirm"):
        load_fleet_file(path)
    path.write_text(text.format(cap="confirm").replace("capacity: confirm\n", ""))
    assert load_fleet_file(path).space.capacity == "confirm"


def test_cli_defaults_to_confirm_and_records_it(run_cli) -> None:
    args = ("plan", "--model", "Llama-3.1-8B", "--rps", "12", "--input-len", "1000",
            "--output-len", "200", "--gpus", "L40S,A100-SXM-80GB", "--tp-options", "1,2",
            "--batches", "16,64", "--slo-tpot-p99-ms", "40", "--no-explain", "--json")
    plans = {}
    for extra in ((), ("--capacity", "exact")):
        res = run_cli(*args, *extra)
        assert res.exit_code == 0, res.output
        plans[extra] = json.loads(res.output)
    default, exact = plans[()], plans[("--capacity", "exact")]
    assert default["inputs"]["space"]["capacity"] == "confirm"
    assert exact["inputs"]["space"]["capacity"] == "exact"
    assert default["fleet"] == exact["fleet"] and default["totals"] == exact["totals"]
    # 2 GPUs x 2 TP x 4 precisions x 2 levels = 32 configurations
    assert re.fullmatch(r"capacity confirm: \d+ of 32 configurations proven dominated or "
                        r"costlier than the cheapest fleet by at most one exact check each "
                        r"\(not searched\); the plan is the exact search's", default["notes"][0])
    assert exact["notes"] == []


def test_evaluate_prune_argument_and_the_study_cache() -> None:
    """``evaluate(prune=...)`` is the pruned evaluation only under ``confirm``; the study's
    per-process cache keeps pruned and full evaluations apart."""
    from kvopt.errors import InputError
    from kvopt.space import evaluate
    from kvopt.study.worker import cached_evaluate

    full = evaluate(CHAT, SPACE)
    pruned = evaluate(CHAT, SPACE, prune="cost")
    assert DOMINATED in pruned.excluded and DOMINATED not in full.excluded
    assert {c.label for c in pruned.candidates} < {c.label for c in full.candidates}
    exact_space = replace(SPACE, capacity="exact")
    assert evaluate(CHAT, exact_space, prune="cost").candidates == full.candidates
    assert cached_evaluate(CHAT, SPACE, prune="cost").candidates == pruned.candidates
    assert cached_evaluate(CHAT, SPACE).candidates == full.candidates
    with pytest.raises(InputError, match="prune"):
        evaluate(CHAT, SPACE, prune="latency")


def test_clear_all_forgets_without_changing_results() -> None:
    """Every evaluation memo is in the one registry, and forgetting them all changes no
    result."""
    from kvopt import caching

    before = evaluate(CHAT, SPACE, prune="cost").candidates
    assert {"capacity results", "dominance proofs", "steady models", "steady step-time curves",
            "step-cost tables", "token ops"} <= set(caching.registered())
    caching.clear_all()
    assert evaluate(CHAT, SPACE, prune="cost").candidates == before


def test_every_entry_point_offers_the_same_capacity_methods() -> None:
    """The CLI and the study schema spell the methods out (the CLI must not import the
    serving stack for --help); they must be kvopt.space's."""
    from kvopt.choices import CAPACITY_METHODS
    from kvopt.cli.fleet import plan_cmd
    from kvopt.study.fields import FIELDS

    cli = next(p for p in plan_cmd.params if p.name == "capacity")
    study = next(f for f in FIELDS if f.name == "capacity")
    assert set(cli.type.choices) == set(study.choices) == set(CAPACITY_METHODS)
    assert cli.default == study.default == "confirm"
