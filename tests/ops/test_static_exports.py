"""The static exports a person reads: the Pareto PNG (units on the axes, the question in the
title, colour by GPU, marker by TP, log or clipped axes against outliers) and the study
report (panels in the order of the swept value, infeasible scenarios marked)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from kvopt.pareto import export


def _row(gpu: str, tp: int, cost: float, ttft: float, tpot: float, knee: bool = False) -> dict:
    return {"gpu": gpu, "tp": tp, "weights": "fp8", "kv_dtype": "fp8", "max_batch": 64,
            "replicas": 1, "cost": cost, "ttft_p99": ttft, "tpot_p99": tpot, "knee": knee}


def test_axis_scale_picks_log_clip_or_linear() -> None:
    assert export.axis_scale([1, 2, 5, 40]) == ("log", None)  # 40x spread
    kind, lim = export.axis_scale([100, 105, 110, 115, 120, 1900])  # one far outlier, < 20x
    assert kind == "clip" and 120 < lim < 1900
    assert export.axis_scale([10, 11, 12, 13]) == ("linear", None)
    assert export.axis_scale([-5, -4, -3, -2, 100])[0] == "clip"  # negatives: no log
    assert export.axis_values([{"throughput": -1200.0}], "throughput") == [1200.0]
    assert math.isnan(export.axis_values([{"cost": None}], "cost")[0])


def test_pareto_png_has_units_title_colours_markers_and_scales(tmp_path: Path) -> None:
    data = [_row("H100-SXM", 1, 3.8, 20, 6), _row("H100-SXM", 2, 7.6, 14, 5),
            _row("L40S", 1, 1.9, 60, 18, knee=True), _row("L40S", 2, 3.9, 45, 16),
            _row("A100-SXM-80GB", 4, 120.0, 12, 4), _row("L4", 1, 0.9, 2500, 30)]
    title = export.front_title("Llama-3.1-8B", 20, {"slo_ttft_p99_ms": 500,
                                                    "slo_tpot_p99_ms": None})
    assert title == "Pareto front: Llama-3.1-8B at 20 req/s; SLO p99 TTFT <= 500 ms"
    fig = export.front_figure(data, ("cost", "ttft_p99", "tpot_p99"), title=title)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "cost ($/h) (log)" and ax.get_xscale() == "log"  # 0.9..120
    assert ax.get_ylabel().startswith("TTFT p99 (ms)")
    assert ax.get_yscale() == "log"  # 12..2500 ms
    third = fig.axes[2]  # TTFT vs TPOT
    assert third.get_xlabel() == "TTFT p99 (ms) (log)" and third.get_ylabel() == "TPOT p99 (ms)"
    assert fig._suptitle.get_text().startswith(title)
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["A100-SXM-80GB", "H100-SXM", "L4", "L40S", "TP 1", "TP 2", "TP 4"]
    colours = {tuple(c.get_facecolor()[0]) for c in ax.collections[:6]}
    assert len(colours) == 4  # one per GPU
    markers = {c.get_paths()[0].vertices.shape for c in ax.collections[:6]}
    assert len(markers) == 3  # one per TP degree
    export.write_png(data, ("cost", "ttft_p99", "tpot_p99"), tmp_path / "f.png", title=title)
    assert (tmp_path / "f.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_pareto_png_clips_an_outlier(tmp_path: Path) -> None:
    data = [_row("H100-SXM", 1, c, t, 5) for c, t in
            ((3, 14), (4, 13), (5, 12.5), (6, 12), (7, 11.8), (8, 200))]
    fig = export.front_figure(data, ("cost", "ttft_p99"))
    ax = fig.axes[0]
    top = ax.get_ylim()[1]
    assert 14 < top < 200 and ax.get_yscale() == "linear"
    assert "outlier" in ax.get_title()


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A study whose swept SLO is listed out of order and is infeasible at 3 ms; the figures
    the report draws are captured as it saves them."""
    import matplotlib.figure

    from kvopt.study.report import write_report
    from kvopt.study.run import run_study
    from kvopt.study.spec import Study

    out = tmp_path_factory.mktemp("study")
    study = Study(solve="plan", base={"model": "Llama-3.1-8B", "input_len": 500,
                                      "output_len": 100, "gpus": ["H100-SXM", "L40S"],
                                      "tp_options": [1], "precisions": ["fp8/fp8"],
                                      "batches": [64]},
                  axes={"rps": [10, 2], "slo_tpot_p99_ms": [100, 3, 25]})
    run_study(study, out, progress=False)
    saved: dict = {}
    real = matplotlib.figure.Figure.savefig

    def keep(self, fname, *a, **k):  # type: ignore[no-untyped-def]
        saved[Path(str(fname)).name] = self
        return real(self, fname, *a, **k)

    matplotlib.figure.Figure.savefig = keep  # type: ignore[method-assign]
    try:
        write_report(out)
    finally:
        matplotlib.figure.Figure.savefig = real  # type: ignore[method-assign]
    return {"figs": saved, "md": (out / "report" / "report.md").read_text()}


def test_report_panels_follow_the_swept_value_and_mark_infeasible(report: dict) -> None:
    fig = report["figs"]["cost_vs_traffic.png"]
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["slo_tpot_p99_ms=3.0", "slo_tpot_p99_ms=25.0", "slo_tpot_p99_ms=100.0"]
    first = fig.axes[0]
    labels = [t.get_text() for t in first.get_legend().get_texts()]
    assert labels == ["infeasible (2)"]  # both rates fail the 3 ms TPOT
    assert first.get_ylabel() == "fleet cost ($/h)"
    assert first.get_xlabel() == "request rate (req/s)"
    heat = report["figs"]["slo_feasibility.png"].axes[0]
    rows = [t.get_text() for t in heat.get_yticklabels()]
    assert [r.split("tpot<=")[1] for r in rows] == ["3ms", "25ms", "100ms"]


def test_cheapest_table_rows_follow_the_swept_values(report: dict) -> None:
    md = report["md"]
    table = md.split("## Cheapest plan per scenario")[1].split("##")[0]
    rows = [line.split("|")[1:3] for line in table.splitlines() if line.startswith("| ") and
            "status" not in line]
    keys = [(float(a), float(b)) for a, b in rows]
    assert keys == sorted(keys) and len(keys) == 6
