"""Memory per GPU: weights (with quantization overhead), KV cache, activations, paged blocks.

All sizes in bytes; callers convert to GiB at the edges.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from kvopt.catalog.model_spec import ModelSpec
from kvopt.physics.params import attention_params_per_layer, param_counts
from kvopt.physics.precision import Precision
from kvopt.physics.tp import kv_heads_per_gpu

ArrayLike = float | npt.NDArray[np.float64]
FP32_BYTES = 4.0
HALF_BYTES = 2.0


@dataclass(frozen=True, kw_only=True)
class WeightSplit:
    """Parameter counts per GPU under TP, split by storage format."""

    quantized: float  # linear-layer weights stored in the chosen format
    unquantized: float  # embedding, LM head, norms, routers kept in 16 bit


def _replicated_attention(model: ModelSpec) -> int:
    """MLA down-projections (q_a, kv_a) and their norms are replicated across TP ranks."""
    if model.mla is None:
        return 0
    a, h = model.mla, model.hidden_size
    q = h * a.q_lora_rank + a.q_lora_rank if a.q_lora_rank else 0
    return q + h * (a.kv_lora_rank + a.qk_rope_head_dim) + a.kv_lora_rank


def weight_split(model: ModelSpec, tp: int, precision: Precision) -> WeightSplit:
    """Per-GPU parameter counts: sharded parts / tp, replicated parts whole.

    GQA with fewer KV heads than ``tp`` replicates the K/V projections (each GPU holds
    ``kv_heads_per_gpu`` heads)."""
    pc = param_counts(model)
    attn_layer = attention_params_per_layer(model)
    rep_attn = _replicated_attention(model)
    sharded_attn = attn_layer - rep_attn
    if model.mla is None:
        kv_full = 2 * model.hidden_size * model.num_kv_heads * model.head_dim
        sharded_attn -= kv_full
        kv_gpu = 2 * model.hidden_size * kv_heads_per_gpu(model, tp) * model.head_dim
        attn_gpu = sharded_attn / tp + kv_gpu + rep_attn
    else:
        attn_gpu = sharded_attn / tp + rep_attn
    linear = model.num_layers * attn_gpu + (pc.dense_mlp + pc.experts) / tp
    sixteen = (pc.embedding + pc.lm_head) / tp + pc.norms + pc.router
    unq = set(precision.unquantized)
    if "embedding" not in unq and "lm_head" not in unq and "norms" not in unq:
        return WeightSplit(quantized=linear + sixteen, unquantized=0.0)
    return WeightSplit(quantized=linear, unquantized=sixteen)


def weight_bytes_per_gpu(model: ModelSpec, tp: int, precision: Precision) -> float:
    """Weights per GPU = quantized params x bits/8 (incl. scales) + 16-bit params x 2."""
    split = weight_split(model, tp, precision)
    if precision.weights in ("bf16", "fp16"):
        return (split.quantized + split.unquantized) * HALF_BYTES
    return (split.quantized * precision.quantized_bits_per_weight / 8
            + split.unquantized * HALF_BYTES)


def kv_bytes_per_token_layer(model: ModelSpec, tp: int, kv_bytes: float) -> float:
    """KV bytes one token adds to one layer on one GPU.

    MHA/GQA/MQA: ``2 x kv_heads_per_gpu x head_dim x bytes``; MLA: ``(kv_lora_rank +
    qk_rope_head_dim) x bytes`` (latent, replicated on every TP rank)."""
    if model.mla is not None:
        return (model.mla.kv_lora_rank + model.mla.qk_rope_head_dim) * kv_bytes
    return 2.0 * kv_heads_per_gpu(model, tp) * model.head_dim * kv_bytes


def kv_bytes_per_token(model: ModelSpec, kv_bytes: float, tp: int = 1) -> float:
    """KV bytes per token over all layers (below any sliding window), per GPU.

    Llama-3.1-8B bf16: 2 x 32 layers x 8 heads x 128 x 2 B = 131,072 B."""
    return model.num_layers * kv_bytes_per_token_layer(model, tp, kv_bytes)


def stored_tokens(model: ModelSpec, context: ArrayLike, block_size: int) -> ArrayLike:
    """Token slots held per sequence summed over layers, in whole paged blocks.

    Sliding-window layers keep at most ``window`` tokens (+1 block being filled)."""
    ctx = np.asarray(context, dtype=np.float64)
    blocks_full = np.ceil(ctx / block_size)
    total = np.zeros_like(ctx)
    for window in model.sliding_windows:
        if window is None:
            total = total + blocks_full
        else:
            total = total + np.minimum(blocks_full, np.ceil(window / block_size) + 1)
    out = total * block_size
    return float(out) if np.ndim(out) == 0 else out


def kv_bytes_for_context(model: ModelSpec, context: ArrayLike, *, tp: int, kv_bytes: float,
                         block_size: int) -> ArrayLike:
    """KV bytes one sequence of ``context`` tokens holds on one GPU (paged, windowed)."""
    slots = stored_tokens(model, context, block_size)
    return slots * kv_bytes_per_token_layer(model, tp, kv_bytes)


def activation_bytes(model: ModelSpec, *, tokens: ArrayLike, seqs: ArrayLike, tp: int,
                     act_bytes: float = HALF_BYTES) -> ArrayLike:
    """Peak transient activation memory of one forward pass on one GPU.

    Live at the MLP of one layer: residual + normed hidden (``2h``), the QKV output
    (``(n_h + 2 n_kv) d / tp``) and the gated-MLP buffers (gate/up ``2I/tp`` + product
    ``I/tp``; MoE: ``k`` routed copies of the expert width), all per token, plus fp32 logits
    for one token per sequence (``V/tp x 4 B``), counted twice for the sampler's copy."""
    h = model.hidden_size
    qkv = (model.num_heads + 2 * model.num_kv_heads) * model.head_dim / tp
    width = 3.0 * model.intermediate_size / tp
    if model.moe is not None:
        moe_w = 3.0 * model.moe.experts_per_token * model.moe.expert_intermediate_size / tp
        width = max(width, moe_w + 3.0 * model.moe.shared_intermediate_size / tp)
    per_token = (2 * h + qkv + width) * act_bytes
    logits = 2 * np.asarray(seqs, dtype=np.float64) * model.vocab_size / tp * FP32_BYTES
    out = np.asarray(tokens, dtype=np.float64) * per_token + logits
    return float(out) if np.ndim(out) == 0 else out

