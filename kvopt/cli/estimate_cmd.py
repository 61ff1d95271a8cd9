"""`kvopt estimate`: one static batch on one replica."""

from __future__ import annotations

import click

WEIGHTS = ["bf16", "fp16", "fp8", "int8", "int4", "fp4"]
KV = ["bf16", "fp16", "fp8"]
ENGINES = ["vllm", "sglang", "trtllm", "llamacpp"]


@click.command("estimate")
@click.option("--model", required=True, help="Catalog name/alias, or a path to a config.json.")
@click.option("--gpu", required=True, help="GPU id or alias (see `kvopt list-gpus`).")
@click.option("--tp", type=click.IntRange(min=1), default=1, show_default=True,
              help="Tensor-parallel degree (GPUs per replica).")
@click.option("--weights", type=click.Choice(WEIGHTS), default="bf16", show_default=True)
@click.option("--kv-dtype", type=click.Choice(KV), default=None,
              help="KV-cache dtype [default: bf16, or fp16 with fp16 weights].")
@click.option("--engine", type=click.Choice(ENGINES), default="vllm", show_default=True)
@click.option("--input-len", type=click.IntRange(min=1), required=True, help="Prompt tokens.")
@click.option("--output-len", type=click.IntRange(min=1), required=True, help="Output tokens.")
@click.option("--batch", type=click.IntRange(min=1), required=True,
              help="Requests in the static batch.")
@click.option("--price-usd-h", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Override the price of one GPU-hour.")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON result.")
def estimate_cmd(model: str, gpu: str, tp: int, weights: str, kv_dtype: str | None,
                 engine: str, input_len: int, output_len: int, batch: int,
                 price_usd_h: float | None, as_json: bool) -> None:
    """Memory, latency, throughput, utilization and cost of one static batch."""
    from kvopt.cli import render
    from kvopt.cli.main import echo_json
    from kvopt.estimate import estimate

    result = estimate(model=model, gpu=gpu, tp=tp, weights=weights, kv_dtype=kv_dtype,
                      engine=engine, input_len=input_len, output_len=output_len, batch=batch,
                      price_usd_h=price_usd_h)
    if as_json:
        echo_json(result.to_dict())
    else:
        render.estimate_tables(result)
