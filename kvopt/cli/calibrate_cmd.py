"""`kvopt calibrate`: fit a GPU x engine profile on bench files."""

from __future__ import annotations

import click


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
def calibrate_cmd(bench_files: tuple[str, ...], gpu: str, engine: str, model: str | None,
                  out_path: str, fit: str, no_cv: bool) -> None:
    """Least-squares fit of efficiency scales and per-step (and per-request) overheads,
    with held-out error."""
    from pathlib import Path

    from kvopt.bench.calibrate import calibrate, point_from_bench, save_profile
    from kvopt.bench.result import load_bench

    points = [point_from_bench(load_bench(f), Path(f).name, model=model) for f in bench_files]
    cal = calibrate(points, gpu=gpu, engine=engine, cross_validate=not no_cv,
                    fit=tuple(x.strip() for x in fit.split(",") if x.strip()))
    save_profile(cal, out_path)
    click.echo(f"compute efficiency x{cal.compute_scale:.3f}, memory efficiency "
               f"x{cal.memory_scale:.3f}, step overhead {cal.step_overhead_ms:.2f} ms, "
               f"request overhead {cal.request_overhead_ms:.2f} ms")
    click.echo(f"mean abs error: {cal.error_before_pct:.1f}% -> {cal.error_after_pct:.1f}% "
               f"in sample; held out (leave-one-out): {cal.cv_before_pct:.1f}% -> "
               f"{cal.cv_after_pct:.1f}%")
    click.echo(f"profile written to {out_path}")
