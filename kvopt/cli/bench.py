"""Measurements: `kvopt bench` (load a served replica), `import-bench` (convert vLLM,
GuideLLM or genai-perf results), `validate` (prediction vs measurement) and `calibrate`
(fit a GPU x engine profile); bench files are ``kvopt.bench/1``."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from kvopt import limits
from kvopt.cli.options import bounded, echo_json, engine_version_option


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
@click.option("--input-len", type=bounded(limits.TOKENS), required=True,
              help="Prompt tokens per request (prompts sized on the server's usage).")
@click.option("--output-len", type=bounded(limits.TOKENS), required=True,
              help="Output tokens per request (max_tokens = min_tokens, ignore_eos).")
@click.option("--rps", type=bounded(limits.BENCH_RPS), default=None,
              help="Poisson arrivals at this many requests/s.")
@click.option("--concurrency", type=bounded(limits.BENCH_CLIENTS), default=None,
              help="Closed loop: this many requests in flight.")
@click.option("--num-requests", type=bounded(limits.BENCH_REQUESTS), required=True,
              help="Send at most this many requests.")
@click.option("--duration-s", type=bounded(limits.SECONDS), default=None,
              help="Stop issuing after this many seconds; cancel requests still in flight.")
@click.option("--request-timeout-s", type=bounded(limits.SECONDS),
              default=300.0, show_default=True, help="Per-request limit (errors: timeout).")
@click.option("--api", type=click.Choice(["completions", "chat"]), default="completions",
              show_default=True)
@click.option("--seed", type=bounded(limits.SEED), default=0, show_default=True,
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
    from kvopt.fileio import check_writable

    if out_path is not None:
        check_writable(out_path, "--out")  # before the run, not after it

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
    from kvopt.fileio import write_json_atomic

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
    from kvopt.fileio import check_writable, json_text, write_all

    check_writable(out_path, "--out")
    results = import_file(source, fmt, model=model, endpoint=endpoint)
    if index is not None:
        if index > len(results):
            raise InputError("--index", index, f"{source} holds {len(results)} "
                             "benchmark(s)", f"use 1..{len(results)}")
        results = [results[index - 1]]
    out = Path(out_path)
    paths = [out] if len(results) == 1 else [
        out.with_name(f"{out.stem}-{i}{out.suffix}") for i in range(1, len(results) + 1)]
    write_all([(path, json_text(res)) for path, res in zip(paths, results, strict=True)],
              "--out")  # all or nothing
    for path, res in zip(paths, results, strict=True):
        load = res["load"]
        click.echo(f"{path}: {res['source']} {res['model']} {load['mode']}={load['value']:g} "
                   f"in {res['input_len']}/out {res['output_len']}, TTFT mean "
                   f"{res['ttft_ms']['mean']:.1f} ms, ITL mean {res['itl_ms']['mean']:.2f} ms, "
                   f"{res['output_tok_s']:.1f} output tok/s")
    if len(results) > 1:
        click.echo(f"{len(results)} benchmarks written (one per GuideLLM benchmark; "
                   "--index N picks one)")


@click.command("validate")
@click.option("--bench", "bench_file", required=True, type=click.Path(dir_okay=False),
              help="A kvopt.bench/1 result file.")
@click.option("--plan", "plan_file", type=click.Path(dir_okay=False),
              help="Take the replica from this plan (the entry serving --workload).")
@click.option("--workload", default=None, help="Plan workload to check [default: first].")
@click.option("--model", default=None)
@click.option("--gpu", default=None)
@click.option("--tp", type=bounded(limits.TP), default=1, show_default=True)
@click.option("--weights", default="bf16", show_default=True)
@click.option("--kv-dtype", default=None)
@click.option("--engine", default="vllm", show_default=True)
@click.option("--tolerance-pct", type=bounded(limits.TOLERANCE_PCT), default=20.0,
              show_default=True)
@engine_version_option
@click.option("--profile", "profile_path", type=click.Path(dir_okay=False), default=None,
              help="Calibrated profile (kvopt calibrate --out).")
@click.option("--json", "as_json", is_flag=True)
def validate_cmd(bench_file: str, plan_file: str | None, workload: str | None,
                 **kw: Any) -> None:
    """Per-metric predicted vs measured, error and bias; exit 1 when any metric fails."""
    from kvopt.bench.result import load_bench
    from kvopt.bench.validate import compare
    from kvopt.errors import InputError
    from kvopt.serving.load import Load

    bench = load_bench(bench_file)
    if plan_file:
        from kvopt.export import load_plan

        plan = load_plan(plan_file)
        entries = [e for e in plan["fleet"] if workload in (None, e["workload"])]
        if not entries:
            raise InputError("--workload", workload, "no fleet entry serves it",
                             "use a workload name from the plan")
        e = entries[0]
        cfg = dict(model=e["model"], gpu=e["gpu"], tp=e["tp"], weights=e["weights"],
                   kv_dtype=e["kv_dtype"], engine=e["engine"])
    else:
        if not kw["model"] or not kw["gpu"]:
            raise click.UsageError("give --plan, or --model and --gpu")
        cfg = dict(model=kw["model"], gpu=kw["gpu"], tp=kw["tp"], weights=kw["weights"],
                   kv_dtype=kw["kv_dtype"], engine=kw["engine"])
    from kvopt.build import hardware

    version = kw["engine_version"]
    if plan_file and version is None and not kw["profile_path"]:
        # the plan's candidates ran with an engine release's fitted overheads
        version = plan.get("inputs", {}).get("space", {}).get("engine_version")
    # the engine flags the plan's candidates ran with (plan --engine-arg)
    args = dict(plan.get("inputs", {}).get("space", {}).get("engine_args") or {}
                ) if plan_file else {}
    cfg["gpu"], cfg["engine"] = hardware(cfg["gpu"], cfg["engine"], kw["profile_path"],
                                         engine_args=args, engine_version=version)
    if plan_file and not kw["profile_path"]:
        # the plan was made with a profile for this GPU: predict as the plan did
        from kvopt.bench.calibrate import plan_calibration

        cards = plan_calibration(plan, e["gpu"], e["engine"], field="--plan", value=plan_file)
        if cards is not None:
            cfg["gpu"], cfg["engine"] = hardware(*cards, engine_args=args)
            click.echo(f"predicting with the plan's calibration for {e['gpu']} / "
                       f"{e['engine']}", err=True)
    from kvopt.bench.result import measured_lengths

    input_len, output_len = measured_lengths(bench)
    from kvopt.serving.estimate import estimate

    est = estimate(**cfg, input_len=input_len, output_len=output_len,
                   load=Load(mode=bench["load"]["mode"], value=float(bench["load"]["value"])))
    checks = compare(est, bench, kw["tolerance_pct"])
    ok = all(c.passed for c in checks)
    if kw["as_json"]:
        echo_json({"passed": ok, "tolerance_pct": kw["tolerance_pct"],
                   "checks": [c.__dict__ for c in checks]})
    else:
        for c in checks:
            click.echo(f"{c.metric:14s} predicted {c.predicted:10.2f} measured "
                       f"{c.measured:10.2f} error {c.error_pct:+7.1f}% ({c.bias}) "
                       f"{'ok' if c.passed else 'FAIL'}")
        click.echo("PASS" if ok else f"FAIL (tolerance {kw['tolerance_pct']:g}%)")
    if not ok:
        raise SystemExit(1)


@click.command("calibrate")
@click.argument("bench_files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--gpu", required=True)
@click.option("--engine", default="vllm", show_default=True)
@click.option("--model", default=None,
              help="Model card or config.json of the served model [default: each bench "
                   "file's model]; use when the server's model name is not a catalog name.")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False),
              help="profile.yaml to write (use with --profile).")
@click.option("--fit", "fit", default="overhead,compute,memory", show_default=True,
              help="Parameters to fit: overhead (per-step ms), request (per-request ms outside "
                   "the engine steps: HTTP, tokenization; adds to TTFT), compute, memory "
                   "(efficiency scales); fewer parameters generalize better on few "
                   "measurements.")
@click.option("--no-cv", is_flag=True, help="Skip leave-one-out cross-validation.")
@click.option("--allow-worse", is_flag=True,
              help="Write the profile even when the fit makes the held-out error worse.")
def calibrate_cmd(bench_files: tuple[str, ...], gpu: str, engine: str, model: str | None,
                  out_path: str, fit: str, no_cv: bool, allow_worse: bool) -> None:
    """Least-squares fit of efficiency scales and per-step (and per-request) overheads,
    with held-out error."""
    from kvopt.bench.calibrate import calibrate, distinct_points, point_from_bench, save_profile
    from kvopt.bench.result import load_bench
    from kvopt.fileio import check_writable

    check_writable(out_path, "--out")
    points = distinct_points([(f, point_from_bench(load_bench(f), Path(f).name, model=model))
                              for f in bench_files])
    cal = calibrate(points, gpu=gpu, engine=engine, cross_validate=not no_cv,
                    fit=tuple(x.strip() for x in fit.split(",") if x.strip()))
    worse = cal.cv_after_pct > cal.cv_before_pct or (
        math.isnan(cal.cv_after_pct) and cal.error_after_pct > cal.error_before_pct)
    if worse and not allow_worse:
        from kvopt.errors import InputError

        held = not math.isnan(cal.cv_after_pct)
        before, after = ((cal.cv_before_pct, cal.cv_after_pct) if held
                         else (cal.error_before_pct, cal.error_after_pct))
        raise InputError("calibrate", ", ".join(Path(f).name for f in bench_files),
                         f"the fit makes the {'held-out' if held else 'in-sample'} error "
                         f"worse ({before:.1f}% -> {after:.1f}%): the profile would predict "
                         "worse than the shipped efficiencies; nothing written",
                         "fit fewer parameters (--fit overhead), add measurements, or "
                         "--allow-worse to write it anyway")
    save_profile(cal, out_path)
    if worse:
        click.echo("kvopt: warning: the profile predicts held-out measurements worse than "
                   "the shipped efficiencies (written because of --allow-worse)", err=True)
    click.echo(f"compute efficiency x{cal.compute_scale:.3f}, memory efficiency "
               f"x{cal.memory_scale:.3f}, step overhead {cal.step_overhead_ms:.2f} ms, "
               f"request overhead {cal.request_overhead_ms:.2f} ms")
    click.echo(f"mean abs error: {cal.error_before_pct:.1f}% -> {cal.error_after_pct:.1f}% "
               f"in sample; held out (leave-one-out): {cal.cv_before_pct:.1f}% -> "
               f"{cal.cv_after_pct:.1f}%")
    click.echo(f"profile written to {out_path}")
