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

Ops carry what their kernel curves need (:mod:`kvopt.physics.roofline`): launches per step
(``count``), the GEMM curve of the precision, activation elements entering quantization, the
attention work shape (per-sequence padding, KV cache format, MLA) and the MoE work shape
(touched experts, routed pairs).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from kvopt.catalog.model_spec import ModelSpec
from kvopt.physics.kernels import MoeWork, causal_pairs
from kvopt.physics.mixers import MixerGroup, mixer_groups
from kvopt.physics.precision import Precision
from kvopt.physics.tp import kv_heads_per_gpu

Array = npt.NDArray[np.float64]

__all__ = ["AttentionWork", "Op", "allreduce_bytes", "causal_pairs", "gemm_curve_key",
           "step_ops"]


@dataclass(frozen=True)
class AttentionWork:
    """What attention kernels see in one step (per GPU, arrays broadcast): ``seqs`` sequences
    each adding ``new`` tokens after ``past`` (decode: ``new`` = 1), over ``layers`` layers
    of one ``window`` (inf: full attention)."""

    seqs: Array
    new: Array
    past: Array
    window: float
    layers: float
    flops_per_pair_decode: float  # MLA decode runs absorbed, prefill expanded
    flops_per_pair_prefill: float
    kv_bytes_per_key: float
    qo_bytes_decode: float  # query in + output out per query token
    qo_bytes_prefill: float
    kv_dtype: str  # bf16 | fp8 (the cache format: its own kernels)
    mla: bool
    group: MixerGroup | None = None  # the layer group's own work (:mod:`.mixers`)


@dataclass(frozen=True)
class Op:
    """One op class of a step, summed over the layers it appears in (per GPU).

    ``flops`` and ``bytes`` are the physical work; the roofline prices it with the op's
    kernel curve (:mod:`kvopt.physics.roofline`): ``curve`` names the GEMM/MoE curve
    (bf16, fp8, fp4, int8, int4 weight-only), ``quantized`` marks native low-precision
    paths (they also have a weight-only alternative), ``quant_elems`` counts activation
    elements entering their quantization pass; attention and MoE carry their work shapes."""

    name: str
    kind: str  # gemm | moe | attention | elementwise
    flops: Array
    bytes: Array
    weight_matrix_bytes: float  # size of one weight matrix; > 0 marks a weight GEMM, 0 if none
    compute_dtype: str
    count: float  # how many times it runs per step (layers x matrices): kernel launches
    curve: str = "bf16"
    quantized: bool = False
    quant_elems: Array | float = 0.0
    attention: AttentionWork | None = None
    moe: MoeWork | None = None
    # an element-wise op some engines fuse into a neighbour (no launch of its own):
    # "allreduce" (norms after a TP all-reduce), "attention" (RoPE); "" none
    fusable: str = ""
    # a quantized op may also be priced on the weight-only path (Precision.weight_only_alt)
    weight_only_alt: bool = True
    weight_bits: float = 16.0  # bits per stored weight (scales included) of a weight op


def gemm_curve_key(precision: Precision) -> tuple[str, bool]:
    """(curve, native quantized path) of the weight GEMMs of ``precision``: bf16/fp16 take
    the half curve, native fp8/fp4/int8 their own (W8A8/W4A4, activations quantized; fp8 by
    its scaling: ``fp8`` dynamic, ``fp8_static``, ``fp8_block``), native MXFP4 the fp4 curve
    (the measured 4-bit path: same weight bytes; its W4A8 math at the fp8 peak), weight-only
    int4 and MXFP4 the W4A16 curve (the half one where none is measured), other weight-only
    formats the half curve."""
    w = precision.weights
    if precision.mode == "native" and w == "fp8" and precision.fp8_scaling in ("static",
                                                                               "block"):
        return f"fp8_{precision.fp8_scaling}", True
    if precision.mode == "native" and w in ("fp8", "fp4", "int8"):
        return w, True
    if w == "mxfp4":  # native (Blackwell): the 4-bit curve; else the W4A16 one (Hopper)
        return ("fp4", True) if precision.mode == "native" else ("int4", False)
    if w == "int4":
        return "int4", False
    return ("fp16" if precision.compute_dtype == "fp16" else "bf16"), False


def _gemm(name: str, t: Array, k: float, n: float, w_bits: float, a: float, dtype: str,
          count: float, curve: tuple[str, bool] = ("bf16", False)) -> Op:
    w = k * n * w_bits / 8
    key, quantized = curve
    return Op(name, "gemm", count * 2 * t * k * n, count * (w + t * (k + n) * a), w, dtype, count,
              curve=key, quantized=quantized, quant_elems=count * t * k if quantized else 0.0,
              weight_bits=w_bits)


def step_ops(model: ModelSpec, *, tp: int, precision: Precision, seqs: Array | float,
             new: Array | float, past: Array | float, cross_keys: float = 0.0) -> list[Op]:
    """Ops of one step with ``seqs`` sequences x ``new`` tokens after ``past`` tokens
    (``cross_keys``: image keys per sequence of cross-attention layers)."""
    s = np.asarray(seqs, dtype=np.float64)
    n_new = np.asarray(new, dtype=np.float64)
    p = np.asarray(past, dtype=np.float64)
    t = s * n_new
    a = precision.activation_bytes
    wq = 16.0 if precision.weights in ("bf16", "fp16") else precision.quantized_bits_per_weight
    w16 = 16.0 if precision.unquantized else wq
    cd = precision.compute_dtype
    half = "bf16" if cd in ("bf16", "fp8", "fp4") else "fp16"
    cur = gemm_curve_key(precision)
    h, heads = model.hidden_size, model.num_heads / tp
    L = model.num_layers
    ops: list[Op] = []

    # attention projections: softmax-attention layers (self and cross), linear-attention
    # layers and the sparse-attention indexer (each kept 16-bit where the checkpoint does)
    kinds = model.kinds
    n_attn = sum(k != "linear" for k in kinds)
    keep = precision.unquantized  # components a checkpoint keeps in 16 bit
    wa, cura = (16.0, (half, False)) if "attention" in keep else (wq, cur)
    if model.mla is None:
        d = model.head_dim
        kvh = kv_heads_per_gpu(model, tp)
        q_cols = heads * d * (2 if model.attn_output_gate else 1)
        n_self = n_attn - kinds.count("cross")
        if n_self:
            ops.append(_gemm("qkv_proj", t, h, q_cols + 2 * kvh * d, wa, a, cd, n_self, cura))
        if n_self < n_attn:  # cross-attention: keys and values come from the image
            ops.append(_gemm("cross_q_proj", t, h, q_cols, wa, a, cd, n_attn - n_self, cura))
        ops.append(_gemm("o_proj", t, heads * d, h, wa, a, cd, n_attn, cura))
    else:
        m = model.mla
        qk = m.qk_nope_head_dim + m.qk_rope_head_dim
        if m.q_lora_rank:
            ops.append(_gemm("q_a_proj", t, h, m.q_lora_rank, wa, a, cd, L, cura))
            ops.append(_gemm("q_b_proj", t, m.q_lora_rank, heads * qk, wa, a, cd, L, cura))
        else:
            ops.append(_gemm("q_proj", t, h, heads * qk, wa, a, cd, L, cura))
        ops.append(_gemm("kv_a_proj", t, h, m.kv_lora_rank + m.qk_rope_head_dim, wa, a, cd, L,
                         cura))
        ops.append(_gemm("kv_b_proj", t, m.kv_lora_rank,
                         heads * (m.qk_nope_head_dim + m.v_head_dim), wa, a, cd, L, cura))
        ops.append(_gemm("o_proj", t, heads * m.v_head_dim, h, wa, a, cd, L, cura))
        if model.indexer is not None:  # replicated on every rank (vLLM ReplicatedLinear)
            ix = model.indexer
            rank = m.q_lora_rank or h
            ops.append(_gemm("indexer_q", t, rank, ix.heads * ix.head_dim, wa, a, cd, L, cura))
            ops.append(_gemm("indexer_k", t, h, ix.head_dim + ix.heads, wa, a, cd, L, cura))
    if model.linear is not None and "linear" in kinds:
        la, n_lin = model.linear, kinds.count("linear")
        in_cols = (2 * la.key_dim + 2 * la.value_dim + 2 * la.num_value_heads) / tp
        ops.append(_gemm("linear_in_proj", t, h, in_cols, wa, a, cd, n_lin, cura))
        ops.append(_gemm("linear_out_proj", t, la.value_dim / tp, h, wa, a, cd, n_lin, cura))

    # token mixers (attention cores, linear-attention recurrences), grouped by layer type
    kv_dtype = "fp8" if precision.kv_bytes_per_value < 2 else "bf16"
    for g in mixer_groups(model, tp=tp, kv_bytes=precision.kv_bytes_per_value, act_bytes=a,
                          cross_keys=cross_keys):
        held = p + n_new
        dec = g.decode_work(keys=s * g.keys(held), held=s * held, seqs=s, pad_tokens=0.0)
        pre = g.prefill_work(new=n_new, past=p, pad_tokens=0.0)
        decode = n_new <= 1
        flops = np.where(decode, dec[0], pre[0] * s)
        nbytes = np.where(decode, dec[1], pre[1] * s)
        attention = AttentionWork(
            seqs=s, new=n_new, past=p, window=g.window, layers=float(g.layers),
            flops_per_pair_decode=g.flops_per_pair_decode,
            flops_per_pair_prefill=g.flops_per_pair_prefill, kv_bytes_per_key=g.kv_bytes_per_key,
            qo_bytes_decode=g.qo_bytes_decode, qo_bytes_prefill=g.qo_bytes_prefill,
            kv_dtype=kv_dtype, mla=g.mla, group=g)
        name = (f"attention(window={int(g.window) if np.isfinite(g.window) else None})"
                if g.kind == "attention" else g.kind)
        ops.append(Op(name, "attention", g.layers * flops, g.layers * nbytes, 0.0, half,
                      float(g.layers), attention=attention))

    # MLPs
    dense_layers, n_moe = L, 0
    if model.moe is not None:
        e = model.moe
        n_moe = sum(e.moe_layers)
        dense_layers = L - n_moe
        touched = e.num_experts * (1 - (1 - e.experts_per_token / e.num_experts) ** t)
        width = e.expert_intermediate_size / tp
        one_expert_w = 3 * h * width * wq / 8
        routed_t = t * e.experts_per_token
        expert_bytes = touched * one_expert_w + routed_t * (2 * h + 3 * width) * a
        work = MoeWork(touched=touched, pairs=routed_t, hidden=float(h), width=width,
                       matrices=3.0, nbytes=n_moe * expert_bytes, route_pairs=routed_t,
                       layers=float(n_moe))
        ops.append(Op("experts", "moe", n_moe * 2 * routed_t * 3 * h * width,
                      n_moe * expert_bytes, one_expert_w, cd, float(n_moe), curve=cur[0],
                      quantized=cur[1], moe=work, weight_bits=wq))
        ops.append(_gemm("router", t, h, e.num_experts, w16, a, half, n_moe))
        if e.shared_intermediate_size:
            sw = e.shared_intermediate_size / tp
            ws, curs = (16.0, (half, False)) if "shared_experts" in keep else (wq, cur)
            ops.append(_gemm("shared_gate_up", t, h, 2 * sw, ws, a, cd, n_moe, curs))
            ops.append(_gemm("shared_down", t, sw, h, ws, a, cd, n_moe, curs))
    if dense_layers:
        width = model.intermediate_size / tp
        up = 2 * width if model.gated_mlp else width
        wd, curd = (16.0, (half, False)) if "dense_mlp" in keep else (wq, cur)
        ops.append(_gemm("mlp_up", t, h, up, wd, a, cd, dense_layers, curd))
        ops.append(_gemm("mlp_down", t, width, h, wd, a, cd, dense_layers, curd))

    # element-wise kernels (each a launch with its own minimum time, priced by the engine's
    # measured element-wise curve): per layer the norms (each with its residual add: read
    # + write h, plus 2 reads + 1 write of h for the adds), the activation of a dense or
    # shared-expert MLP (reads gate + up, writes the product; a routed-expert activation
    # runs inside the fused MoE kernel: bytes counted here, no launch), RoPE on q and k
    # of each attention layer, and Qwen3-style per-head q and k norms (two launches): the
    # kernels of vLLM's and SGLang's decoder layers (vllm/model_executor/models/llama.py
    # LlamaDecoderLayer: input_layernorm and post_attention_layernorm with the residual,
    # rotary_emb, SiluAndMul; qwen3.py: q_norm, k_norm); engines that fuse some say so in
    # their profile (fused_elementwise)
    moe = model.moe
    mlp_width = model.intermediate_size / tp
    if moe is not None:
        mlp_width = moe.experts_per_token * moe.expert_intermediate_size / tp
    shared = moe is not None and bool(moe.shared_intermediate_size)
    act_launches = dense_layers + (n_moe if shared else 0)
    kvh_gpu = kv_heads_per_gpu(model, tp)
    rope = (heads + kvh_gpu) * model.head_dim * 2
    norm_bytes = t * (model.norms_per_layer * 2 * h + 2 * 3 * h) * a
    ops.append(Op("norms", "elementwise", np.zeros_like(t), L * norm_bytes, 0.0, half,
                  float(L * model.norms_per_layer), fusable="allreduce" if tp > 1 else ""))
    ops.append(Op("activation", "elementwise", np.zeros_like(t), L * t * 3 * mlp_width * a,
                  0.0, half, float(act_launches)))
    if n_attn:
        ops.append(Op("rope", "elementwise", np.zeros_like(t), n_attn * t * rope * a, 0.0,
                      half, float(n_attn), fusable="attention"))
    if model.qk_norm and n_attn:
        ops.append(Op("qk_norm", "elementwise", np.zeros_like(t),
                      n_attn * t * (heads + kvh_gpu) * model.head_dim * 2 * a, 0.0, half,
                      float(2 * n_attn)))
    # LM head on the last token of each sequence
    ops.append(_gemm("lm_head", s, h, model.vocab_size / tp, w16, a, half, 1))
    return weight_only_paths(ops, precision)


def weight_only_paths(ops: list[Op], precision: Precision) -> list[Op]:
    """``ops`` with the weight-only alternative withdrawn from quantized ops where the
    precision has none (an engine without an FP8 weight-only GEMM)."""
    if precision.weight_only_alt:
        return ops
    return [replace(op, weight_only_alt=False) if op.quantized else op for op in ops]


def allreduce_bytes(model: ModelSpec, *, tokens: Array | float, act_bytes: float) -> Array:
    """Bytes of each of the 2 per-layer all-reduces (after attention, after the MLP)."""
    return np.asarray(tokens, dtype=np.float64) * model.hidden_size * act_bytes
