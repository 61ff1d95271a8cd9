"""FLOPs and bytes per op of one forward pass (one engine step), per GPU.

A step processes ``seqs`` sequences; each adds ``new`` tokens on top of ``past`` cached
tokens (prefill: ``new`` = prompt chunk; decode: ``new`` = 1, ``past`` = context). Arrays
broadcast, so a whole grid of batch sizes/contexts is costed at once.

* GEMM ``[T, K] x [K, N]``: ``2 T K N`` FLOP; bytes = weights ``K N b_w`` + inputs ``T K a``
  + outputs ``T N a`` (T = seqs x new tokens; a = activation bytes).
* MoE: ``T k`` token-expert pairs; a batch of T tokens touches
  ``E (1 - (1 - k/E)^T)`` distinct experts per layer in expectation (uniform routing), and
  each touched expert's weights are read once.
* Attention (causal): ``4 n_h d`` FLOP per (query, key) pair; pairs per sequence
  ``new x past + new (new + 1) / 2`` (capped by a sliding window); bytes = the cached K/V read
  once plus the new K/V written. MLA decode uses the absorbed form (pairs cost
  ``2 n_h (2 r_kv + d_rope)``), MLA prefill the expanded one.
* Element-wise (norms, residual adds, activation, RoPE): bytes only.
* LM head: one logit row per sequence.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from kvopt.catalog.model_spec import ModelSpec
from kvopt.physics.memory import kv_bytes_per_token_layer
from kvopt.physics.precision import Precision
from kvopt.physics.tp import kv_heads_per_gpu

Array = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Op:
    """One op class of a step, summed over the layers it appears in (per GPU)."""

    name: str
    kind: str  # gemm | attention | elementwise
    flops: Array
    bytes: Array
    weight_matrix_bytes: float  # size of one weight matrix; > 0 marks a weight GEMM, 0 if none
    compute_dtype: str
    count: float  # how many times it runs per step (layers x matrices)
    keys: Array | float = 0.0  # attention: keys a prefill chunk's queries see (0: decode)


def _pairs(new: Array, past: Array, window: int | None) -> Array:
    """Causal (query, key) pairs for ``new`` queries after ``past`` cached tokens."""
    total = new * past + new * (new + 1) / 2
    if window is None:
        return total
    # query i (0-based) sees min(past + i + 1, window) keys
    full = np.maximum(0.0, np.minimum(new, window - past))  # queries still below the window
    below = full * past + full * (full + 1) / 2
    return np.asarray(np.minimum(total, below + (new - full) * window))


def _gemm(name: str, t: Array, k: float, n: float, w_bits: float, a: float, dtype: str,
          count: float) -> Op:
    w = k * n * w_bits / 8
    return Op(name, "gemm", count * 2 * t * k * n, count * (w + t * (k + n) * a), w, dtype, count)


def step_ops(model: ModelSpec, *, tp: int, precision: Precision, seqs: Array | float,
             new: Array | float, past: Array | float) -> list[Op]:
    """Ops of one step with ``seqs`` sequences x ``new`` tokens after ``past`` tokens."""
    s = np.asarray(seqs, dtype=np.float64)
    n_new = np.asarray(new, dtype=np.float64)
    p = np.asarray(past, dtype=np.float64)
    t = s * n_new
    a = precision.activation_bytes
    wq = 16.0 if precision.weights in ("bf16", "fp16") else precision.quantized_bits_per_weight
    w16 = 16.0 if precision.unquantized else wq
    cd = precision.compute_dtype
    half = "bf16" if cd in ("bf16", "fp8", "fp4") else "fp16"
    h, heads = model.hidden_size, model.num_heads / tp
    L = model.num_layers
    ops: list[Op] = []

    # attention projections
    if model.mla is None:
        d = model.head_dim
        kvh = kv_heads_per_gpu(model, tp)
        ops.append(_gemm("qkv_proj", t, h, (heads + 2 * kvh) * d, wq, a, cd, L))
        ops.append(_gemm("o_proj", t, heads * d, h, wq, a, cd, L))
        qk_dim, v_dim = float(d), float(d)
    else:
        m = model.mla
        qk = m.qk_nope_head_dim + m.qk_rope_head_dim
        if m.q_lora_rank:
            ops.append(_gemm("q_a_proj", t, h, m.q_lora_rank, wq, a, cd, L))
            ops.append(_gemm("q_b_proj", t, m.q_lora_rank, heads * qk, wq, a, cd, L))
        else:
            ops.append(_gemm("q_proj", t, h, heads * qk, wq, a, cd, L))
        ops.append(_gemm("kv_a_proj", t, h, m.kv_lora_rank + m.qk_rope_head_dim, wq, a, cd, L))
        ops.append(_gemm("kv_b_proj", t, m.kv_lora_rank,
                         heads * (m.qk_nope_head_dim + m.v_head_dim), wq, a, cd, L))
        ops.append(_gemm("o_proj", t, heads * m.v_head_dim, h, wq, a, cd, L))
        decode_like = bool(np.all(n_new <= 1))
        if decode_like:  # absorbed: attend over the latent (r_kv + rope), values in r_kv
            qk_dim, v_dim = float(m.kv_lora_rank + m.qk_rope_head_dim), float(m.kv_lora_rank)
        else:
            qk_dim, v_dim = float(qk), float(m.v_head_dim)

    # attention core, grouped by window size
    kv_layer = kv_bytes_per_token_layer(model, tp, precision.kv_bytes_per_value)
    for window, count in Counter(model.sliding_windows).items():
        pairs = _pairs(n_new, p, window) * s
        flops = 2 * heads * (qk_dim + v_dim) * pairs
        held = p + n_new if window is None else np.minimum(p + n_new, window)
        kv_read = s * held * kv_layer
        kv_write = t * kv_layer
        qo = t * heads * (qk_dim + v_dim) * a
        ops.append(Op(f"attention(window={window})", "attention", count * flops,
                      count * (kv_read + kv_write + qo), 0.0, half, float(count),
                      keys=np.where(n_new > 1, held, 0.0)))

    # MLPs
    dense_layers = L
    if model.moe is not None:
        e = model.moe
        n_moe = sum(e.moe_layers)
        dense_layers = L - n_moe
        touched = e.num_experts * (1 - (1 - e.experts_per_token / e.num_experts) ** t)
        width = e.expert_intermediate_size / tp
        one_expert_w = 3 * h * width * wq / 8
        routed_t = t * e.experts_per_token
        ops.append(Op("experts", "gemm", n_moe * 2 * routed_t * 3 * h * width,
                      n_moe * (touched * one_expert_w + routed_t * (2 * h + 3 * width) * a),
                      one_expert_w, cd, float(n_moe)))
        ops.append(_gemm("router", t, h, e.num_experts, w16, a, half, n_moe))
        if e.shared_intermediate_size:
            sw = e.shared_intermediate_size / tp
            ops.append(_gemm("shared_gate_up", t, h, 2 * sw, wq, a, cd, n_moe))
            ops.append(_gemm("shared_down", t, sw, h, wq, a, cd, n_moe))
    if dense_layers:
        width = model.intermediate_size / tp
        up = 2 * width if model.gated_mlp else width
        ops.append(_gemm("mlp_up", t, h, up, wq, a, cd, dense_layers))
        ops.append(_gemm("mlp_down", t, width, h, wq, a, cd, dense_layers))

    # element-wise traffic per layer: norms (read+write h), two residual adds (2 reads +
    # 1 write of h), activation (reads gate+up, writes product), RoPE on q and k
    mlp_width = model.intermediate_size / tp
    if model.moe is not None:
        mlp_width = model.moe.experts_per_token * model.moe.expert_intermediate_size / tp
    rope = (heads + kv_heads_per_gpu(model, tp)) * model.head_dim * 2
    per_token = model.norms_per_layer * 2 * h + 2 * 3 * h + 3 * mlp_width + rope
    ops.append(Op("elementwise", "elementwise", np.zeros_like(t), L * t * per_token * a, 0.0,
                  half, float(L)))
    # LM head on the last token of each sequence
    ops.append(_gemm("lm_head", s, h, model.vocab_size / tp, w16, a, half, 1))
    return ops


def allreduce_bytes(model: ModelSpec, *, tokens: Array | float, act_bytes: float) -> Array:
    """Bytes of each of the 2 per-layer all-reduces (after attention, after the MLP)."""
    return np.asarray(tokens, dtype=np.float64) * model.hidden_size * act_bytes
