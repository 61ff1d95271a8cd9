"""`kvopt export`: a plan as JSON, YAML, Markdown, CSV, engine launch configs, Kubernetes
manifests or LMCache configs; a schedule as JSON, YAML, CSV or Markdown with its chart."""

from __future__ import annotations

from typing import Any

import click

from kvopt import limits
from kvopt.cli.options import bounded

FORMATS = ["json", "yaml", "markdown", "csv", "vllm", "sglang", "trtllm", "k8s", "lmcache"]


def _is_schedule(path: str) -> bool:
    import json

    try:
        with open(path, encoding="utf-8") as f:
            return bool(json.load(f).get("schema") == "kvopt.schedule/1")
    except (OSError, ValueError, AttributeError):
        return False  # the plan reader reports it


@click.command("export")
@click.argument("plan_file", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", required=True, type=click.Choice(FORMATS),
              help="k8s: a Deployment, Service and HorizontalPodAutoscaler per fleet entry; "
                   "lmcache: the LMCache YAML and vLLM --kv-transfer-config of entries with "
                   "a CPU KV tier.")
@click.option("--output", type=click.Path(dir_okay=False), help="Write here (else stdout); "
              "a schedule's Markdown writes its chart beside it (same name, .png).")
@click.option("--kv-offload-gib", type=bounded(limits.KV_OFFLOAD_GIB), default=None,
              help="CPU tier for the KV cache, GiB per replica, for every entry [default: "
                   "each entry's kv_offload_gib from `kvopt plan --kv-offload-gib`].")
@click.option("--offload-connector", type=click.Choice(["lmcache", "native"]),
              default="lmcache", show_default=True,
              help="vLLM's KV connector for the CPU tier: LMCache or vLLM's own "
                   "OffloadingConnector.")
@click.option("--lmcache-chunk-size", type=bounded(limits.LMCACHE_CHUNK), default=256,
              show_default=True, help="LMCache chunk_size, tokens.")
@click.option("--engine", type=click.Choice(["vllm", "sglang", "trtllm"]), default=None,
              help="k8s: the engine the pods run [default: the plan's].")
@click.option("--image", default=None, help="k8s: container image [default: the engine's "
              "official image of the plan's release (plan --engine-version), else :latest].")
@click.option("--model-path", default=None, help="k8s: model path or Hugging Face id the "
              "engine loads [default: the catalog's].")
@click.option("--namespace", default=None, help="k8s: namespace of the objects.")
@click.option("--max-replicas-factor", type=bounded(limits.HPA_FACTOR), default=2.0,
              show_default=True, help="k8s: HPA maxReplicas = this x the planned replicas.")
def export_cmd(plan_file: str, fmt: str, output: str | None, kv_offload_gib: float | None,
               offload_connector: str, lmcache_chunk_size: int, engine: str | None,
               **k8s: Any) -> None:
    """Export a plan written by `kvopt plan/size --output` (or a schedule written by `kvopt
    schedule --output`) for review or deployment."""
    if _is_schedule(plan_file):
        from kvopt.export import schedule

        data = schedule.load_schedule(plan_file)
        if output:
            for p in schedule.save(data, output, fmt):
                click.echo(f"wrote {p}", err=True)
        else:
            click.echo(schedule.render(data, fmt), nl=False)
        return
    from kvopt.export import load_plan, render, save
    from kvopt.export.plans import with_offload

    if output:
        from kvopt.fileio import check_writable

        check_writable(output, "--output")
    plan = with_offload(load_plan(plan_file), kv_offload_gib)
    options: dict[str, Any] = {"offload_connector": offload_connector,
                               "lmcache_chunk_size": lmcache_chunk_size}
    if fmt == "k8s":
        options.update(engine=engine, **k8s)
    if output:
        save(plan, output, fmt, **options)
    else:
        click.echo(render(plan, fmt, **options), nl=False)
