"""`kvopt pareto`: a Pareto front over GPU type, replicas, TP, precision and max batch."""

from __future__ import annotations

from typing import Any

import click

from kvopt.cli.estimate_cmd import ENGINES, dists, length_options
from kvopt.cli.plan_cmd import gpu_list, profile_option


@click.command("pareto")
@click.option("--model", required=True)
@click.option("--rps", type=float, required=True, help="Request rate to serve.")
@length_options
@click.option("--gpus", default="H100-SXM,A100-SXM-80GB,L40S,L4", show_default=True,
              help="Candidate GPUs: ids, or all, nvidia, amd, datacenter, desktop or laptop.")
@click.option("--tp-options", default="1,2,4,8", show_default=True)
@click.option("--precisions", default="bf16/bf16,fp8/fp8,fp8/bf16,int4/bf16", show_default=True)
@click.option("--batches", default="16,64,256", show_default=True)
@click.option("--engine", type=click.Choice(ENGINES), default="vllm", show_default=True)
@profile_option
@click.option("--objectives", default="cost,ttft_p99,tpot_p99", show_default=True)
@click.option("--slo-ttft-p99-ms", type=click.FloatRange(min=0, min_open=True))
@click.option("--slo-tpot-p99-ms", type=click.FloatRange(min=0, min_open=True))
@click.option("--budget-usd-h", type=click.FloatRange(min=0, min_open=True))
@click.option("--max-replicas", type=click.IntRange(1, 1024), default=16, show_default=True)
@click.option("--pop", type=int, default=100, show_default=True)
@click.option("--gens", type=int, default=100, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--method", type=click.Choice(["nsga2", "exact"]), default="nsga2",
              show_default=True)
@click.option("--fleet", type=click.Choice(["single", "mixed", "disagg"]), default="single",
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

    from kvopt.cli.main import echo_json
    from kvopt.cli.plan_cmd import _csv, _precisions, calibrations
    from kvopt.errors import InputError
    from kvopt.pareto import export
    from kvopt.pareto.run import pareto
    from kvopt.serving.capacity import Slo
    from kvopt.space import Space, Workload

    if kw["pop"] < 2:
        raise InputError("--pop", kw["pop"], "needs at least 2 individuals")
    if kw["gens"] < 1:
        raise InputError("--gens", kw["gens"], "needs at least 1 generation")
    objectives = _csv(kw["objectives"])
    inp, out = dists(kw["input_len"], kw["output_len"], kw["input_len_dist"],
                     kw["output_len_dist"])
    w = Workload(name=kw["model"], model=kw["model"], rate_rps=kw["rps"], input_dist=inp,
                 output_dist=out, slo=Slo(ttft_p99_ms=kw["slo_ttft_p99_ms"],
                                          tpot_p99_ms=kw["slo_tpot_p99_ms"]))
    space = Space(gpus=gpu_list(kw["gpus"]), tps=_csv(kw["tp_options"], int),
                  precisions=_precisions(kw["precisions"]), batches=_csv(kw["batches"], int),
                  engine=kw["engine"], calibrations=calibrations(kw["profile_paths"]))

    def progress(gen: int, total: int) -> None:
        if sys.stderr.isatty():
            click.echo(f"\rNSGA-II generation {gen}/{total}", err=True, nl=gen == total)

    res = pareto(w, space, objectives, method=kw["method"], max_replicas=kw["max_replicas"],
                 budget_usd_h=kw["budget_usd_h"], pop=kw["pop"], gens=kw["gens"],
                 seed=kw["seed"], progress=progress, mixed=kw["fleet"] == "mixed",
                 disagg=kw["fleet"] == "disagg")
    if res.front.F.shape[0] == 0:
        from kvopt.errors import InfeasiblePlanError
        from kvopt.pareto.search import emptying_constraints

        if not res.table.valid.any():
            why = ("no configuration of the space can run the model (memory, precision "
                   "support or TP); add larger GPUs, TP degrees or lower precisions")
        else:
            culprits = emptying_constraints(res.table, w, objectives, kw["max_replicas"],
                                            kw["budget_usd_h"])
            why = (f"the constraint(s) {'; '.join(culprits)} exclude every point with up to "
                   f"{kw['max_replicas']} replicas; relax them or raise --max-replicas")
        raise InfeasiblePlanError(f"no feasible point: {why}")
    data = export.rows(res.front, res.table, objectives, res.norm)
    meta = {"model": w.model, "rps": w.rate_rps, "objectives": list(objectives),
            **res.report()}
    if kw["out_path"]:
        export.write_table(data, kw["out_path"], meta)
    if kw["png"]:
        export.write_png(data, objectives, kw["png"])
    if kw["html_path"]:
        export.write_html(data, objectives, kw["html_path"],
                          title=f"{w.model} at {w.rate_rps:g} req/s",
                          subtitle=f"{len(data)} points; objectives (minimized): "
                          + ", ".join(objectives) + f"; method {res.front.method}")
    if kw["as_json"]:
        echo_json({"report": meta, "front": [{k: export._clean(v) for k, v in r.items()}
                                             for r in data]})
        return
    from kvopt.cli import render

    render.pareto_report(meta, data, objectives)
