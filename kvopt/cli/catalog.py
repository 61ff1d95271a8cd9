"""The catalog: `kvopt list-gpus`, `list-models`, `list-engines` and `show gpu|model|engine`."""

from __future__ import annotations

import click

from kvopt import choices
from kvopt.cli.options import echo_json


@click.command("list-gpus")
@click.option("--filter", "filter_", type=click.Choice(
    choices.GPU_GROUPS[1:]), help="Only this vendor or form factor.")
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


@click.command("list-models")
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


@click.command("list-engines")
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


@click.group("show")
def show() -> None:
    """Show one catalog entry in full."""


@show.command("gpu")
@click.argument("gpu_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def show_gpu(gpu_id: str, as_json: bool) -> None:
    """Show a GPU card with the source of every number (and, when the price book has its
    purchase price, the TCO of owning it per GPU-hour with its parts)."""
    from kvopt.catalog.gpus import load_gpu
    from kvopt.catalog.payments import owned_tco
    from kvopt.catalog.prices import price_for
    from kvopt.cli import render

    gpu = load_gpu(gpu_id)
    data = render.gpu_detail(gpu, price_for(gpu.id))
    tco = owned_tco(gpu.id)
    if tco is not None:  # owning it: the TCO parts per GPU-hour (kvopt tco compares)
        data["owned_tco"] = {**tco.parts(), "purchase_usd_per_gpu": tco.purchase_usd_per_gpu,
                             "amortization_years": tco.amortization_years, "pue": tco.pue,
                             "usd_per_kwh": tco.usd_per_kwh,
                             "hosting_usd_per_kw_month": tco.hosting_usd_per_kw_month,
                             "server_kw_per_gpu": tco.server_kw_per_gpu}
        data["sources"].update({f"owned_tco.{k}": v for k, v in tco.sources})
    if as_json:
        echo_json(data)
    else:
        render.detail_table(f"GPU {gpu.id}", data)


@show.command("model")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def show_model(name: str, as_json: bool) -> None:
    """Show a model's architecture, parameter counts, KV bytes per token and its per-layer
    layout (attention type, windows, MoE or dense, linear-attention layers)."""
    from kvopt.catalog.models import load_model
    from kvopt.cli import render

    model = load_model(name)
    data = render.model_detail(model)
    if as_json:
        echo_json(data)
    else:
        layout = data.pop("layout")
        render.detail_table(f"Model {model.name}", data)
        render.layout_table(layout)


@show.command("engine")
@click.argument("name")
@click.option("--gpu", "gpu_id", default=None,
              help="Apply the profile's overrides for this GPU (e.g. vLLM's large-GPU defaults).")
@click.option("--engine-version", "version", default=None, metavar="VERSION",
              help="Apply the per-step and per-request overheads fitted for this engine "
                   "release (the greatest fitted release at or below it).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def show_engine(name: str, gpu_id: str | None, version: str | None, as_json: bool) -> None:
    """Show an engine profile: every default the model uses, with its source, and the
    releases whose overheads are fitted."""
    from kvopt.catalog.engine_versions import versions
    from kvopt.catalog.engines import load_engine
    from kvopt.catalog.gpus import load_gpu
    from kvopt.cli import render

    eng = load_engine(name, load_gpu(gpu_id) if gpu_id else None, version)
    data = render.engine_detail(eng)
    data["fitted_versions"] = list(versions(eng.name)) or "none"
    if as_json:
        echo_json(data)
    else:
        render.detail_table(f"Engine {eng.name}", data)
