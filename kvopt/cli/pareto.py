"""`kvopt pareto`: a Pareto front over GPU type, replicas, TP, precision and max batch."""

from __future__ import annotations

from typing import Any

import click

from kvopt import choices, limits
from kvopt.cli.options import (
    ENGINES,
    bounded,
    csv_list,
    echo_json,
    engine_version_option,
    length_options,
    lengths,
    parallel_kw,
    parallel_options,
    plan_engine_arg_option,
    profile_option,
    slo_option,
    stack,
)


@click.command("pareto")
@click.option("--model", required=True)
@click.option("--rps", type=bounded(limits.RPS), required=True, help="Request rate to serve.")
@length_options
@click.option("--gpus", default=",".join(choices.PARETO_GPUS), show_default=True,
              help="Candidate GPUs: ids, or all, nvidia, amd, datacenter, desktop or laptop.")
@click.option("--tp-options", default=choices.int_text(choices.TP_OPTIONS), show_default=True)
@stack(*parallel_options)
@click.option("--precisions", default=choices.precision_text(choices.PRECISIONS),
              show_default=True)
@click.option("--batches", default=choices.int_text(choices.PARETO_BATCHES), show_default=True)
@click.option("--engine", type=ENGINES, default=choices.DEFAULT_ENGINE,
              show_default=True)
@engine_version_option
@plan_engine_arg_option
@profile_option
@click.option("--objectives", default=",".join(choices.DEFAULT_PARETO_OBJECTIVES),
              show_default=True)
@slo_option("ttft")
@slo_option("tpot")
@click.option("--budget-usd-h", type=bounded(limits.BUDGET_USD_H))
@click.option("--max-replicas", type=bounded(limits.PARETO_REPLICAS), default=16,
              show_default=True)
@click.option("--cost-cap-multiple", type=bounded(limits.COST_CAP_MULTIPLE), default=4.0,
              show_default=True, help="Bound the front to fleets costing at most this multiple "
              "of the cheapest feasible fleet (and at most --budget-usd-h).")
@click.option("--pop", type=bounded(limits.POP), default=100, show_default=True)
@click.option("--gens", type=bounded(limits.GENS), default=100, show_default=True)
@click.option("--seed", type=bounded(limits.SEED), default=0, show_default=True)
@click.option("--method", type=click.Choice(choices.PARETO_METHODS), default="nsga2",
              show_default=True)
@click.option("--fleet", type=click.Choice(choices.PARETO_FLEETS), default="single",
              show_default=True, help="mixed: heterogeneous fleets of two GPU configurations; "
              "disagg: separate prefill (group a) and decode (group b) pools.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False),
              help="front.csv | front.json | front.parquet")
@click.option("--png", type=click.Path(dir_okay=False))
@click.option("--html", "html_path", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the report and front as JSON.")
def pareto_cmd(**kw: Any) -> None:
    """Pareto front (all objectives minimized) by NSGA-II, checked against the exact front."""
    import sys

    from kvopt import api
    from kvopt.build import engine_args
    from kvopt.catalog.engine_args import typed_args
    from kvopt.pareto import export

    def progress(gen: int, total: int) -> None:
        if sys.stderr.isatty():
            click.echo(f"\rNSGA-II generation {gen}/{total}", err=True, nl=gen == total)

    from kvopt.fileio import check_writable, write_all

    outs = [(kw[k], opt) for k, opt in (("out_path", "--out"), ("png", "--png"),
                                         ("html_path", "--html")) if kw[k]]
    if len({str(p) for p, _ in outs}) < len(outs):
        raise click.UsageError("--out, --png and --html must name different files")
    if kw["out_path"]:
        export.check_table_path(kw["out_path"])
    for path, opt in outs:  # before the search: a bad path costs nothing
        check_writable(path, opt)
    objectives = csv_list(kw["objectives"])
    flags = engine_args(kw["engine_arg"])
    res = api.pareto(
        model=kw["model"], rps=kw["rps"], **lengths(kw), slo_ttft_p99_ms=kw["slo_ttft_p99_ms"],
        slo_tpot_p99_ms=kw["slo_tpot_p99_ms"], gpus=kw["gpus"],
        tp_options=csv_list(kw["tp_options"], int, "--tp-options"), **parallel_kw(kw),
        precisions=kw["precisions"], batches=csv_list(kw["batches"], int, "--batches"),
        engine=kw["engine"], engine_version=kw["engine_version"], engine_args=flags,
        profiles=kw["profiles"],
        objectives=objectives,
        budget_usd_h=kw["budget_usd_h"], max_replicas=kw["max_replicas"],
        cost_cap_multiple=kw["cost_cap_multiple"],
        method=kw["method"], fleet=kw["fleet"], pop=kw["pop"], gens=kw["gens"],
        seed=kw["seed"], progress=progress)
    data = export.rows(res.front, res.table, res.objectives, res.norm, knee_at=res.knee)
    meta = {"model": kw["model"], "rps": kw["rps"], "objectives": list(res.objectives),
            "engine": kw["engine"],
            **({"engine_version": kw["engine_version"]} if kw["engine_version"] else {}),
            **({"engine_args": typed_args(flags)} if flags else {}),
            **res.report()}
    files: list[tuple[str, bytes | str]] = []  # all or nothing
    if kw["out_path"]:
        files.append((kw["out_path"], export.table_bytes(data, kw["out_path"], meta)))
    title = export.front_title(kw["model"], kw["rps"], {
        k: kw[k] for k in ("slo_ttft_p99_ms", "slo_tpot_p99_ms")})
    if kw["png"]:
        files.append((kw["png"], export.png_bytes(data, res.objectives, title=title)))
    if kw["html_path"]:
        files.append((kw["html_path"], export.html_text(
            data, res.objectives, title=title,
            subtitle=f"{len(data)} points; objectives (minimized): "
            + ", ".join(res.objectives) + f"; method {res.front.method}; knee: "
            + res.report()["knee_rule"])))
    write_all(files, "output")
    if kw["as_json"]:
        echo_json({"report": meta, "front": [export.clean_row(r) for r in data]})
        return
    from kvopt.cli import render

    render.pareto_report(meta, data, res.objectives)
