"""`kvopt validate`: kvopt's prediction for a measured replica versus the measurement."""

from __future__ import annotations

from typing import Any

import click


@click.command("validate")
@click.option("--bench", "bench_file", required=True, type=click.Path(dir_okay=False),
              help="A kvopt.bench/1 result file.")
@click.option("--plan", "plan_file", type=click.Path(dir_okay=False),
              help="Take the replica from this plan (the entry serving --workload).")
@click.option("--workload", default=None, help="Plan workload to check [default: first].")
@click.option("--model", default=None)
@click.option("--gpu", default=None)
@click.option("--tp", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--weights", default="bf16", show_default=True)
@click.option("--kv-dtype", default=None)
@click.option("--engine", default="vllm", show_default=True)
@click.option("--tolerance-pct", type=click.FloatRange(min=0), default=20.0, show_default=True)
@click.option("--profile", "profile_path", type=click.Path(dir_okay=False), default=None,
              help="Calibrated profile (kvopt calibrate --out).")
@click.option("--json", "as_json", is_flag=True)
def validate_cmd(bench_file: str, plan_file: str | None, workload: str | None,
                 **kw: Any) -> None:
    """Per-metric predicted vs measured, error and bias; exit 1 when any metric fails."""
    from kvopt.bench.result import load_bench
    from kvopt.bench.validate import compare
    from kvopt.cli.main import echo_json
    from kvopt.errors import InputError
    from kvopt.estimate import estimate
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
    from kvopt.cli.estimate_cmd import calibrated

    cfg["gpu"], cfg["engine"] = calibrated(cfg["gpu"], cfg["engine"], kw["profile_path"])
    if plan_file and not kw["profile_path"]:
        # the plan was made with a profile for this GPU: predict as the plan did
        from kvopt.bench.calibrate import Calibration

        for c in plan.get("inputs", {}).get("space", {}).get("calibrations") or []:
            if c.get("gpu") == e["gpu"] and c.get("engine") == e["engine"]:
                try:
                    cfg["gpu"], cfg["engine"] = Calibration.from_dict(c).apply()
                except (KeyError, TypeError, ValueError):
                    raise InputError("--plan", plan_file, "inputs.space.calibrations has a "
                                     "malformed entry", "re-export the plan with kvopt plan "
                                     "--output") from None
                click.echo(f"predicting with the plan's calibration for {c['gpu']} / "
                           f"{c['engine']}", err=True)
    from kvopt.bench.result import measured_lengths

    input_len, output_len = measured_lengths(bench)
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
