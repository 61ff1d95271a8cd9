"""Pareto fronts: NSGA-II vs the exact front, hypervolume vs moocore, determinism, exports,
the HTML page in headless Chromium, bad input."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from kvopt import InputError
from kvopt.pareto import export
from kvopt.pareto.search import (
    Normalizer,
    enumerate_all,
    evaluate,
    hypervolume,
    knee,
    non_dominated,
    run_nsga2,
)
from kvopt.pareto.table import build_table
from kvopt.serving.capacity import Slo
from kvopt.serving.lengths import fixed
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
    res = run_cli(*base, "--pop", "0")
    assert res.exit_code == 1 and "--pop" in res.stderr
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
    from kvopt.pareto.search import evaluate_mixed

    exact, _ = fronts
    mixed = run_nsga2(table, W, OBJ, max_replicas=12, budget_usd_h=None, pop=100, gens=60,
                      seed=0, mixed=True)
    assert np.all(evaluate_mixed(table, W, mixed.idx, OBJ, None).G <= 0)
    norm = Normalizer.of(exact.F, mixed.F)
    assert hypervolume(mixed.F, norm) >= 0.98 * hypervolume(exact.F, norm)
    data = export.rows(mixed, table, OBJ, norm)
    assert {"gpu_b", "replicas_b"} <= set(data[0])


def test_disaggregated_pools_searched_by_nsga2() -> None:
    from kvopt.pareto.search import evaluate_disagg

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
