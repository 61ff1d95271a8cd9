"""`estimate`: one static batch on one replica (a TP group, or a layout with expert,
attention-data or pipeline parallelism) — memory, latency, throughput, utilization and cost,
from the physics and the engine profile."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from kvopt.catalog.engine_versions import transfer_note
from kvopt.catalog.engines import EngineProfile
from kvopt.catalog.gpus import GpuSpec
from kvopt.catalog.model_spec import ModelSpec
from kvopt.catalog.prices import price_for
from kvopt.errors import InputError
from kvopt.physics.roofline import StepTime
from kvopt.physics.vision import ImageInput
from kvopt.report import (
    CostReport,
    Estimate,
    LatencyReport,
    LoadReport,
    MemoryReport,
    ThroughputReport,
    UtilizationReport,
)
from kvopt.serving.features import PrefixCache, SpecDecode
from kvopt.serving.lengths import LengthDist, fixed, parse_dist
from kvopt.serving.load import Load
from kvopt.serving.parallel_estimate import layout_step_time
from kvopt.serving.replica import Replica, build_replica
from kvopt.serving.serve import estimate_under_load
from kvopt.units import GIB, MS_PER_S


def _dist(name: str, length: int | None, dist: LengthDist | str | None) -> LengthDist:
    if (length is None) == (dist is None):
        raise InputError(f"{name}_len", length, f"give exactly one of {name}_len and "
                         f"{name}_dist")
    if dist is None:
        return fixed(_positive_int(f"{name}_len", length))  # type: ignore[arg-type]
    return dist if isinstance(dist, LengthDist) else parse_dist(dist, field=f"{name}_dist")


def _positive_int(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(name, value, "must be a positive integer")
    return value


def _prefill(rep: Replica, batch: int, input_len: int) -> tuple[StepTime, int]:
    """Prefill of ``batch`` prompts in engine steps of at most the token budget.

    Returns the summed step cost (time, FLOPs, bytes) and the number of steps."""
    eng = rep.engine
    budget = eng.step_tokens if eng.chunked_prefill else max(eng.step_tokens, input_len)
    if input_len <= budget:
        per_step = max(1, min(batch, budget // input_len))
        full, rest = divmod(batch, per_step)
        seqs = np.array([per_step] * full + ([rest] if rest else []), dtype=np.float64)
        st = layout_step_time(rep, seqs=seqs, new=input_len, past=0.0)
        n = len(seqs)
        return _sum(st, 1.0), n
    starts = np.arange(0, input_len, budget, dtype=np.float64)
    new = np.minimum(budget, input_len - starts)
    st = layout_step_time(rep, seqs=1.0, new=new, past=starts)
    return _sum(st, float(batch)), batch * len(starts)


def _sum(st: StepTime, times: float) -> StepTime:
    def s(x: Any) -> Any:
        return np.asarray(float(np.sum(x)) * times)

    return StepTime(s(st.total_s), s(st.compute_bound_s), s(st.memory_bound_s), s(st.comm_s),
                    s(st.flops), s(st.bytes), s(st.compute_only_s), s(st.memory_only_s))


def estimate(*, model: str | ModelSpec, gpu: str | GpuSpec, input_len: int | None = None,
             output_len: int | None = None, batch: int | None = None, tp: int = 1,
             ep: int = 1, dp: int = 1, pp: int = 1,
             weights: str | None = None, kv_dtype: str | None = None,
             engine: str | EngineProfile = "vllm",
             price_usd_h: float | None = None, price_file: str | None = None,
             load: Load | None = None, input_dist: LengthDist | str | None = None,
             output_dist: LengthDist | str | None = None, prefix: PrefixCache | None = None,
             spec: SpecDecode | None = None, images: ImageInput | None = None) -> Estimate:
    """One replica of ``tp`` GPUs. Memory figures are per GPU, throughput per replica.

    Either a static ``batch`` of requests with ``input_len`` prompt and ``output_len`` output
    tokens, or a ``load`` (``Load(mode="rps"|"concurrency"|"offline", value=...)``) with
    fixed lengths or length distributions (``input_dist``/``output_dist``: a `LengthDist` or
    a spec string such as ``"lognormal:mean=1024,sigma=0.6"``). ``weights`` None: the
    checkpoint's own format. ``images``: every request's images (the prompt lengths already
    count their tokens: :func:`kvopt.build.images`)."""
    inp = _dist("input", input_len, input_dist)
    out = _dist("output", output_len, output_dist)
    if load is None:
        if batch is None:
            raise InputError("batch", None, "give a batch size or a load",
                             "e.g. batch=8 or load=Load(mode='rps', value=2)")
        load = Load(mode="batch", value=batch)
    if load.mode != "batch":
        if price_usd_h is not None and price_usd_h <= 0:
            raise InputError("price_usd_h", price_usd_h, "must be > 0")
        rep = build_replica(model=model, gpu=gpu, tp=tp, weights=weights, kv_dtype=kv_dtype,
                            engine=engine, ep=ep, dp=dp, pp=pp, images=images)
        return estimate_under_load(rep, load=load, input_dist=inp, output_dist=out,
                                   price_usd_h=price_usd_h, price_file=price_file,
                                   prefix=prefix, spec=spec)
    if prefix is not None or spec is not None:
        raise InputError("load", "batch", "prefix caching and speculative decoding are modeled "
                         "under a load", "use --rps, --concurrency or --offline")
    if not (inp.is_fixed and out.is_fixed):
        raise InputError("batch", load.value, "a static batch needs fixed lengths",
                         "use --input-len/--output-len, or a load (--rps/--concurrency)")
    batch = int(load.value)
    input_len, output_len = int(inp.values[0]), int(out.values[0])
    for name, value in (("batch", batch), ("tp", tp)):
        _positive_int(name, value)
    if price_usd_h is not None and price_usd_h <= 0:
        raise InputError("price_usd_h", price_usd_h, "must be > 0")
    rep = build_replica(model=model, gpu=gpu, tp=tp, weights=weights, kv_dtype=kv_dtype,
                        engine=engine, ep=ep, dp=dp, pp=pp, images=images)
    m, g, eng, prec = rep.model, rep.gpu, rep.engine, rep.precision
    if input_len + output_len > m.max_context:
        raise InputError("input_len + output_len", input_len + output_len,
                         f"exceeds {m.name}'s context of {m.max_context} tokens",
                         "shorten the prompt or the output")
    notes = list(prec.notes)
    if (unchunked := eng.unchunked_note(input_len)) is not None:
        notes.append(unchunked)
    if (transfer := transfer_note(eng, m.name)) is not None:
        notes.append(transfer)

    # memory per GPU: the engine reserves activations for its largest step
    context = input_len + output_len
    w_b, act_b, pool = rep.weights_bytes, rep.activation_bytes, rep.kv_pool_bytes
    kv_seq = rep.seq_bytes(context)
    kv_b = math.ceil(batch / rep.dp) * kv_seq  # each attention-DP rank holds its own
    ovh_b = eng.runtime_overhead_gib * GIB
    fixed = w_b + act_b + ovh_b
    kv_tok = rep.kv_bytes_per_token
    capacity_tokens = rep.kv_capacity_tokens if pool > 0 else 0
    max_seqs = min(eng.max_num_seqs, rep.dp * int(pool // kv_seq)) if pool > 0 else 0
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
    overhead_s = rep.step_overhead_s
    pre, n_pre = _prefill(rep, batch, input_len)
    prefill_s = float(pre.total_s) + n_pre * overhead_s + batch * rep.encoder_s
    dec = layout_step_time(rep, seqs=float(batch), new=1.0, past=input_len + output_len / 2)
    decode_s = float(dec.total_s) + overhead_s
    # the request overhead (outside the engine steps) delays every request's first token
    ttft_s = prefill_s + rep.request_overhead_s
    e2e_s = ttft_s + (output_len - 1) * decode_s

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
    usd_h = price.usd_per_gpu_hour * rep.n_gpus if price else None
    if price is None:
        notes.append(f"no price for {g.id} in the price book; pass --price-usd-h for cost")
    return Estimate(
        model=m.name, gpu=g.id, tp=tp, ep=rep.ep, dp=rep.dp, pp=rep.pp, weights=prec.weights,
        kv_dtype=prec.kv_dtype,
        engine=eng.name,
        memory=MemoryReport(
            weights_gib=w_b / GIB, kv_cache_gib=kv_b / GIB, activations_gib=act_b / GIB,
            overhead_gib=ovh_b / GIB, total_gib=(fixed + kv_b) / GIB, gpu_gib=g.memory_gib,
            fits=fits, kv_bytes_per_token=kv_tok, kv_capacity_tokens=capacity_tokens,
            max_concurrent_seqs=max(0, max_seqs), reason=reason),
        latency=LatencyReport(
            prefill_ms=prefill_s * MS_PER_S, ttft_ms=ttft_s * MS_PER_S,
            decode_step_ms=decode_s * MS_PER_S, tpot_ms=decode_s * MS_PER_S,
            e2e_ms=e2e_s * MS_PER_S, ttft_p50_ms=ttft_s * MS_PER_S,
            ttft_p90_ms=ttft_s * MS_PER_S, ttft_p99_ms=ttft_s * MS_PER_S,
            tpot_p50_ms=decode_s * MS_PER_S, tpot_p90_ms=decode_s * MS_PER_S,
            tpot_p99_ms=decode_s * MS_PER_S, queue_ms=0.0, e2e_p50_ms=e2e_s * MS_PER_S,
            e2e_p90_ms=e2e_s * MS_PER_S, e2e_p99_ms=e2e_s * MS_PER_S),
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
        load=LoadReport(mode="batch", value=float(batch), steady_state_batch=float(batch),
                        utilization=min(1.0, batch / max(max_seqs, 1)), saturated=False),
        notes=tuple(notes),
    )
