"""Estimates under a load (rps, concurrency, offline): the analytic steady state, or the
simulator, rendered in the same `Estimate` shape as a static batch."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from kvopt.caching import Memo, memoized
from kvopt.catalog.engine_versions import transfer_note
from kvopt.catalog.prices import price_for
from kvopt.errors import InputError
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
from kvopt.serving.lengths import LengthDist
from kvopt.serving.load import Load
from kvopt.serving.parallel_estimate import layout_step_time
from kvopt.serving.replica import Replica, build_replica, with_draft
from kvopt.serving.sim import SimResult, simulate
from kvopt.serving.steady import SteadyModel, SteadyState, solve
from kvopt.serving.stepcost import StepCost
from kvopt.units import GIB, MS_PER_S


@dataclass(frozen=True)
class _Metrics:
    """What either model measured, in seconds/requests."""

    ttft: tuple[float, float, float, float]  # mean, p50, p90, p99
    tpot: tuple[float, float, float, float]
    e2e_mean: float
    queue: float
    throughput_rps: float
    running: float
    utilization: float
    saturated: bool
    capacity_rps: float | None
    limit: str
    e2e: tuple[float, float, float, float] = (math.inf,) * 4  # mean, p50, p90, p99


def check_context(rep: Replica, input_dist: LengthDist, output_dist: LengthDist) -> None:
    """Longest request must fit the model's context (fail rather than truncate)."""
    longest = input_dist.max + output_dist.max
    if longest > rep.model.max_context:
        raise InputError("input + output length", longest,
                         f"the length distributions reach {longest} tokens, beyond "
                         f"{rep.model.name}'s context of {rep.model.max_context}",
                         "cap the distributions (e.g. a smaller sigma, high or mean)")


@memoized("step-cost tables", maxsize=256)
def step_cost_for(rep: Replica) -> StepCost:
    """One step-cost table per replica (cached); a layout beyond tensor parallelism prices
    its steps with :class:`kvopt.serving.parallel_step.ParallelStepCost`."""
    eng = rep.engine
    if (rep.ep, rep.dp, rep.pp) != (1, 1, 1):
        from kvopt.serving.parallel_step import ParallelStepCost

        return ParallelStepCost(rep, eng.step_tokens + eng.max_num_seqs)
    return StepCost(rep, eng.step_tokens + eng.max_num_seqs)


_MODELS: Memo[tuple[object, ...], SteadyModel] = Memo("steady models", 4096)


def draft_replica(rep: Replica, spec: SpecDecode | None) -> Replica | None:
    """A separate draft model's replica (same GPU, TP, precision and engine), if any."""
    if spec is None or spec.draft == "head":
        return None
    if (rep.ep, rep.dp, rep.pp) != (1, 1, 1):
        raise InputError("spec_draft", spec.draft, "a separate draft model beside expert, "
                         "attention-data or pipeline parallelism is not modeled",
                         "use spec_draft 'head' (EAGLE/MTP) or a tensor-parallel layout")
    return build_replica(model=spec.draft, gpu=rep.gpu, tp=rep.tp,
                         weights=rep.precision.weights, kv_dtype=rep.precision.kv_dtype,
                         engine=rep.engine)


def draft_cost(rep: Replica, spec: SpecDecode | None) -> StepCost | None:
    """Step cost of a separate draft model (same GPU, TP, precision and engine), if any."""
    draft = draft_replica(rep, spec)
    return None if draft is None else step_cost_for(draft)


def loaded(rep: Replica, spec: SpecDecode | None) -> Replica:
    """``rep`` with everything it loads: a draft model's weights and KV count in its
    memory (:func:`kvopt.serving.replica.with_draft`)."""
    draft = draft_replica(rep, spec)
    return rep if draft is None or rep.draft_model else with_draft(rep, draft)


def steady_model(rep: Replica, input_dist: LengthDist, output_dist: LengthDist, *,
                 prefix: PrefixCache | None = None, spec: SpecDecode | None = None,
                 max_num_seqs: int | None = None) -> SteadyModel:
    """The steady-state model of a replica and length mix (cached: it caches its capacity).
    ``max_num_seqs`` overrides the engine's cap on running sequences (a plan's max batch)."""
    key = (rep, input_dist.label, output_dist.label, prefix, spec, max_num_seqs)
    rep = loaded(rep, spec)
    if max_num_seqs is not None and rep.dp > 1:  # a plan's max batch is per attention rank
        max_num_seqs *= rep.dp
    if key not in _MODELS:
        _MODELS.put(key, SteadyModel(step_cost_for(rep), input_dist, output_dist,
                                     prefix=prefix, spec=spec, draft=draft_cost(rep, spec),
                                     max_num_seqs=max_num_seqs))
    return _MODELS[key]


def estimate_under_load(rep: Replica, *, load: Load, input_dist: LengthDist,
                        output_dist: LengthDist, price_usd_h: float | None = None,
                        price_file: str | None = None, prefix: PrefixCache | None = None,
                        spec: SpecDecode | None = None) -> Estimate:
    """Analytic steady state of ``rep`` under ``load``."""
    rep = loaded(rep, spec)
    check_context(rep, input_dist, output_dist)
    _require_fit(rep)
    model = steady_model(rep, input_dist, output_dist, prefix=prefix, spec=spec)
    st = solve(model, load)
    notes: tuple[str, ...] = ()
    if (load.mode == "offline" and rep.engine.kv_admission == "on_demand"
            and model.kv_seqs < min(float(model.max_seqs), load.value)):
        notes = (f"{load.value:g} requests at once fill the KV cache ({model.kv_seqs:.0f} "
                 f"sequences at their mean length): {rep.engine.name} admits on the prompt's "
                 "blocks and then preempts and recomputes; the analytic run admits up to the "
                 "pool's mean occupancy and never preempts, so its TPOT is optimistic here "
                 "(against kvopt's simulator: mean up to ~12% and p99 up to ~50% low); "
                 "`kvopt simulate` runs the preemptions",)
    return _render(rep, load, input_dist, output_dist, _from_steady(st), price_usd_h,
                   price_file, source="analytic steady state", extra_notes=notes,
                   prefix=prefix)


def simulate_under_load(rep: Replica, *, load: Load, input_dist: LengthDist,
                        output_dist: LengthDist, num_requests: int = 2000, seed: int = 0,
                        price_usd_h: float | None = None, price_file: str | None = None,
                        warmup_fraction: float = 0.1, prefix: PrefixCache | None = None,
                        spec: SpecDecode | None = None) -> Estimate:
    """The discrete-event simulator's measurement of the same quantities."""
    rep = loaded(rep, spec)
    check_context(rep, input_dist, output_dist)
    _require_fit(rep)
    res = simulate(rep, load=load, input_dist=input_dist, output_dist=output_dist,
                   num_requests=num_requests, seed=seed, step_cost=step_cost_for(rep),
                   prefix=prefix, spec=spec, draft=draft_cost(rep, spec))
    cap = steady_model(rep, input_dist, output_dist, prefix=prefix, spec=spec).capacity()
    notes: tuple[str, ...] = ()
    if load.mode == "concurrency" and output_dist.is_fixed and rep.request_overhead_s > 0:
        notes = (f"each request reaches the scheduler the request overhead "
                 f"({rep.request_overhead_s * MS_PER_S:.3g} ms) after it is sent, so clients of "
                 "fixed-length outputs bunch up again every round; kvopt estimate keeps them "
                 "spread out (real benchmark runs side with it), so the two differ here",)
    return _render(rep, load, input_dist, output_dist,
                   _from_sim(res, load, cap, warmup_fraction), price_usd_h, price_file,
                   source=f"simulated {res.input_len.size} requests (seed {seed})",
                   extra_notes=notes, prefix=prefix)


def _require_fit(rep: Replica) -> None:
    if not rep.fits:
        raise InputError("model", rep.model.name,
                         f"weights and activations do not fit on {rep.n_gpus}x {rep.gpu.id} with "
                         f"{rep.precision.weights} weights under {rep.engine.name}",
                         "use more GPUs (--tp), lower-precision weights or a larger GPU")


def _from_steady(st: SteadyState) -> _Metrics:
    return _Metrics(st.ttft_s, st.tpot_s, st.e2e_mean_s, st.queue_s, st.throughput_rps,
                    st.steady_state_batch, st.utilization, st.saturated, st.capacity_rps,
                    st.limit, st.e2e_s)


def _stats(x: np.ndarray) -> tuple[float, float, float, float]:
    x = x[np.isfinite(x)]
    if x.size == 0:
        return (math.inf,) * 4
    p50, p90, p99 = np.percentile(x, [50, 90, 99])
    return float(x.mean()), float(p50), float(p90), float(p99)


def _from_sim(r: SimResult, load: Load, cap: tuple[float, str], warmup: float) -> _Metrics:
    n = r.arrival_s.size
    sel = slice(0, n)
    benchmark = load.mode == "concurrency" and load.rounds is not None  # every request counts
    if load.mode in ("rps", "concurrency") and n >= 20 and not benchmark:
        sel = slice(int(n * warmup), int(n * (1 - warmup)))
    ttft = (r.first_token_s - r.arrival_s)[sel]
    dec = np.maximum(r.output_len - 1, 1)
    tpot = ((r.finish_s - r.first_token_s) / dec)[sel]
    tpot = tpot[r.output_len[sel] > 1]
    queue = (r.first_scheduled_s - r.arrival_s - r.request_overhead_s)[sel]
    span = float(np.nanmax(r.finish_s) - np.nanmin(r.arrival_s))
    thr = n / span if span > 0 else math.inf
    e2e = (r.finish_s - r.arrival_s)[sel]
    saturated = False
    if load.mode == "rps":
        # a run that cannot keep up: the queue grows (late requests wait much longer)
        half = ttft.size // 2
        late, early = np.nanmean(ttft[half:]), np.nanmean(ttft[:half])
        saturated = bool(thr < 0.95 * load.value or late > 3 * early + 1.0)
    util = min(1.0, load.value / cap[0]) if load.mode == "rps" and cap[0] > 0 else 1.0
    e2e_s = _stats(e2e)
    return _Metrics(_stats(ttft), _stats(tpot), float(np.nanmean(e2e)),
                    float(np.nanmean(queue)), thr, r.mean_running, util, saturated, cap[0],
                    cap[1], (float(np.nanmean(e2e)), e2e_s[1], e2e_s[2], e2e_s[3]))


def _render(rep: Replica, load: Load, inp: LengthDist, out: LengthDist, m: _Metrics,
            price_usd_h: float | None, price_file: str | None, *, source: str,
            extra_notes: tuple[str, ...] = (), prefix: PrefixCache | None = None
            ) -> Estimate:
    g, eng, prec = rep.gpu, rep.engine, rep.precision
    notes = [*prec.notes, f"{load.mode} load: {source}", *extra_notes]
    if (unchunked := eng.unchunked_note(inp.max)) is not None:
        notes.append(unchunked)
    if (transfer := transfer_note(eng, rep.model.name)) is not None:
        notes.append(transfer)
    ctx = inp.mean + out.mean / 2
    kv_seq = rep.seq_bytes(ctx)
    running = max(m.running, 0.0)
    kv_b = running / rep.dp * kv_seq  # per GPU: each attention-DP rank holds its own
    ovh_b = eng.runtime_overhead_gib * GIB
    fits = rep.fits and kv_b <= rep.kv_pool_bytes
    max_seqs = min(eng.max_num_seqs, rep.dp * int(rep.kv_pool_bytes // max(kv_seq, 1.0)))
    reason = "" if fits else (f"the KV cache of {running:.0f} running sequences needs "
                              f"{kv_b / GIB:.1f} GiB, the pool holds "
                              f"{rep.kv_pool_bytes / GIB:.1f} GiB")
    if m.saturated:
        notes.append(f"saturated: the replica sustains at most {m.capacity_rps or 0:.3g} "
                     f"requests/s ({m.limit})")
    # a representative step at the steady batch for utilization
    batch = max(1.0, running)
    pre_tok = m.throughput_rps * inp.mean * (m.tpot[0] if math.isfinite(m.tpot[0]) else 0.0)
    st = layout_step_time(rep, seqs=batch, new=1.0, past=ctx)
    dt = float(st.total_s) + rep.step_overhead_s
    pf = layout_step_time(rep, seqs=1.0, new=float(inp.mean), past=0.0)
    prefill_s = float(pf.total_s) + rep.encoder_s  # a prompt's prefill encodes its images
    if prefix is not None and prefix.hit_rate > 0:  # hits prefill only the uncached part
        cached = min(float((prefix.shared_len // eng.block_size) * eng.block_size),
                     float(inp.mean) - 1.0)
        hit = layout_step_time(rep, seqs=1.0, new=float(inp.mean) - cached, past=cached)
        prefill_s = ((1.0 - prefix.hit_rate) * prefill_s
                     + prefix.hit_rate * (float(hit.total_s) + rep.encoder_s))
    flops = float(st.flops) + float(pf.flops) * pre_tok / max(inp.mean, 1.0)
    nbytes = float(st.bytes) + float(pf.bytes) * pre_tok / max(inp.mean, 1.0)
    step_s = m.tpot[0] if math.isfinite(m.tpot[0]) and m.tpot[0] > 0 else dt
    shares = {"compute": float(st.compute_bound_s), "memory": float(st.memory_bound_s),
              "communication": float(st.comm_s), "overhead": rep.step_overhead_s}
    out_tok_s = m.throughput_rps * out.mean
    price = price_for(g.id, price_file=price_file, override_usd_h=price_usd_h)
    usd_h = price.usd_per_gpu_hour * rep.n_gpus if price else None
    if price is None:
        notes.append(f"no price for {g.id} in the price book; pass --price-usd-h for cost")
    ms = MS_PER_S
    return Estimate(
        model=rep.model.name, gpu=g.id, tp=rep.tp, ep=rep.ep, dp=rep.dp, pp=rep.pp,
        weights=prec.weights,
        kv_dtype=prec.kv_dtype, engine=eng.name,
        memory=MemoryReport(
            weights_gib=rep.weights_bytes / GIB, kv_cache_gib=kv_b / GIB,
            activations_gib=rep.activation_bytes / GIB, overhead_gib=ovh_b / GIB,
            total_gib=(rep.weights_bytes + rep.activation_bytes + ovh_b + kv_b) / GIB,
            gpu_gib=g.memory_gib, fits=fits, kv_bytes_per_token=rep.kv_bytes_per_token,
            kv_capacity_tokens=rep.kv_capacity_tokens, max_concurrent_seqs=max(0, max_seqs),
            reason=reason),
        latency=LatencyReport(
            prefill_ms=(prefill_s + rep.step_overhead_s) * ms, ttft_ms=m.ttft[0] * ms,
            decode_step_ms=dt * ms, tpot_ms=m.tpot[0] * ms, e2e_ms=m.e2e_mean * ms,
            ttft_p50_ms=m.ttft[1] * ms, ttft_p90_ms=m.ttft[2] * ms, ttft_p99_ms=m.ttft[3] * ms,
            tpot_p50_ms=m.tpot[1] * ms, tpot_p90_ms=m.tpot[2] * ms, tpot_p99_ms=m.tpot[3] * ms,
            queue_ms=m.queue * ms, e2e_p50_ms=m.e2e[1] * ms, e2e_p90_ms=m.e2e[2] * ms,
            e2e_p99_ms=m.e2e[3] * ms),
        throughput=ThroughputReport(
            output_tok_s=out_tok_s, total_tok_s=m.throughput_rps * (inp.mean + out.mean),
            requests_s=m.throughput_rps),
        utilization=UtilizationReport(
            mfu=flops / (g.peak_flop_s(prec.compute_dtype) * step_s),
            mbu=min(1.0, nbytes / (g.bandwidth_bytes_s * step_s)),
            arithmetic_intensity=flops / nbytes if nbytes else math.inf,
            bottleneck=max(shares, key=lambda k: shares[k])),
        cost=CostReport(
            usd_per_hour=usd_h,
            usd_per_million_output_tokens=(usd_h / (out_tok_s * 3600) * 1e6)
            if usd_h and out_tok_s > 0 else None,
            price_source=f"{price.provider}: {price.source}" if price else ""),
        load=LoadReport(mode=load.mode, value=float(load.value), steady_state_batch=running,
                        utilization=m.utilization, saturated=m.saturated,
                        capacity_rps=m.capacity_rps, limit=m.limit),
        notes=tuple(notes),
    )
