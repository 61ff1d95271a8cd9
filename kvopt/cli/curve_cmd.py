"""`kvopt curve`: one replica's latency and throughput against load, up to saturation."""

from __future__ import annotations

import math
from typing import Any

import click

from kvopt.cli.estimate_cmd import (
    calibrated,
    dists,
    feature_options,
    features,
    length_options,
    replica_options,
)

_LOW, _HIGH, _ABOVE = 0.05, 0.95, 1.1  # default rates: fractions of the capacity


def _values(text: str, option: str, kind: type) -> list[float]:
    """A comma-separated list of positive numbers (integers for client counts)."""
    out: list[float] = []
    for item in (x.strip() for x in text.split(",")):
        try:
            value = kind(item)
        except ValueError:
            raise click.BadParameter(f"{item!r} is not a{'n integer' if kind is int else ' number'}"
                                     f" (give a comma-separated list, e.g. 1,2,4)",
                                     param_hint=option) from None
        if not (math.isfinite(value) and value > 0):
            raise click.BadParameter(f"{item!r}: every value must be > 0", param_hint=option)
        out.append(float(value))
    return sorted(set(out))


@click.command("curve")
@replica_options
@length_options
@click.option("--rps", "rps_values", default=None, metavar="R1,R2,...",
              help="Poisson request rates to evaluate (req/s).")
@click.option("--concurrency", "client_values", default=None, metavar="C1,C2,...",
              help="Closed-loop client counts to evaluate.")
@click.option("--points", type=click.IntRange(2, 100), default=10, show_default=True,
              help="Without --rps or --concurrency: this many Poisson rates from 5% to 95% of "
                   "the replica's capacity, plus one at 110% (saturated).")
@feature_options
def curve_cmd(model: str, gpu: str, tp: int, weights: str, kv_dtype: str | None, engine: str,
              price_usd_h: float | None, as_json: bool, profile_path: str | None,
              input_len: int | None, output_len: int | None, input_len_dist: str | None,
              output_len_dist: str | None, rps_values: str | None, client_values: str | None,
              points: int, prefix_len: int | None, prefix_hit_rate: float | None,
              spec_k: int | None, spec_acceptance: float | None, spec_draft: str) -> None:
    """TTFT/TPOT percentiles, throughput and batch of one replica at several loads (analytic
    model): the latency-throughput curve up to saturation."""
    from kvopt.cli import render
    from kvopt.cli.main import echo_json
    from kvopt.estimate import estimate
    from kvopt.report import finite
    from kvopt.serving.load import Load

    if rps_values is not None and client_values is not None:
        raise click.UsageError("give --rps or --concurrency, not both")
    inp, out = dists(input_len, output_len, input_len_dist, output_len_dist)
    g, eng = calibrated(gpu, engine, profile_path)
    kw: dict[str, Any] = dict(model=model, gpu=g, tp=tp, weights=weights, kv_dtype=kv_dtype,
                              engine=eng, input_dist=inp, output_dist=out,
                              price_usd_h=price_usd_h,
                              **features(prefix_len, prefix_hit_rate, spec_k, spec_acceptance,
                                         spec_draft))
    # the capacity (and the replica's errors: does not fit, context too long) come first
    probe = estimate(load=Load(mode="rps", value=1e-6), **kw)
    cap = probe.load.capacity_rps or 0.0
    if client_values is not None:
        mode, values = "concurrency", _values(client_values, "--concurrency", int)
    elif rps_values is not None:
        mode, values = "rps", _values(rps_values, "--rps", float)
    else:
        if cap <= 0:
            raise click.ClickException(f"the replica sustains no request rate "
                                       f"({probe.load.limit}); no curve to draw")
        mode = "rps"
        step = (_HIGH - _LOW) / (points - 1)
        values = [cap * (_LOW + i * step) for i in range(points)] + [cap * _ABOVE]
    rows = []
    for value in values:
        e = estimate(load=Load(mode=mode, value=value), **kw)
        lat, ld = e.latency, e.load
        rows.append({"value": value, "saturated": ld.saturated,
                     "utilization": ld.utilization, "steady_state_batch": ld.steady_state_batch,
                     "ttft_p50_ms": lat.ttft_p50_ms, "ttft_p90_ms": lat.ttft_p90_ms,
                     "ttft_p99_ms": lat.ttft_p99_ms, "tpot_p50_ms": lat.tpot_p50_ms,
                     "tpot_p90_ms": lat.tpot_p90_ms, "tpot_p99_ms": lat.tpot_p99_ms,
                     "queue_ms": lat.queue_ms, "requests_s": e.throughput.requests_s,
                     "output_tok_s": e.throughput.output_tok_s,
                     "usd_per_million_output_tokens": e.cost.usd_per_million_output_tokens})
    data = {"model": probe.model, "gpu": probe.gpu, "tp": probe.tp, "weights": probe.weights,
            "kv_dtype": probe.kv_dtype, "engine": probe.engine, "mode": mode,
            "capacity_rps": cap, "limit": probe.load.limit, "points": rows,
            "notes": [n for n in probe.notes if not n.startswith("rps load:")]}
    if as_json:
        echo_json(finite(data))
    else:
        render.curve_table(data)
