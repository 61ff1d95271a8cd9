"""Operations: `kvopt watch` (a running deployment against its plan) and `kvopt ui` (the
local web app). Their stacks (prometheus-client; FastAPI, uvicorn, Plotly) are imported
only when the command runs."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from kvopt import choices, limits
from kvopt.cli.options import bounded


@click.command("watch")
@click.argument("plan_file", type=click.Path(dir_okay=False))
@click.option("--metrics-url", "urls", multiple=True, required=True,
              help="An engine replica's Prometheus endpoint, e.g. "
                   "http://127.0.0.1:8000/metrics; repeat for each replica watched.")
@click.option("--entry", default=None, help="Fleet entry: its 1-based index or workload name "
              "[default: the plan's only entry].")
@click.option("--engine", type=click.Choice(["auto", "vllm", "sglang"]), default="auto",
              show_default=True, help="Metric names to read (auto: from the scrape).")
@click.option("--interval-s", type=bounded(limits.WATCH_INTERVAL_S), default=15.0,
              show_default=True, help="Seconds between scrapes (one report each).")
@click.option("--count", type=bounded(limits.WATCH_COUNT), default=0, show_default=True,
              help="Stop after this many reports (0: until interrupted).")
@click.option("--once", is_flag=True, help="One report (two scrapes) then exit: a health "
              "check.")
@click.option("--over-util", type=bounded(limits.UTIL_FRACTION), default=1.0, show_default=True,
              help="Over-utilized above this fraction of the planned goodput.")
@click.option("--kv-full", type=bounded(limits.KV_FULL), default=0.95, show_default=True,
              help="Over-utilized at this KV cache use.")
@click.option("--under-util", type=bounded(limits.UNDER_UTIL), default=0.5, show_default=True,
              help="Under-utilized below this fraction of the planned rate ...")
@click.option("--under-window-s", type=bounded(limits.WATCH_WINDOW_S), default=600.0,
              show_default=True, help="... for longer than this.")
@click.option("--slo-risk", type=bounded(limits.SLO_RISK), default=0.9, show_default=True,
              help="SLO at risk at this fraction of an SLO (critical above it).")
@click.option("--tolerance-pct", type=bounded(limits.TOLERANCE_PCT), default=20.0,
              show_default=True, help="Prediction drift beyond this (kvopt validate's).")
@click.option("--min-requests", type=bounded(limits.MIN_REQUESTS), default=20, show_default=True,
              help="Fewest completions in a window to judge its p99s.")
@click.option("--no-predict", is_flag=True,
              help="Compare p99s with the plan's prediction (at the planned rate) instead of "
                   "kvopt's at the observed rate.")
@click.option("--json", "as_json", is_flag=True, help="JSON lines, one per report.")
def watch_cmd(plan_file: str, urls: tuple[str, ...], entry: str | None, engine: str,
              interval_s: float, count: int, once: bool, no_predict: bool, as_json: bool,
              **limits: Any) -> None:
    """Watch running engines against PLAN_FILE: rate vs plan and goodput, p99s vs SLOs and
    kvopt's prediction, KV cache, queue, $/h and $/M tokens, with alerts. Exit code: 0 ok,
    3 warning, 4 critical, 5 unreachable (the worst report; 1 error, 2 usage)."""
    from kvopt.export import load_plan
    from kvopt.ops import watch
    from kvopt.ops.deps import require
    from kvopt.ops.metrics import check_url

    require("watch", "prometheus_client")
    for url in urls:
        check_url(url)
    plan = load_plan(plan_file)
    tgt = watch.target(plan, entry=entry, replicas=len(urls))
    th = watch.Thresholds(**limits)
    fixed = (tgt.entry["predicted"].get("ttft_p99_ms"), tgt.entry["predicted"].get(
        "tpot_p99_ms"))
    predict = (lambda _r: fixed) if no_predict else watch.KvoptPredictor(tgt)
    w = watch.Watcher(target=tgt, thresholds=th, predict=predict)

    def emit(r: watch.Report) -> None:
        if as_json:
            click.echo(json.dumps(r.to_dict()))
        else:
            for text in watch.line(r):
                click.echo(text)
        sys.stdout.flush()

    try:
        status = watch.run(list(urls), w, engine=engine, interval_s=interval_s,
                           count=1 if once else count, emit=emit)
    except KeyboardInterrupt:
        click.echo("kvopt: interrupted", err=True)
        sys.exit(130)
    sys.exit(choices.WATCH_EXIT_CODES[status])


@click.command("ui")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind (the loopback interface: this machine only).")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True)
@click.option("--studies", "studies_root", type=click.Path(file_okay=False, exists=True),
              default=".", show_default=True,
              help="Folder whose study folders the study browser lists.")
def ui_cmd(host: str, port: int, studies_root: str) -> None:
    """The local web app: estimate as you type, plan and compare with downloads, an
    interactive Pareto front and a study browser (FastAPI + uvicorn; Plotly served
    locally)."""
    from kvopt.ops.deps import require

    require("ui", "fastapi", "uvicorn", "plotly")
    import uvicorn

    from kvopt.ops.ui.app import create_app

    if host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(f"kvopt: warning: serving on {host}: other machines can reach the app and "
                   "run solves on this one", err=True)
    click.echo(f"kvopt ui on http://{'127.0.0.1' if host == 'localhost' else host}:{port}/ "
               "(ctrl-C stops it)")
    uvicorn.run(create_app(studies_root=studies_root), host=host, port=port,
                log_level="warning")
