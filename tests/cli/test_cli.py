"""CLI contract: JSON shape, exit codes, one-line errors."""

from __future__ import annotations

import json

ESTIMATE = ["estimate", "--model", "Llama-3.1-8B", "--gpu", "H100-SXM", "--input-len", "1024",
            "--output-len", "256", "--batch", "8"]


def test_estimate_json_shape(run_cli) -> None:
    res = run_cli(*ESTIMATE, "--json")
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    for key in ("model", "gpu", "tp", "weights", "kv_dtype", "engine"):
        assert key in d
    assert d["model"] == "Llama-3.1-8B" and d["gpu"] == "H100-SXM" and d["tp"] == 1
    assert set(d["memory"]) >= {"weights_gib", "kv_cache_gib", "activations_gib",
                                "overhead_gib", "total_gib", "gpu_gib", "fits",
                                "kv_bytes_per_token", "kv_capacity_tokens",
                                "max_concurrent_seqs"}
    assert set(d["latency"]) >= {"prefill_ms", "ttft_ms", "decode_step_ms", "tpot_ms", "e2e_ms"}
    assert set(d["throughput"]) >= {"output_tok_s", "total_tok_s", "requests_s"}
    assert set(d["utilization"]) >= {"mfu", "mbu", "arithmetic_intensity", "bottleneck"}
    assert set(d["cost"]) >= {"usd_per_hour", "usd_per_million_output_tokens"}
    assert d["memory"]["fits"] is True
    assert d["memory"]["kv_bytes_per_token"] == 131072
    assert d["latency"]["e2e_ms"] > d["latency"]["ttft_ms"] > 0


def test_estimate_human_output(run_cli) -> None:
    res = run_cli(*ESTIMATE)
    assert res.exit_code == 0
    assert "Memory per GPU" in res.stdout and "TPOT ms" in res.stdout


def test_does_not_fit_is_a_result_not_a_crash(run_cli) -> None:
    res = run_cli("estimate", "--model", "Llama-3.1-70B", "--gpu", "RTX-4090", "--input-len",
                  "512", "--output-len", "128", "--batch", "1", "--json")
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert d["memory"]["fits"] is False
    assert "weights" in d["memory"]["reason"]


def test_unknown_gpu_exit_1_one_line_with_suggestions(run_cli) -> None:
    res = run_cli("estimate", "--model", "Llama-3.1-8B", "--gpu", "H100-SMX", "--input-len",
                  "10", "--output-len", "10", "--batch", "1")
    assert res.exit_code == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "unknown gpu 'H100-SMX'" in lines[0] and "H100-SXM" in lines[0]


def test_unknown_model_exit_1(run_cli) -> None:
    res = run_cli("show", "model", "lama-3.1-8b")
    assert res.exit_code == 1
    assert "Llama-3.1-8B" in res.stderr


def test_zero_or_negative_lengths_are_usage_errors(run_cli) -> None:
    for flag, value in (("--input-len", "0"), ("--output-len", "-5"), ("--batch", "0")):
        args = [*ESTIMATE]
        args[args.index(flag) + 1] = value
        res = run_cli(*args)
        assert res.exit_code == 2, (flag, res.output)
        assert flag in res.stderr


def test_tp_divisibility_is_an_input_error(run_cli) -> None:
    res = run_cli(*ESTIMATE, "--tp", "3")
    assert res.exit_code == 1
    assert "num_attention_heads % tp == 0" in res.stderr
    assert "tp=3" in res.stderr


def test_unsupported_precision_is_an_error(run_cli) -> None:
    res = run_cli("estimate", "--model", "Llama-3.1-8B", "--gpu", "H100-SXM", "--input-len",
                  "10", "--output-len", "10", "--batch", "1", "--weights", "fp4")
    assert res.exit_code == 1
    assert "fp4 weights are not supported on H100-SXM" in res.stderr


def test_list_and_show(run_cli) -> None:
    res = run_cli("list-gpus", "--json")
    assert res.exit_code == 0
    rows = json.loads(res.stdout)
    assert len(rows) >= 35
    laptops = json.loads(run_cli("list-gpus", "--filter", "laptop", "--json").stdout)
    assert laptops and all(r["form_factor"] == "laptop" for r in laptops)
    amd = json.loads(run_cli("list-gpus", "--filter", "amd", "--json").stdout)
    assert amd and all(r["vendor"] == "amd" for r in amd)
    assert run_cli("list-gpus").exit_code == 0
    models = json.loads(run_cli("list-models", "--json").stdout)
    assert len(models) >= 25
    gpu = json.loads(run_cli("show", "gpu", "h100", "--json").stdout)
    assert gpu["id"] == "H100-SXM" and gpu["sources"]["memory_gib"]
    model = json.loads(run_cli("show", "model", "deepseek-v3", "--json").stdout)
    assert model["attention"] == "mla" and model["kv_bytes_per_token_bf16"] == 70272
    assert run_cli("show", "model", "Qwen3-8B").exit_code == 0
    engines = json.loads(run_cli("list-engines", "--json").stdout)
    assert {e["name"] for e in engines} >= {"vllm", "sglang", "trtllm", "trtllm-triton",
                                            "llamacpp"}
    assert run_cli("list-engines").exit_code == 0
    tri = json.loads(run_cli("show", "engine", "trtllm-triton", "--json").stdout)
    assert tri["cuda_graphs"] is False and tri["request_overhead_ms"] == 3.1
    assert tri["custom_allreduce"][1] == {"tp_max": 4, "max_bytes": 1e6, "max_tokens": None}
    assert "tensorrtllm_backend" in tri["sources"]["memory_fraction"]
    # large-GPU overrides apply with --gpu
    big = json.loads(run_cli("show", "engine", "vllm", "--gpu", "H100", "--json").stdout)
    small = json.loads(run_cli("show", "engine", "vllm", "--json").stdout)
    assert big["max_num_seqs"] > small["max_num_seqs"]
    assert run_cli("show", "engine", "trtllm").exit_code == 0
    bad = run_cli("show", "engine", "trtlm")
    assert bad.exit_code == 1 and "did you mean: trtllm" in bad.stderr
    assert "kvopt list-engines" in bad.stderr


def test_malformed_config_via_cli(run_cli, tmp_path) -> None:
    bad = tmp_path / "config.json"
    bad.write_text('{"model_type": "llama"}')
    res = run_cli("estimate", "--model", str(bad), "--gpu", "H100-SXM", "--input-len", "10",
                  "--output-len", "10", "--batch", "1")
    assert res.exit_code == 1
    assert str(bad) in res.stderr and "hidden_size" in res.stderr


def test_ctrl_c_exits_130_without_a_traceback(run_cli, monkeypatch) -> None:
    """A ctrl-C in any command says "interrupted" and exits 130 (click alone prints
    "Aborted!" and exits 1, which a script cannot tell from an error)."""
    import importlib

    def interrupted(**_: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(importlib.import_module("kvopt.api"), "estimate", interrupted)
    res = run_cli("estimate", "--model", "Llama-3.1-8B", "--gpu", "H100-SXM", "--input-len",
                  "10", "--output-len", "10", "--batch", "1")
    assert res.exit_code == 130 and "kvopt: interrupted" in res.output
