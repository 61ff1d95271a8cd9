"""The web app's charts as Plotly figures (JSON for ``Plotly.react`` in the page, whose
plotly.js is the one bundled with the plotly package and served by the app)."""

from __future__ import annotations

import math
from typing import Any

from kvopt.pareto.export import axis_label, axis_scale, axis_values

SYMBOLS = ("circle", "square", "diamond", "triangle-up", "cross", "x", "star", "hexagon")
LAYOUT = {"margin": {"l": 60, "r": 20, "t": 50, "b": 50}, "template": "plotly_white",
          "font": {"size": 12}, "height": 380}


def _fig(fig: Any) -> dict[str, Any]:
    import json

    out: dict[str, Any] = json.loads(fig.to_json())
    return out


def memory(est: dict[str, Any]) -> dict[str, Any]:
    """Memory per GPU: weights, KV cache, activations and runtime against the GPU's."""
    import plotly.graph_objects as go

    m = est["memory"]
    parts = (("weights", "weights_gib"), ("KV cache", "kv_cache_gib"),
             ("activations", "activations_gib"), ("runtime", "overhead_gib"))
    fig = go.Figure([go.Bar(name=label, y=["per GPU"], x=[m.get(key) or 0.0],
                            orientation="h", hovertemplate="%{x:.2f} GiB")
                     for label, key in parts])
    fig.add_vline(x=m["gpu_gib"], line_dash="dash", line_color="black",
                  annotation_text=f"GPU {m['gpu_gib']:g} GiB")
    fig.update_layout(**{**LAYOUT, "height": 220}, barmode="stack",
                      title=f"Memory per GPU: {m['total_gib']:.1f} of {m['gpu_gib']:g} GiB"
                      + ("" if m.get("fits", True) else " (does not fit)"),
                      xaxis_title="GiB", legend={"orientation": "h", "y": -0.35})
    return _fig(fig)


def compare(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """$/h of the best plan per GPU (GPUs with no plan listed with their reason)."""
    import plotly.graph_objects as go

    ok = [r for r in rows if r.get("usd_per_hour") is not None]
    fig = go.Figure(go.Bar(
        x=[r["gpu"] for r in ok], y=[r["usd_per_hour"] for r in ok],
        text=[f"{r['replicas']}x TP{r['tp']} {r['precision']}" for r in ok],
        hovertemplate="%{x}: $%{y:.2f}/h<br>%{text}<extra></extra>"))
    none = [r["gpu"] for r in rows if r.get("usd_per_hour") is None]
    fig.update_layout(**LAYOUT, title="Best plan per GPU" + (
        f" (no plan: {', '.join(none)})" if none else ""), yaxis_title="fleet cost ($/h)")
    return _fig(fig)


def pareto(data: list[dict[str, Any]], x: str, y: str, title: str) -> dict[str, Any]:
    """The front on two objectives: a trace per GPU (colour), a marker per TP degree, the
    point's row index as customdata (a click selects it), the knee starred, log axes where
    values span 20x or more and a clipped axis against outliers."""
    import plotly.graph_objects as go

    xs, ys = axis_values(data, x), axis_values(data, y)
    tps = sorted({int(r["tp"]) for r in data})
    symbol = {t: SYMBOLS[i % len(SYMBOLS)] for i, t in enumerate(tps)}
    fig = go.Figure()
    for gpu in sorted({str(r["gpu"]) for r in data}):
        idx = [i for i, r in enumerate(data) if str(r["gpu"]) == gpu]
        fig.add_trace(go.Scatter(
            x=[xs[i] for i in idx], y=[ys[i] for i in idx], mode="markers", name=gpu,
            customdata=idx, marker={"size": 10, "symbol": [symbol[int(data[i]["tp"])]
                                                          for i in idx],
                                    "line": {"width": 1, "color": "white"}},
            text=[f"{data[i]['replicas']}x TP{data[i]['tp']} {data[i]['weights']}/"
                  f"{data[i]['kv_dtype']} batch {data[i]['max_batch']}" for i in idx],
            hovertemplate="%{text}<br>%{x:.4g}, %{y:.4g}<extra>" + gpu + "</extra>"))
    for t in tps:  # legend entries for the TP markers
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=f"TP {t}",
                                 marker={"symbol": symbol[t], "color": "grey", "size": 10},
                                 hoverinfo="skip"))
    knee = [i for i, r in enumerate(data) if r.get("knee")]
    if knee:
        fig.add_trace(go.Scatter(x=[xs[knee[0]]], y=[ys[knee[0]]], mode="markers",
                                 name="knee (balanced)", customdata=knee, marker={
                                     "symbol": "star-open", "size": 22, "color": "red",
                                     "line": {"width": 2}}))
    axes: dict[str, Any] = {}
    for key, obj, vals in (("xaxis", x, xs), ("yaxis", y, ys)):
        kind, lim = axis_scale(vals)
        ax: dict[str, Any] = {"title": axis_label(obj) + (" (log)" if kind == "log" else "")}
        if kind == "log":
            ax["type"] = "log"
        elif kind == "clip" and lim is not None:
            lo = min(v for v in vals if math.isfinite(v))
            ax["range"] = [lo - 0.05 * (lim - lo), lim]
            ax["title"] += " (clipped: outliers off-axis)"
        axes[key] = ax
    fig.update_layout(**{**LAYOUT, "height": 460}, title=title, clickmode="event",
                      **axes)
    return _fig(fig)


def study(rows: list[dict[str, Any]], traffic: str | None, cost: str | None,
          gpu: str | None, facets: list[str]) -> dict[str, Any] | None:
    """Cost against the swept traffic: a line per setting of the other swept values (in
    their order), a marker per GPU chosen, infeasible scenarios as red crosses on the axis;
    a log cost axis when costs span 20x or more."""
    if not (traffic and cost):
        return None
    import plotly.graph_objects as go

    from kvopt.study.report import sort_key

    g_key = gpu or "gpu"

    def num(v: Any) -> float | None:
        return float(v) if isinstance(v, int | float) and math.isfinite(v) else None

    ok = [r for r in rows if r.get("status") == "ok" and num(r.get(cost)) is not None]
    gpus = sorted({str(r.get(g_key) or "?") for r in ok})
    symbol = {g: SYMBOLS[i % len(SYMBOLS)] for i, g in enumerate(gpus)}
    settings = sorted({tuple(r.get(f) for f in facets) for r in rows}, key=sort_key)
    fig = go.Figure()
    for setting in settings:
        part = sorted((r for r in ok if tuple(r.get(f) for f in facets) == setting),
                      key=lambda r: num(r.get(traffic)) or 0.0)
        name = ", ".join(f"{f}={v}" for f, v in zip(facets, setting, strict=True)) or "all"
        fig.add_trace(go.Scatter(
            x=[r.get(traffic) for r in part], y=[r.get(cost) for r in part],
            mode="lines+markers", name=name,
            marker={"size": 10, "symbol": [symbol[str(r.get(g_key) or "?")] for r in part]},
            text=[str(r.get(g_key)) for r in part],
            hovertemplate="%{text}: $%{y:.4g}/h at %{x}<extra>" + name + "</extra>"))
    for g in gpus:  # legend entries for the GPU markers
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=g,
                                 marker={"symbol": symbol[g], "color": "grey", "size": 10}))
    bad = [r for r in rows if r.get("status") != "ok"]
    costs = [num(r.get(cost)) or float("nan") for r in ok]
    log = axis_scale(costs)[0] == "log"
    if bad:
        floor = min(c for c in costs if math.isfinite(c)) / 2 if log and ok else 0.0
        fig.add_trace(go.Scatter(x=[r.get(traffic) for r in bad], y=[floor] * len(bad),
                                 mode="markers", name=f"infeasible ({len(bad)})",
                                 marker={"symbol": "x", "color": "crimson", "size": 12},
                                 text=[str(r.get("error") or r.get("status")) for r in bad],
                                 hovertemplate="%{text}<extra></extra>"))
    fig.update_layout(**{**LAYOUT, "height": 420}, title="Fleet cost against " + (
        "the request rate" if traffic == "rps" else traffic),
        xaxis_title={"rps": "request rate (req/s)"}.get(traffic, traffic),
        yaxis={"title": "fleet cost ($/h)" + (" (log)" if log else ""),
               "type": "log" if log else "linear"})
    return _fig(fig)
