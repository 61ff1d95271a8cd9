"""One replica: `kvopt estimate`, `simulate`, `capacity`, `curve` and `disagg`."""

from __future__ import annotations

from typing import Any

import click

from kvopt import limits
from kvopt.cli.options import (
    bounded,
    echo_json,
    feature_options,
    features,
    length_options,
    lengths,
    load,
    load_options,
    replica,
    replica_options,
    slo_option,
)


def _replica(kw: dict[str, Any]) -> dict[str, Any]:
    return {**replica(kw), **lengths(kw), "price_usd_h": kw["price_usd_h"]}


def _show(result: Any, as_json: bool) -> None:
    from kvopt.cli import render

    if as_json:
        echo_json(result.to_dict())
    else:
        render.estimate_tables(result)


@click.command("estimate")
@replica_options
@length_options
@load_options
@feature_options
def estimate_cmd(**kw: Any) -> None:
    """Memory, latency (TTFT/TPOT percentiles), throughput, utilization and cost of one
    replica under a static batch or a load (analytic model)."""
    from kvopt import api

    lengths(kw)
    _show(api.estimate(**_replica(kw), **load(kw), **features(kw)), kw["as_json"])


@click.command("simulate")
@replica_options
@length_options
@load_options
@click.option("--num-requests", type=bounded(limits.SIM_REQUESTS), default=2000,
              show_default=True,
              help="Requests to simulate (rps and concurrency loads).")
@click.option("--seed", type=bounded(limits.SEED), default=0, show_default=True)
@feature_options
def simulate_cmd(**kw: Any) -> None:
    """The same estimate measured by the discrete-event simulator (seeded)."""
    from kvopt import api

    lengths(kw)
    _show(api.simulate(**_replica(kw), **load(kw), **features(kw),
                       num_requests=kw["num_requests"], seed=kw["seed"]), kw["as_json"])


@click.command("capacity")
@replica_options
@length_options
@slo_option("ttft")
@slo_option("tpot")
@feature_options
def capacity_cmd(**kw: Any) -> None:
    """Highest sustainable requests/s per replica (goodput) under optional p99 SLOs."""
    from kvopt import api
    from kvopt.cli import render

    res = api.capacity(**_replica(kw), **features(kw), slo_ttft_p99_ms=kw["slo_ttft_p99_ms"],
                       slo_tpot_p99_ms=kw["slo_tpot_p99_ms"])
    if kw["as_json"]:
        echo_json(res.to_dict())
        return
    render.detail_table("Capacity per replica", res.to_dict())
    if not res.result.feasible:
        click.echo(f"note: {res.explain()}")


def _values(text: str, option: str, rng: limits.Range) -> list[float]:
    """A comma-separated list of numbers in ``rng`` (integers for client counts), as a
    usage error naming the option when it is not (the front door checks again)."""
    from kvopt.errors import InputError

    out: list[float] = []
    items = [x.strip() for x in text.split(",")]
    if len(items) > limits.LIST_ITEMS:
        raise click.BadParameter(f"{len(items)} values: at most {limits.LIST_ITEMS}",
                                 param_hint=option)
    for item in items:
        try:
            value = int(item) if rng.integer else float(item)
            out.append(float(rng.check(option, value)))
        except ValueError as exc:
            if isinstance(exc, InputError):
                raise click.BadParameter(f"{item!r}: {exc.rule}", param_hint=option) from None
            raise click.BadParameter(f"{item!r} is not a{'n integer' if rng.integer else ' number'}"
                                     f" (give a comma-separated list, e.g. 1,2,4)",
                                     param_hint=option) from None
    return sorted(set(out))


@click.command("curve")
@replica_options
@length_options
@click.option("--rps", "rps_values", default=None, metavar="R1,R2,...",
              help="Poisson request rates to evaluate (req/s).")
@click.option("--concurrency", "client_values", default=None, metavar="C1,C2,...",
              help="Closed-loop client counts to evaluate.")
@click.option("--points", type=bounded(limits.CURVE_POINTS), default=10, show_default=True,
              help="Without --rps or --concurrency: this many Poisson rates from 5% to 95% of "
                   "the replica's capacity, plus one at 110% (saturated).")
@feature_options
def curve_cmd(**kw: Any) -> None:
    """TTFT/TPOT percentiles, throughput and batch of one replica at several loads (analytic
    model): the latency-throughput curve up to saturation."""
    from kvopt import api
    from kvopt.cli import render
    from kvopt.report import finite

    rps, clients = kw["rps_values"], kw["client_values"]
    if rps is not None and clients is not None:
        raise click.UsageError("give --rps or --concurrency, not both")
    data = api.curve(
        rps=None if rps is None else _values(rps, "--rps", limits.RPS),
        concurrency=None if clients is None else [
            int(v) for v in _values(clients, "--concurrency", limits.CLIENTS)],
        points=kw["points"], **_replica(kw), **features(kw))
    if kw["as_json"]:
        echo_json(finite(data))
    else:
        render.curve_table(data)


@click.command("disagg")
@replica_options
@length_options
@click.option("--rps", type=bounded(limits.RPS), required=True,
              help="Poisson arrivals, requests/s.")
@click.option("--prefill-gpu", default=None, help="GPU of the prefill pool [default: --gpu].")
@click.option("--prefill-tp", type=bounded(limits.TP), default=None,
              help="TP of prefill replicas [default: --tp].")
@slo_option("ttft")
@slo_option("tpot")
@click.option("--max-replicas", type=click.IntRange(1, 64), default=16, show_default=True,
              help="Largest pool size tried, per pool.")
@click.option("--same-node", is_flag=True, help="Both pools share an NVLink/xGMI domain.")
def disagg_cmd(**kw: Any) -> None:
    """Disaggregated prefill/decode: the cheapest pool sizes for a load, next to the
    colocated fleet for the same SLO."""
    from kvopt import api
    from kvopt.cli import render

    rep = _replica(kw)
    rep.pop("price_usd_h")
    data = api.disagg(**rep, rps=kw["rps"], prefill_gpu=kw["prefill_gpu"],
                      prefill_tp=kw["prefill_tp"], slo_ttft_p99_ms=kw["slo_ttft_p99_ms"],
                      slo_tpot_p99_ms=kw["slo_tpot_p99_ms"], max_replicas=kw["max_replicas"],
                      same_node=kw["same_node"])
    if kw["as_json"]:
        echo_json(data)
    else:
        render.detail_table("Disaggregated prefill/decode", data)
