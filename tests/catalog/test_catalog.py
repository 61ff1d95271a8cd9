"""Every catalog file loads, every number has a source, names resolve."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from kvopt import CatalogError, list_gpus, list_models, load_gpu, load_model, load_model_file
from kvopt.catalog.engines import engine_names, load_engine
from kvopt.catalog.gpus import DTYPES
from kvopt.catalog.paths import models_dir
from kvopt.catalog.prices import all_prices
from tests.paths import DATA

REQUIRED_MODELS = [
    "Llama-2-7B", "Llama-2-13B", "Llama-2-70B", "Llama-3.1-8B", "Llama-3.1-70B",
    "Llama-3.1-405B", "Llama-3.2-1B", "Llama-3.2-3B", "Mistral-7B", "Mixtral-8x7B",
    "Mixtral-8x22B", "Qwen2.5-7B", "Qwen2.5-14B", "Qwen2.5-32B", "Qwen2.5-72B", "Qwen3-8B",
    "Qwen3-32B", "Qwen3-30B-A3B", "Qwen3-235B-A22B", "DeepSeek-V3", "DeepSeek-V2-Lite",
    "Gemma-2-9B", "Gemma-2-27B", "Phi-3-mini", "GPT-J-6B",
    # 2025 architectures and vision-language models
    "gpt-oss-120b", "gpt-oss-20b", "Qwen3-Next-80B-A3B", "Qwen3.5-397B-A17B",
    "DeepSeek-V3.2-Exp", "Kimi-K2", "Kimi-K2.5", "GLM-4.5", "GLM-4.5-Air", "MiniMax-M2",
    "Llama-4-Scout", "Llama-4-Maverick", "Gemma-3-27B", "Gemma-3-12B", "Phi-4",
    "Mistral-Small-3-24B", "Qwen2.5-VL-7B", "Qwen2.5-VL-72B", "Qwen3-VL-8B",
    "Llama-3.2-11B-Vision", "LLaVA-1.5-7B",
]
REQUIRED_GPUS = [
    "H100-SXM", "H100-PCIe", "H100-NVL", "H200", "B200", "GB200", "A100-SXM-80GB",
    "A100-SXM-40GB", "A100-PCIe-80GB", "L40S", "L4", "A10G", "V100-SXM-32GB", "RTX-5090",
    "RTX-4090", "RTX-4080", "RTX-3090", "RTX-5090-Laptop", "RTX-4090-Laptop", "MI300X",
    "MI325X", "MI250X", "MI210", "B300", "GB300", "RTX-PRO-6000-Server",
]


def test_model_catalog_size_and_required() -> None:
    names = {m.name for m in list_models()}
    assert len(names) >= 25
    for name in REQUIRED_MODELS:
        assert load_model(name).name == name


@pytest.mark.parametrize("spelling,expected", [
    ("llama-3.1-8b", "Llama-3.1-8B"),
    ("meta-llama/Llama-3.1-8B", "Llama-3.1-8B"),
    ("Llama-3.1-8B-Instruct", "Llama-3.1-8B"),
    ("META-LLAMA/LLAMA-3.1-8B-INSTRUCT", "Llama-3.1-8B"),
    ("mistralai/Mixtral-8x7B-v0.1", "Mixtral-8x7B"),
    # --model takes each by its Hugging Face id
    ("openai/gpt-oss-120b", "gpt-oss-120b"), ("openai/gpt-oss-20b", "gpt-oss-20b"),
    ("Qwen/Qwen3-Next-80B-A3B-Instruct", "Qwen3-Next-80B-A3B"),
    ("deepseek-ai/DeepSeek-V3.2-Exp", "DeepSeek-V3.2-Exp"),
    ("moonshotai/Kimi-K2-Instruct", "Kimi-K2"), ("zai-org/GLM-4.5", "GLM-4.5"),
    ("MiniMaxAI/MiniMax-M2", "MiniMax-M2"),
    ("meta-llama/Llama-4-Scout-17B-16E-Instruct", "Llama-4-Scout"),
    ("google/gemma-3-27b-it", "Gemma-3-27B"), ("Qwen/Qwen2.5-VL-7B-Instruct", "Qwen2.5-VL-7B"),
    ("llava-hf/llava-1.5-7b-hf", "LLaVA-1.5-7B"), ("microsoft/phi-4", "Phi-4"),
    ("mistralai/Mistral-Small-24B-Instruct-2501", "Mistral-Small-3-24B"),
])
def test_model_aliases(spelling: str, expected: str) -> None:
    assert load_model(spelling).name == expected


def test_every_model_card_has_sources() -> None:
    for path in sorted((models_dir() / "llm").glob("*.json")):
        meta = json.loads(path.read_text())["kvopt"]
        assert meta["source"].startswith("https://"), path
        assert meta["params_published"] > 0, path
        assert meta.get("params_source"), path


def test_gpu_catalog_size_and_required() -> None:
    gpus = list_gpus()
    assert len(gpus) >= 35
    for gid in REQUIRED_GPUS:
        assert load_gpu(gid).id == gid
    assert {g.form_factor for g in gpus} == {"datacenter", "desktop", "laptop"}
    assert {g.vendor for g in gpus} == {"nvidia", "amd"}


@pytest.mark.parametrize("spelling,expected", [
    ("h100", "H100-SXM"), ("H100-SXM5", "H100-SXM"), ("rtx 4090", "RTX-4090"),
    ("mi300x", "MI300X"), ("a100-sxm-80gb", "A100-SXM-80GB"),
])
def test_gpu_aliases(spelling: str, expected: str) -> None:
    assert load_gpu(spelling).id == expected


def _numbers(node: object, path: str = ""):
    """Yield (path, node) for every {value, source} leaf of a YAML tree."""
    if isinstance(node, dict):
        if "value" in node:
            yield path, node
            return
        for k, v in node.items():
            yield from _numbers(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _numbers(v, f"{path}[{i}]")


def test_every_gpu_number_has_a_source() -> None:
    for path in sorted((models_dir() / "gpu").glob("*.yaml")):
        data = yaml.safe_load(path.read_text())
        leaves = list(_numbers(data))
        assert leaves, path
        for where, node in leaves:
            assert isinstance(node.get("source"), str) and node["source"].strip(), (path, where)
        if path.name != "laptop_profiles.yaml":
            # every number-like top-level field is sourced (no bare numbers)
            for key in ("memory_gib", "memory_bandwidth_gb_s", "tdp_w"):
                assert isinstance(data[key], dict), (path, key)


def test_every_data_number_has_a_source() -> None:
    for name in ("precision.yaml", "interconnect.yaml", *(f"engines/{e}.yaml"
                                                          for e in engine_names())):
        data = yaml.safe_load((models_dir() / name).read_text())
        leaves = list(_numbers(data))
        assert leaves, name
        for where, node in leaves:
            assert isinstance(node.get("source"), str) and node["source"].strip(), (name, where)


def test_fp8_not_slower_than_bf16_where_both_exist() -> None:
    for g in list_gpus():
        bf16, fp8 = g.tensor_tflops.get("bf16"), g.tensor_tflops.get("fp8")
        if bf16 is not None and fp8 is not None:
            assert fp8 >= bf16, g.id
        fp4 = g.tensor_tflops.get("fp4")
        if fp4 is not None and fp8 is not None:
            assert fp4 >= fp8, g.id


def test_fp8_hardware_matches_architecture() -> None:
    for g in list_gpus():
        if g.architecture in ("volta", "turing", "ampere", "cdna2"):
            assert g.tensor_tflops["fp8"] is None, g.id
        if g.architecture in ("hopper", "ada", "blackwell", "cdna3"):
            assert g.tensor_tflops["fp8"] is not None, g.id
        if g.architecture not in ("blackwell", "cdna4"):
            assert g.tensor_tflops["fp4"] is None, g.id
        assert set(g.tensor_tflops) == set(DTYPES)


def test_laptop_parts_have_profiles() -> None:
    laptops = list_gpus("laptop")
    assert len(laptops) >= 4
    for g in laptops:
        assert g.laptop is not None
        assert 0 < g.laptop.compute_sustained_factor <= 1
        assert g.peak_flop_s("fp16") <= g.tensor_tflops["fp16"] * 1e12  # type: ignore[operator]


def test_prices_are_dated_and_reference_catalog_gpus() -> None:
    data = yaml.safe_load((models_dir() / "prices.yaml").read_text())
    assert data["date"]
    ids = {g.id for g in list_gpus()}
    for provider, node in data["providers"].items():
        assert node["source"], provider
        for gid in node["prices_usd_h"]:
            assert gid in ids, (provider, gid)
    assert all_prices()["H100-SXM"].usd_per_gpu_hour > 0


def test_engine_profiles_load() -> None:
    assert {"vllm", "sglang", "trtllm", "llamacpp"} <= set(engine_names())
    h100 = load_gpu("H100-SXM")
    a100 = load_gpu("A100-SXM-80GB")
    # vLLM's larger defaults apply to >= 70 GiB GPUs other than A100
    assert load_engine("vllm", h100).max_num_batched_tokens > load_engine(
        "vllm", a100).max_num_batched_tokens


def test_unknown_names_suggest_close_matches() -> None:
    with pytest.raises(CatalogError, match=r"did you mean.*H100-SXM"):
        load_gpu("H100-SMX")
    with pytest.raises(CatalogError, match=r"did you mean.*Llama-3\.1-8B"):
        load_model("llama-3.1-8")


def test_hf_config_file_and_directory(tmp_path: Path) -> None:
    src = json.loads((models_dir() / "llm" / "meta-llama--Llama-3.1-8B.json").read_text())
    src.pop("kvopt")
    d = tmp_path / "my-model"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(src))
    by_dir = load_model(str(d))
    by_file = load_model_file(d / "config.json")
    assert by_dir.name == by_file.name == "my-model"
    assert by_dir.num_kv_heads == 8


def test_malformed_config_names_file_and_fields(tmp_path: Path) -> None:
    bad = tmp_path / "config.json"
    bad.write_text(json.dumps({"model_type": "llama", "hidden_size": 4096,
                               "num_attention_heads": "32"}))
    with pytest.raises(CatalogError) as info:
        load_model(str(bad))
    msg = str(info.value)
    assert str(bad) in msg
    for field in ("num_hidden_layers", "intermediate_size", "vocab_size",
                  "max_position_embeddings", "num_attention_heads"):
        assert field in msg
    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps({"model_type": "mamba"}))
    with pytest.raises(CatalogError, match=r"model_type='mamba' is not modeled.*llama"):
        load_model(str(unknown))
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(CatalogError, match=r"broken\.json: not valid JSON at line 1"):
        load_model(str(broken))


def test_gpu_card_from_a_user_file(tmp_path, run_cli) -> None:
    from kvopt.catalog.gpus import load_gpu

    card = DATA / "ci_cpu_card.yaml"
    g = load_gpu(str(card))
    assert g.id == "CI-CPU-2VCPU" and g.memory_bandwidth_gb_s == 30
    assert load_gpu("CI-CPU-2VCPU") is g  # known by its id once loaded
    res = run_cli("estimate", "--model", "Llama-3.2-1B", "--gpu", str(card), "--input-len",
                  "64", "--output-len", "16", "--batch", "1", "--json")
    assert res.exit_code == 0 and json.loads(res.stdout)["gpu"] == "CI-CPU-2VCPU"
    # a card re-using a catalog id, a missing file, a card without sources: clear errors
    clash = tmp_path / "h100.yaml"
    clash.write_text(card.read_text().replace("id: CI-CPU-2VCPU", "id: H100-SXM"))
    with pytest.raises(CatalogError, match="is a catalog GPU"):
        load_gpu(str(clash))
    with pytest.raises(CatalogError, match="not found"):
        load_gpu(str(tmp_path / "nope.yaml"))
    bare = tmp_path / "bare.yaml"
    bare.write_text(card.read_text().replace("id: CI-CPU-2VCPU", "id: BARE").replace(
        "  value: 30\n", "  value: 30\n  source: ''\n", 1).replace(
        '  source: "test fixture: nominal share', '  note: "test fixture: nominal share', 1))
    with pytest.raises(CatalogError, match="memory_bandwidth_gb_s' must be a mapping with "
                       "'value' and a non-empty 'source'"):
        load_gpu(str(bare))
