"""The 2025 architectures: parameter counts against the published figures, and KV cache and
fixed state per token / per sequence by hand (the arithmetic in each test)."""

from __future__ import annotations

import pytest

from kvopt import load_model
from kvopt.physics.memory import (
    kv_bytes_for_context,
    kv_bytes_per_token,
    linear_state_bytes,
    weight_bytes_per_gpu,
)
from kvopt.physics.params import param_counts
from kvopt.serving.replica import build_replica
from kvopt.units import GIB


def rel(a: float, b: float) -> float:
    return abs(a - b) / b


# (model, published total; tolerance, why it is wider than 1% where it is)
PUBLISHED = [
    ("openai/gpt-oss-120b", 116.83e9, 0.001),
    ("openai/gpt-oss-20b", 20.91e9, 0.001),
    ("Qwen/Qwen3-Next-80B-A3B-Instruct", 80e9, 0.01),
    ("Qwen/Qwen3.5-397B-A17B", 397e9, 0.01),
    ("Qwen/Qwen3.5-35B-A3B", 35e9, 0.01),
    ("Qwen/Qwen3.5-27B", 27e9, 0.02),  # the name rounds 27.4B down
    ("zai-org/GLM-4.5", 355e9, 0.01),
    ("zai-org/GLM-4.5-Air", 106e9, 0.01),
    ("zai-org/GLM-5", 744e9, 0.01),
    ("MiniMaxAI/MiniMax-M2", 230e9, 0.01),
    ("meta-llama/Llama-4-Maverick-17B-128E-Instruct", 400e9, 0.01),
    ("google/gemma-3-27b-it", 27.4e9, 0.01),
    ("google/gemma-3-12b-it", 12.2e9, 0.01),
    ("microsoft/phi-4", 14.7e9, 0.01),
    ("mistralai/Mistral-Small-24B-Instruct-2501", 23.6e9, 0.01),
    ("Qwen/Qwen2.5-VL-7B-Instruct", 8.29e9, 0.005),
    ("Qwen/Qwen2.5-VL-72B-Instruct", 73.4e9, 0.005),
    ("Qwen/Qwen3-VL-8B-Instruct", 8.77e9, 0.005),
    ("meta-llama/Llama-3.2-11B-Vision-Instruct", 10.6e9, 0.01),
    ("llava-hf/llava-1.5-7b-hf", 7.06e9, 0.005),
]


@pytest.mark.parametrize(("name", "published", "tol"), PUBLISHED)
def test_total_parameters_match_the_published_count(name: str, published: float,
                                                     tol: float) -> None:
    m = load_model(name)
    assert m.params_published == published
    assert rel(param_counts(m).total, published) < tol


def test_published_counts_that_include_what_kvopt_leaves_out() -> None:
    # DeepSeek-V3.2: the Hub's 685B include the 14B MTP module kvopt leaves out
    assert rel(param_counts(load_model("DeepSeek-V3.2-Exp")).total + 14e9, 685e9) < 0.01
    # Llama-4-Scout: Meta's 109B include the vision encoder this text-only card leaves out
    # (~0.9B: Maverick's 400B, the same encoder on a 400B text model, matches within 0.2%)
    assert 0.0 < 109e9 - param_counts(load_model("Llama-4-Scout")).total < 1.5e9
    # Kimi-K2 and K2.5: the model cards round to 1T
    for name in ("Kimi-K2", "Kimi-K2.5"):
        assert rel(param_counts(load_model(name)).total, 1e12) < 0.03


def test_gpt_oss_120b_counts_and_mxfp4_weights_by_hand() -> None:
    m = load_model("openai/gpt-oss-120b")
    h, inter, layers, experts, vocab = 2880, 2880, 36, 128, 201088
    expert = 3 * h * inter + 2 * inter + h  # gate/up/down + their biases
    attn = (h * 64 * 64 + 2 * h * 8 * 64 + 64 * 64 * h  # q, k, v, o (64 heads of 64)
            + 64 * 64 + 2 * 8 * 64 + h  # q/k/v biases, o bias
            + 64)  # one sink per head
    router = h * experts + experts
    sixteen = layers * (attn + router) + 2 * vocab * h + (2 * layers + 1) * h
    pc = param_counts(m)
    assert pc.expert_each == expert
    assert pc.total == layers * experts * expert + sixteen == 116_829_156_672
    # MXFP4 experts (4 bits + one 8-bit scale per 32 = 4.25 bits), the rest bf16
    rep = build_replica(model=m, gpu="H100-SXM", tp=1)
    assert rep.precision.weights == "mxfp4" and rep.precision.mode == "weight_only"
    expected = layers * experts * expert * 4.25 / 8 + sixteen * 2
    assert rep.weights_bytes == pytest.approx(expected, rel=1e-12)
    assert rep.weights_bytes / GIB == pytest.approx(60.71, abs=0.01)
    assert rep.fits  # one 80 GB H100, as vLLM serves it
    assert not build_replica(model=m, gpu="H100-SXM", tp=1, weights="bf16").fits


def test_gpt_oss_kv_sliding_layers_hold_at_most_their_window() -> None:
    m = load_model("openai/gpt-oss-120b")
    assert m.kinds.count("sliding") == m.kinds.count("full") == 18
    assert m.sliding_windows[0] == 128 and m.sliding_windows[1] is None
    # 36 layers x 2 (K, V) x 8 KV heads x 64 x 2 B (below the window every layer holds it)
    assert kv_bytes_per_token(m, 2.0) == 36 * 2 * 8 * 64 * 2 == 73_728
    # 8192 tokens in blocks of 16: full layers 512 blocks, sliding ones ceil(128/16)+1 = 9
    per_layer_token = 2 * 8 * 64 * 2
    expected = (18 * 512 * 16 + 18 * 9 * 16) * per_layer_token
    assert kv_bytes_for_context(m, 8192, tp=1, kv_bytes=2.0, block_size=16) == expected


def test_qwen3_next_kv_on_full_layers_and_fixed_linear_state() -> None:
    m = load_model("Qwen/Qwen3-Next-80B-A3B-Instruct")
    assert m.kinds.count("linear") == 36 and m.kinds.count("full") == 12
    # KV only in the 12 gated-attention layers: 12 x 2 x 2 KV heads x 256 x 2 B
    assert kv_bytes_per_token(m, 2.0) == 12 * 2 * 2 * 256 * 2 == 24_576
    # per linear layer: conv state (2 x 16 x 128 + 32 x 128) x (4 - 1) x 2 B and the
    # recurrent state 32 x 128 x 128 x 2 B (bf16: no mamba_ssm_dtype in the config)
    conv = (2 * 16 * 128 + 32 * 128) * 3 * 2
    recurrent = 32 * 128 * 128 * 2
    assert linear_state_bytes(m) == 36 * (conv + recurrent) == 39_518_208
    assert linear_state_bytes(m, tp=4) == 36 * (conv + recurrent) / 4  # heads split
    rep = build_replica(model=m, gpu="H100-SXM", tp=4)
    assert rep.seq_state_bytes == linear_state_bytes(m, tp=4)
    assert rep.seq_bytes(1000) == pytest.approx(
        kv_bytes_for_context(m, 1000, tp=4, kv_bytes=2.0, block_size=16)
        + 36 * (conv + recurrent) / 4)


def test_qwen35_state_in_fp32_as_the_config_says() -> None:
    m = load_model("Qwen/Qwen3.5-397B-A17B")
    assert m.linear is not None and m.linear.state_value_bytes == 4.0  # mamba_ssm_dtype float32
    conv = (2 * 16 * 128 + 64 * 128) * 3 * 2
    recurrent = 64 * 128 * 128 * 4
    assert linear_state_bytes(m) == 45 * (conv + recurrent) == 192_061_440
    assert kv_bytes_per_token(m, 2.0) == 15 * 2 * 2 * 256 * 2 == 30_720


def test_deepseek_v32_latent_plus_indexer_key() -> None:
    m = load_model("deepseek-ai/DeepSeek-V3.2-Exp")
    assert m.indexer is not None and m.indexer.topk == 2048
    assert m.default_weights == "fp8"  # block-FP8 checkpoint (quantization_config)
    # per layer: latent (512 + 64) x KV bytes + the indexer's FP8 key 128 B + fp32 scale 4 B
    assert kv_bytes_per_token(m, 2.0) == 61 * ((512 + 64) * 2 + 128 + 4) == 78_324
    assert kv_bytes_per_token(m, 1.0) == 61 * (576 + 132) == 43_188


def test_sparse_attention_reads_top_k_keys_and_indexes_them_all() -> None:
    from kvopt.physics.mixers import mixer_groups

    m = load_model("DeepSeek-V3.2-Exp")
    [g] = mixer_groups(m, tp=8, kv_bytes=1.0, act_bytes=2.0)
    assert g.window == 2048 and g.index_bytes_per_key == 132
    # one decode query at 10000 cached tokens: attention over 2048 latent keys, the
    # indexer over all 10001 (64 heads x 128 x 2 FLOPs each)
    f, b = g.decode_work(keys=2048.0, held=10001.0, seqs=1.0, pad_tokens=0.0)
    heads = 128 / 8
    assert float(f) == heads * 2 * (2 * 512 + 64) * 2048 + 64 * 128 * 2 * 10001
    assert float(b) == (2048 * 576 + (576 + heads * (2 * 512 + 64) * 2)
                        + 132 * (10001 + 1))


def test_llama4_chunked_layers_and_interleaved_moe() -> None:
    scout, maverick = load_model("Llama-4-Scout"), load_model("Llama-4-Maverick")
    # a NoPE full-attention layer every 4th; the RoPE ones attend within chunks of 8192
    assert scout.kinds[:4] == ("chunked", "chunked", "chunked", "full")
    assert scout.sliding_windows[0] == 8192 and scout.kinds.count("chunked") == 36
    assert scout.moe is not None and all(scout.moe.moe_layers)  # interleave step 1
    assert maverick.moe is not None and maverick.moe.moe_layers[:4] == (False, True, False,
                                                                           True)
    assert maverick.intermediate_size == 16384  # dense layers: intermediate_size_mlp
    assert scout.moe.shared_intermediate_size == 8192  # one shared expert
    # KV: 48 x 2 x 8 x 128 x 2 B; chunked layers hold at most 8192 + one block
    assert kv_bytes_per_token(scout, 2.0) == 196_608
    per_layer_token = 2 * 8 * 128 * 2
    assert kv_bytes_for_context(scout, 20_000, tp=1, kv_bytes=2.0, block_size=16) == (
        12 * 1250 * 16 + 36 * (512 + 1) * 16) * per_layer_token


def test_gemma3_five_local_per_global() -> None:
    m = load_model("google/gemma-3-27b-it")
    assert m.kinds[:6] == ("sliding",) * 5 + ("full",)
    assert m.sliding_windows[0] == 1024 and m.vocab_size == 262_208 and m.tie_embeddings
    assert kv_bytes_per_token(m, 2.0) == 62 * 2 * 16 * 128 * 2 == 507_904
    # 8192 tokens: 10 global layers 512 blocks, 52 local ones 1024/16 + 1 = 65 blocks
    assert kv_bytes_for_context(m, 8192, tp=1, kv_bytes=2.0, block_size=16) == (
        10 * 512 * 16 + 52 * 65 * 16) * 2 * 16 * 128 * 2


@pytest.mark.parametrize(("name", "layers", "per_layer_token"), [
    ("Kimi-K2", 61, (512 + 64) * 2),  # MLA latent
    ("GLM-4.5", 92, 2 * 8 * 128 * 2),
    ("MiniMax-M2", 62, 2 * 8 * 128 * 2),
    ("Phi-4", 40, 2 * 10 * 128 * 2),
    ("Mistral-Small-3-24B", 40, 2 * 8 * 128 * 2),
    ("Llama-3.2-11B-Vision", 32, 2 * 8 * 128 * 2),  # 8 of 40 layers are cross-attention
])
def test_kv_per_token_by_hand(name: str, layers: int, per_layer_token: int) -> None:
    assert kv_bytes_per_token(load_model(name), 2.0) == layers * per_layer_token


def test_kimi_k25_int4_experts_and_16_bit_rest_by_hand() -> None:
    m = load_model("moonshotai/Kimi-K2.5")
    assert m.vision is None  # MoonViT is not modeled: a text-only card
    pc = param_counts(m)
    experts = 60 * 384 * 3 * 7168 * 2048  # 60 MoE layers (first_k_dense_replace = 1)
    assert pc.experts == experts
    rep = build_replica(model=m, gpu="H200", tp=1)
    assert rep.precision.weights == "int4" and rep.precision.quantized_bits_per_weight == 4.5
    # INT4 groups of 32 with a bf16 scale: 4 + 16 / 32 = 4.5 bits; attention, shared experts,
    # dense MLP, embedding, LM head, norms and routers stay bf16 (the checkpoint's ignore list)
    assert rep.weights_bytes == pytest.approx(experts * 4.5 / 8 + (pc.total - experts) * 2)
    assert rep.weights_bytes / 1e9 == pytest.approx(594.2, abs=0.1)  # the Hub's ~595 GB


def test_checkpoint_formats_set_the_default_weights() -> None:
    assert load_model("gpt-oss-20b").default_weights == "mxfp4"
    assert load_model("gpt-oss-20b").checkpoint.keep_16bit == ("attention",)  # type: ignore[union-attr]
    assert load_model("Kimi-K2.5").default_weights == "int4"
    for name in ("Kimi-K2", "MiniMax-M2", "DeepSeek-V3.2-Exp"):
        assert load_model(name).default_weights == "fp8"
    for name in ("GLM-4.5", "Qwen3-Next-80B-A3B", "Llama-3.1-8B", "DeepSeek-V3"):
        assert load_model(name).default_weights == "bf16"


def test_vision_weights_are_loaded_in_16_bit() -> None:
    m = load_model("Qwen/Qwen2.5-VL-7B-Instruct")
    pc = param_counts(m)
    assert pc.vision > 0.6e9 and pc.active == pc.total - pc.vision
    rep = build_replica(model=m, gpu="H100-SXM", tp=2, weights="fp8")
    text = weight_bytes_per_gpu(m, 2, rep.precision) - pc.vision / 2 * 2
    assert rep.weights_bytes == pytest.approx(text + pc.vision / 2 * 2)
    assert rep.weights_bytes > (pc.total - pc.vision) / 2 * 1.0  # fp8 text + bf16 vision


def test_linear_heads_must_divide_over_tp() -> None:
    from kvopt.errors import InputError

    # 32 attention heads split 32 ways, but 16 linear key heads do not
    with pytest.raises(InputError, match="linear-attention"):
        build_replica(model="Qwen3.5-397B-A17B", gpu="GB200", tp=32)


def test_show_model_layout_rows() -> None:
    from kvopt.catalog.layout import layer_layout

    rows = layer_layout(load_model("gpt-oss-120b"))
    assert [(r["layers"], r["count"]) for r in rows] == [("0-34 step 2", 18),
                                                        ("1-35 step 2", 18)]
    assert "sliding window 128" in rows[0]["attention"] and "sinks" in rows[0]["attention"]
    rows = layer_layout(load_model("Qwen3-Next-80B-A3B"))
    assert rows[0]["layers"] == "0-46 with i % 4 in 0,1,2" and "linear" in rows[0]["attention"]
    rows = layer_layout(load_model("DeepSeek-V3.2-Exp"))
    assert [r["layers"] for r in rows] == ["0-2", "3-60"] and "top-2048" in rows[0]["attention"]
