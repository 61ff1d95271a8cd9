"""Roofline step time: per op ``t = smoothmax(FLOPs / (peak x eff_c), bytes / (bw x eff_m))``.

Each op's compute and memory times come from the GPU card (dense peak per dtype, spec
bandwidth) scaled by the measured efficiencies of :mod:`kvopt.physics.efficiency`; GEMM
bandwidth efficiency grows with the weight matrix size. The step adds tensor-parallel
all-reduces (two per layer, :mod:`kvopt.physics.comm`). Engine overheads are added by the
caller (they are engine facts, not physics).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from kvopt.catalog.engines import EngineProfile
from kvopt.catalog.gpus import GpuSpec
from kvopt.catalog.model_spec import ModelSpec
from kvopt.physics.comm import engine_allreduce_s
from kvopt.physics.efficiency import attention_efficiency, efficiency
from kvopt.physics.ops import Op, allreduce_bytes, step_ops
from kvopt.physics.precision import Precision

Array = npt.NDArray[np.float64]


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


def smoothmax(a: Array, b: Array, p: float | Array) -> Array:
    """``(a^p + b^p)^(1/p)``: the maximum, softened near the ridge point (p fitted)."""
    hi = np.maximum(a, b)
    lo = np.minimum(a, b)
    # hi x (1 + (lo/hi)^p)^(1/p): the same value with two powers instead of three
    r = lo / np.where(hi > 0, hi, 1.0)
    return np.asarray(hi * (1.0 + r**p) ** (1.0 / p))


def op_time(op: Op, gpu: GpuSpec) -> tuple[Array, Array, Array]:
    """(time, compute term, memory term) of one op on ``gpu``."""
    eff = efficiency(gpu.id, op.compute_dtype)
    peak: Array | float = gpu.peak_flop_s(op.compute_dtype) * eff.compute
    if op.kind == "attention":  # attention kernels reach less, and short prefills less still
        att = attention_efficiency(gpu.id, op.compute_dtype)
        keys = np.asarray(op.keys, dtype=np.float64)
        peak = gpu.peak_flop_s(op.compute_dtype) * np.where(
            keys > 0, att.prefill_fraction(keys), att.compute)
    em: Array | float = eff.memory
    if op.kind == "gemm" and op.weight_matrix_bytes > 0:
        # small launches stream below em: the ramp follows the bytes one launch moves
        # (weights, activations and output), as in the fit (benchmarks/fit_efficiency.py)
        b = op.bytes / max(op.count, 1.0)
        em = eff.memory * b / (b + gpu.bandwidth_bytes_s * eff.ramp_tau_s)
    tc = op.flops / peak
    tm = op.bytes / (gpu.bandwidth_bytes_s * em)
    return smoothmax(tc, tm, eff.smoothmax_p), tc, tm


def step_time(model: ModelSpec, gpu: GpuSpec, *, tp: int, precision: Precision,
              seqs: Array | float, new: Array | float, past: Array | float,
              engine: EngineProfile | None = None) -> StepTime:
    """Time of one forward step (see :func:`kvopt.physics.ops.step_ops` for the work); the
    TP all-reduces run as ``engine`` runs them (its own kernels or plain NCCL)."""
    ops = step_ops(model, tp=tp, precision=precision, seqs=seqs, new=new, past=past)
    shape = np.broadcast(np.asarray(seqs), np.asarray(new), np.asarray(past)).shape
    zero = np.zeros(shape)
    total, cb, mb, flops, nbytes, tc_sum, tm_sum = (zero.copy() for _ in range(7))
    for op in ops:
        t, tc, tm = op_time(op, gpu)
        total = total + t
        cb = cb + np.where(tc >= tm, t, 0.0)
        mb = mb + np.where(tc < tm, t, 0.0)
        flops = flops + op.flops
        nbytes = nbytes + op.bytes
        tc_sum = tc_sum + tc
        tm_sum = tm_sum + tm
    tokens = np.asarray(seqs, dtype=np.float64) * np.asarray(new, dtype=np.float64)
    comm = tp_comm_s(model, gpu, tp=tp, precision=precision, tokens=tokens, engine=engine) + zero
    return StepTime(total + comm, cb, mb, comm, flops, nbytes, tc_sum, tm_sum)


def tp_comm_s(model: ModelSpec, gpu: GpuSpec, *, tp: int, precision: Precision,
              tokens: Array, engine: EngineProfile | None) -> Array:
    """The two TP all-reduces per layer of a step of ``tokens`` tokens, as ``engine`` runs
    them."""
    n_bytes = allreduce_bytes(model, tokens=tokens, act_bytes=precision.activation_bytes)
    return 2 * model.num_layers * np.asarray(
        engine_allreduce_s(gpu, tp, engine, tokens=tokens, n_bytes=n_bytes))
