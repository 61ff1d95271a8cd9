"""`kvopt plan`, `kvopt compare`, `kvopt size`: fleet sizing with the MILP."""

from __future__ import annotations

from typing import Any

import click

from kvopt.cli.estimate_cmd import ENGINES, dists, length_options

GOALS = ["cost", "latency", "throughput", "quality", "balanced", "gpus", "power"]
DEFAULT_GPUS = "H100-SXM,H200,A100-SXM-80GB,L40S,L4,MI300X"


def _csv(text: str, kind: type = str) -> tuple[Any, ...]:
    try:
        return tuple(kind(x.strip()) for x in text.split(",") if x.strip())
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a comma-separated list of {kind.__name__}"
                                 ) from None


def _precisions(text: str) -> tuple[tuple[str, str], ...]:
    from kvopt.physics.precision import parse_precision_pair

    return tuple(parse_precision_pair(item, "--precisions") for item in _csv(text))


profile_option = click.option(
    "--profile", "profile_paths", multiple=True, type=click.Path(dir_okay=False),
    help="Calibrated GPU x engine profile (kvopt calibrate --out); repeat for several GPUs. "
         "That GPU's candidates are evaluated with it.")


def calibrations(paths: tuple[str, ...]) -> tuple[Any, ...]:
    """The profiles at ``paths`` (kvopt calibrate --out), loaded and checked."""
    if not paths:
        return ()
    from kvopt.bench.calibrate import load_profile

    return tuple(load_profile(p) for p in paths)


capacity_option = click.option(
    "--capacity", type=click.Choice(["confirm", "exact", "screen"]), default="confirm",
    show_default=True,
    help="How candidates' goodput is found: exact (the analytic model's search on every "
         "candidate); confirm (the same plan: the screen ranks the candidates, the exact "
         "search runs where it can change the plan and one exact check proves each other "
         "candidate dominated); screen (all at once by the screening model: ~20x faster per "
         "configuration, its own approximation of the analytic model). See README.")


def space_options(f: Any) -> Any:
    for opt in reversed([
        click.option("--gpus", default=None,
                     help=f"Candidate GPUs: ids, or all, nvidia, amd, datacenter, desktop or "
                          f"laptop [default: {DEFAULT_GPUS}]."),
        click.option("--gpu", default=None, help="One candidate GPU."),
        click.option("--tp-options", default="1,2,4,8", show_default=True),
        click.option("--precisions", default="bf16/bf16,fp8/fp8,fp8/bf16,int4/bf16",
                     show_default=True, help="weights/kv pairs."),
        click.option("--batches", default="8,16,32,64,128,256,512,1024", show_default=True,
                     help="Max-batch levels (engine max_num_seqs)."),
        click.option("--engine", type=click.Choice(ENGINES), default="vllm",
                     show_default=True),
        profile_option,
        capacity_option,
    ]):
        f = opt(f)
    return f


def workload_options(f: Any) -> Any:
    for opt in reversed([
        click.option("--model", required=True),
        click.option("--rps", type=float, required=True, help="Request rate to serve."),
        click.option("--slo-ttft-p99-ms", type=click.FloatRange(min=0, min_open=True)),
        click.option("--slo-tpot-p99-ms", type=click.FloatRange(min=0, min_open=True)),
        click.option("--slo-e2e-p99-ms", type=click.FloatRange(min=0, min_open=True),
                     help="End-to-end p99 (TTFT + all output tokens)."),
        click.option("--redundancy", type=click.IntRange(min=0), default=0,
                     help="N+k: spare replicas per workload."),
        click.option("--max-quality-loss-pct", type=click.FloatRange(min=0), default=None,
                     help="Quality floor: most accuracy loss vs BF16 allowed."),
    ]):
        f = opt(f)
    return f


def solve_options(f: Any) -> Any:
    for opt in reversed([
        click.option("--budget-usd-h", type=click.FloatRange(min=0, min_open=True)),
        click.option("--power-cap-kw", type=click.FloatRange(min=0, min_open=True)),
        click.option("--availability", default=None, metavar="G=N,...",
                     help="Most GPUs of a type, e.g. H100-SXM=16."),
        click.option("--allow-mixing", is_flag=True, help="Several configs per workload."),
        click.option("--solver", default="highs", show_default=True,
                     help="Solver profile in solvers/ (highs, cbc, scip, gurobi)."),
        click.option("--time-limit-s", type=click.FloatRange(min=0, min_open=True)),
        click.option("--gap", type=click.FloatRange(min=0), help="Relative MIP gap."),
        click.option("--output", type=click.Path(dir_okay=False), help="Write the plan JSON."),
        click.option("--json", "as_json", is_flag=True),
        click.option("--no-explain", is_flag=True, help="Skip the SLO sensitivity re-solves."),
    ]):
        f = opt(f)
    return f


def _availability(text: str | None) -> tuple[tuple[str, int], ...]:
    if not text:
        return ()
    out = []
    for item in _csv(text):
        g, sep, n = item.partition("=")
        if not sep or not n.strip().isdigit():
            raise click.BadParameter(f"{item!r}: use GPU=COUNT, e.g. H100-SXM=16",
                                     param_hint="--availability")
        out.append((g.strip(), int(n)))
    return tuple(out)


def _problem(kw: dict[str, Any], gpus: tuple[str, ...], goal: str) -> Any:
    from kvopt.fleet.problem import FleetProblem
    from kvopt.serving.capacity import Slo
    from kvopt.space import Space, Workload

    inp, out = dists(kw["input_len"], kw["output_len"], kw["input_len_dist"],
                     kw["output_len_dist"])
    w = Workload(name=kw["model"], model=kw["model"], rate_rps=kw["rps"], input_dist=inp,
                 output_dist=out, slo=Slo(ttft_p99_ms=kw["slo_ttft_p99_ms"],
                                          tpot_p99_ms=kw["slo_tpot_p99_ms"],
                                          e2e_p99_ms=kw["slo_e2e_p99_ms"]),
                 redundancy=kw["redundancy"], max_quality_loss_pct=kw["max_quality_loss_pct"])
    space = Space(gpus=gpus, tps=_csv(kw["tp_options"], int),
                  precisions=_precisions(kw["precisions"]), batches=_csv(kw["batches"], int),
                  engine=kw["engine"], calibrations=calibrations(kw["profile_paths"]),
                  capacity=kw["capacity"])
    return FleetProblem(workloads=(w,), space=space,
                        availability=_availability(kw["availability"]),
                        budget_usd_h=kw["budget_usd_h"], power_cap_kw=kw["power_cap_kw"],
                        objective=goal, allow_mixing=kw["allow_mixing"])


def _gpus(gpus: str | None, gpu: str | None) -> tuple[str, ...]:
    if gpus and gpu:
        raise click.UsageError("give --gpus or --gpu, not both")
    return (gpu,) if gpu else gpu_list(gpus or DEFAULT_GPUS)


def gpu_list(text: str) -> tuple[str, ...]:
    """``--gpus``: comma-separated ids, or one group word (all, nvidia, amd, datacenter,
    desktop, laptop) for every catalog GPU in it."""
    from kvopt.catalog.gpus import gpu_group

    group = gpu_group(text)
    return tuple(group) if group is not None else _csv(text)


def _emit(data: dict[str, Any], kw: dict[str, Any]) -> None:
    from kvopt.cli import render
    from kvopt.cli.main import echo_json
    from kvopt.fleet.plan import write_json_atomic

    if kw.get("output"):
        write_json_atomic(data, kw["output"])
    if kw["as_json"]:
        echo_json(data)
    else:
        render.plan_tables(data)
        if kw.get("output"):
            click.echo(f"plan written to {kw['output']}")


@click.command("plan")
@workload_options
@length_options
@space_options
@solve_options
@click.option("--goal", type=click.Choice(GOALS), default="cost", show_default=True)
def plan_cmd(**kw: Any) -> None:
    """The cheapest (or fastest, ...) fleet for one workload: GPU, count, TP, precision and
    max batch, solved as a MILP with HiGHS to a proven optimality gap."""
    from kvopt.fleet.plan import plan_fleet

    problem = _problem(kw, _gpus(kw["gpus"], kw["gpu"]), kw["goal"])
    plan = plan_fleet(problem, solver=kw["solver"], time_limit_s=kw["time_limit_s"],
                      mip_gap=kw["gap"], explain=not kw["no_explain"])
    _emit(plan.to_dict(), kw)


@click.command("compare")
@workload_options
@length_options
@space_options
@solve_options
@click.option("--goal", type=click.Choice(GOALS), default="cost", show_default=True)
def compare_cmd(**kw: Any) -> None:
    """The best plan per GPU type, side by side."""
    from kvopt.cli import render
    from kvopt.cli.main import echo_json
    from kvopt.errors import KvoptError
    from kvopt.fleet.plan import plan_fleet

    rows = []
    for g in _gpus(kw["gpus"], kw["gpu"]):
        try:
            p = plan_fleet(_problem(kw, (g,), kw["goal"]), solver=kw["solver"],
                           time_limit_s=kw["time_limit_s"], mip_gap=kw["gap"], explain=False)
            d = p.to_dict()
            f = d["fleet"][0] if d["fleet"] else {}
            rows.append({"gpu": g, "replicas": f.get("replicas"), "tp": f.get("tp"),
                         "precision": f"{f.get('weights')}/{f.get('kv_dtype')}",
                         "max_batch": f.get("max_batch"), "gpus": d["totals"]["gpus"],
                         "usd_per_hour": d["totals"]["usd_per_hour"],
                         "ttft_p99_ms": f.get("predicted", {}).get("ttft_p99_ms"),
                         "tpot_p99_ms": f.get("predicted", {}).get("tpot_p99_ms"),
                         "usd_per_million_output_tokens": f.get("usd_per_million_output_tokens"),
                         "note": ""})
        except KvoptError as exc:
            rows.append({"gpu": g, "note": str(exc)})
    if kw["as_json"]:
        echo_json(rows)
    else:
        render.compare_table(rows)


@click.command("size")
@click.argument("fleet_file", type=click.Path(dir_okay=False))
@click.option("--solver", default="highs", show_default=True)
@click.option("--time-limit-s", type=click.FloatRange(min=0, min_open=True))
@click.option("--gap", type=click.FloatRange(min=0))
@click.option("--output", type=click.Path(dir_okay=False), help="Write the plan JSON.")
@click.option("--json", "as_json", is_flag=True)
@click.option("--no-explain", is_flag=True)
def size_cmd(fleet_file: str, solver: str, time_limit_s: float | None, gap: float | None,
             output: str | None, as_json: bool, no_explain: bool) -> None:
    """Size a fleet for many workloads from a fleet.yaml (README.md, "Fleet sizing")."""
    from kvopt.fleet.fleetfile import load_fleet_file
    from kvopt.fleet.plan import plan_fleet

    problem = load_fleet_file(fleet_file)
    plan = plan_fleet(problem, solver=solver, time_limit_s=time_limit_s, mip_gap=gap,
                      explain=not no_explain)
    _emit(plan.to_dict(), {"output": output, "as_json": as_json})
