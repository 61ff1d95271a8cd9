"""`kvopt study run|status|report|export`: scripted sweeps of plan/size/pareto/estimate/
capacity scenarios with a resumable result store."""

from __future__ import annotations

from typing import Any

import click

from kvopt import limits
from kvopt.cli.options import bounded, echo_json


@click.group("study")
def study_cmd() -> None:
    """Sweep many scenarios from a study file; results go to a resumable store."""


@study_cmd.command("run")
@click.argument("study_file", type=click.Path(dir_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Output folder (the store, study.sqlite, lives there).")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Local worker processes [default: in-process]; with --dask local, the "
                   "number of Dask workers.")
@click.option("--dask", default=None, metavar="local|tcp://HOST:PORT",
              help="Run on a local Dask cluster or an existing scheduler.")
@click.option("--dask-timeout-s", type=bounded(limits.DASK_TIMEOUT_S), default=10.0,
              show_default=True, help="How long to try to reach a Dask scheduler.")
@click.option("--retry-errors", is_flag=True, help="Run scenarios stored as errors again.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def run_cmd(study_file: str, out_dir: str, workers: int | None, dask: str | None,
            dask_timeout_s: float, retry_errors: bool, quiet: bool) -> None:
    """Run (or resume) STUDY_FILE into OUT_DIR: finished scenarios are skipped."""
    import sys

    from kvopt.study.run import run_study
    from kvopt.study.spec import load_study

    study = load_study(study_file)
    try:
        s = run_study(study, out_dir, workers=workers, dask=dask,
                      dask_timeout_s=dask_timeout_s, progress=not quiet and sys.stderr.isatty(),
                      retry_errors=retry_errors)
    except KeyboardInterrupt:
        click.echo("kvopt: interrupted; finished scenarios are stored, run again to continue "
                   f"(kvopt study status {out_dir})", err=True)
        sys.exit(130)
    click.echo(f"{s.total} scenarios: {s.skipped} already done, {s.done} run now "
               f"({s.failed} failed) in {s.seconds:.1f} s on {s.runner}; results in {out_dir}")
    if s.done and s.failed == s.done:
        from kvopt.errors import KvoptError

        raise KvoptError(f"every scenario run ({s.done}) failed; kvopt study status {out_dir} "
                         "and kvopt study report show why")


@study_cmd.command("status")
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True)
def status_cmd(out_dir: str, as_json: bool) -> None:
    """How far the study in OUT_DIR got."""
    from kvopt.study.store import Store

    with Store(out_dir, create=False) as store:
        st = store.status()
    if as_json:
        echo_json(st)
        return
    by = ", ".join(f"{n} {k}" for k, n in sorted(st["by_status"].items())) or "none"
    click.echo(f"study {st['name']}: {st['finished']} of {st['total']} scenarios finished "
               f"({by}); {st['pending']} pending; {st['attempts']} computations stored")
    last: dict[str, Any] | None = st["last_run"]
    if last:
        click.echo(f"last run #{last['id']} ({last['runner']}): {last['state']}, "
                   f"{last['done']} computed, {last['skipped']} skipped")


@study_cmd.command("report")
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--dest", type=click.Path(file_okay=False), default=None,
              help="Folder for the report [default: OUT_DIR/report].")
def report_cmd(out_dir: str, dest: str | None) -> None:
    """Markdown + HTML summary with PNG plots (cost vs traffic, cheapest plans, SLOs)."""
    from kvopt.study.report import write_report

    files = write_report(out_dir, dest)
    click.echo("wrote " + ", ".join(str(f) for f in files))


@study_cmd.command("export")
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--output", required=True, type=click.Path(dir_okay=False),
              help="results.parquet | results.csv | results.json")
@click.option("--all", "everything", is_flag=True,
              help="Also results of earlier studies run in OUT_DIR.")
def export_cmd(out_dir: str, output: str, everything: bool) -> None:
    """Write the results table (scenario keys, status, outputs, full result JSON)."""
    from kvopt.study.store import export

    n = export(out_dir, output, everything=everything)
    click.echo(f"{n} rows written to {output}")
