"""Review exports of a front: rows (CSV/JSON/Parquet), PNG projections, and a
self-contained interactive HTML page (no network: data, script and styles inline)."""

from __future__ import annotations

import csv
import html
import io
import itertools
import json
import math
from pathlib import Path
from typing import Any

from kvopt.errors import InputError
from kvopt.fileio import write_atomic
from kvopt.pareto.front import Front, Normalizer, knee
from kvopt.pareto.table import ConfigTable


def rows(front: Front, table: ConfigTable, objectives: tuple[str, ...],
         norm: Normalizer, *, knee_at: int | None = None) -> list[dict[str, Any]]:
    """One row per front point: decisions, objectives (named as requested), metrics, engine
    flags, and whether it is the knee (``knee_at``: :attr:`ParetoResult.knee`; else the
    knee of the objectives without SLOs)."""
    k = knee_at if knee_at is not None else (
        knee(front.F, norm, objectives=objectives) if front.F.shape[0] else -1)
    out = []
    for i, dec in enumerate(front.idx.tolist()):
        g, t, p, b, n = dec[:5]
        w, kv = table.precisions[p]
        tp, batch = table.tps[t], table.batches[b]
        row: dict[str, Any] = {"gpu": table.gpus[g], "tp": tp, "weights": w, "kv_dtype": kv,
                               "max_batch": batch, "replicas": n}
        if table.layouts:
            lay = table.layout(t)
            row.update(ep=lay.ep, dp=lay.dp, pp=lay.pp, layout=lay.label)
        if len(dec) == 10:  # heterogeneous fleet: the second group
            g2, t2, p2, b2, n2 = dec[5:]
            row.update({"gpu_b": table.gpus[g2] if n2 else "", "tp_b": table.tps[t2],
                        "weights_b": table.precisions[p2][0],
                        "kv_dtype_b": table.precisions[p2][1],
                        "max_batch_b": table.batches[b2], "replicas_b": n2})
        for j, o in enumerate(objectives):
            row[o] = float(front.F[i, j])
        for name, arr in front.metrics.items():
            row[name] = float(arr[i])
        row["engine_flags"] = engine_flags(table.engine, tp, w, kv, batch)
        row["knee"] = i == k
        out.append(row)
    return out


def engine_flags(engine: str, tp: int, weights: str, kv: str, batch: int) -> str:
    """Launch flags for the point (the engine-config issue will make these authoritative)."""
    if engine == "vllm":
        flags = [f"--tensor-parallel-size {tp}", f"--max-num-seqs {batch}"]
        if kv == "fp8":
            flags.append("--kv-cache-dtype fp8")
        if weights in ("int4", "fp8", "int8", "fp4"):
            flags.append(f"(needs a {weights} checkpoint)")
        return " ".join(flags)
    return f"tp={tp} max_batch={batch} weights={weights} kv={kv}"


def clean_row(row: dict[str, Any]) -> dict[str, Any]:
    """A row for JSON, CSV or Parquet: non-finite floats (inf, nan) become None."""
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v
            for k, v in row.items()}


TABLE_EXTENSIONS = (".csv", ".json", ".parquet")


def check_table_path(path: str | Path) -> None:
    """A front table path with a known extension (before any work is done)."""
    if Path(path).suffix.lower() not in TABLE_EXTENSIONS:
        raise InputError("--out", str(path), "unknown extension", "use .csv, .json or .parquet")


def write_table(data: list[dict[str, Any]], path: str | Path,
                meta: dict[str, Any] | None = None) -> None:
    """CSV, JSON or Parquet by extension."""
    write_atomic(Path(path), table_bytes(data, path, meta), "--out")


def table_bytes(data: list[dict[str, Any]], path: str | Path,
                meta: dict[str, Any] | None = None) -> bytes:
    """The front as CSV, JSON or Parquet, by the extension of ``path``."""
    p = Path(path)
    check_table_path(p)
    ext = p.suffix.lower()
    if ext == ".csv":
        buf = io.StringIO()
        cols = list(data[0]) if data else []
        wr = csv.DictWriter(buf, fieldnames=cols)
        wr.writeheader()
        for r in data:
            wr.writerow(clean_row(r))
        return buf.getvalue().encode()
    if ext == ".json":
        from kvopt.fileio import json_text

        return json_text({"meta": meta or {}, "front": [clean_row(r) for r in data]}).encode()
    import pyarrow as pa  # .parquet
    import pyarrow.parquet as pq

    tbl = pa.Table.from_pylist([clean_row(r) for r in data])
    if meta:
        from kvopt.fileio import finite_json

        tbl = tbl.replace_schema_metadata({"kvopt": json.dumps(finite_json(meta))})
    sink = io.BytesIO()
    pq.write_table(tbl, sink)
    return sink.getvalue()


# axis titles with units, by objective; throughput is minimized as its negative and shown
# as the positive tokens/s
AXIS_LABELS = {"cost": "cost ($/h)", "ttft_p99": "TTFT p99 (ms)", "tpot_p99": "TPOT p99 (ms)",
               "quality": "quality loss vs BF16 (pp)",
               "throughput": "output capacity (tokens/s)", "gpus": "GPUs"}
TP_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def axis_label(objective: str) -> str:
    return AXIS_LABELS.get(objective, objective)


def axis_values(data: list[dict[str, Any]], objective: str) -> list[float]:
    """The objective of every row as shown (throughput positive; non-finite as NaN)."""
    sign = -1.0 if objective == "throughput" else 1.0
    out = []
    for r in data:
        v = r.get(objective)
        out.append(sign * float(v) if isinstance(v, int | float) and math.isfinite(v)
                   else float("nan"))
    return out


def axis_scale(values: list[float]) -> tuple[str, float | None]:
    """("log", None) when positive values span >= 20x; ("clip", limit) when some lie beyond
    the upper fence q3 + 3 x IQR (they would flatten the rest); else ("linear", None)."""
    import numpy as np

    v = np.array([x for x in values if math.isfinite(x)])
    if v.size < 3:
        return "linear", None
    if (v > 0).all() and v.max() / v.min() >= 20:
        return "log", None
    q1, q3 = np.percentile(v, [25, 75])
    fence = q3 + 3 * (q3 - q1)
    if q3 > q1 and (v > fence).any():
        return "clip", float(fence + 0.05 * (fence - v.min()))
    return "linear", None


def front_title(model: str, rps: float, slos: dict[str, float | None]) -> str:
    """"Pareto front: MODEL at R req/s; SLO p99 TTFT <= 500 ms, TPOT <= 50 ms"."""
    names = {"slo_ttft_p99_ms": "TTFT", "slo_tpot_p99_ms": "TPOT", "slo_e2e_p99_ms": "E2E"}
    slo = ", ".join(f"{names.get(k, k)} <= {v:g} ms" for k, v in slos.items() if v)
    return f"Pareto front: {model} at {rps:g} req/s; " + (f"SLO p99 {slo}" if slo else "no SLO")


def write_png(data: list[dict[str, Any]], objectives: tuple[str, ...], path: str | Path, *,
              title: str = "") -> None:
    """:func:`front_figure` as a PNG (written atomically)."""
    write_atomic(Path(path), png_bytes(data, objectives, title=title), "--png")


def png_bytes(data: list[dict[str, Any]], objectives: tuple[str, ...], *,
              title: str = "") -> bytes:
    """The PNG of :func:`write_png`."""
    import matplotlib.pyplot as plt

    fig = front_figure(data, objectives, title=title)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def front_figure(data: list[dict[str, Any]], objectives: tuple[str, ...], *,
                 title: str = "") -> Any:
    """2-D projections of every objective pair (a matplotlib Figure): axes titled with
    units, points coloured by GPU and marked by TP, the knee starred, a log scale where
    values span 20x or more and a clipped axis (points beyond it drawn on the edge) against
    outliers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    pairs = list(itertools.combinations(objectives, 2))
    cols = min(3, len(pairs))
    rows_n = math.ceil(len(pairs) / cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(4.6 * cols, 3.9 * rows_n + 0.9),
                             squeeze=False)
    gpus = sorted({str(r["gpu"]) for r in data})
    tps = sorted({int(r["tp"]) for r in data})
    color = {g: f"C{i % 10}" for i, g in enumerate(gpus)}
    marker = {t: TP_MARKERS[i % len(TP_MARKERS)] for i, t in enumerate(tps)}
    for ax, (a, b) in zip(axes.ravel(), pairs, strict=False):
        xs, ys = axis_values(data, a), axis_values(data, b)
        limits = {"x": axis_scale(xs), "y": axis_scale(ys)}
        clipped = 0
        for r, x, y in zip(data, xs, ys, strict=True):
            out = False
            for key, v in (("x", x), ("y", y)):
                kind, lim = limits[key]
                if kind == "clip" and lim is not None and v > lim:
                    clipped, out = clipped + 1, True
                    if key == "x":
                        x = lim
                    else:
                        y = lim
            ax.scatter([x], [y], s=40 if out else 22, alpha=0.8, color=color[str(r["gpu"])],
                       marker=marker[int(r["tp"])], clip_on=False,
                       edgecolors="black" if out else "none", linewidths=0.8)
        kn = [i for i, r in enumerate(data) if r.get("knee")]
        if kn:
            ax.scatter([xs[kn[0]]], [ys[kn[0]]], s=160, marker="*", facecolors="none",
                       edgecolors="red", linewidths=1.4, label="knee (balanced)")
            ax.legend(loc="best", fontsize=7)
        for key, setter, lim_setter in (("x", ax.set_xscale, ax.set_xlim),
                                        ("y", ax.set_yscale, ax.set_ylim)):
            kind, lim = limits[key]
            if kind == "log":
                setter("log")
            elif kind == "clip" and lim is not None:
                lim_setter(right=lim) if key == "x" else lim_setter(top=lim)
        xl, yl = axis_label(a), axis_label(b)
        ax.set_xlabel(xl + (" (log)" if limits["x"][0] == "log" else ""))
        ax.set_ylabel(yl + (" (log)" if limits["y"][0] == "log" else ""))
        if clipped:
            ax.set_title(f"axis clipped: {clipped} outlier(s) drawn on the edge, outlined",
                         fontsize=7)
        ax.grid(alpha=0.3, which="both")
    for ax in axes.ravel()[len(pairs):]:
        ax.axis("off")
    handles = [Line2D([], [], color=color[g], marker="o", linestyle="", label=g) for g in gpus]
    handles += [Line2D([], [], color="0.3", marker=marker[t], linestyle="", label=f"TP {t}")
                for t in tps]
    fig.legend(handles=handles, loc="lower center", ncol=min(8, len(handles)), fontsize=8,
               frameon=False)
    fig.suptitle(f"{title or 'Pareto front'} ({len(data)} points; all objectives minimized)",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig


_PAGE = Path(__file__).with_name("page.html")  # template: data, script, styles inline


def write_html(data: list[dict[str, Any]], objectives: tuple[str, ...], path: str | Path, *,
               title: str, subtitle: str) -> None:
    write_atomic(Path(path), html_text(data, objectives, title=title, subtitle=subtitle),
                 "--html")


def html_text(data: list[dict[str, Any]], objectives: tuple[str, ...], *, title: str,
              subtitle: str) -> str:
    """The self-contained page of :func:`write_html`."""
    clean = [clean_row(r) for r in data]
    page = (_PAGE.read_text(encoding="utf-8").replace("__TITLE__", html.escape(title))
            .replace("__SUBTITLE__", html.escape(subtitle))
            .replace("__DATA__", json.dumps(clean).replace("</", "<\\/"))
            .replace("__OBJ__", json.dumps(list(objectives))))
    return page
