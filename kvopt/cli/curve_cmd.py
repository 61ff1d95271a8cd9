"""`kvopt curve`: one replica's latency and throughput against load, up to saturation."""

from __future__ import annotations

import math

import click

from kvopt.cli.estimate_cmd import (
    calibrated,
    dists,
    feature_options,
    features,
    length_options,
    replica_options,
)


def _values(text: str, option: str, kind: type) -> list[float]:
    """A comma-separated list of positive numbers (integers for client counts), as a usage
    error naming the option when it is not (:func:`kvopt.curve.load_curve` checks again)."""
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
    from kvopt.curve import load_curve
    from kvopt.report import finite

    if rps_values is not None and client_values is not None:
        raise click.UsageError("give --rps or --concurrency, not both")
    inp, out = dists(input_len, output_len, input_len_dist, output_len_dist)
    g, eng = calibrated(gpu, engine, profile_path)
    data = load_curve(
        rps=None if rps_values is None else _values(rps_values, "--rps", float),
        concurrency=None if client_values is None else [
            int(v) for v in _values(client_values, "--concurrency", int)],
        points=points, model=model, gpu=g, tp=tp, weights=weights, kv_dtype=kv_dtype,
        engine=eng, input_dist=inp, output_dist=out, price_usd_h=price_usd_h,
        **features(prefix_len, prefix_hit_rate, spec_k, spec_acceptance, spec_draft))
    if as_json:
        echo_json(finite(data))
    else:
        render.curve_table(data)
