"""`estimate`: one static batch on one replica (a TP group) — memory, latency, throughput,
utilization and cost, from the physics and the engine profile."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from kvopt.catalog.engines import EngineProfile, load_engine
from kvopt.catalog.gpus import GpuSpec, load_gpu
from kvopt.catalog.model_spec import ModelSpec
from kvopt.catalog.models import load_model
from kvopt.catalog.prices import price_for
from kvopt.errors import InputError
from kvopt.physics.comm import allreduce_model
from kvopt.physics.memory import (
    activation_bytes,
    kv_bytes_for_context,
    kv_bytes_per_token,
    weight_bytes_per_gpu,
)
from kvopt.physics.ops import step_ops
from kvopt.physics.precision import Precision, resolve_precision
from kvopt.physics.roofline import StepTime, step_time
from kvopt.physics.tp import check_tp
from kvopt.units import GIB, MS_PER_S


@dataclass(frozen=True, kw_only=True)
class MemoryReport:
    weights_gib: float
    kv_cache_gib: float
    activations_gib: float
    overhead_gib: float
    total_gib: float
    gpu_gib: float
    fits: bool
    kv_bytes_per_token: float
    kv_capacity_tokens: int
    max_concurrent_seqs: int
    reason: str = ""


@dataclass(frozen=True, kw_only=True)
class LatencyReport:
    prefill_ms: float
    ttft_ms: float
    decode_step_ms: float
    tpot_ms: float
    e2e_ms: float


@dataclass(frozen=True, kw_only=True)
class ThroughputReport:
    output_tok_s: float
    total_tok_s: float
    requests_s: float


@dataclass(frozen=True, kw_only=True)
class UtilizationReport:
    mfu: float
    mbu: float
    arithmetic_intensity: float
    bottleneck: str


@dataclass(frozen=True, kw_only=True)
class CostReport:
    usd_per_hour: float | None
    usd_per_million_output_tokens: float | None
    price_source: str = ""


@dataclass(frozen=True, kw_only=True)
class Estimate:
    """Result of :func:`estimate`; ``to_dict()`` is the ``--json`` shape."""

    model: str
    gpu: str
    tp: int
    weights: str
    kv_dtype: str
    engine: str
    memory: MemoryReport
    latency: LatencyReport
    throughput: ThroughputReport
    utilization: UtilizationReport
    cost: CostReport
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["notes"] = list(self.notes)
        return d


def kv_pool_bytes(eng: EngineProfile, *, gpu_bytes: float, weights_bytes: float,
                  activation_bytes: float) -> float:
    """Bytes the engine leaves for the KV cache on one GPU (negative = does not fit).

    * ``total`` (vLLM, SGLang, llama.cpp): ``fraction x GPU - weights - activations``; the
      runtime overhead (CUDA context, graphs, comm buffers) lives in the ``1 - fraction``
      headroom, and only what exceeds the headroom comes out of the pool.
    * ``free_after_weights`` (TensorRT-LLM): ``fraction x (GPU - weights - activations -
      runtime)``.
    """
    overhead = eng.runtime_overhead_gib * GIB
    if eng.memory_fraction_applies_to == "free_after_weights":
        free = gpu_bytes - weights_bytes - activation_bytes - overhead
        return free * eng.memory_fraction if free > 0 else free
    headroom = (1.0 - eng.memory_fraction) * gpu_bytes
    return (eng.memory_fraction * gpu_bytes - weights_bytes - activation_bytes
            - max(0.0, overhead - headroom))


def _positive_int(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(name, value, "must be a positive integer")
    return value


def _prefill(model: ModelSpec, gpu: GpuSpec, tp: int, prec: Precision, eng: EngineProfile,
             batch: int, input_len: int) -> tuple[StepTime, int]:
    """Prefill of ``batch`` prompts in engine steps of at most the token budget.

    Returns the summed step cost (time, FLOPs, bytes) and the number of steps."""
    budget = eng.step_tokens if eng.chunked_prefill else max(eng.step_tokens, input_len)
    if input_len <= budget:
        per_step = max(1, min(batch, budget // input_len))
        full, rest = divmod(batch, per_step)
        seqs = np.array([per_step] * full + ([rest] if rest else []), dtype=np.float64)
        st = step_time(model, gpu, tp=tp, precision=prec, seqs=seqs, new=input_len, past=0.0)
        n = len(seqs)
        return _sum(st, 1.0), n
    starts = np.arange(0, input_len, budget, dtype=np.float64)
    new = np.minimum(budget, input_len - starts)
    st = step_time(model, gpu, tp=tp, precision=prec, seqs=1.0, new=new, past=starts)
    return _sum(st, float(batch)), batch * len(starts)


def _sum(st: StepTime, times: float) -> StepTime:
    def s(x: Any) -> Any:
        return np.asarray(float(np.sum(x)) * times)

    return StepTime(s(st.total_s), s(st.compute_bound_s), s(st.memory_bound_s), s(st.comm_s),
                    s(st.flops), s(st.bytes), s(st.compute_only_s), s(st.memory_only_s))


def _launch_s(model: ModelSpec, tp: int, prec: Precision, eng: EngineProfile) -> float:
    """Per-step kernel-launch cost for engines that do not replay CUDA graphs."""
    if eng.cuda_graphs:
        return 0.0
    ops = step_ops(model, tp=tp, precision=prec, seqs=1.0, new=1.0, past=1.0)
    kernels = sum(op.count for op in ops) + (2 * model.num_layers if tp > 1 else 0)
    return kernels * eng.kernel_launch_us / 1e6


def estimate(*, model: str | ModelSpec, gpu: str | GpuSpec, input_len: int, output_len: int,
             batch: int, tp: int = 1, weights: str = "bf16", kv_dtype: str | None = None,
             engine: str = "vllm", price_usd_h: float | None = None,
             price_file: str | None = None) -> Estimate:
    """Static batch of ``batch`` requests (``input_len`` prompt + ``output_len`` output tokens)
    on one replica of ``tp`` GPUs. Memory figures are per GPU, throughput per replica."""
    m = model if isinstance(model, ModelSpec) else load_model(model)
    g = gpu if isinstance(gpu, GpuSpec) else load_gpu(gpu)
    for name, value in (("input_len", input_len), ("output_len", output_len), ("batch", batch),
                        ("tp", tp)):
        _positive_int(name, value)
    if input_len + output_len > m.max_context:
        raise InputError("input_len + output_len", input_len + output_len,
                         f"exceeds {m.name}'s context of {m.max_context} tokens",
                         "shorten the prompt or the output")
    check_tp(m, tp)
    allreduce_model(g, tp)
    if price_usd_h is not None and price_usd_h <= 0:
        raise InputError("price_usd_h", price_usd_h, "must be > 0")
    eng = load_engine(engine, g)
    prec = resolve_precision(gpu=g, weights=weights, kv_dtype=kv_dtype, engine=eng.name,
                             hidden_size=m.hidden_size)
    notes = list(prec.notes)

    # memory per GPU
    context = input_len + output_len
    w_b = weight_bytes_per_gpu(m, tp, prec)
    kv_seq = float(kv_bytes_for_context(m, context, tp=tp, kv_bytes=prec.kv_bytes_per_value,
                                        block_size=eng.block_size))
    kv_b = batch * kv_seq
    step_tokens = (min(batch * input_len, eng.step_tokens) if eng.chunked_prefill
                   else min(batch * input_len, max(eng.step_tokens, input_len)))
    act_b = float(activation_bytes(m, tokens=step_tokens, seqs=min(batch, eng.max_num_seqs),
                                   tp=tp, act_bytes=prec.activation_bytes))
    ovh_b = eng.runtime_overhead_gib * GIB
    gpu_b = g.memory_bytes
    fixed = w_b + act_b + ovh_b
    pool = kv_pool_bytes(eng, gpu_bytes=gpu_b, weights_bytes=w_b, activation_bytes=act_b)
    kv_tok = kv_bytes_per_token(m, prec.kv_bytes_per_value, tp)
    capacity_tokens = max(0, int(pool // kv_tok)) if pool > 0 else 0
    max_seqs = min(eng.max_num_seqs, int(pool // kv_seq)) if pool > 0 else 0
    fits = pool > 0 and kv_b <= pool
    reason = ""
    if pool <= 0:
        reason = (f"weights {w_b / GIB:.1f} GiB + activations {act_b / GIB:.1f} GiB + runtime "
                  f"{ovh_b / GIB:.1f} GiB leave no room for the KV cache in the "
                  f"{g.memory_gib:g} GiB of {g.id} ({eng.name} uses "
                  f"{eng.memory_fraction:.0%} of {eng.memory_fraction_applies_to} memory); use "
                  "more GPUs (--tp), lower-precision weights or a larger GPU")
    elif not fits:
        reason = (f"KV cache for batch {batch} x {context} tokens needs {kv_b / GIB:.1f} GiB "
                  f"but only {pool / GIB:.1f} GiB is left; at most {max_seqs} sequences fit")
    if not fits:
        notes.append("does not fit: the latency, throughput and cost figures assume it did")
    if batch > eng.max_num_seqs:
        notes.append(f"batch {batch} exceeds {eng.name}'s max_num_seqs={eng.max_num_seqs}; "
                     "the engine would run it in waves")

    # latency
    overhead_s = eng.step_overhead_ms / MS_PER_S + _launch_s(m, tp, prec, eng)
    pre, n_pre = _prefill(m, g, tp, prec, eng, batch, input_len)
    prefill_s = float(pre.total_s) + n_pre * overhead_s
    dec = step_time(m, g, tp=tp, precision=prec, seqs=float(batch), new=1.0,
                    past=input_len + output_len / 2)
    decode_s = float(dec.total_s) + overhead_s
    e2e_s = prefill_s + (output_len - 1) * decode_s

    # utilization over the whole batch (per GPU)
    n_dec = output_len - 1
    flops = float(pre.flops) + n_dec * float(dec.flops)
    nbytes = float(pre.bytes) + n_dec * float(dec.bytes)
    peak = g.peak_flop_s(prec.compute_dtype)
    shares = {
        "compute": float(pre.compute_bound_s) + n_dec * float(dec.compute_bound_s),
        "memory": float(pre.memory_bound_s) + n_dec * float(dec.memory_bound_s),
        "communication": float(pre.comm_s) + n_dec * float(dec.comm_s),
        "overhead": (n_pre + n_dec) * overhead_s,
    }
    price = price_for(g.id, price_file=price_file, override_usd_h=price_usd_h)
    out_tok_s = batch * output_len / e2e_s
    usd_h = price.usd_per_gpu_hour * tp if price else None
    if price is None:
        notes.append(f"no price for {g.id} in the price book; pass --price-usd-h for cost")
    return Estimate(
        model=m.name, gpu=g.id, tp=tp, weights=prec.weights, kv_dtype=prec.kv_dtype,
        engine=eng.name,
        memory=MemoryReport(
            weights_gib=w_b / GIB, kv_cache_gib=kv_b / GIB, activations_gib=act_b / GIB,
            overhead_gib=ovh_b / GIB, total_gib=(fixed + kv_b) / GIB, gpu_gib=g.memory_gib,
            fits=fits, kv_bytes_per_token=kv_tok, kv_capacity_tokens=capacity_tokens,
            max_concurrent_seqs=max(0, max_seqs), reason=reason),
        latency=LatencyReport(
            prefill_ms=prefill_s * MS_PER_S, ttft_ms=prefill_s * MS_PER_S,
            decode_step_ms=decode_s * MS_PER_S, tpot_ms=decode_s * MS_PER_S,
            e2e_ms=e2e_s * MS_PER_S),
        throughput=ThroughputReport(
            output_tok_s=out_tok_s, total_tok_s=batch * context / e2e_s,
            requests_s=batch / e2e_s),
        utilization=UtilizationReport(
            mfu=flops / (peak * e2e_s), mbu=nbytes / (g.bandwidth_bytes_s * e2e_s),
            arithmetic_intensity=flops / nbytes if nbytes else math.inf,
            bottleneck=max(shares, key=lambda k: shares[k])),
        cost=CostReport(
            usd_per_hour=usd_h,
            usd_per_million_output_tokens=(usd_h / (out_tok_s * 3600) * 1e6) if usd_h else None,
            price_source=f"{price.provider}: {price.source}" if price else ""),
        notes=tuple(notes),
    )
