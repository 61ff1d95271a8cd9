"""``kvopt study report``: a Markdown and an HTML summary of a study, with PNG plots.

Plots (matplotlib, Agg backend, imported here only): cost versus traffic by the GPU type
each plan chose; the cheapest plan per scenario; where the SLOs become infeasible (share of
feasible scenarios per SLO setting and traffic level).
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

from kvopt.study.store import Store, load_results

SLO_KEYS = ("slo_ttft_p99_ms", "slo_tpot_p99_ms", "slo_e2e_p99_ms")
SHOWN = ("usd_per_hour", "min_usd_per_hour", "gpu", "knee_gpu", "tp", "precision", "max_batch",
         "replicas", "total_gpus", "ttft_p99_ms", "tpot_p99_ms", "goodput_rps", "tpot_ms")
MAX_ROWS = 500


def write_report(out_dir: str | Path, dest: str | Path | None = None) -> list[Path]:
    """Write ``report.md``, ``report.html`` and the PNGs to ``dest`` (default
    ``OUT_DIR/report``; created if its parent folder exists), all or nothing; returns the
    files written."""
    import shutil
    import tempfile

    from kvopt.errors import InputError
    from kvopt.fileio import write_all

    df = load_results(out_dir, all_outputs=True)
    with Store(out_dir, create=False) as store:
        status = store.status()
    final = Path(dest) if dest else Path(out_dir) / "report"
    if not final.parent.is_dir():
        raise InputError("--dest", str(final), f"its folder {final.parent} does not exist",
                         "create it first")
    try:
        final.mkdir(exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=".kvopt-report-", dir=final))
    except OSError as exc:
        raise InputError("--dest", str(final), f"cannot write there ({exc.strerror})",
                         "choose a writable folder") from None
    try:
        files = _render(df, status, out_dir, stage)
        write_all([(final / f.name, f.read_bytes()) for f in files], "--dest")
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return [final / f.name for f in files]


def _render(df: Any, status: dict[str, Any], out_dir: str | Path, folder: Path
            ) -> list[Path]:
    """Every file of the report, written into ``folder``."""
    import matplotlib

    matplotlib.use("Agg")
    varying = _varying(df)
    traffic = next((c for c in ("rps", "rate_scale") if c in varying), None)
    cost = next((c for c in ("usd_per_hour", "min_usd_per_hour") if c in df), None)
    gpu = next((c for c in ("gpu", "knee_gpu") if c in df), None)
    sections: list[tuple[str, str, list[str], list[list[Any]]]] = []  # title, png, table
    written: list[Path] = []
    if not df.empty and traffic and cost and gpu:
        png = folder / "cost_vs_traffic.png"
        _cost_vs_traffic(df, traffic, cost, gpu, [c for c in varying if c != traffic], png)
        written.append(png)
        sections.append(("Cost versus traffic, by GPU type chosen", png.name, [], []))
    if not df.empty and cost:
        group = [c for c in varying if c != "gpus"]
        head, rows = _cheapest(df, group, cost, gpu)
        png = folder / "cheapest.png"
        _bars(rows, head, cost, png)
        written.append(png)
        sections.append(("Cheapest plan per scenario" + (" (over the swept GPU lists)"
                                                         if "gpus" in varying else ""),
                         png.name, head, rows))
    if not df.empty:
        head, rows, heat = _feasibility(df, traffic, folder)
        written.append(heat)
        sections.append(("Where the SLOs become infeasible", heat.name, head, rows))
        bad = df[df["status"] != "ok"]
        if len(bad):
            cols = [*varying, "status", "error"]
            sections.append(("Failed scenarios", "", cols,
                             [[_short(r[c]) for c in cols] for _, r in bad.iterrows()]))
        cols = [*varying, "status", *[c for c in SHOWN if c in df], "seconds"]
        sections.append(("All results", "", cols,
                         [[_short(r[c]) for c in cols] for _, r in df.iterrows()]))
    title = f"Study {status['name'] or Path(out_dir).name}"
    summary = (f"{status['finished']} of {status['total']} scenarios finished "
               f"({', '.join(f'{n} {s}' for s, n in sorted(status['by_status'].items()))}); "
               f"kvopt {status['kvopt_version']}; swept: {', '.join(varying) or 'nothing'}.")
    md, page = folder / "report.md", folder / "report.html"
    md.write_text(_markdown(title, summary, sections), encoding="utf-8")
    page.write_text(_html(title, summary, sections), encoding="utf-8")
    return [md, page, *written]


def _labels(df: Any) -> list[str]:
    from kvopt.study.fields import FIELDS, OUTPUTS

    known = {f.name for f in FIELDS} | {c for cols in OUTPUTS.values() for c in cols} | {
        "idx", "key", "solve", "status", "error", "seconds"}
    return [c for c in df.columns if c not in known]


def swept_columns(df: Any) -> list[str]:
    """The columns a study sweeps (what its report and the web app's browser show)."""
    return _varying(df)


def _varying(df: Any) -> list[str]:
    """The swept columns: scenario keys and labels with more than one value; a key that a
    label determines (an SLO tier's SLOs, a price book's prices) is shown by its label."""
    from kvopt.study.scenarios import fields_for

    if df.empty:
        return []
    keys: set[str] = set()
    for solve in df["solve"].unique():
        keys |= set(fields_for(str(solve)))
    text = df.astype(str)
    labels = [c for c in _labels(df) if text[c].nunique() > 1]
    cols = [c for c in df.columns if c in keys and text[c].nunique() > 1]
    shown = [c for c in cols if not any(
        (text.groupby(lab)[c].nunique() == 1).all() for lab in labels)]
    return shown + labels


def _short(v: Any) -> Any:
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.4g}"
    text = "" if v is None else str(v)
    return text if len(text) <= 160 else text[:157] + "..."


def sort_key(value: Any) -> tuple[Any, ...]:
    """Sort key of a swept value (or a tuple of them): numbers by value, then text."""
    items = value if isinstance(value, tuple) else (value,)
    out: list[Any] = []
    for v in items:
        try:
            out += [0, float(v), ""]
        except (TypeError, ValueError):
            out += [1, 0.0, str(v)]
    return tuple(out)


def _cost_vs_traffic(df: Any, traffic: str, cost: str, gpu: str, facets: list[str],
                     png: Path) -> None:
    """One panel per setting of the other swept values, in their order; each shows the
    cost of the plans by the GPU chosen and marks infeasible scenarios (x on the axis)."""
    import matplotlib.pyplot as plt

    ok = df[df["status"] == "ok"]
    groups = sorted(df.groupby(facets, sort=False, dropna=False), key=lambda g: sort_key(g[0])
                    ) if facets else [("all", df)]
    shown = groups[:12]
    n = max(1, len(shown))
    cols = min(3, n)
    fig, axes = plt.subplots(math.ceil(n / cols), cols, figsize=(5 * cols, 3.6 *
                             math.ceil(n / cols)), squeeze=False)
    colors = {g: f"C{i % 10}" for i, g in enumerate(sorted(ok[gpu].astype(str).unique()))}
    for ax, (name, everything) in zip(axes.flat, shown, strict=False):
        g = everything[everything["status"] == "ok"].sort_values(traffic)
        bad = everything[everything["status"] != "ok"]
        ax.plot(g[traffic], g[cost], color="0.8", zorder=1)
        for kind, part in g.groupby(g[gpu].astype(str)):
            ax.scatter(part[traffic], part[cost], color=colors[kind], label=kind, zorder=2)
        if len(bad):
            ax.scatter(bad[traffic], [0.0] * len(bad), marker="x", color="C3", zorder=3,
                       clip_on=False, label=f"infeasible ({len(bad)})")
        label = name if isinstance(name, tuple) else (name,)
        ax.set_title(", ".join(f"{k}={v}" for k, v in zip(facets, label, strict=False))
                     or "all scenarios", fontsize=8)
        ax.set_xlabel({"rps": "request rate (req/s)"}.get(traffic, traffic))
        ax.set_ylabel("fleet cost ($/h)")
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(shown):]:
        ax.axis("off")
    if len(groups) > len(shown):
        fig.suptitle(f"first {len(shown)} of {len(groups)} settings", fontsize=9)
    fig.tight_layout()
    fig.savefig(png, dpi=90)
    plt.close(fig)


def _cheapest(df: Any, group: list[str], cost: str, gpu: str | None
              ) -> tuple[list[str], list[list[Any]]]:
    extra = [c for c in ("gpus", gpu, "tp", "precision", "max_batch", "replicas") if c and
             c in df and c not in group and (c != "gpus" or df[c].astype(str).nunique() > 1)]
    head = [*group, "status", cost, *extra]
    rows = []
    parts = sorted(df.groupby(group, sort=False, dropna=False), key=lambda g: sort_key(g[0])
                   ) if group else [("all", df)]
    for _, g in parts:
        ok = g[g["status"] == "ok"].dropna(subset=[cost])
        best = ok.loc[ok[cost].idxmin()] if len(ok) else g.iloc[0]
        rows.append([_short(best[c]) if c != "status" else best["status"] for c in head])
    return head, rows


def _bars(rows: list[list[Any]], head: list[str], cost: str, png: Path) -> None:
    import matplotlib.pyplot as plt

    ci, n = head.index(cost), len(rows)
    values = [float(r[ci]) if r[ci] not in ("", None) else 0.0 for r in rows]
    fig, ax = plt.subplots(figsize=(8, max(2.5, min(n, 40) * 0.25 + 1)))
    if n <= 40:
        names = [", ".join(str(x) for x in r[:head.index("status")]) or "all" for r in rows]
        ax.barh(range(n), values, color="C0")
        for i, r in enumerate(rows):
            if r[ci] in ("", None):
                ax.text(0, i, " none feasible", va="center", color="C3", fontsize=7)
        ax.set_yticks(range(n), names, fontsize=6)
        ax.invert_yaxis()
        ax.set_xlabel(f"{cost} of the cheapest plan")
    else:
        ax.plot(sorted(values))
        ax.set_xlabel("scenario (sorted by cost)")
        ax.set_ylabel(cost)
    fig.tight_layout()
    fig.savefig(png, dpi=90)
    plt.close(fig)


def _slo_text(df: Any) -> Any:
    """Each row's SLOs as text ("ttft<=300ms, tpot<=25ms"), prefixed by the label of a group
    axis that sets them (e.g. "gold: ...")."""
    cols = [c for c in SLO_KEYS if c in df and df[c].notna().any()]

    def text(r: Any) -> str:
        parts = [f"{c[4:8]}<={_short(r[c])}ms" for c in cols if r[c] == r[c] and
                 r[c] is not None]
        return ", ".join(parts) or "no SLO"

    out = df.apply(text, axis=1) if len(df) else df.index.to_series()
    for label in _labels(df):
        if df[label].nunique() > 1 and (out.groupby(df[label]).nunique() == 1).all():
            out = df[label].astype(str) + ": " + out
    return out


def _feasibility(df: Any, traffic: str | None, folder: Path
                 ) -> tuple[list[str], list[list[Any]], Path]:
    import matplotlib.pyplot as plt
    import numpy as np

    d = df.copy()
    d["_slo"] = _slo_text(d)
    d["_t"] = d[traffic] if traffic else 0
    d["_ok"] = d["status"] == "ok"
    import re

    slos = sorted(d["_slo"].unique(), key=lambda t: sort_key(tuple(
        re.findall(r"\d+(?:\.\d+)?", str(t))) or (str(t),)))
    levels = sorted(d["_t"].unique(), key=sort_key)
    grid = np.full((len(slos), len(levels)), np.nan)
    head = ["SLO (p99)", "feasible up to " + (traffic or ""),
            "first infeasible at", "reason"]
    rows = []
    for i, s in enumerate(slos):
        part = d[d["_slo"] == s]
        for j, t in enumerate(levels):
            cell = part[part["_t"] == t]
            if len(cell):
                grid[i, j] = cell["_ok"].mean()
        ok_t = part[part["_ok"]]["_t"]
        bad = part[~part["_ok"]].sort_values("_t")
        rows.append([s, _short(ok_t.max()) if len(ok_t) else "never",
                     _short(bad["_t"].iloc[0]) if len(bad) else "",
                     _short(bad["error"].iloc[0]) if len(bad) else ""])
    fig, ax = plt.subplots(figsize=(max(6.0, len(levels) * 0.8 + 3.5),
                                    max(2.2, len(slos) * 0.45 + 1.2)))
    ax.imshow(grid, cmap="RdYlGn", vmin=0, vmax=1, aspect="auto")
    for (i, j), v in np.ndenumerate(grid):
        if v == v:
            ax.text(j, i, f"{v:.0%}", ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(levels)), [_short(x) for x in levels], fontsize=7)
    ax.set_yticks(range(len(slos)), slos, fontsize=7)
    ax.set_xlabel(traffic or "")
    ax.set_title("share of feasible scenarios (green: all, red: none)", fontsize=9)
    fig.tight_layout()
    png = folder / "slo_feasibility.png"
    fig.savefig(png, dpi=90)
    plt.close(fig)
    return head, rows, png


def _markdown(title: str, summary: str, sections: list[Any]) -> str:
    out = [f"# {title}", "", summary, ""]
    for name, png, head, rows in sections:
        out += [f"## {name}", ""]
        if png:
            out += [f"![{name}]({png})", ""]
        if head:
            out.append("| " + " | ".join(head) + " |")
            out.append("|" + "---|" * len(head))
            out += ["| " + " | ".join(str(x).replace("|", "/") for x in r) + " |"
                    for r in rows[:MAX_ROWS]]
            if len(rows) > MAX_ROWS:
                out.append(f"\n({len(rows) - MAX_ROWS} more rows: `kvopt study export`)")
            out.append("")
    return "\n".join(out)


def _html(title: str, summary: str, sections: list[Any]) -> str:
    e = html.escape
    body = [f"<h1>{e(title)}</h1>", f"<p>{e(summary)}</p>"]
    for name, png, head, rows in sections:
        body.append(f"<h2>{e(name)}</h2>")
        if png:
            body.append(f'<img src="{e(png)}" alt="{e(name)}">')
        if head:
            body.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr>")
            body += ["<tr>" + "".join(f"<td>{e(str(x))}</td>" for x in r) + "</tr>"
                     for r in rows[:MAX_ROWS]]
            body.append("</table>")
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;"
             "font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px}img{max-width:100%}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title>"
            f"<style>{style}</style></head><body>" + "\n".join(body) + "</body></html>\n")
