"""`kvopt` entry point: the click group, error policy and the catalog commands.

Errors: any :class:`KvoptError` prints one line and exits 1; usage errors exit 2 (click);
``--debug`` re-raises for a traceback.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

import click

from kvopt._version import __version__
from kvopt.errors import KvoptError


class KvoptGroup(click.Group):
    """Turns expected errors into one-line messages with exit code 1, and ctrl-C into
    "interrupted" with the shell's 130 (click's own handler would print "Aborted!" and exit
    1, which scripts cannot tell from an error)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KvoptError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"kvopt: error: {exc}", err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            click.echo("kvopt: interrupted", err=True)
            ctx.exit(130)


@click.group(cls=KvoptGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="kvopt")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Plan LLM serving deployments: memory, latency, throughput and cost per GPU choice."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False))


@cli.command("list-gpus")
@click.option("--filter", "filter_", type=click.Choice(
    ["nvidia", "amd", "datacenter", "desktop", "laptop"]), help="Only this vendor or form factor.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_gpus_cmd(filter_: str | None, as_json: bool) -> None:
    """List catalog GPUs with memory, bandwidth, throughput and price."""
    from kvopt.catalog.gpus import list_gpus
    from kvopt.catalog.prices import all_prices
    from kvopt.cli import render

    gpus = list_gpus(filter_)
    prices = all_prices()
    if as_json:
        echo_json([render.gpu_row(g, prices.get(g.id)) for g in gpus])
    else:
        render.gpu_table(gpus, prices)


@cli.command("list-models")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_models_cmd(as_json: bool) -> None:
    """List catalog LLM architectures."""
    from kvopt.catalog.models import list_models
    from kvopt.cli import render

    models = list_models()
    if as_json:
        echo_json([render.model_row(m) for m in models])
    else:
        render.model_table(models)


@cli.command("list-engines")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_engines_cmd(as_json: bool) -> None:
    """List engine profiles (`kvopt show engine NAME` prints one with its sources)."""
    from kvopt.catalog.engines import engine_names, load_engine
    from kvopt.cli import render

    rows = [render.engine_row(load_engine(n)) for n in engine_names()]
    if as_json:
        echo_json(rows)
    else:
        render.engine_table(rows)


@cli.group("show")
def show() -> None:
    """Show one catalog entry in full."""


@show.command("gpu")
@click.argument("gpu_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def show_gpu(gpu_id: str, as_json: bool) -> None:
    """Show a GPU card with the source of every number."""
    from kvopt.catalog.gpus import load_gpu
    from kvopt.catalog.prices import price_for
    from kvopt.cli import render

    gpu = load_gpu(gpu_id)
    data = render.gpu_detail(gpu, price_for(gpu.id))
    if as_json:
        echo_json(data)
    else:
        render.detail_table(f"GPU {gpu.id}", data)


@show.command("model")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def show_model(name: str, as_json: bool) -> None:
    """Show a model's architecture, parameter counts and KV bytes per token."""
    from kvopt.catalog.models import load_model
    from kvopt.cli import render

    model = load_model(name)
    data = render.model_detail(model)
    if as_json:
        echo_json(data)
    else:
        render.detail_table(f"Model {model.name}", data)


@show.command("engine")
@click.argument("name")
@click.option("--gpu", "gpu_id", default=None,
              help="Apply the profile's overrides for this GPU (e.g. vLLM's large-GPU defaults).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def show_engine(name: str, gpu_id: str | None, as_json: bool) -> None:
    """Show an engine profile: every default the model uses, with its source."""
    from kvopt.catalog.engines import load_engine
    from kvopt.catalog.gpus import load_gpu
    from kvopt.cli import render

    eng = load_engine(name, load_gpu(gpu_id) if gpu_id else None)
    data = render.engine_detail(eng)
    if as_json:
        echo_json(data)
    else:
        render.detail_table(f"Engine {eng.name}", data)


from kvopt.cli import (  # noqa: E402  (registers the commands)
    bench_cmd,
    calibrate_cmd,
    curve_cmd,
    estimate_cmd,
    export_cmd,
    pareto_cmd,
    plan_cmd,
    study_cmd,
    validate_cmd,
)

cli.add_command(estimate_cmd.estimate_cmd)
cli.add_command(estimate_cmd.simulate_cmd)
cli.add_command(estimate_cmd.capacity_cmd)
cli.add_command(estimate_cmd.disagg_cmd)
cli.add_command(curve_cmd.curve_cmd)
cli.add_command(plan_cmd.plan_cmd)
cli.add_command(plan_cmd.compare_cmd)
cli.add_command(plan_cmd.size_cmd)
cli.add_command(pareto_cmd.pareto_cmd)
cli.add_command(export_cmd.export_cmd)
cli.add_command(validate_cmd.validate_cmd)
cli.add_command(calibrate_cmd.calibrate_cmd)
cli.add_command(bench_cmd.bench_cmd)
cli.add_command(bench_cmd.import_bench_cmd)
cli.add_command(study_cmd.study_cmd)


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="kvopt",
             standalone_mode=True)


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
