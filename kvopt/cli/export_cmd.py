"""`kvopt export`: a plan as JSON, YAML, Markdown, CSV or engine launch configs."""

from __future__ import annotations

import click


@click.command("export")
@click.argument("plan_file", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", required=True,
              type=click.Choice(["json", "yaml", "markdown", "csv", "vllm", "sglang",
                                 "trtllm"]))
@click.option("--output", type=click.Path(dir_okay=False), help="Write here (else stdout).")
def export_cmd(plan_file: str, fmt: str, output: str | None) -> None:
    """Export a plan written by `kvopt plan/size --output` for review or deployment."""
    from kvopt.export import load_plan, render, save

    plan = load_plan(plan_file)
    if output:
        save(plan, output, fmt)
    else:
        click.echo(render(plan, fmt), nl=False)
