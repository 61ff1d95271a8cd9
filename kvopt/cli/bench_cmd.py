"""`kvopt bench` (measure a served replica) and `kvopt import-bench` (convert vLLM,
GuideLLM or genai-perf results); both write ``kvopt.bench/1`` files."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click


@contextmanager
def _progress(total: int, enabled: bool) -> Iterator[Callable[[], None] | None]:
    """A rich progress bar on stderr advanced once per finished request (None if off)."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    with Progress("requests", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("bench", total=total)
        yield lambda: bar.advance(task)


def _line(result: dict[str, Any]) -> str:
    t, i, e = result["ttft_ms"], result["itl_ms"], result["e2e_ms"]
    return (f"completed {result['completed']}/{result['num_requests']} (errors "
            f"{result['errors']}, incomplete {result.get('incomplete', 0)}) in "
            f"{result['duration_s']:.2f} s: {result['requests_s']:.2f} req/s, "
            f"{result['output_tok_s']:.1f} output tok/s; TTFT mean {t['mean']:.1f} p99 "
            f"{t['p99']:.1f} ms; ITL mean {i['mean']:.2f} p99 {i['p99']:.2f} ms; E2E mean "
            f"{e['mean']:.1f} ms")


@click.command("bench")
@click.option("--endpoint", required=True,
              help="OpenAI-compatible API base, e.g. http://127.0.0.1:8000/v1.")
@click.option("--model", required=True, help="Served model name (as in GET /v1/models).")
@click.option("--input-len", type=click.IntRange(min=1), required=True,
              help="Prompt tokens per request (prompts sized on the server's usage).")
@click.option("--output-len", type=click.IntRange(min=1), required=True,
              help="Output tokens per request (max_tokens = min_tokens, ignore_eos).")
@click.option("--rps", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Poisson arrivals at this many requests/s.")
@click.option("--concurrency", type=click.IntRange(min=1), default=None,
              help="Closed loop: this many requests in flight.")
@click.option("--num-requests", type=click.IntRange(min=1), required=True,
              help="Send at most this many requests.")
@click.option("--duration-s", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Stop issuing after this many seconds; cancel requests still in flight.")
@click.option("--request-timeout-s", type=click.FloatRange(min=0, min_open=True),
              default=300.0, show_default=True, help="Per-request limit (errors: timeout).")
@click.option("--api", type=click.Choice(["completions", "chat"]), default="completions",
              show_default=True)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seeds arrivals and prompts.")
@click.option("--api-key", envvar="OPENAI_API_KEY", default=None,
              help="Bearer token [env OPENAI_API_KEY].")
@click.option("--out", "out_path", type=click.Path(dir_okay=False), default=None,
              help="Write the kvopt.bench/1 result here (default: print it as JSON).")
@click.option("--quiet", is_flag=True, help="No progress bar and no warnings.")
def bench_cmd(rps: float | None, concurrency: int | None, out_path: str | None, quiet: bool,
              **kw: Any) -> None:
    """Load an OpenAI-compatible server and measure TTFT, ITL, latency and throughput."""
    if (rps is None) == (concurrency is None):
        raise click.UsageError("give exactly one of --rps (Poisson arrivals) or "
                               "--concurrency (closed loop)")
    from kvopt.bench.client import BenchConfig, run_load
    from kvopt.bench.stats import summarize
    from kvopt.cli.main import echo_json

    cfg = BenchConfig(mode="rps" if rps is not None else "concurrency",
                      load_value=float(rps if rps is not None else concurrency or 0), **kw)
    with _progress(cfg.num_requests, not quiet and sys.stdout.isatty()) as on_done:
        summary = summarize(cfg, run_load(cfg, on_done))
    if not quiet:
        for w in summary.warnings:
            click.echo(f"kvopt: warning: {w}", err=True)
    if out_path is None:
        echo_json(summary.result)
        return
    from kvopt.fleet.plan import write_json_atomic

    write_json_atomic(summary.result, out_path)
    click.echo(_line(summary.result))
    click.echo(f"result written to {out_path}")


@click.command("import-bench")
@click.argument("source", type=click.Path(dir_okay=False))
@click.option("--from", "fmt", type=click.Choice(["auto", "vllm", "guidellm", "genai-perf"]),
              default="auto", show_default=True,
              help="Format of SOURCE: vllm bench serve --save-result JSON, GuideLLM "
                   "benchmarks.json, genai-perf profile_export_genai_perf.json.")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False),
              help="bench.json to write (several GuideLLM benchmarks: bench-1.json, ...).")
@click.option("--index", type=click.IntRange(min=1), default=None,
              help="Only this benchmark of a GuideLLM report (1-based).")
@click.option("--model", default=None, help="Model name, overriding the file's.")
@click.option("--endpoint", default=None, help="Endpoint, overriding the file's.")
def import_bench_cmd(source: str, fmt: str, out_path: str, index: int | None,
                     model: str | None, endpoint: str | None) -> None:
    """Convert another tool's benchmark result to kvopt.bench/1 (for validate, calibrate)."""
    from kvopt.bench.importers import import_file
    from kvopt.errors import InputError
    from kvopt.fleet.plan import write_json_atomic

    results = import_file(source, fmt, model=model, endpoint=endpoint)
    if index is not None:
        if index > len(results):
            raise InputError("--index", index, f"{source} holds {len(results)} "
                             "benchmark(s)", f"use 1..{len(results)}")
        results = [results[index - 1]]
    out = Path(out_path)
    paths = [out] if len(results) == 1 else [
        out.with_name(f"{out.stem}-{i}{out.suffix}") for i in range(1, len(results) + 1)]
    for path, res in zip(paths, results, strict=True):
        write_json_atomic(res, path)
        load = res["load"]
        click.echo(f"{path}: {res['source']} {res['model']} {load['mode']}={load['value']:g} "
                   f"in {res['input_len']}/out {res['output_len']}, TTFT mean "
                   f"{res['ttft_ms']['mean']:.1f} ms, ITL mean {res['itl_ms']['mean']:.2f} ms, "
                   f"{res['output_tok_s']:.1f} output tok/s")
    if len(results) > 1:
        click.echo(f"{len(results)} benchmarks written (one per GuideLLM benchmark; "
                   "--index N picks one)")
