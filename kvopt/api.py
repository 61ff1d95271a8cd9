"""kvopt's front door: every question kvopt answers, from plain parameters.

One replica: :func:`estimate` (memory, latency, throughput, cost under a batch or a load),
:func:`simulate` (the same measured by the discrete-event simulator), :func:`capacity`
(goodput under SLOs), :func:`curve` (latency against load), :func:`disagg` (prefill/decode
pools). A fleet (defined in :mod:`kvopt.api_fleet`, re-exported here): :func:`plan` (the
optimal fleet for one workload, a MILP), :func:`compare` (the best plan per GPU),
:func:`size` (many workloads from a fleet file or a problem), :func:`schedule` (the cheapest
schedule over time), :func:`tco` (own against rent), :func:`pareto` (the trade-off front).
The CLI, study workers and the web app call these; the builders they use are in
:mod:`kvopt.build`.

Lengths are ``input_len``/``output_len`` (fixed) or ``input_len_dist``/``output_len_dist``
(a spec such as ``"lognormal:mean=1000,sigma=0.6"`` or a :class:`LengthDist`); a load is
one of ``batch``, ``concurrency``, ``rps``, ``offline``. Expected failures raise
:class:`kvopt.errors.KvoptError` subclasses with one-line messages.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kvopt import build, choices, limits
from kvopt.api_fleet import compare as compare  # the fleet questions (kvopt.api_fleet)
from kvopt.api_fleet import pareto as pareto
from kvopt.api_fleet import plan as plan
from kvopt.api_fleet import schedule as schedule
from kvopt.api_fleet import size as size
from kvopt.api_fleet import tco as tco
from kvopt.errors import InfeasiblePlanError

if TYPE_CHECKING:
    from kvopt.catalog.engines import EngineProfile
    from kvopt.catalog.gpus import GpuSpec
    from kvopt.report import Estimate
    from kvopt.serving.lengths import LengthDist
    from kvopt.serving.load import Load
    from kvopt.serving.replica import Replica
    from kvopt.serving.results import CapacityResult


def estimate(*, model: str, gpu: str | GpuSpec, tp: int = 1, ep: int = 1, dp: int = 1,
             pp: int = 1, weights: str | None = None,
             kv_dtype: str | None = None, engine: str | EngineProfile = choices.DEFAULT_ENGINE,
             profile: str | None = None, engine_args: dict[str, Any] | None = None,
             engine_version: str | None = None, input_len: int | None = None,
             output_len: int | None = None, input_len_dist: LengthDist | str | None = None,
             output_len_dist: LengthDist | str | None = None, batch: int | None = None,
             concurrency: int | None = None, rps: float | None = None,
             offline: int | None = None, rounds: int | None = None, load: Load | None = None,
             prefix_len: int | None = None, prefix_hit_rate: float | None = None,
             spec_k: int | None = None, spec_acceptance: float | None = None,
             spec_draft: str = "head", price_usd_h: float | None = None,
             price_file: str | None = None, images_per_request: int | None = None,
             image_size: str | Sequence[int] | None = None) -> Estimate:
    """One replica of ``tp`` GPUs (``tp x dp x pp`` with attention data parallelism and
    pipeline stages; ``ep`` expert-parallel ranks) under a static ``batch`` or a load
    (``concurrency`` clients, Poisson ``rps``, ``offline`` requests; or a :class:`Load`):
    memory per GPU,
    TTFT/TPOT/E2E (percentiles under a load), throughput, utilization and cost.
    ``rounds`` with ``concurrency``: a benchmark run where each client sends that many
    requests, all starting together (statistics over all of them, the first-round burst
    included), as aiperf/genai-perf/``vllm bench serve --max-concurrency`` measure.
    ``weights`` None: the checkpoint's own format (its quantization_config, else bf16).
    ``images_per_request`` images of ``image_size`` (``"WxH"``) per request: a
    vision-language model's prompts grow by their tokens and each prefill encodes them.
    ``gpu`` and ``engine`` may be loaded cards (e.g. a calibration's
    :meth:`kvopt.bench.calibrate.Calibration.apply`)."""
    from kvopt.serving.estimate import estimate as run

    inp, out = build.lengths(input_len=input_len, output_len=output_len,
                             input_len_dist=input_len_dist, output_len_dist=output_len_dist)
    inp, imgs = build.prompt_with_images(model, inp, images_per_request, image_size)
    if load is None:
        load = build.load(batch=batch, concurrency=concurrency, rps=rps, offline=offline,
                          rounds=rounds)
    g, eng = build.hardware(gpu, engine, profile, engine_args, engine_version)
    tp, ep, dp, pp = build.parallel(tp=tp, ep=ep, dp=dp, pp=pp)
    return run(model=model, gpu=g, tp=tp, ep=ep, dp=dp, pp=pp, weights=weights,
               kv_dtype=kv_dtype, engine=eng, input_dist=inp, output_dist=out, load=load,
               price_usd_h=build.price(price_usd_h), price_file=price_file, images=imgs,
               **build.features(prefix_len=prefix_len, prefix_hit_rate=prefix_hit_rate,
                                spec_k=spec_k, spec_acceptance=spec_acceptance,
                                spec_draft=spec_draft, prompt=inp))


def simulate(*, model: str, gpu: str, tp: int = 1, ep: int = 1, dp: int = 1, pp: int = 1,
             weights: str | None = None,
             kv_dtype: str | None = None, engine: str = choices.DEFAULT_ENGINE,
             profile: str | None = None, engine_args: dict[str, Any] | None = None,
             engine_version: str | None = None, input_len: int | None = None,
             output_len: int | None = None, input_len_dist: LengthDist | str | None = None,
             output_len_dist: LengthDist | str | None = None, batch: int | None = None,
             concurrency: int | None = None, rps: float | None = None,
             offline: int | None = None, rounds: int | None = None,
             num_requests: int = 2000, seed: int = 0,
             prefix_len: int | None = None, prefix_hit_rate: float | None = None,
             spec_k: int | None = None, spec_acceptance: float | None = None,
             spec_draft: str = "head", price_usd_h: float | None = None,
             images_per_request: int | None = None,
             image_size: str | Sequence[int] | None = None) -> Estimate:
    """:func:`estimate` measured by the seeded discrete-event simulator (a ``batch`` runs
    as ``offline`` requests)."""
    from kvopt.serving.load import Load
    from kvopt.serving.serve import simulate_under_load

    inp, out = build.lengths(input_len=input_len, output_len=output_len,
                             input_len_dist=input_len_dist, output_len_dist=output_len_dist)
    inp, imgs = build.prompt_with_images(model, inp, images_per_request, image_size)
    ld = build.load(batch=batch, concurrency=concurrency, rps=rps, offline=offline,
                    rounds=rounds)
    num_requests = limits.SIM_REQUESTS.check("num_requests", num_requests)
    seed = limits.SEED.check("seed", seed)
    build.sim_size(ld, num_requests, out)
    if ld.mode == "batch":
        ld = Load(mode="offline", value=ld.value)
    rep = build.replica(model=model, gpu=gpu, tp=tp, ep=ep, dp=dp, pp=pp, weights=weights,
                        kv_dtype=kv_dtype, engine=engine, profile=profile,
                        engine_args=engine_args, engine_version=engine_version, images=imgs)
    return simulate_under_load(rep, load=ld, input_dist=inp, output_dist=out,
                               num_requests=num_requests, seed=seed,
                               price_usd_h=build.price(price_usd_h),
                               **build.features(prefix_len=prefix_len,
                                                prefix_hit_rate=prefix_hit_rate,
                                                spec_k=spec_k, spec_acceptance=spec_acceptance,
                                                spec_draft=spec_draft, prompt=inp))


@dataclass(frozen=True)
class ReplicaCapacity:
    """The goodput of one replica (:class:`CapacityResult`), which replica and its price."""

    replica: Replica
    result: CapacityResult
    usd_per_hour: float | None
    # the latencies at the goodput (Poisson arrivals), ms: TTFT and end-to-end mean and
    # p50/p90/p99, TPOT mean and p99 (empty without a goodput)
    at_goodput: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        rep = self.replica
        return {"model": rep.model.name, "gpu": rep.gpu.id, "tp": rep.tp, "ep": rep.ep,
                "dp": rep.dp, "pp": rep.pp, "gpus": rep.n_gpus,
                "weights": rep.precision.weights, "kv_dtype": rep.precision.kv_dtype,
                "engine": rep.engine.name, **self.result.to_dict(),
                "at_goodput": self.at_goodput or None, "usd_per_hour": self.usd_per_hour}

    def explain(self) -> str:
        return self.result.explain()


def capacity(*, model: str, gpu: str, tp: int = 1, ep: int = 1, dp: int = 1, pp: int = 1,
             weights: str | None = None,
             kv_dtype: str | None = None, engine: str = choices.DEFAULT_ENGINE,
             profile: str | None = None, engine_args: dict[str, Any] | None = None,
             engine_version: str | None = None, input_len: int | None = None,
             output_len: int | None = None, input_len_dist: LengthDist | str | None = None,
             output_len_dist: LengthDist | str | None = None,
             slo_ttft_p99_ms: float | None = None, slo_tpot_p99_ms: float | None = None,
             slo_e2e_p99_ms: float | None = None, prefix_len: int | None = None,
             prefix_hit_rate: float | None = None, spec_k: int | None = None,
             spec_acceptance: float | None = None, spec_draft: str = "head",
             price_usd_h: float | None = None, images_per_request: int | None = None,
             image_size: str | Sequence[int] | None = None) -> ReplicaCapacity:
    """The highest Poisson request rate one replica sustains under the p99 SLOs (goodput),
    its operating point there, and what binds it."""
    from kvopt.catalog.prices import price_for
    from kvopt.serving.capacity import capacity as search

    inp, out = build.lengths(input_len=input_len, output_len=output_len,
                             input_len_dist=input_len_dist, output_len_dist=output_len_dist)
    inp, imgs = build.prompt_with_images(model, inp, images_per_request, image_size)
    rep = build.replica(model=model, gpu=gpu, tp=tp, ep=ep, dp=dp, pp=pp, weights=weights,
                        kv_dtype=kv_dtype, engine=engine, profile=profile,
                        engine_args=engine_args, engine_version=engine_version, images=imgs)
    res = search(rep, input_dist=inp, output_dist=out,
                 slo=build.slo(ttft_p99_ms=slo_ttft_p99_ms, tpot_p99_ms=slo_tpot_p99_ms,
                               e2e_p99_ms=slo_e2e_p99_ms),
                 **build.features(prefix_len=prefix_len, prefix_hit_rate=prefix_hit_rate,
                                  spec_k=spec_k, spec_acceptance=spec_acceptance,
                                  spec_draft=spec_draft, prompt=inp))
    price = price_for(rep.gpu.id, override_usd_h=build.price(price_usd_h))
    at: dict[str, float] = {}
    if res.feasible and res.goodput_rps > 0:
        lat = estimate(model=model, gpu=gpu, tp=tp, ep=ep, dp=dp, pp=pp, weights=weights,
                       kv_dtype=kv_dtype, engine=engine, profile=profile,
                       engine_args=engine_args,
                       engine_version=engine_version, input_len_dist=inp,
                       output_len_dist=out, rps=res.goodput_rps, prefix_len=prefix_len,
                       prefix_hit_rate=prefix_hit_rate, spec_k=spec_k,
                       spec_acceptance=spec_acceptance, spec_draft=spec_draft).latency
        at = {"ttft_mean_ms": lat.ttft_ms, "ttft_p50_ms": lat.ttft_p50_ms,
              "ttft_p90_ms": lat.ttft_p90_ms, "ttft_p99_ms": lat.ttft_p99_ms,
              "tpot_mean_ms": lat.tpot_ms, "tpot_p99_ms": lat.tpot_p99_ms,
              "e2e_mean_ms": lat.e2e_ms, "e2e_p50_ms": lat.e2e_p50_ms,
              "e2e_p90_ms": lat.e2e_p90_ms, "e2e_p99_ms": lat.e2e_p99_ms}
    return ReplicaCapacity(replica=rep, result=res,
                           usd_per_hour=price.usd_per_gpu_hour * rep.n_gpus if price else None,
                           at_goodput=at)


def curve(*, rps: Sequence[float] | None = None, concurrency: Sequence[int] | None = None,
          points: int = 10, **replica: Any) -> dict[str, Any]:
    """Latency and throughput of one replica at several loads: ``rps`` rates,
    ``concurrency`` client counts, or ``points`` rates from 5% to 95% of its capacity plus
    one at 110%. ``replica``: :func:`estimate`'s keywords other than the load."""
    from kvopt.serving.curve import load_curve

    lengths = {k: replica.pop(k, None) for k in ("input_len", "output_len", "input_len_dist",
                                                 "output_len_dist")}
    inp, out = build.lengths(**lengths)
    inp, imgs = build.prompt_with_images(replica.get("model"), inp,
                                         replica.pop("images_per_request", None),
                                         replica.pop("image_size", None))
    feats = build.features(**{k: replica.pop(k) for k in (
        "prefix_len", "prefix_hit_rate", "spec_k", "spec_acceptance", "spec_draft")
        if k in replica}, prompt=inp)
    if rps is not None:
        limits.check_list("rps", tuple(rps))
        rps = [limits.RPS.check("rps", r) for r in rps]
    if concurrency is not None:
        limits.check_list("concurrency", tuple(concurrency))
        concurrency = [int(limits.CLIENTS.check("concurrency", c)) for c in concurrency]
    points = limits.CURVE_POINTS.check("points", points)
    lay = build.parallel(**{k: replica.pop(k) for k in ("tp", "ep", "dp", "pp") if k in replica})
    replica.update(tp=lay[0], ep=lay[1], dp=lay[2], pp=lay[3])
    if replica.get("price_usd_h") is not None:
        replica["price_usd_h"] = build.price(replica["price_usd_h"])
    g, eng = build.hardware(replica.pop("gpu"), replica.pop("engine", choices.DEFAULT_ENGINE),
                            replica.pop("profile", None), replica.pop("engine_args", None),
                            replica.pop("engine_version", None))
    return load_curve(rps=rps, concurrency=concurrency, points=points, gpu=g, engine=eng,
                      input_dist=inp, output_dist=out, images=imgs, **feats, **replica)


def disagg(*, model: str, gpu: str, rps: float, tp: int = 1, ep: int = 1, dp: int = 1,
           pp: int = 1, weights: str | None = None,
           kv_dtype: str | None = None, engine: str = choices.DEFAULT_ENGINE,
           profile: str | None = None, engine_args: dict[str, Any] | None = None,
           engine_version: str | None = None, prefill_gpu: str | None = None,
           prefill_tp: int | None = None, input_len: int | None = None,
           output_len: int | None = None, input_len_dist: LengthDist | str | None = None,
           output_len_dist: LengthDist | str | None = None,
           slo_ttft_p99_ms: float | None = None, slo_tpot_p99_ms: float | None = None,
           max_replicas: int = 16, same_node: bool = False,
           images_per_request: int | None = None,
           image_size: str | Sequence[int] | None = None) -> dict[str, Any]:
    """Disaggregated prefill/decode: the cheapest pool sizes (decode replicas on ``gpu``,
    prefill on ``prefill_gpu``) for ``rps``, next to the colocated fleet for the SLO; ``ep``,
    ``dp``, ``pp``: the layout of both pools (``prefill_tp`` replaces the prefill TP)."""
    from kvopt.serving.capacity import capacity as search
    from kvopt.serving.disagg import plan_pools

    inp, out = build.lengths(input_len=input_len, output_len=output_len,
                             input_len_dist=input_len_dist, output_len_dist=output_len_dist)
    build.refuse_images(build.images(model, images_per_request, image_size),
                        "disaggregated serving", "use kvopt estimate or plan for it")
    slo = build.slo(ttft_p99_ms=slo_ttft_p99_ms, tpot_p99_ms=slo_tpot_p99_ms)
    rps = limits.RPS.check("rps", rps)
    max_replicas = int(limits.Range(1, 64, "replicas per pool").check(
        "max_replicas", max_replicas))
    dec = build.replica(model=model, gpu=gpu, tp=tp, weights=weights, kv_dtype=kv_dtype,
                        engine=engine, profile=profile, engine_args=engine_args,
                        engine_version=engine_version, ep=ep, dp=dp, pp=pp)
    pre = build.replica(model=model, gpu=prefill_gpu or gpu, tp=prefill_tp or tp,
                        weights=weights, kv_dtype=kv_dtype, engine=engine,
                        engine_args=engine_args, engine_version=engine_version, ep=ep, dp=dp,
                        pp=pp)
    best, _ = plan_pools(pre, dec, rate_rps=rps, input_dist=inp, output_dist=out, slo=slo,
                         max_replicas=max_replicas, same_node=same_node)
    co = search(dec, input_dist=inp, output_dist=out, slo=slo)
    colocated = math.ceil(rps / co.goodput_rps) if co.goodput_rps > 0 else None
    if best is None:
        raise InfeasiblePlanError(
            f"no prefill/decode split up to {max_replicas}+{max_replicas} replicas meets the "
            "SLO at this rate; raise --max-replicas, relax the SLO or use a faster GPU")
    return {"model": dec.model.name, "rps": rps, "prefill_gpu": pre.gpu.id,
            "prefill_tp": pre.tp, "decode_gpu": dec.gpu.id, "decode_tp": dec.tp,
            **best.to_dict(), "pool_ratio_prefill_to_decode":
            best.prefill_replicas / best.decode_replicas,
            "colocated_replicas": colocated,
            "colocated_gpus": colocated * dec.n_gpus if colocated else None}
