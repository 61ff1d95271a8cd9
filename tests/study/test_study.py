"""Studies: runners agree, a killed run resumes without loss or repeats, failures are rows,
bad input is one clear line (with the study file's line number)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from kvopt.choices import PARETO_OBJECTIVES
from kvopt.errors import InputError
from kvopt.study import Study, load_results, load_study, make_scenarios, run_study
from kvopt.study.fields import FIELDS, OUTPUTS, SOLVES
from kvopt.study.scenarios import fields_for
from kvopt.study.store import Store
from kvopt.study.worker import CACHE_STATS, cached_evaluate, run_task
from tests.paths import ROOT

# a small space: 2 GPUs x 1 TP x 2 precisions x 2 batch levels
BASE = {"model": "Llama-3.1-8B", "input_len": 512, "output_len": 128,
        "gpus": ["H100-SXM", "L40S"], "tp_options": [1], "precisions": ["fp8/fp8", "bf16/bf16"],
        "batches": [32, 128], "availability": {"H100-SXM": 4}}
TIERS = {"gold": {"slo_ttft_p99_ms": 300, "slo_tpot_p99_ms": 25},
         "silver": {"slo_ttft_p99_ms": 1000, "slo_tpot_p99_ms": 50},
         "platinum": {"slo_ttft_p99_ms": 100, "slo_tpot_p99_ms": 6}}
TIMING = {"solve_s"}


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    return env


def _comparable(out_dir: Path) -> dict[str, tuple[object, ...]]:
    with Store(out_dir, create=False) as store:
        return {r["key"]: (r["status"], r["error"],
                           {k: v for k, v in r["outputs"].items() if k not in TIMING})
                for r in store.rows()}


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> tuple[Study, Path]:
    """30 scenarios (2 models x 5 rates x 3 SLO tiers), run in-process."""
    study = Study(solve="plan", base=BASE, name="grid",
                  axes={"model": ["Llama-3.1-8B", "Llama-3.2-3B"], "rps": [5, 10, 20, 40, 80],
                        "tier": TIERS})
    out = tmp_path_factory.mktemp("inproc")
    summary = run_study(study, out)
    assert (summary.total, summary.done, summary.skipped) == (30, 30, 0)
    return study, out


def test_runners_agree_in_process_pool_and_dask(grid: tuple[Study, Path],
                                                 tmp_path: Path) -> None:
    study, inproc = grid
    want = _comparable(inproc)
    assert len(want) == 30
    statuses = {s for s, _, _ in want.values()}
    assert statuses == {"ok", "infeasible"}  # 8B at 80 req/s under platinum needs > 4 H100s
    run_study(study, tmp_path / "pool", workers=2)
    assert _comparable(tmp_path / "pool") == want
    pytest.importorskip("dask.distributed")
    run_study(study, tmp_path / "dask", dask="local", workers=2)
    assert _comparable(tmp_path / "dask") == want


def test_rerun_skips_everything_and_dataframe(grid: tuple[Study, Path]) -> None:
    study, out = grid
    again = run_study(study, out)
    assert (again.skipped, again.done) == (30, 0)
    df = load_results(out)
    assert len(df) == 30 and df["key"].is_unique
    assert {"model", "rps", "tier", "status", "usd_per_hour", "gpu", "tp", "precision",
            "max_batch", "ttft_p99_ms", "tpot_p99_ms", "solve_s"} <= set(df.columns)
    ok = df[df["status"] == "ok"]
    # more traffic never costs less (same model and tier)
    for _, g in ok.groupby(["model", "tier"]):
        costs = g.sort_values("rps")["usd_per_hour"].tolist()
        assert costs == sorted(costs)
    with Store(out, create=False) as store:
        attempts = store.db.execute("SELECT COUNT(*), COUNT(DISTINCT key) FROM attempts")
        assert attempts.fetchone() == (30, 30)


def test_report_and_parquet_export(grid: tuple[Study, Path], run_cli, tmp_path: Path) -> None:
    _, out = grid
    res = run_cli("study", "report", str(out), "--dest", str(tmp_path / "rep"))
    assert res.exit_code == 0, res.output
    md = (tmp_path / "rep" / "report.md").read_text()
    for title in ("Cost versus traffic", "Cheapest plan per scenario",
                  "Where the SLOs become infeasible", "Failed scenarios"):
        assert title in md
    assert "platinum: ttft<=100ms, tpot<=6ms" in md
    for png in ("cost_vs_traffic.png", "cheapest.png", "slo_feasibility.png"):
        assert (tmp_path / "rep" / png).read_bytes()[:4] == b"\x89PNG"
    assert "<img src=\"cost_vs_traffic.png\"" in (tmp_path / "rep" / "report.html").read_text()
    res = run_cli("study", "export", str(out), "--output", str(tmp_path / "r.parquet"))
    assert res.exit_code == 0, res.output
    import pandas as pd

    df = pd.read_parquet(tmp_path / "r.parquet")
    assert len(df) == 30 and json.loads(df["result"].dropna().iloc[0])["schema"] == "kvopt.plan/1"
    res = run_cli("study", "status", str(out), "--json")
    st = json.loads(res.output)
    assert (st["total"], st["finished"], st["pending"]) == (30, 30, 0)


def _write_study(path: Path, n: int) -> None:
    """n scenarios, each with its own lengths (no cache reuse), so each computes."""
    path.write_text(
        "solve: plan\nbase:\n  model: Llama-3.1-8B\n  output_len: 128\n  rps: 5\n"
        "  gpus: [H100-SXM, L40S]\n  tp_options: [1]\n  precisions: [fp8/fp8]\n"
        "  batches: [32, 128]\n  slo_tpot_p99_ms: 50\n"
        f"axes:\n  input_len: {[200 + 100 * i for i in range(n)]}\n")


def _wait_rows(db: Path, at_least: int, proc: subprocess.Popen[bytes]) -> int:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the run ended before it could be stopped"
        if db.exists():
            try:
                with sqlite3.connect(db) as con:
                    n = con.execute("SELECT COUNT(*) FROM results").fetchone()[0]
            except sqlite3.OperationalError:
                n = 0
            if n >= at_least:
                return int(n)
        time.sleep(0.05)
    raise AssertionError("no progress")


def test_sigkill_midway_then_resume(tmp_path: Path) -> None:
    study_file, out = tmp_path / "study.yaml", tmp_path / "out"
    _write_study(study_file, 16)
    proc = subprocess.Popen([sys.executable, "-m", "kvopt.cli.main", "study", "run",
                             str(study_file), "--out", str(out), "--quiet"], env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        _wait_rows(out / "study.sqlite", 3, proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    with sqlite3.connect(out / "study.sqlite") as con:
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        first = {k for (k,) in con.execute("SELECT key FROM results")}
        assert con.execute("SELECT COUNT(*) FROM attempts").fetchone()[0] == len(first)
    assert 3 <= len(first) < 16
    summary = run_study(load_study(study_file), out)
    assert (summary.skipped, summary.done) == (len(first), 16 - len(first))
    with sqlite3.connect(out / "study.sqlite") as con:
        keys = [k for (k,) in con.execute("SELECT key FROM results")]
        assert len(keys) == len(set(keys)) == 16
        per_key = dict(con.execute("SELECT key, COUNT(*) FROM attempts GROUP BY key"))
        assert set(per_key) == set(keys) and set(per_key.values()) == {1}  # none recomputed
        rerun = {k for (k,) in con.execute(
            "SELECT key FROM attempts WHERE run = (SELECT MAX(id) FROM runs)")}
        assert rerun == set(keys) - first
        states = [s for (s,) in con.execute("SELECT state FROM runs ORDER BY id")]
    assert states == ["running", "finished"]  # the killed run never got to close itself


def test_ctrl_c_stops_workers_and_keeps_finished(tmp_path: Path) -> None:
    study_file, out = tmp_path / "study.yaml", tmp_path / "out"
    _write_study(study_file, 24)
    proc = subprocess.Popen([sys.executable, "-m", "kvopt.cli.main", "study", "run",
                             str(study_file), "--out", str(out), "--workers", "2", "--quiet"],
                            env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True,
                            # a runner started in the background inherits SIGINT ignored;
                            # the child gets the disposition a user's terminal gives it
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        _wait_rows(out / "study.sqlite", 2, proc)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 130
        assert b"interrupted" in err and b"Traceback" not in err
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the workers went with it
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("worker processes outlived the interrupted run")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    with Store(out, create=False) as store:
        st = store.status()
    assert st["last_run"]["state"] == "interrupted" and 2 <= st["finished"] < 24


def test_failures_are_rows_and_do_not_stop_the_study(tmp_path: Path) -> None:
    small = {k: v for k, v in BASE.items() if k != "availability"}
    plans = make_scenarios("plan", [
        {**small, "rps": 5},
        {**small, "rps": 5, "model": "Llama-9-999B"},
        {**small, "rps": 5, "slo_tpot_p99_ms": 0.5},
        {**small, "rps": 5, "budget_usd_h": 0.1},
    ])
    others = [
        *make_scenarios("capacity", [
            {"model": "Llama-3.1-8B", "gpu": "H100-SXM", "input_len": 512, "output_len": 128,
             "slo_tpot_p99_ms": 0.5},
            {"model": "Llama-3.1-8B", "gpu": "H100-SXM", "input_len": 512, "output_len": 128,
             "slo_tpot_p99_ms": 40}]),
        *make_scenarios("estimate", [
            {"model": "Llama-3.1-8B", "gpu": "NoSuchGPU", "input_len": 512,
             "output_len": 128, "batch": 8},
            {"model": "Llama-3.1-8B", "gpu": "H100-SXM", "input_len": 512,
             "output_len": 128, "rps": 4}]),
    ]
    summary = run_study([*plans, *others], tmp_path)
    assert (summary.done, summary.failed) == (8, 5)
    rows = {r["key"]: r for r in Store(tmp_path, create=False).rows()}
    got = [(rows[s.key]["status"], rows[s.key]["error"] or "") for s in [*plans, *others]]
    assert got[0] == ("ok", "")
    assert got[1][0] == "error" and "Llama-9-999B" in got[1][1]
    assert got[2][0] == "infeasible" and "physical minimum" in got[2][1]
    assert got[3][0] == "infeasible" and "budget" in got[3][1]
    assert got[4][0] == "infeasible" and "SLO" in got[4][1]
    assert got[5][0] == "ok" and rows[others[1].key]["outputs"]["goodput_rps"] > 0
    assert got[6][0] == "error" and "NoSuchGPU" in got[6][1]
    assert got[7][0] == "ok" and rows[others[3].key]["outputs"]["tpot_p99_ms"] > 0


def test_candidate_cache_ignores_only_what_evaluation_ignores() -> None:
    from kvopt.serving.lengths import fixed
    from kvopt.serving.results import Slo
    from kvopt.space import Space, Workload, evaluate

    space = Space(gpus=("H100-SXM", "L40S"), tps=(1,), precisions=(("fp8", "fp8"),),
                  batches=(32, 128))

    def wl(rate: float, tpot: float = 50) -> Workload:
        return Workload(name="w", model="Llama-3.1-8B", rate_rps=rate, input_dist=fixed(300),
                        output_dist=fixed(100), slo=Slo(tpot_p99_ms=tpot))

    hits = CACHE_STATS["hits"]
    for w in (wl(1), wl(50), wl(50, tpot=20), wl(3, tpot=20)):
        assert cached_evaluate(w, space).candidates == evaluate(w, space).candidates
    assert CACHE_STATS["hits"] - hits == 2  # the rate alone never re-evaluates
    sc = make_scenarios("plan", [{**BASE, "rps": r, "slo_tpot_p99_ms": 30} for r in (3, 30)])
    for s in sc:
        a = run_task({**s.task(), "cache": True})
        b = run_task({**s.task(), "cache": False})
        assert (a["status"], a["error"]) == (b["status"], b["error"])
        assert {k: v for k, v in a["outputs"].items() if k not in TIMING} == {
            k: v for k, v in b["outputs"].items() if k not in TIMING}


def test_scenario_hash_is_canonical_and_versioned(monkeypatch: pytest.MonkeyPatch) -> None:
    a, = make_scenarios("plan", [{**BASE, "rps": 10}])
    b, = make_scenarios("plan", [{**BASE, "rps": 10.0, "gpus": "H100-SXM, L40S",
                                  "goal": "cost"}])
    assert a.key == b.key and len(a.key) == 64
    c, = make_scenarios("plan", [{**BASE, "rps": 11}])
    assert c.key != a.key
    import kvopt.study.scenarios as sc

    monkeypatch.setattr(sc, "__version__", "99.0")
    d, = make_scenarios("plan", [{**BASE, "rps": 10}])
    assert d.key != a.key


STUDY = """\
solve: plan
base:
  model: Llama-3.1-8B
  input_len: 512
  output_len: 128
axes:
  rps: [5, 10, 20]
"""


@pytest.mark.parametrize("edit, where, words", [
    (("rps: [5, 10, 20]", "rsp: [5, 10, 20]"), ":7: axes.rsp", "did you mean: rps"),
    (("rps: [5, 10, 20]", "rps: [5, fast, 20]"), ":7: axes.rps[1]", "must be a number"),
    (("input_len: 512", "input_len: [512]"), ":4: base.input_len", "integer"),
    (("base:", "bsae:"), ":2: bsae", "did you mean: base"),
    (("  output_len: 128", "  output_len: 128\n  gpu: H100-SXM"), ":6: base.gpu",
     "did you mean: gpus"),
    (("solve: plan", "solve: plna"), ":1: solve", "did you mean: plan"),
    (("  input_len: 512\n", ""), ":2: scenario 0", "give exactly one of input_len"),
    (("rps: [5, 10, 20]", "tier: {gold: {slo_tpot_p99_ms: -1}}"),
     ":7: axes.tier.gold.slo_tpot_p99_ms", "> 0"),
])
def test_study_file_errors_name_the_line(run_cli, tmp_path: Path, edit: tuple[str, str],
                                         where: str, words: str) -> None:
    f = tmp_path / "study.yaml"
    f.write_text(STUDY.replace(*edit))
    res = run_cli("study", "run", str(f), "--out", str(tmp_path / "out"))
    assert res.exit_code == 1
    assert res.stderr.count("\n") == 1, res.stderr
    assert f"study.yaml{where}" in res.stderr and words in res.stderr, res.stderr
    assert not (tmp_path / "out").exists()


def test_price_book_file_and_its_errors(run_cli, tmp_path: Path) -> None:
    (tmp_path / "spot.yaml").write_text("H100-SXM: 2.0\nL40S: cheap\n")
    f = tmp_path / "study.yaml"
    f.write_text(STUDY + "  prices: [spot.yaml]\n")
    res = run_cli("study", "run", str(f), "--out", str(tmp_path / "out"))
    assert res.exit_code == 1 and "spot.yaml:2" in res.stderr and "L40S" in res.stderr
    (tmp_path / "spot.yaml").write_text("H100-SXM: 2.0\nL40S: 0.9\n")
    sc = load_study(f).scenarios()
    assert sc[0].params["prices"] == {"H100-SXM": 2.0, "L40S": 0.9}
    assert sc[0].params["labels"] == {"price_book": "spot"}


def test_dask_errors_are_one_line(run_cli, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "study.yaml"
    f.write_text(STUDY)
    out = tmp_path / "out"
    pytest.importorskip("dask.distributed")
    res = run_cli("study", "run", str(f), "--out", str(out), "--dask", "tcp://127.0.0.1:1",
                  "--dask-timeout-s", "1")
    assert res.exit_code == 1 and res.stderr.count("\n") == 1
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:1" in res.stderr
    assert not out.exists()  # nothing was started
    monkeypatch.setitem(sys.modules, "dask.distributed", None)  # as if not installed
    res = run_cli("study", "run", str(f), "--out", str(out), "--dask", "local")
    assert res.exit_code == 1 and "pip install 'kvopt[dask]'" in res.stderr


def test_status_of_a_folder_without_a_store(run_cli, tmp_path: Path) -> None:
    res = run_cli("study", "status", str(tmp_path))
    assert res.exit_code == 1 and "no study store" in res.stderr


def test_schema_is_documented_and_consistent() -> None:
    from kvopt.pareto.evaluation import OBJECTIVES

    assert set(PARETO_OBJECTIVES) == set(OBJECTIVES)
    # the study file is documented by its JSON Schema (`kvopt schema study`): every scenario
    # key with a description (defaults and types: tests/test_schemas.py), every output column
    # and every column a results row always has, described by name
    from kvopt.schemas import load_schema
    from kvopt.study.scenarios import RESERVED

    schema = load_schema("study")
    branches = {b["if"]["properties"]["solve"]["const"]: b["then"]["properties"]
                for b in schema["allOf"]}
    def resolve(node: dict[str, Any]) -> dict[str, Any]:
        if "$ref" not in node:
            return node
        target: Any = schema
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        return {**resolve(target), **node}

    documented: set[str] = set()
    for solve in SOLVES:
        for name, node in resolve(branches[solve]["base"])["properties"].items():
            if resolve(node).get("description"):
                documented.add(name)
    for f in FIELDS:
        assert f.name in documented, f"describe scenario key {f.name} in study.schema.json"
    for solve in SOLVES:
        assert not set(fields_for(solve)) & set(OUTPUTS[solve]), solve
        doc = branches[solve]["outputs"]["description"]
        for col in OUTPUTS[solve]:
            assert re.search(rf"\b{col}\b", doc), f"describe output column {col} of {solve}"
    row = schema["properties"]["outputs"]["description"]
    for col in sorted(RESERVED - {"kvopt_version"}):  # the version is inside the key
        assert re.search(rf"\b{col}\b", row), f"describe results column {col}"
    example = load_study(ROOT / "benchmarks" / "study_example.yaml")
    assert len(example.scenarios()) == 24


def test_one_writer_per_folder(tmp_path: Path) -> None:
    from kvopt.errors import KvoptError
    from kvopt.study.store import writer_lock

    sc = make_scenarios("estimate", [{"model": "Llama-3.1-8B", "gpu": "H100-SXM",
                                      "input_len": 64, "output_len": 16, "batch": 1}])
    with writer_lock(tmp_path), pytest.raises(KvoptError, match="another `kvopt study run`"):
        run_study(sc, tmp_path)
    assert run_study(sc, tmp_path).done == 1


FLEET = """\
objective: cost
gpus: [H100-SXM, L40S]
tps: [1]
precisions: [fp8/fp8]
batches: [32, 128]
workloads:
  - {name: chat, model: Llama-3.1-8B, rate_rps: 4, input_len: 512, output_len: 128,
     slo: {tpot_p99_ms: 50}}
  - {name: docs, model: Llama-3.2-3B, rate_rps: 2, input_len: 1024, output_len: 256}
"""


def test_size_and_pareto_solves(tmp_path: Path) -> None:
    (tmp_path / "fleet.yaml").write_text(FLEET)
    size = Study(solve="size", base={"fleet_file": "fleet.yaml"}, base_dir=tmp_path,
                 axes={"rate_scale": [1, 10], "prices": [{}, {"L40S": 0.5}]})
    df = size.run(tmp_path / "size")
    assert list(df["status"]) == ["ok"] * 4 and set(df["workloads"]) == {2}
    cost = {(r.rate_scale, r.prices != ""): r.usd_per_hour for r in df.itertuples()}
    assert cost[(10.0, False)] > cost[(1.0, False)] and cost[(1.0, True)] < cost[(1.0, False)]
    before = {s.key for s in size.scenarios()}
    (tmp_path / "fleet.yaml").write_text(FLEET.replace("rate_rps: 2", "rate_rps: 3"))
    assert not before & {s.key for s in size.scenarios()}  # the file enters by content
    front = Study(solve="pareto", base={**{k: v for k, v in BASE.items()
                                           if k != "availability"},
                                        "method": "exact", "objectives": ["cost", "tpot_p99"],
                                        "max_replicas": 8},
                  axes={"rps": [5, 20]}).run(tmp_path / "pareto")
    assert list(front["status"]) == ["ok", "ok"]
    assert (front["front_points"] >= 1).all() and set(front["knee_gpu"]) <= {"H100-SXM", "L40S"}
    assert (front["min_usd_per_hour"] <= front["knee_usd_per_hour"]).all()


def test_chunks_keep_scenarios_that_share_an_evaluation_together() -> None:
    """Plan scenarios differing only in MILP inputs travel together (one evaluation per
    chunk); the rest go one per chunk; every task exactly once, chunks bounded."""
    from kvopt.study.run import MAX_CHUNK, chunks

    plans = make_scenarios("plan", [
        {"model": m, "input_len": 500, "output_len": 50, "rps": r, "budget_usd_h": b}
        for m in ("Llama-3.1-8B", "Qwen2.5-7B") for r in range(1, 41) for b in (50, 100)])
    est = make_scenarios("estimate", [{"model": "Llama-3.1-8B", "gpu": "H100-SXM",
                                       "input_len": 10 * i, "output_len": 10, "batch": 1}
                                      for i in range(1, 4)])
    tasks = [s.task() for s in [*plans, *est]]
    parts = chunks(tasks, 2)
    seen = [t["key"] for c in parts for t in c]
    assert sorted(seen) == sorted(t["key"] for t in tasks)
    assert all(1 <= len(c) <= MAX_CHUNK for c in parts)
    for c in parts:
        assert len({t["scenario"]["model"] for t in c}) == 1
        if c[0]["solve"] == "estimate":
            assert len(c) == 1
    # 163 tasks on 2 workers: chunks of min(32, ceil(163 / 8)) = 21, so the 80 scenarios of
    # each model make 4 chunks (21 + 21 + 21 + 17), plus the 3 estimates
    assert sorted(len(c) for c in parts) == [1, 1, 1, 17, 17, 21, 21, 21, 21, 21, 21]


def test_pareto_table_cache_ignores_only_what_the_table_ignores() -> None:
    """Pareto scenarios that differ in rate, SLO or budget share one configuration table;
    the fronts match those computed without the cache."""
    from kvopt.study.worker import CACHE_STATS

    base = {"model": "Llama-3.1-8B", "input_len": 300, "output_len": 100,
            "gpus": ["H100-SXM", "L40S"], "tp_options": [1], "precisions": ["fp8/fp8"],
            "batches": [32, 128], "pop": 20, "gens": 5, "max_replicas": 4}
    sc = make_scenarios("pareto", [{**base, "rps": r, "slo_tpot_p99_ms": t}
                                   for r, t in ((2, 50), (6, 50), (6, 30))])
    misses = CACHE_STATS["table_misses"]
    for s in sc:
        a = run_task({**s.task(), "cache": True})
        b = run_task({**s.task(), "cache": False})
        assert a["status"] == b["status"] == "ok", (a["error"], b["error"])
        assert a["result"]["front"] == b["result"]["front"]
    assert CACHE_STATS["table_misses"] - misses == 1  # one table for all three


def test_an_interrupted_transaction_does_not_block_the_next(tmp_path: Path) -> None:
    """A ctrl-C after BEGIN but before the ``with`` body (``__exit__`` never runs) left the
    transaction open, and the run's closing write then failed ("cannot start a transaction
    within a transaction"): exit 1 with a traceback instead of 130. The next transaction
    rolls the dangling one back."""
    sc = make_scenarios("estimate", [{"model": "Llama-3.1-8B", "gpu": "H100-SXM",
                                      "input_len": 64, "output_len": 16, "batch": 1}])
    with Store(tmp_path) as store:
        run, _ = store.begin_run(sc, runner="test", name="t", outputs=())
        store.db.execute("BEGIN IMMEDIATE")  # the state an interrupted __enter__ leaves
        store.db.execute("UPDATE runs SET done = 99 WHERE id = ?", (run,))
        store.end_run(run, "interrupted")
        assert not store.db.in_transaction
        st = store.status()
    assert st["last_run"]["state"] == "interrupted" and st["last_run"]["done"] == 0


def test_plan_scenarios_take_the_capacity_method() -> None:
    """``capacity`` reaches the plan's space: confirm (the default) and exact give the same
    outputs, screen its own (the cache keeps them apart); a bad value is a clear error."""
    outs = {}
    for cap in ("confirm", "exact", "screen"):
        s, = make_scenarios("plan", [{**BASE, "rps": 20, "slo_tpot_p99_ms": 30,
                                      "capacity": cap}])
        r = run_task({**s.task(), "cache": True})
        assert r["status"] == "ok", r
        outs[cap] = {k: v for k, v in r["outputs"].items() if k not in TIMING}
    default, = make_scenarios("plan", [{**BASE, "rps": 20, "slo_tpot_p99_ms": 30}])
    assert default.key == make_scenarios("plan", [{**BASE, "rps": 20, "slo_tpot_p99_ms": 30,
                                                   "capacity": "confirm"}])[0].key
    assert outs["confirm"] == outs["exact"]
    assert outs["screen"]["gpu"] and outs["screen"]["usd_per_hour"] > 0
    with pytest.raises(InputError, match="capacity"):
        make_scenarios("plan", [{**BASE, "rps": 20, "capacity": "fast"}])


def test_engine_args_sweep_and_bad_flags_are_rows(tmp_path: Path) -> None:
    """engine_args is a scenario key like engine_version: an axis of flag sets moves the
    estimate (a 50 ms request overhead set as a flag lands on the mean TTFT), and a flag
    the engine does not take is that scenario's error row, naming the flag."""
    from kvopt.catalog.engines import load_engine

    study = Study(solve="estimate", base={"model": "Llama-3.1-8B", "gpu": "H100-SXM",
                                          "input_len": 512, "output_len": 64, "rps": 2},
                  axes={"engine_args": [{}, {"request_overhead_ms": 50},
                                        {"batch_wait_timeout_iters": 5}]})
    df = study.run(tmp_path / "flags")
    assert list(df["status"]) == ["ok", "ok", "error"]
    own = load_engine("vllm").request_overhead_ms
    assert df["ttft_ms"][1] - df["ttft_ms"][0] == pytest.approx(50 - own, abs=0.5)
    assert "batch_wait_timeout_iters" in df["error"][2] and "vllm has no batch waiting" in (
        df["error"][2])
    with pytest.raises(InputError, match="flag values must be"):
        Study(solve="estimate", base={"model": "Llama-3.1-8B", "gpu": "H100-SXM",
                                      "input_len": 512, "output_len": 64, "rps": 2,
                                      "engine_args": {"max_num_seqs": [1, 2]}}).scenarios()
