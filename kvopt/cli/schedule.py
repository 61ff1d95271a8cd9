"""Cost over time: `kvopt schedule` (replicas per period by GPU, region and way to pay) and
`kvopt tco` (own against rent)."""

from __future__ import annotations

import click

from kvopt import limits
from kvopt.cli.options import bounded, echo_json, emit


@click.command("schedule")
@click.argument("fleet_file", type=click.Path(dir_okay=False))
@click.option("--demand", type=click.Path(dir_okay=False), default=None,
              help="Demand CSV: period,hours,rps rows (period,hours,workload,rps for several "
                   "workloads) [default: the file's demand:, else one period at rate_rps].")
@click.option("--trace", type=click.Path(dir_okay=False), default=None,
              help="Request trace (CSV or JSONL; Azure LLM inference columns "
                   "TIMESTAMP,ContextTokens,GeneratedTokens or timestamp,input_len,output_len):"
                   " binned into periods; its lengths become the workload's.")
@click.option("--trace-workload", default=None, help="The workload the trace is for "
              "[default: the only one].")
@click.option("--period-hours", type=bounded(limits.PERIOD_HOURS), default=1.0,
              show_default=True, help="Period length when binning a trace.")
@click.option("--price-book", type=click.Path(dir_okay=False), default=None,
              help="Your prices (the payments: layout of models/prices.yaml) over the book's.")
@click.option("--solver", default="highs", show_default=True)
@click.option("--time-limit-s", type=bounded(limits.TIME_LIMIT_S))
@click.option("--gap", type=bounded(limits.GAP), help="Relative MIP gap.")
@click.option("--output", type=click.Path(dir_okay=False), help="Write the schedule JSON.")
@click.option("--json", "as_json", is_flag=True)
def schedule_cmd(fleet_file: str, demand: str | None, trace: str | None,
                 trace_workload: str | None, period_hours: float, price_book: str | None,
                 solver: str, time_limit_s: float | None, gap: float | None,
                 output: str | None, as_json: bool) -> None:
    """The cheapest schedule over time for a fleet.yaml: committed (reserved, owned) replicas
    for the horizon, on-demand and spot per period, every period's demand met under the
    SLOs; cost by way to pay and savings against peak provisioning on demand."""
    from kvopt import api
    from kvopt.cli import render_schedule
    from kvopt.fileio import check_writable

    if output:
        check_writable(output, "--output")
    sched = api.schedule(fleet_file, demand=demand, trace=trace,
                         trace_workload=trace_workload, period_hours=period_hours,
                         price_book=price_book, solver=solver, time_limit_s=time_limit_s,
                         gap=gap)
    emit(sched.to_dict(), output, as_json, render_schedule.schedule_tables, "schedule")


@click.command("tco")
@click.option("--gpu", required=True, help="GPU id or alias.")
@click.option("--region", default="", help="Price book region [default: the book's default].")
@click.option("--utilization", type=bounded(limits.UTILIZATION), default=1.0,
              show_default=True, help="Share of the hours the GPU would be rented.")
@click.option("--price-book", type=click.Path(dir_okay=False), default=None)
@click.option("--json", "as_json", is_flag=True)
def tco_cmd(gpu: str, region: str, utilization: float, price_book: str | None,
            as_json: bool) -> None:
    """Own against rent: the TCO per GPU-hour (amortization, power at TDP x PUE x $/kWh,
    hosting) and per way to rent the break-even utilization and months."""
    from kvopt import api
    from kvopt.cli import render_schedule

    data = api.tco(gpu=gpu, region=region, utilization=utilization, price_book=price_book)
    if as_json:
        echo_json(data)
    else:
        render_schedule.tco_tables(data)
