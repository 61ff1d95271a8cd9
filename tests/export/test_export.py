"""Plan exports and engine launch configs (golden files, regenerated only by
tests/golden/regen.py)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from kvopt import InputError
from kvopt.export import load_plan, render, save
from kvopt.export.engines import engine_config
from tests.paths import GOLDEN

CASES = {  # fleet entries as a plan holds them
    "dense_bf16_tp1": {"model": "Llama-3.1-8B", "gpu": "H100-SXM", "tp": 1, "weights": "bf16",
                       "kv_dtype": "bf16", "max_batch": 128, "max_model_len": 4096},
    "moe_fp8_tp2": {"model": "Mixtral-8x7B", "gpu": "H100-SXM", "tp": 2, "weights": "fp8",
                    "kv_dtype": "fp8", "max_batch": 256, "max_model_len": 8192},
    "int4_tp4_fp8kv": {"model": "Llama-3.1-70B", "gpu": "A100-SXM-80GB", "tp": 4,
                       "weights": "int4", "kv_dtype": "fp8", "max_batch": 64,
                       "max_model_len": 6000},
}


def render_case(name: str, engine: str) -> str:
    c = dict(CASES[name])
    cfg = engine_config(c, engine=engine, max_model_len=c.pop("max_model_len"))
    return "\n".join([*(f"# NOTE: {n}" for n in cfg.notes), cfg.shell(),
                      cfg.config_yaml]).rstrip() + "\n"


@pytest.mark.parametrize("engine", ["vllm", "sglang", "trtllm"])
@pytest.mark.parametrize("name", list(CASES))
def test_engine_configs_match_golden(name: str, engine: str) -> None:
    assert render_case(name, engine) == (GOLDEN / f"{name}.{engine}.txt").read_text()


def test_engine_rules() -> None:
    cfg = engine_config(dict(CASES["int4_tp4_fp8kv"]) | {"max_batch": 50}, engine="vllm",
                        max_model_len=6000)
    flags: dict[str, str] = {}
    for i, tok in enumerate(cfg.command):
        if tok.startswith("--"):
            nxt = cfg.command[i + 1] if i + 1 < len(cfg.command) else ""
            flags[tok] = "" if nxt.startswith("--") or not nxt else nxt
    assert flags["--tensor-parallel-size"] == "4" and flags["--max-num-seqs"] == "50"
    assert flags["--max-model-len"] == "6000" and flags["--kv-cache-dtype"] == "fp8"
    assert int(flags["--max-num-batched-tokens"]) % int(flags["--block-size"]) == 0
    assert flags["--dtype"] == "auto"  # never an invalid --dtype for a quantized model
    assert any("AWQ/GPTQ checkpoint" in n for n in cfg.notes)
    fp8 = engine_config(dict(CASES["moe_fp8_tp2"]), engine="vllm", max_model_len=8192)
    assert "--quantization" in fp8.command and fp8.command[fp8.command.index(
        "--quantization") + 1] == "fp8"


def test_fp8_serves_the_publishers_fp8_checkpoint() -> None:
    """kvopt prices Qwen3-32B FP8 with Qwen's block-FP8 checkpoint, so the launch serves that
    checkpoint (no online quantization); a model path of the user's keeps the online flag;
    a model without a published FP8 checkpoint quantizes online (vLLM) or names Model
    Optimizer (TensorRT-LLM)."""
    entry = {"model": "Qwen3-32B", "gpu": "H100-SXM", "tp": 2, "weights": "fp8",
             "kv_dtype": "bf16", "max_batch": 64}
    for engine in ("vllm", "sglang", "trtllm"):
        cfg = engine_config(entry, engine=engine, max_model_len=8192)
        assert "Qwen/Qwen3-32B-FP8" in cfg.command and "--quantization" not in cfg.command
        assert not any("Model Optimizer" in n for n in cfg.notes)
        assert any("publisher's FP8 checkpoint" in n for n in cfg.notes)
    own = engine_config(entry, engine="vllm", max_model_len=8192, model_path="/ckpt/qwen")
    assert "/ckpt/qwen" in own.command and "--quantization" in own.command
    llama = engine_config(entry | {"model": "Llama-3.1-70B"}, engine="trtllm",
                          max_model_len=8192)
    assert "meta-llama/Llama-3.1-70B" in llama.command
    assert any("Model Optimizer" in n for n in llama.notes)


def test_unchunked_engine_budget_holds_the_longest_prompt() -> None:
    """TensorRT-LLM does not chunk prefills by default: a 20,000-token prompt needs
    max_num_tokens >= 20,000 (20,000 rounded up to its 32-token blocks = 20,000); vLLM
    chunks, so its budget stays at its default."""
    case = dict(CASES["dense_bf16_tp1"])
    case.pop("max_model_len")
    trt = engine_config(case, engine="trtllm", max_model_len=20100, max_prompt_len=20000)
    assert trt.command[trt.command.index("--max_num_tokens") + 1] == "20000"
    assert any("longest prompt (20,000 tokens)" in n for n in trt.notes)
    short = engine_config(case, engine="trtllm", max_model_len=4096, max_prompt_len=3000)
    assert short.command[short.command.index("--max_num_tokens") + 1] == "8192"
    vllm = engine_config(case, engine="vllm", max_model_len=20100, max_prompt_len=20000)
    assert int(vllm.command[vllm.command.index("--max-num-batched-tokens") + 1]) < 20000


def test_estimate_says_what_it_assumes_for_unchunked_long_prompts() -> None:
    from kvopt import estimate
    from kvopt.serving.load import Load

    kw = dict(model="Llama-3.1-8B", gpu="H100-SXM", input_len=20000, output_len=100)
    for est in (estimate(**kw, engine="trtllm", batch=1),
                estimate(**kw, engine="trtllm", load=Load(mode="rps", value=0.5))):
        assert any("max_num_tokens >= 20,000" in n for n in est.notes)
    assert not any("max_num_tokens" in n for n in estimate(**kw, engine="vllm", batch=1).notes)


def _plan() -> dict:
    return {
        "schema": "kvopt.plan/1", "kvopt_version": "0.1.0",
        "inputs": {"objective": "cost", "budget_usd_h": 50.0, "power_cap_kw": None,
                   "availability": {}, "allow_mixing": False,
                   "workloads": [{"name": "chat", "model": "Llama-3.1-8B", "rate_rps": 10,
                                  "input_len": "1000", "output_len": "200",
                                  "slo": {"ttft_p99_ms": 500, "tpot_p99_ms": 40,
                                          "e2e_p99_ms": None},
                                  "redundancy": 1, "max_quality_loss_pct": None}],
                   "space": {}},
        "fleet": [{"workload": "chat", "model": "Llama-3.1-8B", "gpu": "H100-SXM",
                   "region": "", "usd_per_gpu_hour": 3.78, "tp": 1, "weights": "fp8",
                   "kv_dtype": "fp8", "engine": "vllm", "max_batch": 128, "replicas": 2,
                   "gpus": 2, "usd_per_hour": 7.56, "usd_per_million_output_tokens": 1.05,
                   "rate_per_replica_rps": 5.0, "goodput_per_replica_rps": 9.0,
                   "predicted": {"ttft_p99_ms": 120.0, "tpot_p99_ms": 20.0},
                   "headroom": {"ttft_p99": 0.76, "tpot_p99": 0.5, "rate": 0.44},
                   "memory_per_gpu_gib": 30.0, "gpu_memory_gib": 80, "quality_loss_pct": 0.4}],
        "totals": {"usd_per_hour": 7.56, "gpus": 2, "power_kw": 1.4},
        "solver": {"solver": "highs", "status": "optimal", "objective": 7.56,
                   "best_bound": 7.56, "gap": 0.0, "build_s": 0.01, "solve_s": 0.02},
        "binding": ["demand: sized by the request rate"],
        "slo_marginal_cost": [{"workload": "chat", "slo": "tpot_p99_ms", "from": 40,
                               "to": 36.0, "usd_per_hour": 11.34,
                               "delta_usd_per_hour": 3.78}],
        "notes": [],
    }


def test_plan_formats_and_round_trip(tmp_path: Path) -> None:
    plan = _plan()
    md = render(plan, "markdown")
    for section in ("## Inputs", "## Fleet", "## Memory per GPU", "## Binding constraints",
                    "## Cost of tighter SLOs", "## Solver"):
        assert section in md
    assert "(76%)" in md and "+3.78 $/h" in md
    rows = list(csv.DictReader(io.StringIO(render(plan, "csv"))))
    assert rows[0]["replicas"] == "2" and rows[0]["tpot_p99_ms"] == "20.0"
    for ext in ("json", "yaml", "md", "csv"):
        save(plan, tmp_path / f"p.{ext}")
        assert (tmp_path / f"p.{ext}").stat().st_size > 0
    assert load_plan(tmp_path / "p.json") == plan
    assert "vllm serve meta-llama/Llama-3.1-8B" in render(plan, "vllm")
    assert "sized with" not in render(plan, "vllm")
    # a launch config for another engine than the plan was sized with says so
    assert "sized with the vllm engine profile; sglang's" in render(plan, "sglang")


def test_bad_plan_files(tmp_path: Path, run_cli) -> None:
    old = _plan() | {"schema": "kvopt.plan/0"}
    f = tmp_path / "old.json"
    f.write_text(json.dumps(old))
    with pytest.raises(InputError, match=r"schema 'kvopt\.plan/0'"):
        load_plan(f)
    g = tmp_path / "bad.json"
    g.write_text("{nope")
    res = run_cli("export", str(g), "--format", "markdown")
    assert res.exit_code == 1 and "not JSON" in res.stderr
    h = tmp_path / "ok.json"
    h.write_text(json.dumps(_plan()))
    res = run_cli("export", str(h), "--format", "sglang")
    assert res.exit_code == 0 and "sglang.launch_server" in res.stdout
    res = run_cli("export", str(h), "--format", "markdown", "--output", str(tmp_path / "p.md"))
    assert res.exit_code == 0 and (tmp_path / "p.md").read_text().startswith("# Fleet plan")
