"""`kvopt estimate`, `kvopt simulate` and `kvopt capacity`: one replica, one workload."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from kvopt.catalog.engines import engine_names
from kvopt.units import GIB

WEIGHTS = ["bf16", "fp16", "fp8", "int8", "int4", "fp4"]
KV = ["bf16", "fp16", "fp8"]
ENGINES = engine_names()


def replica_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """--model --gpu --tp --weights --kv-dtype --engine --price-usd-h --json."""
    for opt in reversed([
        click.option("--model", required=True,
                     help="Catalog name/alias, or a path to a config.json."),
        click.option("--gpu", required=True, help="GPU id or alias (see `kvopt list-gpus`)."),
        click.option("--tp", type=click.IntRange(min=1), default=1, show_default=True,
                     help="Tensor-parallel degree (GPUs per replica)."),
        click.option("--weights", type=click.Choice(WEIGHTS), default="bf16",
                     show_default=True),
        click.option("--kv-dtype", type=click.Choice(KV), default=None,
                     help="KV-cache dtype [default: bf16, or fp16 with fp16 weights]."),
        click.option("--engine", type=click.Choice(ENGINES), default="vllm",
                     show_default=True),
        click.option("--price-usd-h", type=click.FloatRange(min=0, min_open=True),
                     default=None, help="Override the price of one GPU-hour."),
        click.option("--json", "as_json", is_flag=True, help="Print the JSON result."),
        click.option("--profile", "profile_path", type=click.Path(dir_okay=False),
                     default=None, help="Calibrated profile (kvopt calibrate --out)."),
    ]):
        f = opt(f)
    return f


def length_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for opt in reversed([
        click.option("--input-len", type=click.IntRange(min=1), default=None,
                     help="Prompt tokens (fixed)."),
        click.option("--output-len", type=click.IntRange(min=1), default=None,
                     help="Output tokens (fixed)."),
        click.option("--input-len-dist", default=None, metavar="SPEC",
                     help="Prompt length distribution: lognormal:mean=M,sigma=S | "
                          "uniform:low=L,high=H | csv:PATH."),
        click.option("--output-len-dist", default=None, metavar="SPEC",
                     help="Output length distribution (same forms)."),
    ]):
        f = opt(f)
    return f


def load_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for opt in reversed([
        click.option("--batch", type=click.IntRange(min=1), default=None,
                     help="One static batch of B requests."),
        click.option("--concurrency", type=int, default=None,
                     help="Closed loop of C clients (no think time)."),
        click.option("--rps", type=float, default=None, help="Poisson arrivals, requests/s."),
        click.option("--offline", type=int, default=None,
                     help="N requests submitted at once (maximum throughput)."),
    ]):
        f = opt(f)
    return f


def feature_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for opt in reversed([
        click.option("--prefix-len", type=click.IntRange(min=1), default=None,
                     help="Prefix caching: tokens of a shared prompt prefix."),
        click.option("--prefix-hit-rate", type=click.FloatRange(0, 1), default=None,
                     help="Prefix caching: fraction of requests that find it cached."),
        click.option("--spec-k", type=click.IntRange(1, 16), default=None,
                     help="Speculative decoding: draft tokens per step."),
        click.option("--spec-acceptance", type=click.FloatRange(0, 1, max_open=True),
                     default=None, help="Speculative decoding: per-token acceptance rate."),
        click.option("--spec-draft", default="head", show_default=True,
                     help="Drafter: 'head' (EAGLE/MTP-style) or a catalog model name."),
    ]):
        f = opt(f)
    return f


def features(prefix_len: int | None, prefix_hit_rate: float | None, spec_k: int | None,
             spec_acceptance: float | None, spec_draft: str) -> dict[str, Any]:
    from kvopt.serving.features import PrefixCache, SpecDecode

    out: dict[str, Any] = {}
    if (prefix_len is None) != (prefix_hit_rate is None):
        raise click.UsageError("prefix caching needs both --prefix-len and --prefix-hit-rate")
    if prefix_len is not None and prefix_hit_rate is not None:
        out["prefix"] = PrefixCache(shared_len=prefix_len, hit_rate=prefix_hit_rate)
    if (spec_k is None) != (spec_acceptance is None):
        raise click.UsageError("speculative decoding needs both --spec-k and --spec-acceptance")
    if spec_k is not None and spec_acceptance is not None:
        out["spec"] = SpecDecode(k=spec_k, acceptance=spec_acceptance, draft=spec_draft)
    return out


def dists(input_len: int | None, output_len: int | None, input_dist: str | None,
          output_dist: str | None) -> tuple[Any, Any]:
    from kvopt.serving.lengths import fixed, parse_dist

    if (input_len is None) == (input_dist is None):
        raise click.UsageError("give exactly one of --input-len and --input-len-dist")
    if (output_len is None) == (output_dist is None):
        raise click.UsageError("give exactly one of --output-len and --output-len-dist")
    inp = fixed(input_len) if input_len is not None else parse_dist(
        str(input_dist), field="--input-len-dist")
    out = fixed(output_len) if output_len is not None else parse_dist(
        str(output_dist), field="--output-len-dist")
    return inp, out


def calibrated(gpu: str, engine: str, profile_path: str | None) -> tuple[Any, Any]:
    """(gpu, engine) as given, or their calibrated versions from a profile."""
    if not profile_path:
        return gpu, engine
    from kvopt.bench.calibrate import load_profile
    from kvopt.catalog.gpus import load_gpu
    from kvopt.errors import InputError

    cal = load_profile(profile_path)
    if load_gpu(gpu).id != cal.gpu or engine != cal.engine:
        raise InputError("--profile", profile_path, f"calibrated for {cal.gpu} / {cal.engine}, "
                         f"not {gpu} / {engine}", "use the matching --gpu and --engine")
    return cal.apply()


def pick_load(batch: int | None, concurrency: int | None, rps: float | None,
              offline: int | None, *, allow_batch: bool = True) -> Any:
    from kvopt.serving.load import Load

    given = {k: v for k, v in (("batch", batch), ("concurrency", concurrency), ("rps", rps),
                               ("offline", offline)) if v is not None}
    names = "--batch, --concurrency, --rps or --offline" if allow_batch else (
        "--concurrency, --rps or --offline")
    if len(given) != 1:
        raise click.UsageError(f"give exactly one of {names}")
    mode, value = next(iter(given.items()))
    if mode == "batch" and not allow_batch:
        raise click.UsageError(f"give exactly one of {names}")
    return Load(mode=mode, value=value)


def show(result: Any, as_json: bool) -> None:
    from kvopt.cli import render
    from kvopt.cli.main import echo_json

    if as_json:
        echo_json(result.to_dict())
    else:
        render.estimate_tables(result)


@click.command("estimate")
@replica_options
@length_options
@load_options
@feature_options
def estimate_cmd(model: str, gpu: str, tp: int, weights: str, kv_dtype: str | None,
                 engine: str, price_usd_h: float | None, as_json: bool, profile_path: str | None,
                 input_len: int | None,
                 output_len: int | None, input_len_dist: str | None,
                 output_len_dist: str | None, batch: int | None, concurrency: int | None,
                 rps: float | None, offline: int | None, prefix_len: int | None,
                 prefix_hit_rate: float | None, spec_k: int | None,
                 spec_acceptance: float | None, spec_draft: str) -> None:
    """Memory, latency (TTFT/TPOT percentiles), throughput, utilization and cost of one
    replica under a static batch or a load (analytic model)."""
    from kvopt.estimate import estimate

    inp, out = dists(input_len, output_len, input_len_dist, output_len_dist)
    load = pick_load(batch, concurrency, rps, offline)
    g, eng = calibrated(gpu, engine, profile_path)
    result = estimate(model=model, gpu=g, tp=tp, weights=weights, kv_dtype=kv_dtype,
                      engine=eng, input_dist=inp, output_dist=out, load=load,
                      price_usd_h=price_usd_h,
                      **features(prefix_len, prefix_hit_rate, spec_k, spec_acceptance,
                                 spec_draft))
    show(result, as_json)


@click.command("simulate")
@replica_options
@length_options
@load_options
@click.option("--num-requests", type=click.IntRange(min=1), default=2000, show_default=True,
              help="Requests to simulate (rps and concurrency loads).")
@click.option("--seed", type=int, default=0, show_default=True)
@feature_options
def simulate_cmd(model: str, gpu: str, tp: int, weights: str, kv_dtype: str | None,
                 engine: str, price_usd_h: float | None, as_json: bool, profile_path: str | None,
                 input_len: int | None,
                 output_len: int | None, input_len_dist: str | None,
                 output_len_dist: str | None, batch: int | None, concurrency: int | None,
                 rps: float | None, offline: int | None, num_requests: int, seed: int,
                 prefix_len: int | None, prefix_hit_rate: float | None, spec_k: int | None,
                 spec_acceptance: float | None, spec_draft: str) -> None:
    """The same estimate measured by the discrete-event simulator (seeded)."""
    from kvopt.serving.load import Load
    from kvopt.serving.replica import build_replica
    from kvopt.serving.serve import simulate_under_load

    inp, out = dists(input_len, output_len, input_len_dist, output_len_dist)
    load = pick_load(batch, concurrency, rps, offline)
    if load.mode == "batch":
        load = Load(mode="offline", value=load.value)
    g, eng = calibrated(gpu, engine, profile_path)
    rep = build_replica(model=model, gpu=g, tp=tp, weights=weights, kv_dtype=kv_dtype,
                        engine=eng)
    show(simulate_under_load(rep, load=load, input_dist=inp, output_dist=out,
                             num_requests=num_requests, seed=seed, price_usd_h=price_usd_h,
                             **features(prefix_len, prefix_hit_rate, spec_k, spec_acceptance,
                                        spec_draft)),
         as_json)


@click.command("capacity")
@replica_options
@length_options
@click.option("--slo-ttft-p99-ms", type=click.FloatRange(min=0, min_open=True), default=None)
@click.option("--slo-tpot-p99-ms", type=click.FloatRange(min=0, min_open=True), default=None)
@feature_options
def capacity_cmd(model: str, gpu: str, tp: int, weights: str, kv_dtype: str | None,
                 engine: str, price_usd_h: float | None, as_json: bool, profile_path: str | None,
                 input_len: int | None,
                 output_len: int | None, input_len_dist: str | None,
                 output_len_dist: str | None, slo_ttft_p99_ms: float | None,
                 slo_tpot_p99_ms: float | None, prefix_len: int | None,
                 prefix_hit_rate: float | None, spec_k: int | None,
                 spec_acceptance: float | None, spec_draft: str) -> None:
    """Highest sustainable requests/s per replica (goodput) under optional p99 SLOs."""
    from kvopt.catalog.prices import price_for
    from kvopt.cli import render
    from kvopt.cli.main import echo_json
    from kvopt.serving.capacity import Slo, capacity
    from kvopt.serving.replica import build_replica

    inp, out = dists(input_len, output_len, input_len_dist, output_len_dist)
    g, eng = calibrated(gpu, engine, profile_path)
    rep = build_replica(model=model, gpu=g, tp=tp, weights=weights, kv_dtype=kv_dtype,
                        engine=eng)
    res = capacity(rep, input_dist=inp, output_dist=out,
                   slo=Slo(ttft_p99_ms=slo_ttft_p99_ms, tpot_p99_ms=slo_tpot_p99_ms),
                   **features(prefix_len, prefix_hit_rate, spec_k, spec_acceptance, spec_draft))
    price = price_for(rep.gpu.id, override_usd_h=price_usd_h)
    data = {"model": rep.model.name, "gpu": rep.gpu.id, "tp": rep.tp,
            "weights": rep.precision.weights, "kv_dtype": rep.precision.kv_dtype,
            "engine": rep.engine.name, **res.to_dict(),
            "usd_per_hour": price.usd_per_gpu_hour * rep.tp if price else None}
    if as_json:
        echo_json(data)
    else:
        render.detail_table("Capacity per replica", data)
        if not res.feasible:
            note = _unserved_note(rep, res.binding, res.ttft_p99_ms, res.tpot_p99_ms)
            click.echo(f"note: {note}")


def _unserved_note(rep: Any, binding: str, ttft_p99_ms: float | None,
                   tpot_p99_ms: float | None) -> str:
    """Why a replica has no goodput, and what to change."""
    faster = "a faster configuration (more TP, lower precision, another GPU)"
    if binding == "does not fit in memory":
        return (f"{rep.model.name} with {rep.precision.weights} weights does not fit on "
                f"{rep.tp}x {rep.gpu.id} under {rep.engine.name} ({rep.weights_bytes / GIB:.1f} "
                f"GiB of weights and {rep.activation_bytes / GIB:.1f} GiB of activations per "
                f"{rep.gpu.memory_gib:g} GiB GPU leave no KV cache); use "
                "more GPUs (--tp), lower-precision weights or a larger GPU")
    if binding.endswith("SLO") and ttft_p99_ms is not None and tpot_p99_ms is not None:
        return (f"no rate meets the {binding}: even at light load the replica misses it "
                f"(TTFT p99 {ttft_p99_ms:.4g} ms, TPOT p99 {tpot_p99_ms:.4g} ms); loosen the "
                f"SLO or use {faster}")
    return f"no rate is sustainable ({binding}); use {faster}"


@click.command("disagg")
@replica_options
@length_options
@click.option("--rps", type=float, required=True, help="Poisson arrivals, requests/s.")
@click.option("--prefill-gpu", default=None, help="GPU of the prefill pool [default: --gpu].")
@click.option("--prefill-tp", type=click.IntRange(min=1), default=None,
              help="TP of prefill replicas [default: --tp].")
@click.option("--slo-ttft-p99-ms", type=click.FloatRange(min=0, min_open=True), default=None)
@click.option("--slo-tpot-p99-ms", type=click.FloatRange(min=0, min_open=True), default=None)
@click.option("--max-replicas", type=click.IntRange(1, 64), default=16, show_default=True,
              help="Largest pool size tried, per pool.")
@click.option("--same-node", is_flag=True, help="Both pools share an NVLink/xGMI domain.")
def disagg_cmd(model: str, gpu: str, tp: int, weights: str, kv_dtype: str | None, engine: str,
               price_usd_h: float | None, as_json: bool, profile_path: str | None,
               input_len: int | None,
               output_len: int | None, input_len_dist: str | None,
               output_len_dist: str | None, rps: float, prefill_gpu: str | None,
               prefill_tp: int | None, slo_ttft_p99_ms: float | None,
               slo_tpot_p99_ms: float | None, max_replicas: int, same_node: bool) -> None:
    """Disaggregated prefill/decode: the cheapest pool sizes for a load, next to the
    colocated fleet for the same SLO."""
    import math

    from kvopt.cli import render
    from kvopt.cli.main import echo_json
    from kvopt.errors import InfeasiblePlanError
    from kvopt.serving.capacity import Slo, capacity
    from kvopt.serving.disagg import plan_pools
    from kvopt.serving.replica import build_replica

    inp, out = dists(input_len, output_len, input_len_dist, output_len_dist)
    slo = Slo(ttft_p99_ms=slo_ttft_p99_ms, tpot_p99_ms=slo_tpot_p99_ms)
    g, eng = calibrated(gpu, engine, profile_path)
    dec = build_replica(model=model, gpu=g, tp=tp, weights=weights, kv_dtype=kv_dtype,
                        engine=eng)
    pre = build_replica(model=model, gpu=prefill_gpu or gpu, tp=prefill_tp or tp,
                        weights=weights, kv_dtype=kv_dtype, engine=engine)
    best, _ = plan_pools(pre, dec, rate_rps=rps, input_dist=inp, output_dist=out, slo=slo,
                         max_replicas=max_replicas, same_node=same_node)
    co = capacity(dec, input_dist=inp, output_dist=out, slo=slo)
    colocated = math.ceil(rps / co.goodput_rps) if co.goodput_rps > 0 else None
    if best is None:
        raise InfeasiblePlanError(
            f"no prefill/decode split up to {max_replicas}+{max_replicas} replicas meets the "
            "SLO at this rate; raise --max-replicas, relax the SLO or use a faster GPU")
    data = {"model": dec.model.name, "rps": rps, "prefill_gpu": pre.gpu.id,
            "prefill_tp": pre.tp, "decode_gpu": dec.gpu.id, "decode_tp": dec.tp,
            **best.to_dict(), "pool_ratio_prefill_to_decode":
            best.prefill_replicas / best.decode_replicas,
            "colocated_replicas": colocated,
            "colocated_gpus": colocated * dec.tp if colocated else None}
    if as_json:
        echo_json(data)
    else:
        render.detail_table("Disaggregated prefill/decode", data)
