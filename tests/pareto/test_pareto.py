"""Pareto fronts: NSGA-II vs the exact front, hypervolume vs moocore, determinism, the pymoo
problem and archive callback, exports, the HTML page in headless Chromium, bad input."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kvopt import InputError
from kvopt.pareto import export
from kvopt.pareto.evaluation import (
    constraint_names,
    evaluate,
    evaluate_disagg,
    evaluate_mixed,
)
from kvopt.pareto.exact import all_decisions, cheapest_per_config, enumerate_all
from kvopt.pareto.front import Normalizer, hypervolume, knee, non_dominated
from kvopt.pareto.search import run_nsga2
from kvopt.pareto.table import CostBound, build_table
from kvopt.serving.lengths import fixed
from kvopt.serving.results import Slo
from kvopt.space import Space, Workload

W = Workload(name="w", model="Llama-3.1-8B", rate_rps=20, input_dist=fixed(1000),
             output_dist=fixed(200), slo=Slo(tpot_p99_ms=60))
SPACE = Space(gpus=("H100-SXM", "L40S", "A100-SXM-80GB"), tps=(1, 2),
              precisions=(("bf16", "bf16"), ("fp8", "fp8"), ("int4", "bf16")), batches=(16, 256))
OBJ = ("cost", "ttft_p99", "tpot_p99")


@pytest.fixture(scope="module")
def table():
    return build_table(W, SPACE)


@pytest.fixture(scope="module")
def fronts(table):
    exact = enumerate_all(table, W, OBJ, 12, None)
    nsga = run_nsga2(table, W, OBJ, max_replicas=12, budget_usd_h=None, pop=100, gens=100,
                     seed=0)
    return exact, nsga


def test_cheapest_per_config_is_each_configs_fewest_feasible_replicas(table) -> None:
    budget = 40.0
    rows = cheapest_per_config(table, W, 12, budget)
    idx = all_decisions(table, 12)
    ev = evaluate(table, W, idx, ("cost", "gpus"), budget)
    best: dict[tuple[int, ...], tuple[float, int]] = {}  # brute force: min feasible replicas
    for row, g, f in zip(idx, ev.G, ev.F, strict=True):
        key = tuple(int(v) for v in row[:4])
        if np.all(g <= 0) and (key not in best or row[4] < best[key][1]):
            best[key] = (float(f[0]), int(row[4]))
    assert {tuple(int(v) for v in r[:4]): int(r[4]) for r in rows} == {
        k: v[1] for k, v in best.items()}
    costs = evaluate(table, W, rows, ("cost", "gpus"), budget).F[:, 0]
    assert np.all(np.diff(costs) >= 0)  # cheapest first


@pytest.mark.parametrize(("multiple", "budget", "whole"), [(4.0, None, True), (1.5, 60.0, True),
                                                          (1.0, None, False)])
def test_the_cost_bound_leaves_out_only_what_cannot_be_on_the_bounded_front(
        table, multiple: float, budget: float | None, whole: bool) -> None:
    """Built with the bound, the table evaluates fewer configurations, and the exact front
    within the bound (cap = min(budget, multiple x the cheapest feasible fleet)) is the
    full table's, point for point; a mixed fleet (whole=False) keeps every level whose one
    replica fits the bound."""
    from kvopt.pareto.exact import cheapest_feasible

    bounded = build_table(W, SPACE, bound=CostBound(multiple, 12, budget, whole_rate=whole))
    assert bounded.valid.sum() < table.valid.sum() or not whole
    assert not np.any(bounded.valid & ~table.valid)
    cheapest = cheapest_feasible(table, W, 12, budget)
    assert cheapest is not None
    assert cheapest_feasible(bounded, W, 12, budget) == pytest.approx(cheapest)
    cap = min(budget if budget is not None else np.inf, multiple * cheapest)
    full, cut = (enumerate_all(t, W, OBJ, 12, cap) for t in (table, bounded))
    assert np.array_equal(full.F, cut.F) and np.array_equal(full.idx, cut.idx)
    for key in zip(*np.nonzero(table.valid & ~bounded.valid), strict=True):
        assert "bound" in bounded.reason[tuple(int(k) for k in key)]
        one = float(table.usd_per_hour[key])
        assert one > cap if not whole else (
            one * max(1, np.ceil(W.rate_rps / table.capacity_rps[key] - 1e-9)) > cap)
    valid = bounded.valid  # every level kept holds the full table's numbers
    for arr in ("usd_per_hour", "capacity_rps", "ttft_p99_ms", "tpot_p99_ms"):
        assert np.array_equal(getattr(bounded, arr)[valid], getattr(table, arr)[valid])


def test_a_tiny_search_of_a_narrow_space_still_finds_the_feasible_points() -> None:
    """Two configurations, a budget leaving few replica counts, 10 x 3 evaluations: random
    draws alone missed every feasible point; the seeded start holds the cheapest one."""
    w = Workload(name="w", model="Llama-3.1-8B", rate_rps=5, input_dist=fixed(500),
                 output_dist=fixed(100), slo=Slo())
    sp = Space(gpus=("H100-SXM", "L40S"), tps=(1,), precisions=(("fp8", "fp8"),),
               batches=(64,))
    tab = build_table(w, sp)
    cheapest = cheapest_per_config(tab, w, 16, None)
    budget = float(evaluate(tab, w, cheapest, ("cost", "gpus"), None).F[:, 0].max())
    for seed in range(5):
        front = run_nsga2(tab, w, ("cost", "ttft_p99"), max_replicas=16, budget_usd_h=budget,
                          pop=10, gens=3, seed=seed)
        exact = enumerate_all(tab, w, ("cost", "ttft_p99"), 16, budget)
        assert front.F.shape[0] > 0, seed
        assert front.F[:, 0].min() == pytest.approx(exact.F[:, 0].min())


def test_nsga2_points_feasible_nondominated_and_close_to_exact(table, fronts) -> None:
    exact, nsga = fronts
    ev = evaluate(table, W, nsga.idx, OBJ, None)
    assert np.all(ev.G <= 0)  # every point feasible
    assert len(non_dominated(nsga.F)) == len(nsga.F)  # non-dominated within its front
    norm = Normalizer.of(exact.F, nsga.F)
    ratio = hypervolume(nsga.F, norm) / hypervolume(exact.F, norm)
    assert ratio >= 0.99
    # exact front: nothing enumerated dominates it
    assert len(non_dominated(exact.F)) == len(exact.F)


def test_hypervolume_agrees_with_moocore() -> None:
    moocore = pytest.importorskip("moocore")
    rng = np.random.default_rng(1)
    for k in (2, 3, 4):
        F = rng.random((40, k))
        F = F[non_dominated(F)]
        norm = Normalizer(np.zeros(k), np.ones(k))
        ours = hypervolume(F, norm)
        ref = moocore.hypervolume(F, ref=np.full(k, 1.1))
        assert ours == pytest.approx(ref, rel=1e-9)


def test_same_seed_same_front_other_seeds_valid(table) -> None:
    kw = dict(max_replicas=8, budget_usd_h=None, pop=30, gens=15)
    a = run_nsga2(table, W, OBJ, seed=7, **kw)
    b = run_nsga2(table, W, OBJ, seed=7, **kw)
    assert np.array_equal(a.idx, b.idx) and np.array_equal(a.F, b.F)
    for s in (1, 2):
        c = run_nsga2(table, W, OBJ, seed=s, **kw)
        assert c.F.shape[0] > 0
        assert np.all(evaluate(table, W, c.idx, OBJ, None).G <= 0)


def test_problem_evaluates_like_the_exact_enumeration(table) -> None:
    """pymoo's view (decision dicts in, F and G out) agrees with the vectorized evaluation
    the exact front enumerates, decision for decision, feasible or not."""
    from kvopt.pareto.problem import FleetProblem

    budget = 40.0
    problem = FleetProblem(table, W, OBJ, max_replicas=4, budget_usd_h=budget)
    assert (problem.n_var, problem.n_obj) == (5, len(OBJ))
    assert problem.n_ieq_constr == len(constraint_names(W, budget))
    assert list(problem.vars["gpu"].options) == list(range(len(SPACE.gpus)))
    assert tuple(problem.vars["replicas"].bounds) == (1, 4)
    idx = all_decisions(table, 4)
    X = problem.decision_dicts(idx)
    assert np.array_equal(problem.decisions(X), idx)
    F, G = problem.evaluate(X, return_values_of=["F", "G"])
    ev = evaluate(table, W, idx, OBJ, budget)
    assert np.array_equal(F, ev.F) and np.array_equal(G, ev.G)
    assert np.any(np.all(G <= 0, axis=1)) and not np.all(G <= 0)  # both kinds of points
    exact = enumerate_all(table, W, OBJ, 4, budget)
    F_front, G_front = problem.evaluate(problem.decision_dicts(exact.idx),
                                        return_values_of=["F", "G"])
    assert np.array_equal(F_front, exact.F) and np.all(G_front <= 0)
    # a mixed fleet whose second group is empty is the single-configuration fleet
    mixed = FleetProblem(table, W, OBJ, max_replicas=4, budget_usd_h=budget, mixed=True)
    assert mixed.n_var == 10 and tuple(mixed.vars["replicas_b"].bounds) == (0, 4)
    two = np.hstack([idx, idx[::-1, :4], np.zeros((len(idx), 1), dtype=np.int64)])
    F2, G2 = mixed.evaluate(mixed.decision_dicts(two), return_values_of=["F", "G"])
    assert np.array_equal(F2, F) and np.array_equal(G2, G)


def test_archive_callback_keeps_every_feasible_evaluation(table) -> None:
    from pymoo.algorithms.moo.nsga2 import RankAndCrowding
    from pymoo.core.mixed import MixedVariableGA
    from pymoo.optimize import minimize

    from kvopt.pareto.problem import FleetProblem, FrontArchive

    problem = FleetProblem(table, W, OBJ, max_replicas=8, budget_usd_h=None)
    seen: list[tuple[np.ndarray, np.ndarray]] = []  # every evaluation, by pymoo's own hook
    problem.callback = lambda X, out: seen.append((problem.decisions(X), out["G"]))
    calls: list[tuple[int, int]] = []
    archive = FrontArchive(problem, 6, progress=lambda g, n: calls.append((g, n)))
    assert archive.archive.shape == (0, 5)
    res = minimize(problem, MixedVariableGA(pop_size=20, survival=RankAndCrowding()),
                   ("n_gen", 6), seed=1, callback=archive, verbose=False)
    rows = np.vstack([r for r, _ in seen])
    G = np.vstack([g for _, g in seen])
    assert len(rows) == res.algorithm.evaluator.n_eval
    expected = np.unique(rows[np.all(G <= 0, axis=1)], axis=0)
    assert len(expected) > 0 and np.array_equal(archive.archive, expected)
    assert calls == [(g, 6) for g in range(1, 7)]
    # per generation: the feasible non-dominated objectives the algorithm holds
    assert len(archive.generations) == 6
    assert {tuple(f) for f in archive.generations[-1]} == {tuple(f) for f in res.F}
    archived = {tuple(f) for f in evaluate(table, W, archive.archive, OBJ, None).F}
    assert all(tuple(f) in archived for gen in archive.generations for f in gen)


def test_pymoo_loads_only_for_a_pareto_search() -> None:
    code = """
import sys
from click.testing import CliRunner
from kvopt.cli.main import cli
r = CliRunner()
assert r.invoke(cli, ["--help"]).exit_code == 0
assert r.invoke(cli, ["estimate", "--model", "Llama-3.1-8B", "--gpu", "H100-SXM",
                      "--input-len", "1024", "--output-len", "256", "--batch", "32"]).exit_code == 0
import kvopt.pareto.export, kvopt.pareto.run
loaded = sorted(m for m in sys.modules
                if m.split(".")[0] == "pymoo" or m == "kvopt.pareto.problem")
assert not loaded, loaded
"""
    subprocess.run([sys.executable, "-c", code], check=True)


def test_knee_is_on_the_front(fronts) -> None:
    exact, _ = fronts
    k = knee(exact.F, Normalizer.of(exact.F))
    assert 0 <= k < len(exact.F)


def test_exports(table, fronts, tmp_path: Path) -> None:
    exact, _ = fronts
    norm = Normalizer.of(exact.F)
    data = export.rows(exact, table, OBJ, norm)
    assert sum(r["knee"] for r in data) == 1
    for ext in ("csv", "json", "parquet"):
        export.write_table(data, tmp_path / f"f.{ext}", {"objectives": list(OBJ)})
    with (tmp_path / "f.csv").open() as f:
        got = list(csv.DictReader(f))
    assert len(got) == len(data) and set(OBJ) <= set(got[0])
    assert len(json.loads((tmp_path / "f.json").read_text())["front"]) == len(data)
    import pyarrow.parquet as pq

    assert pq.read_table(tmp_path / "f.parquet").num_rows == len(data)
    export.write_png(data, OBJ, tmp_path / "f.png")
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(InputError, match="unknown extension"):
        export.write_table(data, tmp_path / "f.xlsx")


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_chromium() is None or shutil.which("chromedriver") is None,
                    reason="Debian chromium + chromium-driver not installed (.ci/run installs)")
def test_html_page_in_headless_chromium(table, fronts, tmp_path: Path) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    exact, _ = fronts
    data = export.rows(exact, table, OBJ, Normalizer.of(exact.F))
    page = tmp_path / "front.html"
    export.write_html(data, OBJ, page, title="t", subtitle="s")
    opts = Options()
    opts.binary_location = _chromium()
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--host-resolver-rules=MAP * ~NOTFOUND"):  # offline: no network at all
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=opts, service=Service(shutil.which("chromedriver")))
    try:
        driver.get(page.as_uri())
        circles = driver.find_elements(By.CSS_SELECTOR, "#chart circle.pt")
        rows = driver.find_elements(By.CSS_SELECTOR, "#tbl tbody tr")
        assert len(circles) == len(data) and len(rows) == len(data)
        # sorting by a header keeps every row
        driver.find_elements(By.CSS_SELECTOR, "#tbl thead th")[6].click()
        assert len(driver.find_elements(By.CSS_SELECTOR, "#tbl tbody tr")) == len(data)
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == []
    finally:
        driver.quit()


def test_bad_input(run_cli) -> None:
    base = ["pareto", "--model", "Llama-3.1-8B", "--rps", "5", "--input-len", "500",
            "--output-len", "50", "--gpus", "H100-SXM", "--tp-options", "1",
            "--precisions", "fp8/fp8", "--batches", "64"]
    res = run_cli(*base, "--objectives", "cost,latency")
    assert res.exit_code == 1 and "valid: cost, ttft_p99" in res.stderr
    res = run_cli(*base, "--pop", "0")  # out of its range: a usage error
    assert res.exit_code == 2 and "--pop" in res.stderr
    res = run_cli(*base, "--slo-tpot-p99-ms", "1")
    assert res.exit_code == 1 and "TPOT p99 SLO 1 ms exclude every point" in res.stderr
    res = run_cli(*base, "--budget-usd-h", "0.5", "--objectives", "cost,tpot_p99")
    assert res.exit_code == 1 and "budget $0.5/h" in res.stderr
    res = run_cli(*base, "--gpus", "RTX-4090", "--model", "Llama-3.1-70B",
                  "--precisions", "bf16/bf16")
    assert res.exit_code == 1 and "no configuration of the space can run" in res.stderr


def test_pareto_cli_json(run_cli, tmp_path: Path) -> None:
    res = run_cli("pareto", "--model", "Llama-3.1-8B", "--rps", "5", "--input-len", "500",
                  "--output-len", "50", "--gpus", "H100-SXM,L40S", "--tp-options", "1",
                  "--precisions", "bf16/bf16,fp8/fp8", "--batches", "64",
                  "--objectives", "cost,tpot_p99", "--pop", "20", "--gens", "10", "--json",
                  "--out", str(tmp_path / "f.csv"), "--html", str(tmp_path / "f.html"))
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert d["report"]["hv_ratio_to_exact"] is not None
    assert len(d["report"]["hv_per_generation"]) == 10
    assert all({"cost", "tpot_p99", "gpu", "replicas"} <= set(r) for r in d["front"])


def test_mixed_fleets_extend_the_single_type_front(table, fronts) -> None:
    exact, _ = fronts
    mixed = run_nsga2(table, W, OBJ, max_replicas=12, budget_usd_h=None, pop=100, gens=60,
                      seed=0, mixed=True)
    assert np.all(evaluate_mixed(table, W, mixed.idx, OBJ, None).G <= 0)
    norm = Normalizer.of(exact.F, mixed.F)
    assert hypervolume(mixed.F, norm) >= 0.98 * hypervolume(exact.F, norm)
    data = export.rows(mixed, table, OBJ, norm)
    assert {"gpu_b", "replicas_b"} <= set(data[0])


def test_disaggregated_pools_searched_by_nsga2() -> None:
    w = Workload(name="w", model="Llama-3.1-8B", rate_rps=10, input_dist=fixed(3000),
                 output_dist=fixed(200), slo=Slo(tpot_p99_ms=40))
    space = Space(gpus=("H100-SXM", "L40S"), tps=(1,), precisions=(("fp8", "fp8"),),
                  batches=(64, 256))
    pre, dec = build_table(w, space, "prefill"), build_table(w, space, "decode")
    front = run_nsga2(pre, w, ("cost", "ttft_p99", "tpot_p99"), max_replicas=6,
                      budget_usd_h=None, pop=40, gens=20, seed=0, decode_table=dec)
    assert front.F.shape[0] > 0 and front.method == "nsga2-disagg"
    ev = evaluate_disagg(pre, dec, w, front.idx, ("cost", "ttft_p99", "tpot_p99"), None)
    assert np.all(ev.G <= 0)
    assert np.all(ev.metrics["kv_transfer_ms"] > 0)


def test_lean_mating_is_pymoos_mixed_variable_mating(table, monkeypatch) -> None:
    """The search with :class:`LeanMixedMating` is the one with pymoo's class: same
    evaluations, same population fronts each generation, same archive (single and mixed
    fleets)."""
    from pymoo.core.mixed import MixedVariableMating

    import kvopt.pareto.mating as mating

    kw = dict(max_replicas=8, budget_usd_h=None, seed=4)
    runs = {}
    for cls in (mating.LeanMixedMating, MixedVariableMating):
        monkeypatch.setattr(mating, "LeanMixedMating", cls)
        runs[cls] = [run_nsga2(table, W, OBJ, pop=30, gens=12, **kw),
                     run_nsga2(table, W, OBJ, pop=20, gens=6, mixed=True, **kw)]
    for lean, plain in zip(*runs.values(), strict=True):
        assert lean.evaluations == plain.evaluations
        assert np.array_equal(lean.F, plain.F) and np.array_equal(lean.idx, plain.idx)
        assert len(lean.generations) == len(plain.generations)
        assert all(np.array_equal(a, b) for a, b in zip(lean.generations, plain.generations,
                                                        strict=True))


def test_the_table_is_each_levels_own_curve(table) -> None:
    """The table's curves, solved per replica (capacities together, one draw call), are
    each level's own ``capacity()`` and ``poisson_p99_ms()``, bit for bit."""
    from kvopt.pareto.table import FRACTIONS
    from kvopt.serving.replica import build_replica
    from kvopt.serving.serve import steady_model

    rep = build_replica(model=W.model, gpu="L40S", tp=1, weights="fp8", kv_dtype="fp8")
    gi, pi = SPACE.gpus.index("L40S"), SPACE.precisions.index(("fp8", "fp8"))
    for bi, b in enumerate(SPACE.batches):
        m = steady_model(rep, W.input_dist, W.output_dist, max_num_seqs=b)
        m._cap = None  # solve it again on its own
        cap, _ = m.capacity()
        ttft, tpot = m.poisson_p99_ms(cap * FRACTIONS)
        assert table.capacity_rps[gi, 0, pi, bi] == cap
        assert np.array_equal(table.ttft_p99_ms[gi, 0, pi, bi], ttft)
        assert np.array_equal(table.tpot_p99_ms[gi, 0, pi, bi], tpot)
