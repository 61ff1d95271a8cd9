"""Roofline step time: every op of a step priced by its fitted kernel curve.

Each op's FLOPs and bytes (:mod:`kvopt.physics.ops`) go through the curve of its kind
(:mod:`kvopt.physics.kernels`, fitted per GPU x engine x dtype in
:mod:`kvopt.physics.efficiency`): GEMMs ``t0 x launches + smoothmax(tc, tm) + q m k / BW``,
attention on padded work with a floor per layer, the fused MoE with its row tile and routing
pass; element-wise kernels (norms, activation, RoPE) a minimum time per launch plus their
bytes, launches the engine fuses into a neighbour kernel only their bytes. The step adds
tensor-parallel all-reduces (two per layer, :mod:`kvopt.physics.comm`; one more per attention
layer where a q/k norm spans all heads, :func:`qk_norm_allreduces`). Engine overheads are
added by the caller (they are engine facts, not physics).

Quantized weights: a native fp8/fp4/int8 path is priced as the faster of its own W8A8/W4A4
curve and the weight-only path (the same weight bytes through the half-precision curve, no
activation quantization). The measured W8A8 tables time the activation quantization as a
kernel of its own (TensorRT-LLM's dynamic fp8 scale computation alone takes ~7.3 us on
Hopper), which served steps fuse or overlap; the weight-only time stands in as the floor
for dynamic and block scales. FP8 checkpoints with static scales take the ``fp8_static``
curve (the fp8 tables less their scale computation, as aiconfigurator derives fp8_static),
which is the served kernel: there the weight-only path is an alternative only where the
engine ships an FP8 weight-only GEMM (``EngineProfile.fp8_weight_only``: not TensorRT-LLM),
and otherwise the op with 16-bit weights bounds it. So quantized weights are never priced
slower than bf16 ones.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from kvopt.catalog.engines import EngineProfile
from kvopt.catalog.gpus import GpuSpec
from kvopt.catalog.model_spec import ModelSpec
from kvopt.physics.comm import engine_allreduce_s
from kvopt.physics.efficiency import (
    attention_curve,
    elementwise_curve,
    gemm_curve,
    linear_curve,
    moe_curve,
)
from kvopt.physics.kernels import AttentionCurve, smoothmax
from kvopt.physics.ops import Op, allreduce_bytes, step_ops
from kvopt.physics.precision import Precision

Array = npt.NDArray[np.float64]

__all__ = ["StepTime", "half_dtype", "op_time", "qk_norm_allreduces", "smoothmax", "step_time",
           "tp_comm_s"]


@dataclass(frozen=True)
class StepTime:
    """Time and work of one step on one GPU of the TP group (seconds, FLOP, bytes)."""

    total_s: Array
    compute_bound_s: Array  # time of ops whose compute term dominates
    memory_bound_s: Array  # time of ops whose memory term dominates
    comm_s: Array
    flops: Array  # per GPU
    bytes: Array  # per GPU (HBM traffic)
    compute_only_s: Array  # sum of pure compute terms (ideal, for MFU context)
    memory_only_s: Array  # sum of pure memory terms


def half_dtype(gpu: GpuSpec) -> str:
    """The 16-bit format weight-only paths compute in on ``gpu``."""
    return "bf16" if gpu.has_tensor("bf16") else "fp16"


def _half_bytes(op: Op, nbytes: Array | float, matrices: Array | float) -> Array | float:
    """Bytes of a quantized op's 16-bit alternative: its own (the weight-only path: the same
    weight bytes through the 16-bit kernels) where the precision has that path, else those
    of the op with 16-bit weights (``matrices`` weight matrices read, each at 16 bits)."""
    if op.weight_only_alt:
        return nbytes
    return nbytes + np.asarray(matrices) * op.weight_matrix_bytes * (16.0 / op.weight_bits - 1)


def _gemm_time(op: Op, gpu: GpuSpec, engine: str | None) -> tuple[Array, Array, Array]:
    curve = gemm_curve(gpu, op.curve, engine)
    peak = gpu.peak_flop_s(op.compute_dtype)
    bw = gpu.bandwidth_bytes_s
    t = curve.time_s(flops=op.flops, nbytes=op.bytes, launches=op.count,
                     quant_elems=op.quant_elems, peak_flop_s=peak, bandwidth_bytes_s=bw)
    if op.quantized:  # the weight-only path, or the op with 16-bit weights (_half_bytes)
        half = half_dtype(gpu)
        alt = gemm_curve(gpu, half, engine).time_s(
            flops=op.flops, nbytes=_half_bytes(op, op.bytes, op.count), launches=op.count,
            quant_elems=0.0, peak_flop_s=gpu.peak_flop_s(half), bandwidth_bytes_s=bw)
        t = np.minimum(t, alt)
    return (np.asarray(t), np.asarray(op.flops / (peak * curve.compute)),
            np.asarray(op.bytes / (bw * curve.memory)))


def _moe_time(op: Op, gpu: GpuSpec, engine: str | None) -> tuple[Array, Array, Array]:
    curve = moe_curve(gpu, op.curve, engine)
    if curve is None or op.moe is None:  # no fused-MoE table to price it: a GEMM
        return _gemm_time(op, gpu, engine)
    peak = gpu.peak_flop_s(op.compute_dtype)
    bw = gpu.bandwidth_bytes_s
    t = curve.time_s(op.moe, peak_flop_s=peak, bandwidth_bytes_s=bw)
    half_curve = moe_curve(gpu, half_dtype(gpu), engine) if op.quantized else None
    if half_curve is not None:
        w = op.moe
        work = replace(w, nbytes=_half_bytes(op, w.nbytes, w.layers * w.touched))
        t = np.minimum(t, half_curve.time_s(work, peak_flop_s=gpu.peak_flop_s(
            half_dtype(gpu)), bandwidth_bytes_s=bw))
    return (np.asarray(t), np.asarray(op.flops / (peak * curve.compute)),
            np.asarray(op.bytes / (bw * curve.memory)))


def mixer_curves(gpu: GpuSpec, engine: str | None, kind: str, *, mla: bool = False,
                 kv: str = "bf16") -> tuple[AttentionCurve, AttentionCurve]:
    """(generation, context) curves of a token-mixer group of ``kind``: Gated DeltaNet's own
    where measured, else (and for softmax and cross-attention) the attention kernels'."""
    gen = attention_curve(gpu, "generation", engine, mla=mla, kv=kv)
    ctx = attention_curve(gpu, "context", engine, mla=mla, kv=kv)
    if kind == "linear":
        gen = linear_curve(gpu, "generation", engine) or gen
        ctx = linear_curve(gpu, "context", engine) or ctx
    return gen, ctx


def _attention_time(op: Op, gpu: GpuSpec, engine: str | None) -> tuple[Array, Array, Array]:
    w = op.attention
    assert w is not None and w.group is not None
    g = w.group
    peak = gpu.peak_flop_s(op.compute_dtype)
    bw = gpu.bandwidth_bytes_s
    gen, ctx = mixer_curves(gpu, engine, g.kind, mla=w.mla, kv=w.kv_dtype)
    launches = np.where(w.seqs > 0, w.layers, 0.0)
    held = w.past + w.new
    df, db = g.decode_work(keys=w.seqs * g.keys(held), held=w.seqs * held, seqs=w.seqs,
                           pad_tokens=gen.pad_tokens)
    pf, pb = g.prefill_work(new=w.new, past=w.past, pad_tokens=ctx.pad_tokens)
    pf, pb = pf * w.seqs, pb * w.seqs
    decode = w.new <= 1
    t_dec = gen.time_s(flops=df * w.layers, nbytes=db * w.layers, launches=launches,
                       peak_flop_s=peak, bandwidth_bytes_s=bw)
    t_pre = ctx.time_s(flops=pf * w.layers, nbytes=pb * w.layers, launches=launches,
                       peak_flop_s=peak, bandwidth_bytes_s=bw)
    tc = np.where(decode, df / (peak * gen.compute), pf / (peak * ctx.compute)) * w.layers
    tm = np.where(decode, db / (bw * gen.memory), pb / (bw * ctx.memory)) * w.layers
    return np.asarray(np.where(decode, t_dec, t_pre)), np.asarray(tc), np.asarray(tm)


def op_time(op: Op, gpu: GpuSpec, engine: str | None = None,
            fused: Collection[str] = ()) -> tuple[Array, Array, Array]:
    """(time, compute term, memory term) of one op on ``gpu`` as ``engine`` (a profile name;
    None: the default engine's kernels) runs it; ``fused``: the element-wise ops the engine
    fuses into a neighbour kernel (its profile's ``fused_elementwise``)."""
    if op.kind == "attention":
        return _attention_time(op, gpu, engine)
    if op.kind == "moe":
        return _moe_time(op, gpu, engine)
    if op.kind == "gemm":
        return _gemm_time(op, gpu, engine)
    # element-wise: the engine's measured element-wise kernel, one launch each (none where
    # the engine fuses the op into its neighbour: its bytes still stream)
    curve = elementwise_curve(gpu, engine)
    tm = np.asarray(op.bytes / (gpu.bandwidth_bytes_s * curve.memory))
    launches = np.where(np.asarray(op.bytes) > 0,
                        0.0 if op.fusable and op.fusable in fused else op.count, 0.0)
    t = np.asarray(tm + launches * curve.floor_s)
    return t, np.zeros_like(tm), tm


def step_time(model: ModelSpec, gpu: GpuSpec, *, tp: int, precision: Precision,
              seqs: Array | float, new: Array | float, past: Array | float,
              engine: EngineProfile | None = None, cross_keys: float = 0.0) -> StepTime:
    """Time of one forward step (see :func:`kvopt.physics.ops.step_ops` for the work); the
    TP all-reduces run as ``engine`` runs them (its own kernels or plain NCCL)."""
    ops = step_ops(model, tp=tp, precision=precision, seqs=seqs, new=new, past=past,
                   cross_keys=cross_keys)
    shape = np.broadcast(np.asarray(seqs), np.asarray(new), np.asarray(past)).shape
    k = sum_ops(ops, gpu, engine.name if engine is not None else None, shape,
                engine.fused_elementwise if engine is not None else ())
    tokens = np.asarray(seqs, dtype=np.float64) * np.asarray(new, dtype=np.float64)
    comm = tp_comm_s(model, gpu, tp=tp, precision=precision, tokens=tokens,
                     engine=engine) + np.zeros(shape)
    return StepTime(k.total_s + comm, k.compute_bound_s, k.memory_bound_s, comm, k.flops,
                    k.bytes, k.compute_only_s, k.memory_only_s)


def sum_ops(ops: list[Op], gpu: GpuSpec, engine: str | None, shape: tuple[int, ...],
            fused: Collection[str] = ()) -> StepTime:
    """The kernels of ``ops`` summed (broadcast to ``shape``), without communication
    (``comm_s`` zero): each op's time counts as compute- or memory-bound by its larger
    roofline term (``engine``, ``fused``: as :func:`op_time`)."""
    zero = np.zeros(shape)
    total, cb, mb, flops, nbytes, tc_sum, tm_sum = (zero.copy() for _ in range(7))
    for op in ops:
        t, tc, tm = op_time(op, gpu, engine, fused)
        total = total + t
        cb = cb + np.where(tc >= tm, t, 0.0)
        mb = mb + np.where(tc < tm, t, 0.0)
        flops = flops + op.flops
        nbytes = nbytes + op.bytes
        tc_sum = tc_sum + tc
        tm_sum = tm_sum + tm
    return StepTime(total, cb, mb, zero, flops, nbytes, tc_sum, tm_sum)


def tp_comm_s(model: ModelSpec, gpu: GpuSpec, *, tp: int, precision: Precision,
              tokens: Array, engine: EngineProfile | None) -> Array:
    """The two TP all-reduces per layer of a step of ``tokens`` tokens, as ``engine`` runs
    them, and the one more per attention layer of a q/k norm over all heads
    (:func:`qk_norm_allreduces`)."""
    n_bytes = allreduce_bytes(model, tokens=tokens, act_bytes=precision.activation_bytes)
    t = 2 * model.num_layers * np.asarray(
        engine_allreduce_s(gpu, tp, engine, tokens=tokens, n_bytes=n_bytes))
    n_qk = qk_norm_allreduces(model, tp)
    if n_qk:
        t = t + n_qk * np.asarray(engine_allreduce_s(
            gpu, tp, engine, tokens=tokens,
            n_bytes=np.asarray(tokens, dtype=np.float64) * QK_NORM_ALLREDUCE_BYTES))
    return np.asarray(t)


# MiniMax-M2's q/k RMSNorm spans all heads ("per_layer"); under TP each rank holds some heads,
# so the engines all-reduce each token's two partial sums of squares (q and k, fp32) before
# normalizing: vLLM MiniMaxText01RMSNormTP.forward_qk (tensor_model_parallel_all_reduce of a
# [tokens, 2] fp32 tensor; later a fused one-shot all-reduce + norm kernel,
# minimax_allreduce_rms_qk), SGLang MiniMaxM2RMSNormTP
QK_NORM_ALLREDUCE_BYTES = 2 * 4


def qk_norm_allreduces(model: ModelSpec, tp: int) -> int:
    """All-reduces per step of a q/k norm over all heads split across ``tp`` ranks: one per
    attention layer, the layers :func:`kvopt.physics.ops.step_ops` runs the ``qk_norm`` op in
    (none with per-head norms, or on one GPU)."""
    if tp <= 1 or not (model.qk_norm and model.qk_norm_width):
        return 0
    return sum(k != "linear" for k in model.kinds)
