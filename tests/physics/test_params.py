"""Parameter counts and KV bytes, hand-computed (arithmetic in the test)."""

from __future__ import annotations

import pytest

from kvopt import load_model
from kvopt.physics.memory import kv_bytes_per_token
from kvopt.physics.params import param_counts


def rel(a: float, b: float) -> float:
    return abs(a - b) / b


def test_llama31_8b_params_and_kv() -> None:
    m = load_model("llama-3.1-8b")
    h, n_layers, inter, vocab, kv_heads, d = 4096, 32, 14336, 128256, 8, 128
    attn = h * h + 2 * h * kv_heads * d + h * h  # q, k, v, o
    mlp = 3 * h * inter
    norms = (2 * n_layers + 1) * h
    expected = 2 * vocab * h + n_layers * (attn + mlp) + norms  # untied embedding + lm_head
    pc = param_counts(m)
    assert pc.total == expected
    assert rel(pc.total, 8.03e9) < 0.005
    # KV = 2 (K and V) x 32 layers x 8 KV heads x 128 head_dim x bytes
    assert kv_bytes_per_token(m, 2.0) == 2 * 32 * 8 * 128 * 2 == 131_072
    assert kv_bytes_per_token(m, 1.0) == 65_536


def test_llama31_70b() -> None:
    m = load_model("meta-llama/Llama-3.1-70B")
    assert rel(param_counts(m).total, 70.6e9) < 0.005
    assert kv_bytes_per_token(m, 2.0) == 2 * 80 * 8 * 128 * 2 == 327_680


def test_mixtral_total_and_active() -> None:
    pc = param_counts(load_model("Mixtral-8x7B"))
    # 8 experts of 3 x 4096 x 14336 per layer, 2 active per token
    assert pc.expert_each == 3 * 4096 * 14336
    assert rel(pc.total, 46.7e9) < 0.01
    assert rel(pc.active, 12.9e9) < 0.01


def test_deepseek_v3_mla_moe() -> None:
    m = load_model("deepseek-ai/DeepSeek-V3")
    pc = param_counts(m)
    assert rel(pc.total, 671e9) < 0.02
    assert rel(pc.active, 37e9) < 0.02
    assert m.attention_kind == "mla"
    assert pc.moe_layer_count == 61 - 3  # first_k_dense_replace = 3 dense layers
    # MLA latent: layers x (kv_lora_rank + qk_rope_head_dim) x 2 bytes
    assert kv_bytes_per_token(m, 2.0) == 61 * (512 + 64) * 2 == 70_272


def test_qwen3_30b_a3b_head_dim_and_kv() -> None:
    m = load_model("Qwen3-30B-A3B")
    assert m.head_dim == 128  # explicit head_dim, not 2048 / 32 = 64
    assert kv_bytes_per_token(m, 2.0) == 2 * 48 * 4 * 128 * 2 == 98_304


def test_llama32_1b_counts_tied_embedding_once() -> None:
    m = load_model("Llama-3.2-1B")
    assert m.tie_embeddings
    pc = param_counts(m)
    assert pc.lm_head == 0
    h, vocab, n_layers, inter, kv = 2048, 128256, 16, 8192, 8
    d = 64
    layer = (h * 32 * d + 2 * h * kv * d + 32 * d * h) + 3 * h * inter + 2 * h
    assert pc.total == vocab * h + n_layers * layer + h
    assert rel(pc.total, 1.24e9) < 0.005


def test_gemma2_alternating_windows() -> None:
    m = load_model("gemma-2-9b")
    assert m.sliding_windows[0] == 4096 and m.sliding_windows[1] is None
    assert sum(w is not None for w in m.sliding_windows) == m.num_layers // 2


@pytest.mark.parametrize("name", ["Llama-2-7B", "Qwen2.5-72B", "Qwen3-235B-A22B", "GPT-J-6B",
                                  "Phi-3-mini", "Gemma-2-27B", "Mistral-7B", "Mixtral-8x22B"])
def test_catalog_counts_match_published(name: str) -> None:
    m = load_model(name)
    assert m.params_published is not None
    assert rel(param_counts(m).total, m.params_published) < 0.01
