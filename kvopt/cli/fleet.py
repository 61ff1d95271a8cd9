"""A fleet: `kvopt plan`, `compare` and `size` (the MILP)."""

from __future__ import annotations

from typing import Any

import click

from kvopt import choices, limits
from kvopt.cli.options import (
    availability,
    bounded,
    csv_list,
    echo_json,
    emit,
    goal_option,
    length_options,
    lengths,
    parallel_kw,
    solve_options,
    space_options,
    workload_options,
)

_WORKLOAD = ("model", "rps", "slo_ttft_p99_ms", "slo_tpot_p99_ms", "slo_e2e_p99_ms",
             "redundancy", "max_quality_loss_pct")
_SPACE = ("engine", "engine_version", "profiles", "capacity")
_SOLVE = ("budget_usd_h", "power_cap_kw", "allow_mixing", "solver", "time_limit_s", "gap",
          "kv_offload_gib")
offload_option = click.option(
    "--kv-offload-gib", type=bounded(limits.KV_OFFLOAD_GIB), default=0.0,
    help="Host memory per replica for a CPU tier of the KV cache, GiB: written on each fleet "
         "entry for `kvopt export` (vLLM --kv-transfer-config for LMCache or vLLM's "
         "offloading connector, the LMCache YAML, SGLang HiCache, TensorRT-LLM host cache, "
         "k8s memory request).")


def _gpus(kw: dict[str, Any]) -> Any:
    if kw["gpus"] is not None and kw["gpu"] is not None:
        raise click.UsageError("give --gpus or --gpu, not both")
    if kw["gpu"] is not None:
        return (kw["gpu"],)
    return choices.PLAN_GPUS if kw["gpus"] is None else kw["gpus"]


def _plan_kw(kw: dict[str, Any]) -> dict[str, Any]:
    """:func:`kvopt.api.plan`'s keywords from the options."""
    from kvopt.build import engine_args

    return {**{k: kw[k] for k in _WORKLOAD}, **lengths(kw), **{k: kw[k] for k in _SPACE},
            "engine_args": engine_args(kw.get("engine_arg")),
            **{k: kw[k] for k in _SOLVE}, "gpus": _gpus(kw),
            "tp_options": csv_list(kw["tp_options"], int, "--tp-options"),
            **parallel_kw(kw), "precisions": kw["precisions"],
            "batches": csv_list(kw["batches"], int, "--batches"),
            "availability": availability(kw["availability"]), "goal": kw["goal"]}


def _check_output(output: str | None) -> None:
    """Refuse an output path that cannot be written before solving anything."""
    if output:
        from kvopt.fileio import check_writable

        check_writable(output, "output")


def _emit(data: dict[str, Any], output: str | None, as_json: bool) -> None:
    from kvopt.cli import render

    emit(data, output, as_json, render.plan_tables, "plan")


@click.command("plan")
@workload_options
@length_options
@space_options
@solve_options
@goal_option
@offload_option
def plan_cmd(**kw: Any) -> None:
    """The cheapest (or fastest, ...) fleet for one workload: GPU, count, TP, precision and
    max batch, solved as a MILP with HiGHS to a proven optimality gap."""
    from kvopt import api

    _check_output(kw["output"])
    plan = api.plan(**_plan_kw(kw), explain=not kw["no_explain"])
    _emit(plan.to_dict(), kw["output"], kw["as_json"])


@click.command("compare")
@workload_options
@length_options
@space_options
@solve_options
@goal_option
@click.option("--by", type=click.Choice(["gpu", "region", "payment"]), default="gpu",
              show_default=True, help="One row per GPU (a plan each), per region or per way "
              "to pay (a schedule each, over --demand).")
@click.option("--demand", type=click.Path(dir_okay=False), default=None,
              help="With --by region|payment: demand CSV (period,hours,rps) [default: one "
                   "period at --rps].")
@click.option("--price-book", type=click.Path(dir_okay=False), default=None,
              help="With --by region|payment: your prices over the book's.")
@click.option("--regions", default=None, help="With --by region: the price book regions "
              "to compare [default: all].")
@offload_option
def compare_cmd(**kw: Any) -> None:
    """The best plan per GPU type, side by side (or the best schedule per region or way to
    pay; --output: the rows as JSON)."""
    from kvopt import api
    from kvopt.cli import render

    _check_output(kw["output"])
    by = kw["by"]
    if by == "gpu" and (kw["demand"] or kw["price_book"] or kw["regions"]):
        raise click.UsageError("--demand, --price-book and --regions need --by region or "
                               "--by payment")
    extra = {} if by == "gpu" else {
        "by": by, "demand": kw["demand"], "price_book": kw["price_book"],
        "regions": csv_list(kw["regions"] or "", str, "--regions")}
    rows = api.compare(**_plan_kw(kw), **extra)
    if kw["output"]:
        from kvopt.fileio import write_json_atomic

        write_json_atomic(rows, kw["output"], "output")
        if not kw["as_json"]:
            click.echo(f"comparison written to {kw['output']}", err=True)
    if kw["as_json"]:
        echo_json(rows)
    elif by == "gpu":
        render.compare_table(rows)
    else:
        from kvopt.cli import render_schedule

        render_schedule.compare_by_table(rows, by)


@click.command("size")
@click.argument("fleet_file", type=click.Path(dir_okay=False))
@click.option("--solver", default="highs", show_default=True)
@click.option("--time-limit-s", type=bounded(limits.TIME_LIMIT_S))
@click.option("--gap", type=bounded(limits.GAP), help="Relative MIP gap.")
@click.option("--output", type=click.Path(dir_okay=False), help="Write the plan JSON.")
@click.option("--json", "as_json", is_flag=True)
@click.option("--no-explain", is_flag=True)
def size_cmd(fleet_file: str, solver: str, time_limit_s: float | None, gap: float | None,
             output: str | None, as_json: bool, no_explain: bool) -> None:
    """Size a fleet for many workloads from a fleet.yaml (its format: `kvopt schema fleet`)."""
    from kvopt import api

    _check_output(output)
    plan = api.size(fleet_file, solver=solver, time_limit_s=time_limit_s, gap=gap,
                    explain=not no_explain)
    _emit(plan.to_dict(), output, as_json)
