"""The web app's API (FastAPI's TestClient, no browser): every answer is the front door's,
bad input is the CLI's one-line error, downloads are the exports, the study browser stays
inside its root, and nothing is fetched from outside (plotly.js is served by the app)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.paths import ROOT

pytest.importorskip("fastapi")

EST = {"model": "Llama-3.1-8B", "gpu": "H100-SXM", "tp": "1", "weights": "fp8",
       "kv_dtype": "", "engine": "vllm", "input_len": "1024", "output_len": "256",
       "load_mode": "rps", "load_value": "5", "price_usd_h": ""}
PLAN = {"model": "Llama-3.1-8B", "rps": "8", "input_len": "500", "output_len": "100",
        "slo_ttft_p99_ms": "500", "slo_tpot_p99_ms": "50", "gpus": "H100-SXM,L40S",
        "tp_options": "1", "precisions": "fp8/fp8", "batches": "64,256"}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    import warnings

    with warnings.catch_warnings():  # starlette's note on its httpx transport
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    from kvopt.ops.ui.app import create_app

    root = tmp_path_factory.mktemp("studies")
    return TestClient(create_app(studies_root=root)), root


def _cli_json(run_cli, command: str) -> object:
    args = command.split()[1:]
    res = run_cli(*args)
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def _untimed(plan: dict) -> dict:
    return {**plan, "solver": {k: v for k, v in plan["solver"].items()
                               if k not in ("build_s", "solve_s")}}


def test_estimate_is_the_cli_answer(client, run_cli) -> None:
    c, _ = client
    out = c.post("/api/estimate", json=EST).json()
    assert out["cli"].startswith("kvopt estimate --model Llama-3.1-8B --gpu H100-SXM")
    assert out["result"] == _cli_json(run_cli, out["cli"])
    assert out["result"]["load"]["value"] == 5.0 and out["result"]["weights"] == "fp8"
    assert [t["name"] for t in out["chart"]["data"]] == ["weights", "KV cache", "activations",
                                                         "runtime"]


def test_plan_and_compare_are_the_cli_answers(client, run_cli) -> None:
    c, _ = client
    out = c.post("/api/plan", json=PLAN).json()
    assert "--no-explain" in out["cli"]
    assert _untimed(out["result"]) == _untimed(_cli_json(run_cli, out["cli"]))
    from kvopt.export import render

    assert out["markdown"] == render(out["result"], "markdown")
    rows = c.post("/api/compare", json=PLAN).json()
    assert rows["result"] == _cli_json(run_cli, rows["cli"])
    assert {r["gpu"] for r in rows["result"]} == {"H100-SXM", "L40S"}


@pytest.mark.parametrize("path, form, cli", [
    ("/api/estimate", {**EST, "model": "Llama-3.1-8Bx"},
     ["estimate", "--model", "Llama-3.1-8Bx", "--gpu", "H100-SXM", "--input-len", "1024",
      "--output-len", "256", "--rps", "5"]),
    ("/api/estimate", {**EST, "weights": "fp4"},
     ["estimate", "--model", "Llama-3.1-8B", "--gpu", "H100-SXM", "--weights", "fp4",
      "--input-len", "1024", "--output-len", "256", "--rps", "5"]),
    ("/api/plan", {**PLAN, "precisions": "fp9/fp8"},
     ["plan", "--model", "Llama-3.1-8B", "--rps", "8", "--input-len", "500",
      "--output-len", "100", "--precisions", "fp9/fp8"]),
], ids=["unknown-model", "unsupported-precision", "bad-precision"])
def test_bad_input_is_the_cli_one_line_error(client, run_cli, path, form, cli) -> None:
    c, _ = client
    r = c.post(path, json=form)
    res = run_cli(*cli)
    assert r.status_code == 400 and res.exit_code == 1
    assert "\n" not in r.json()["error"]
    assert res.stderr == f"kvopt: error: {r.json()['error']}\n"


@pytest.mark.parametrize("field, value, message", [
    ("tp", "two", "--tp='two': not an integer"),
    ("input_len", "", "--input-len=None: is required"),
    ("load_value", "-1", "--rps=-1.0: must be > 0"),
    ("load_mode", "burst", "--load-mode='burst': one of: batch, concurrency, rps, offline"),
])
def test_form_values_are_checked_with_named_fields(client, field, value, message) -> None:
    c, _ = client
    r = c.post("/api/estimate", json={**EST, field: value})
    assert r.status_code == 400
    assert r.json()["error"].startswith(message)
    assert c.post("/api/estimate", content=b"[1,").status_code == 400  # not JSON


def test_downloads_are_the_exports(client, plan_dict) -> None:
    import yaml

    from kvopt.export import render

    c, _ = client
    for fmt, name in (("markdown", "plan.md"), ("vllm", "vllm.sh"), ("k8s", "k8s.yaml")):
        r = c.post("/api/export", json={"plan": plan_dict, "format": fmt})
        assert r.status_code == 200
        assert r.headers["content-disposition"] == f'attachment; filename="{name}"'
        assert r.text == render(plan_dict, fmt)
    r = c.post("/api/export", json={"plan": plan_dict, "format": "lmcache",
                                    "kv_offload_gib": 16})
    assert yaml.safe_load(r.text)["local_cpu"] is True
    bad = c.post("/api/export", json={"plan": {"schema": "kvopt.plan/1"}, "format": "json"})
    assert bad.status_code == 400 and "\n" not in bad.json()["error"]


def test_pareto_point_and_its_export(client) -> None:
    c, _ = client
    form = {**PLAN, "pop": "10", "gens": "3", "objectives": "cost,ttft_p99"}
    out = c.post("/api/pareto", json=form).json()
    front = out["front"]
    assert front and out["report"]["objectives"] == ["cost", "ttft_p99"]
    traces = [t for t in out["chart"]["data"] if t.get("customdata")]
    assert sorted(i for t in traces if t["name"] != "knee (balanced)"
                  for i in t["customdata"]) == list(range(len(front)))
    assert out["chart"]["layout"]["xaxis"]["title"]["text"].startswith("cost ($/h)")
    row = front[0]
    r = c.post("/api/pareto/point", json={"row": row, "format": "vllm", "model": "Llama-3.1-8B",
                                          "input_len": "500", "output_len": "100"})
    assert r.status_code == 200
    assert f"--tensor-parallel-size {row['tp']}" in r.text
    assert f"--max-num-seqs {row['max_batch']}" in r.text
    r = c.post("/api/pareto/point", json={"row": row, "format": "json", "model": "M"})
    assert json.loads(r.text)["gpu"] == row["gpu"]


def test_study_browser_lists_and_stays_inside_its_root(client) -> None:
    from kvopt.study.run import run_study
    from kvopt.study.spec import Study

    c, root = client
    study = Study(solve="estimate", base={"model": "Llama-3.1-8B", "gpu": "H100-SXM",
                                          "input_len": 500, "output_len": 100, "batch": 8},
                  axes={"tp": [2, 1]})
    (root / "sweeps").mkdir()
    run_study(study, root / "sweeps" / "tp", progress=False)
    listed = c.get("/api/studies").json()["studies"]
    assert [s["path"] for s in listed] == ["sweeps/tp"] and listed[0]["finished"] == 2
    s = c.get("/api/study", params={"path": "sweeps/tp"}).json()
    assert s["swept"] == ["tp"] and [r["tp"] for r in s["rows"]] == [1, 2]  # swept order
    for bad in ("..", "../..", "/etc", "sweeps"):
        r = c.get("/api/study", params={"path": bad})
        assert r.status_code == 400, bad
    assert c.get("/study-report/sweeps/tp/report/../../../x").status_code in (400, 404)


def test_page_and_scripts_are_served_locally(client) -> None:
    c, _ = client
    page = c.get("/plan").text
    assert not re.search(r"(src|href)=\"https?://", page)  # no CDN
    js = c.get("/static/plotly.min.js")
    assert js.status_code == 200 and len(js.content) > 1_000_000 and b"plotly" in js.content
    assert c.get("/static/app.js").status_code == 200
    assert c.get("/static/../app.py").status_code in (400, 404)


def test_help_imports_none_of_the_ops_stack() -> None:
    code = ("import sys\nfrom kvopt.cli.main import main\n"
            "for args in (['--help'], ['ui', '--help'], ['watch', '--help']):\n"
            "    try:\n        main(args)\n    except SystemExit:\n        pass\n"
            "print(sorted(m for m in ('fastapi', 'uvicorn', 'plotly', 'prometheus_client',"
            " 'kubernetes_validate') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout


def test_ui_binds_loopback_by_default() -> None:
    from kvopt.cli.ops import ui_cmd

    host = next(p for p in ui_cmd.params if p.name == "host")
    assert host.default == "127.0.0.1"


def test_missing_ops_stack_is_a_one_line_error(monkeypatch, run_cli, plan_file: Path) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "prometheus_client" else real(name, *a))
    res = run_cli("watch", str(plan_file), "--metrics-url", "http://127.0.0.1:1/metrics")
    assert res.exit_code == 1
    assert res.stderr == ("kvopt: error: kvopt watch needs prometheus-client: "
                          "pip install 'kvopt[ops]'\n")


def test_plan_over_regions_is_kvopt_size_of_the_fleet_file_shown(client, run_cli,
                                                                 tmp_path: Path) -> None:
    c, _ = client
    form = {**PLAN, "regions": "us-east:H100-SXM=3.9x1,L40S=1.8; eu-west:H100-SXM=2.5"}
    out = c.post("/api/plan", json=form).json()
    assert out["cli"] == "kvopt size fleet.yaml --no-explain --json"
    (tmp_path / "fleet.yaml").write_text(out["fleet_yaml"])
    res = run_cli("size", str(tmp_path / "fleet.yaml"), "--no-explain", "--json")
    assert res.exit_code == 0, res.output
    assert _untimed(out["result"]) == _untimed(json.loads(res.stdout))
    regions = {e["region"] for e in out["result"]["fleet"]}
    assert regions <= {"us-east", "eu-west"} and regions
    bad = c.post("/api/plan", json={**PLAN, "regions": "us-east:H100-SXM=cheap"})
    assert bad.status_code == 400
    assert bad.json()["error"].startswith("--regions='H100-SXM=cheap': use GPU=PRICE")
