"""Memory per GPU: weights (with quantization overhead), KV cache, fixed per-sequence state,
activations, paged blocks.

Self-attention layers (full, sliding, chunked) hold KV per token (sliding and chunked ones at
most their window); DeepSeek sparse attention adds the indexer's key per token; linear
(Gated DeltaNet) layers hold a fixed state per sequence instead; cross-attention layers hold
the image keys of their request (:mod:`kvopt.serving.replica`). All sizes in bytes; callers
convert to GiB at the edges.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from kvopt.catalog.model_spec import ModelSpec
from kvopt.physics.params import (
    attention_params_per_layer,
    param_counts,
    replicated_attention_params,
)
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


KV_KINDS = ("full", "sliding", "chunked")  # layer types that cache keys and values


def attention_per_gpu(model: ModelSpec, tp: int) -> float:
    """Attention weights on one GPU over all layers: sharded parts / tp, replicated parts
    (MLA down-projections, the sparse-attention indexer) whole; GQA with fewer KV heads than
    ``tp`` replicates the K/V projections (each GPU holds ``kv_heads_per_gpu`` heads)."""
    total = 0.0
    for kind in model.kinds:
        sharded = attention_params_per_layer(model, kind) - replicated_attention_params(
            model, kind)
        rep = replicated_attention_params(model, kind)
        if model.mla is None and kind != "linear":
            kv_full = 2 * model.hidden_size * model.num_kv_heads * model.head_dim
            kv_gpu = 2 * model.hidden_size * kv_heads_per_gpu(model, tp) * model.head_dim
            total += (sharded - kv_full) / tp + kv_gpu + rep
        else:
            total += sharded / tp + rep
    return total


def weight_split(model: ModelSpec, tp: int, precision: Precision) -> WeightSplit:
    """Per-GPU parameter counts by storage format: the linear layers in the precision's
    format (attention kept 16-bit where the checkpoint does, e.g. gpt-oss's MXFP4 experts),
    embedding / LM head / norms / routers and any vision encoder in 16 bit."""
    pc = param_counts(model)
    attn = attention_per_gpu(model, tp)
    mlp = (pc.dense_mlp + pc.experts) / tp
    sixteen = (pc.embedding + pc.lm_head) / tp + pc.norms + pc.router
    unq = set(precision.unquantized)
    vision = pc.vision / tp  # encoders run in 16 bit (vLLM does not quantize them)
    if "attention" in unq:
        sixteen += attn
    else:
        mlp += attn
    for part, count in (("shared_experts", pc.shared_mlp),
                        ("dense_mlp", pc.dense_mlp - pc.shared_mlp)):
        if part in unq:  # a checkpoint that keeps it in 16 bit (Kimi-K2.5's INT4 experts)
            mlp -= count / tp
            sixteen += count / tp
    if "embedding" not in unq and "lm_head" not in unq and "norms" not in unq:
        return WeightSplit(quantized=mlp + sixteen, unquantized=vision)
    return WeightSplit(quantized=mlp, unquantized=sixteen + vision)


def weight_bytes_per_gpu(model: ModelSpec, tp: int, precision: Precision) -> float:
    """Weights per GPU = quantized params x bits/8 (incl. scales) + 16-bit params x 2."""
    split = weight_split(model, tp, precision)
    if precision.weights in ("bf16", "fp16"):
        return (split.quantized + split.unquantized) * HALF_BYTES
    return (split.quantized * precision.quantized_bits_per_weight / 8
            + split.unquantized * HALF_BYTES)


def kv_layer_count(model: ModelSpec) -> int:
    """Layers that cache keys and values per token (full, sliding, chunked)."""
    return sum(k in KV_KINDS for k in model.kinds)


def kv_bytes_per_token_layer(model: ModelSpec, tp: int, kv_bytes: float) -> float:
    """KV bytes one token adds to one self-attention layer on one GPU.

    MHA/GQA/MQA: ``2 x kv_heads_per_gpu x head_dim x bytes``; MLA: ``(kv_lora_rank +
    qk_rope_head_dim) x bytes`` (latent, replicated on every TP rank); DeepSeek sparse
    attention adds the indexer's key (FP8 + scale, replicated: ``IndexerSpec.key_bytes``)."""
    if model.mla is not None:
        latent = (model.mla.kv_lora_rank + model.mla.qk_rope_head_dim) * kv_bytes
        return latent + (model.indexer.key_bytes if model.indexer is not None else 0.0)
    return 2.0 * kv_heads_per_gpu(model, tp) * model.head_dim * kv_bytes


def kv_bytes_per_token(model: ModelSpec, kv_bytes: float, tp: int = 1) -> float:
    """KV bytes per token over all self-attention layers (below any window), per GPU.

    Llama-3.1-8B bf16: 2 x 32 layers x 8 heads x 128 x 2 B = 131,072 B."""
    return kv_layer_count(model) * kv_bytes_per_token_layer(model, tp, kv_bytes)


def linear_state_bytes(model: ModelSpec, tp: int = 1) -> float:
    """Fixed state one sequence holds in the linear-attention layers, per GPU: per layer the
    short-convolution state ``(2 H_k d_k + H_v d_v) / tp x (c - 1)`` values in 16 bit and the
    recurrent state ``H_v / tp x d_v x d_k`` values in the state dtype (vLLM
    ``MambaStateShapeCalculator.gated_delta_net_state_shape``)."""
    a = model.linear
    if a is None:
        return 0.0
    conv = a.conv_dim / tp * (a.conv_kernel - 1) * HALF_BYTES
    recurrent = a.num_value_heads / tp * a.value_head_dim * a.key_head_dim * a.state_value_bytes
    return model.kinds.count("linear") * (conv + recurrent)


def _caps(model: ModelSpec) -> list[float]:
    """The most tokens each self-attention layer keeps (inf: all)."""
    return [np.inf if k == "full" or w is None else float(w)
            for k, w in zip(model.kinds, model.sliding_windows, strict=True) if k in KV_KINDS]


def stored_tokens(model: ModelSpec, context: ArrayLike, block_size: int) -> ArrayLike:
    """Token slots held per sequence summed over the self-attention layers, in whole paged
    blocks. Sliding-window (and chunked) layers keep at most ``window`` tokens (+1 block
    being filled)."""
    ctx = np.asarray(context, dtype=np.float64)
    blocks_full = np.ceil(ctx / block_size)
    total = np.zeros_like(ctx)
    for cap in _caps(model):
        if not np.isfinite(cap):
            total = total + blocks_full
        else:
            total = total + np.minimum(blocks_full, np.ceil(cap / block_size) + 1)
    out = total * block_size
    return float(out) if np.ndim(out) == 0 else out


def held_tokens(model: ModelSpec, tokens: float, block_size: int) -> float:
    """Tokens a sequence of ``tokens`` holds per self-attention layer on average (windowed
    layers at most window + one block; unrounded, for the steady state's block count)."""
    caps = _caps(model)
    if not caps:
        return 0.0
    return float(sum(min(tokens, cap + block_size) for cap in caps)) / len(caps)


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
    if model.linear is not None:  # Gated DeltaNet: q, k, v, z and beta, decay projections
        a = model.linear
        qkv = max(qkv, (2 * a.key_dim + 2 * a.value_dim + 2 * a.num_value_heads) / tp)
    width = 3.0 * model.intermediate_size / tp
    if model.moe is not None:
        moe_w = 3.0 * model.moe.experts_per_token * model.moe.expert_intermediate_size / tp
        width = max(width, moe_w + 3.0 * model.moe.shared_intermediate_size / tp)
    per_token = (2 * h + qkv + width) * act_bytes
    logits = 2 * np.asarray(seqs, dtype=np.float64) * model.vocab_size / tp * FP32_BYTES
    out = np.asarray(tokens, dtype=np.float64) * per_token + logits
    return float(out) if np.ndim(out) == 0 else out

