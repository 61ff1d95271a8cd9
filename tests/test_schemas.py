"""The JSON Schemas of the file formats (kvopt/schemas): valid draft 2020-12, exactly what the
readers accept (keys checked against the readers' and writers' own), every example in the
repository valid, one-line errors with the file, field path, value, rule and line, and
``kvopt schema NAME``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from kvopt.errors import InputError
from kvopt.schemas import NAMES, load_schema, problems, validate
from tests.paths import ROOT

BENCH_DATA = ROOT / "tests" / "data" / "bench"


def _resolve(schema: dict[str, Any], node: Any) -> Any:
    """``node`` with its local $ref followed (siblings such as a default kept)."""
    while isinstance(node, dict) and "$ref" in node:
        target: Any = schema
        for part in node["$ref"][2:].split("/"):
            target = target[part]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _props(schema: dict[str, Any], node: Any) -> dict[str, Any]:
    return dict(_resolve(schema, node).get("properties", {}))


# ------------------------------------------------------------------ the schemas themselves

@pytest.mark.parametrize("name", NAMES)
def test_schemas_are_draft_2020_12_and_describe_every_property(name: str) -> None:
    from jsonschema import Draft202012Validator

    schema = load_schema(name)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["title"] and schema["description"]
    missing: list[str] = []

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            for key, sub in (node.get("properties") or {}).items():
                if "description" not in _resolve(schema, sub):
                    missing.append(f"{where}.{key}")
            for key, sub in node.items():
                if key != "if":  # a condition, not a documented field
                    walk(sub, f"{where}.{key}")
        elif isinstance(node, list):
            for i, sub in enumerate(node):
                walk(sub, f"{where}[{i}]")

    walk(schema, name)
    assert not missing, f"properties without a description: {missing}"


def test_load_schema_is_a_copy_and_unknown_names_are_input_errors() -> None:
    s = load_schema("plan")
    s["title"] = "changed"
    assert load_schema("plan")["title"] != "changed"
    with pytest.raises(InputError, match=r"unknown schema; allowed: plan, bench, fleet, study"):
        load_schema("plans")
    with pytest.raises(InputError, match="unknown schema"):
        validate("nope", {}, source="x.json")


def test_every_shipped_schema_file_is_named() -> None:
    files = {p.name.removesuffix(".schema.json")
             for p in (ROOT / "kvopt" / "schemas").glob("*.schema.json")}
    assert files == set(NAMES)


# ------------------------------------------------------------------ schema == reader: study

KIND_TYPES = {  # study field kind -> the JSON types its schema allows (null: the default)
    "str": {"string", "null"}, "engine": {"string", "null"}, "dist": {"string", "null"},
    "path": {"string", "null"}, "int+": {"integer", "null"}, "int0": {"integer", "null"},
    "float+": {"number", "null"}, "float0": {"number", "null"}, "bool": {"boolean", "null"},
    "ints": {"array", "null"}, "gpus": {"array", "string", "null"},
    "precisions": {"array", "string", "null"}, "objectives": {"array", "string", "null"},
    "prices": {"object", "string", "null"}, "counts": {"object", "null"},
    "labels": {"object", "null"}, "flags": {"object", "null"},
}


def test_study_schema_is_the_scenario_field_table() -> None:
    """Per solve kind: the same keys as kvopt.study.fields, with their defaults, required
    flags, choices and types; the same axes keys, output columns and top-level keys."""
    from kvopt.study.fields import OUTPUTS, SOLVES
    from kvopt.study.scenarios import fields_for
    from kvopt.study.spec import TOP_KEYS

    schema = load_schema("study")
    assert set(schema["properties"]) == set(TOP_KEYS)
    assert tuple(schema["properties"]["solve"]["enum"]) == SOLVES
    branches = {b["if"]["properties"]["solve"]["const"]: b["then"] for b in schema["allOf"]}
    assert tuple(branches) == SOLVES
    for solve in SOLVES:
        fields = fields_for(solve)
        then = branches[solve]
        assert tuple(then["properties"]["outputs"]["items"]["enum"]) == OUTPUTS[solve]
        keys = _props(schema, then["properties"]["base"])
        assert set(keys) == set(fields), solve
        assert set(_props(schema, then["properties"]["axes"])) == set(fields), solve
        for name, f in fields.items():
            p = _resolve(schema, keys[name])
            where = f"{solve}.{name}"
            assert p.get("default") == f.default, where
            assert bool(p.get("x-required")) == f.required, where
            assert p.get("description"), where
            if f.kind == "choice":
                assert [c for c in p["enum"] if c is not None] == list(f.choices), where
            else:
                assert set(p["type"]) == KIND_TYPES[f.kind], where
            if f.kind == "objectives":
                assert tuple(p["items"]["enum"]) == f.choices, where


# ------------------------------------------------------------------ schema == reader: fleet

FLEET_BASE = {"gpus": ["H100-SXM"],
              "workloads": [{"name": "a", "model": "Llama-3.1-8B", "rate_rps": 3,
                             "input_len": 100, "output_len": 10}]}


def _fleet(tmp_path: Path, doc: dict[str, Any]) -> str:
    from kvopt.fleet.fleetfile import load_fleet_file

    f = tmp_path / "fleet.yaml"
    f.write_text(yaml.safe_dump(doc, sort_keys=False))
    return repr(load_fleet_file(f))


def test_fleet_schema_keys_are_the_keys_the_reader_reads(tmp_path: Path) -> None:
    """Every key the schema documents changes what load_fleet_file returns (none is ignored),
    and leaving out a key with a default is the same as giving the default."""
    from kvopt.bench.calibrate import Calibration, save_profile

    save_profile(Calibration(gpu="H100-SXM", engine="vllm", compute_scale=0.9,
                             memory_scale=0.9, step_overhead_ms=4.0), tmp_path / "p.yaml")
    schema = load_schema("fleet")
    top = {"objective": "gpus", "budget_usd_h": 50, "power_cap_kw": 9,
           "allow_mixing": True, "engine": "sglang", "gpus": ["H100-SXM", "L40S"],
           "tps": [1, 2], "precisions": ["fp8/fp8"], "batches": [32],
           "availability": {"H100-SXM": 4}, "prices_usd_h": {"H100-SXM": 2.5},
           "regions": {"us": {"prices_usd_h": {"H100-SXM": 3.0}, "availability": {"L40S": 2}}},
           "profiles": ["p.yaml"], "capacity": "exact", "engine_version": "0.19.0",
           "engine_args": {"max_num_batched_tokens": 4096},
           "eps": [1, 2], "dps": [1, 2], "pps": [1, 2], "parallel": ["tp2pp2"],
           "workloads": [{**FLEET_BASE["workloads"][0], "name": "b"}],
           "demand": {"hours": 1, "scale": [0.5, 1.0]}, "payments": ["on_demand", "spot"],
           "spot_rule": {"max_share": 0.5}, "budget_usd": 1000, "upfront_budget_usd": 5000,
           "price_book": "book.yaml"}
    wl = {"name": "b", "model": "Llama-3.1-70B", "rate_rps": 4, "input_len": 200,
          "output_len": 20, "input_len_dist": "uniform:low=50,high=400",
          "output_len_dist": "fixed:30", "slo": {"tpot_p99_ms": 50},
          "redundancy": 1, "max_quality_loss_pct": 1.0, "regions": ["us"],
          "images_per_request": 1, "image_size": "1024x768"}
    images = {"model": "Qwen2.5-VL-7B", "images_per_request": 1, "image_size": "640x480"}
    assert set(top) == set(schema["properties"])
    item = schema["properties"]["workloads"]["items"]
    assert set(wl) == set(item["properties"])
    base = _fleet(tmp_path, FLEET_BASE)
    for key, value in top.items():
        assert _fleet(tmp_path, {**FLEET_BASE, key: value}) != base, key
    vlm = _fleet(tmp_path, {**FLEET_BASE, "workloads": [{**FLEET_BASE["workloads"][0],
                                                          "model": "Qwen2.5-VL-7B"}]})
    for key, value in wl.items():
        w = dict(FLEET_BASE["workloads"][0])
        w.pop(key.removesuffix("_dist"), None)
        w[key] = value
        if key.startswith("image"):  # images need a vision-language model and both keys
            w = {**w, **images, key: value}
            assert _fleet(tmp_path, {**FLEET_BASE, "workloads": [w]}) != vlm, key
            continue
        extra = {"regions": {"us": {}}} if key == "regions" else {}  # names a fleet region
        assert _fleet(tmp_path, {**FLEET_BASE, **extra, "workloads": [w]}) != _fleet(
            tmp_path, {**FLEET_BASE, **extra}), key
    for props, doc_of in ((schema["properties"], lambda k, v: {**FLEET_BASE, k: v}),
                          (item["properties"], lambda k, v: {
                              **FLEET_BASE, "workloads": [{**FLEET_BASE["workloads"][0],
                                                           k: v}]})):
        for key, p in props.items():
            if "default" in p:
                assert _fleet(tmp_path, doc_of(key, p["default"])) == base, key


# ------------------------------------------------------------------ schema == writers: plan

def _keys(value: Any, schema: dict[str, Any], node: Any, where: str,
          out: list[str]) -> None:
    """Differences between the keys of ``value`` and the properties of ``node``, recursively
    (lists: every item against ``items``)."""
    node = _resolve(schema, node)
    if isinstance(value, dict) and "properties" in node:
        written, documented = set(value), set(node["properties"])
        out += [f"{where}.{k}: written, not in the schema" for k in written - documented]
        out += [f"{where}.{k}: in the schema, not written" for k in documented - written]
        for k in written & documented:
            _keys(value[k], schema, node["properties"][k], f"{where}.{k}", out)
    elif isinstance(value, list) and isinstance(node.get("items"), dict):
        for i, v in enumerate(value):
            _keys(v, schema, node["items"], f"{where}[{i}]", out)


@pytest.fixture(scope="module", params=["profile", "engine-version"])
def written_plan(tmp_path_factory: pytest.TempPathFactory,
                 request: pytest.FixtureRequest) -> dict[str, Any]:
    """A plan as `kvopt plan --output` writes it (with a calibration profile, or an engine
    release's fitted overheads instead, an engine flag, the SLO sweep and a CPU KV tier, so
    every optional block is filled)."""
    from click.testing import CliRunner

    from kvopt.bench.calibrate import Calibration, save_profile
    from kvopt.cli.main import cli

    d = tmp_path_factory.mktemp("plan")
    save_profile(Calibration(gpu="H100-SXM", engine="vllm", compute_scale=0.95,
                             memory_scale=0.95, step_overhead_ms=3.0, fitted_on=("b1",)),
                 d / "h100.yaml")
    out = d / "plan.json"
    res = CliRunner().invoke(cli, [
        "plan", "--model", "Llama-3.1-8B", "--rps", "5", "--input-len", "500",
        "--output-len", "100", "--gpus", "H100-SXM,L40S", "--tp-options", "1",
        "--precisions", "fp8/fp8", "--batches", "64", "--slo-ttft-p99-ms", "2000",
        "--slo-tpot-p99-ms", "40", "--budget-usd-h", "100", "--kv-offload-gib", "8",
        "--engine-arg", "max_num_batched_tokens=4096", "--output", str(out),
        *(["--profile", str(d / "h100.yaml")] if request.param == "profile"
          else ["--engine-version", "0.19.0"])],
        catch_exceptions=False)
    assert res.exit_code == 0, res.output
    plan: dict[str, Any] = json.loads(out.read_text())
    plan["_path"] = str(out)
    return plan


def test_plan_schema_keys_are_the_keys_kvopt_plan_writes(written_plan: dict[str, Any]) -> None:
    plan = {k: v for k, v in written_plan.items() if k != "_path"}
    space = plan["inputs"]["space"]
    assert space["calibrations"] or space["engine_version"] == "0.19.0"
    assert plan["slo_marginal_cost"]
    out: list[str] = []
    _keys(plan, load_schema("plan"), load_schema("plan"), "plan", out)
    if space["calibrations"]:  # a calibrated plan names no engine release
        out.remove("plan.inputs.space.engine_version: in the schema, not written")
    assert not out, out


def test_a_written_plan_validates_and_reads_back(written_plan: dict[str, Any]) -> None:
    from kvopt.export import load_plan

    plan = {k: v for k, v in written_plan.items() if k != "_path"}
    assert problems("plan", plan) == []
    assert load_plan(written_plan["_path"]) == plan


# ------------------------------------------------------------------ schema == writers: bench

def _bench_run() -> dict[str, Any]:
    """What `kvopt bench` writes (kvopt.bench.stats.summarize) for a small synthetic run."""
    from kvopt.bench.client import BenchConfig, RequestResult, RunOutcome
    from kvopt.bench.probe import PromptFit
    from kvopt.bench.stats import summarize

    cfg = BenchConfig(endpoint="http://127.0.0.1:9/v1", model="m", input_len=32, output_len=4,
                      mode="rps", load_value=2.0, num_requests=3, duration_s=10.0)
    ok = [RequestResult(index=i, e2e_ms=100.0 + i, ttft_ms=20.0, itl_ms=(5.0, 6.0, 7.0),
                        prompt_tokens=32, output_tokens=4) for i in range(2)]
    bad = RequestResult(index=2, e2e_ms=5.0, error="http_5xx", detail="500")
    run = RunOutcome(results=(*ok, bad), duration_s=1.5, incomplete=1, max_in_flight=2,
                     started_at="2026-01-01T00:00:00+00:00", words=20,
                     fit=PromptFit(a_tokens=2.0, b_tokens_per_word=1.5, probe_words=(32, 160),
                                   probe_tokens=(50, 242), target_words=20,
                                   target_tokens_mean=32.0))
    return dict(summarize(cfg, run).result)


def _imported() -> list[dict[str, Any]]:
    from kvopt.bench.importers import import_file

    return [r for f in sorted(BENCH_DATA.glob("*.json")) for r in import_file(f)]


def test_bench_schema_keys_are_the_keys_the_writers_write_and_readers_read() -> None:
    """Every key of a `kvopt bench` result or an imported one is documented; every
    documented key is written by some writer, except tp, weights and kv_dtype, which only
    `kvopt calibrate` reads (no writer sets them)."""
    from kvopt.bench.result import STATS

    schema = load_schema("bench")
    written = _bench_run()
    imported = _imported()
    keys = set(written).union(*imported)
    assert keys | {"tp", "weights", "kv_dtype"} == set(schema["properties"])
    for r in (written, *imported):
        out: list[str] = []
        _keys(r, schema, schema, "bench", out)
        assert not [o for o in out if "written, not in" in o], out
    for block in ("ttft_ms", "itl_ms", "e2e_ms", "tpot_ms"):
        assert tuple(schema["properties"][block]["properties"]) == STATS
    assert set(schema["properties"]["prompt_fit"]["properties"]) == set(written["prompt_fit"])


def test_bench_results_and_the_sample_files_validate() -> None:
    assert problems("bench", _bench_run()) == []
    imported = _imported()
    assert len(imported) >= 4  # every sample file, every GuideLLM benchmark
    for r in imported:
        assert problems("bench", r) == [], r["imported_from"]


# ------------------------------------------------------------------ every example validates

def test_repository_examples_validate() -> None:
    from kvopt.fleet.fleetfile import load_fleet_file
    from kvopt.study.spec import load_study

    fleet = yaml.safe_load((ROOT / "benchmarks" / "fleet_example.yaml").read_text())
    study = yaml.safe_load((ROOT / "benchmarks" / "study_example.yaml").read_text())
    assert problems("fleet", fleet) == []
    assert problems("study", study) == []
    assert load_fleet_file(ROOT / "benchmarks" / "fleet_example.yaml").workloads
    assert load_study(ROOT / "benchmarks" / "study_example.yaml").scenarios()
    # the schemas' own examples (`kvopt schema NAME` prints them with the keys they document)
    for name in NAMES:
        for example in load_schema(name).get("examples", []):
            assert problems(name, example) == [], name
    fleet_schema = load_schema("fleet")
    [full] = fleet_schema["examples"]  # a fleet file that sets every key
    assert set(full) == set(fleet_schema["properties"])
    workload_keys = set(fleet_schema["properties"]["workloads"]["items"]["properties"])
    assert set().union(*full["workloads"]) == workload_keys
    [example] = load_schema("study")["examples"]  # the repository's example study
    assert example == study
    # the study CI runs from the installed wheel
    ci = (ROOT / ".ci" / "run").read_text()
    block = ci[ci.index("<<'YAML'\n") + 9:ci.index("\nYAML\n")]
    assert problems("study", yaml.safe_load(block)) == []


def test_the_hand_made_test_files_validate() -> None:
    """The plan and bench dicts the other tests build by hand are valid files."""
    from tests.bench.test_validate import bench
    from tests.export.test_export import _plan
    assert problems("plan", _plan()) == []
    assert problems("bench", bench()) == []


# ------------------------------------------------------------------ error messages

FLEET = """\
gpus: [H100-SXM]
workloads:
  - name: a
    model: Llama-3.1-8B
    rate_rps: 3
    input_len: 100
    output_len: 10
"""


@pytest.mark.parametrize("edit, message", [
    (("rate_rps: 3", "rate_rps: -3"),
     "fleet.yaml:5: workloads[0].rate_rps: -3: must be >= 0.001 (request rate to serve, "
     "requests/s)"),
    (("gpus: [H100-SXM]", "gpus: [H100-SXM]\nbudget: 3"),
     "fleet.yaml:2: budget: unknown key; did you mean: budget_usd, budget_usd_h?"),
    (("gpus: [H100-SXM]", "gpus: [H100-SXM]\ntps: [1, two]"),
     "fleet.yaml:2: tps[1]: 'two': must be an integer >= 1"),
    (("    input_len: 100\n", "    input_len: 100\n    input_len_dist: fixed:5\n"),
     "fleet.yaml:3: workloads[0].input_len: give exactly one of input_len and "
     "input_len_dist"),
    (("    model: Llama-3.1-8B\n", ""), "fleet.yaml:3: workloads[0].model: is required"),
    (("gpus: [H100-SXM]\n", ""), "fleet.yaml:1: gpus: is required (e.g. "),
    (("rate_rps: 3", "rate_rps: 3\n    slo: {ttft_p99: 500}"),
     "fleet.yaml:6: workloads[0].slo.ttft_p99: unknown key; did you mean: ttft_p99_ms, "
     "tpot_p99_ms?"),
    (("gpus: [H100-SXM]", "gpus: [H100-SXM]\navailability: {H100-SXM: 2.5}"),
     "fleet.yaml:2: availability.H100-SXM: 2.5: must be an integer >= 0"),
    (("gpus: [H100-SXM]", "gpus: [H100-SXM]\nobjective: cots"),
     "fleet.yaml:2: objective: 'cots'; did you mean: cost?"),
])
def test_fleet_file_errors(tmp_path: Path, edit: tuple[str, str], message: str) -> None:
    from kvopt.fleet.fleetfile import FleetFileError, load_fleet_file

    f = tmp_path / "fleet.yaml"
    f.write_text(FLEET.replace(*edit))
    with pytest.raises(FleetFileError) as info:
        load_fleet_file(f)
    assert str(info.value).startswith(f"{f.parent}/{message}"), str(info.value)
    assert "\n" not in str(info.value)


STUDY = """\
solve: plan
base:
  model: Llama-3.1-8B
  input_len: 512
  output_len: 128
axes:
  rps: [5, 10, 20]
"""


@pytest.mark.parametrize("edit, message", [
    (("rps: [5, 10, 20]", "rps: []"), "study.yaml:7: axes.rps: []: must be a non-empty list"),
    (("rps: [5, 10, 20]", "tier: {}"), "study.yaml:7: axes.tier: {}: must be a non-empty "
                                       "mapping"),
    (("rps: [5, 10, 20]", "tier: {gold: {rsp: 3}}"),
     "study.yaml:7: axes.tier.gold.rsp: unknown key; did you mean: rps?"),
    (("rps: [5, 10, 20]", "goal: [cost, cots]"),
     "study.yaml:7: axes.goal[1]: 'cots'; did you mean: cost?"),
    (("solve: plan", "solve: plan\noutputs: [usd_per_hour, dollars]"),
     "study.yaml:2: outputs[1]: 'dollars'; allowed: usd_per_hour, total_gpus"),
    (("solve: plan", "solve: plan\nkeep_result: 'no'"),
     "study.yaml:2: keep_result: 'no': must be true or false"),
    (("solve: plan\n", ""), "study.yaml:1: solve: is required (allowed: plan, size, pareto, "
                            "estimate, capacity)"),
    (("  input_len: 512", "  input_len: 512\n  prices: {H100-SXM: 0}"),
     "study.yaml:5: base.prices.H100-SXM: 0: must be > 0"),
])
def test_study_file_errors(tmp_path: Path, edit: tuple[str, str], message: str) -> None:
    from kvopt.study.spec import StudyFileError, load_study

    f = tmp_path / "study.yaml"
    f.write_text(STUDY.replace(*edit))
    with pytest.raises(StudyFileError) as info:
        load_study(f)
    assert str(info.value).startswith(f"{f.parent}/{message}"), str(info.value)


def test_bench_and_plan_errors_name_the_file_field_value_and_fix(
        tmp_path: Path, run_cli, written_plan: dict[str, Any]) -> None:
    from tests.bench.test_validate import bench

    f = tmp_path / "b.json"
    for over, text in (
            ({"load": {"mode": "poisson", "value": 2}},
             "field 'load': load.mode='poisson'; allowed: rps, concurrency"),
            ({"input_len": 0}, "field 'input_len'=0: must be >= 1"),
            ({"itl_ms": {"mean": 1, "p50": 1, "p90": 1}}, "field 'itl_ms': itl_ms.p99 is "
                                                           "required"),
            ({"output_tok_s": "fast"}, "field 'output_tok_s'='fast': must be a number")):
        f.write_text(json.dumps(bench(**over)))
        res = run_cli("validate", "--bench", str(f), "--model", "Llama-3.1-8B", "--gpu",
                      "H100-SXM")
        assert res.exit_code == 1 and res.stderr.count("\n") == 1, res.stderr
        assert f"kvopt: error: bench={str(f)!r}: {text}" in res.stderr, res.stderr
        assert "(" in res.stderr and "kvopt schema bench" in res.stderr
    # a plan the export would have crashed on (KeyError) is a clear error now
    plan = {k: v for k, v in written_plan.items() if k != "_path"}
    g = tmp_path / "p.json"
    for change, text in ((lambda p: p.pop("totals"), "field 'totals' is required"),
                         (lambda p: p["fleet"][0].update(tp="one"),
                          "field 'fleet': fleet[0].tp='one': must be an integer >= 1"),
                         (lambda p: p["inputs"]["workloads"][0].pop("rate_rps"),
                          "field 'inputs': inputs.workloads[0].rate_rps is required")):
        broken = json.loads(json.dumps(plan))
        change(broken)
        g.write_text(json.dumps(broken))
        res = run_cli("export", str(g), "--format", "markdown")
        assert res.exit_code == 1 and res.stderr.count("\n") == 1, res.stderr
        assert f"kvopt: error: plan={str(g)!r}: {text}" in res.stderr, res.stderr


def test_yaml_line_follows_the_path() -> None:
    from kvopt.schemas import field_path, yaml_line

    root = yaml.compose(FLEET)
    assert yaml_line(root, ("workloads", 0, "rate_rps")) == 5
    assert yaml_line(root, ("workloads", 0), key=False) == 3
    assert yaml_line(root, ("gpus",), key=True) == 1
    assert yaml_line(root, ("workloads", 0, "nope")) == 3  # deepest node that exists
    assert field_path(("workloads", 2, "rate_rps")) == "workloads[2].rate_rps"
    assert field_path(()) == "(file)"


# ------------------------------------------------------------------ kvopt schema

@pytest.mark.parametrize("name", NAMES)
def test_cli_prints_each_schema(run_cli, name: str) -> None:
    res = run_cli("schema", name)
    assert res.exit_code == 0
    assert json.loads(res.stdout) == load_schema(name)


def test_cli_list_unknown_and_usage(run_cli) -> None:
    res = run_cli("schema", "--list")
    assert res.exit_code == 0
    assert [line.split()[0] for line in res.stdout.splitlines()] == list(NAMES)
    res = run_cli("schema", "plans")
    assert res.exit_code == 1 and res.stderr.count("\n") == 1
    assert res.stderr.startswith("kvopt: error: schema='plans': unknown schema; allowed: "
                                 "plan, bench, fleet, study")
    assert run_cli("schema").exit_code == 2
    assert run_cli("schema", "plan", "--list").exit_code == 2


def test_help_does_not_import_jsonschema() -> None:
    """jsonschema is imported only when a file is checked (kvopt --help stays light)."""
    code = ("import sys\nfrom kvopt.cli.main import main\ntry:\n    main(['--help'])\n"
            "except SystemExit:\n    pass\n"
            "print(sorted(m for m in ('jsonschema', 'kvopt.schemas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout
