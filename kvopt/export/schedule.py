"""Schedule files (``kvopt.schedule/1``): load, render as JSON, YAML, CSV (one row per
period and option) or a Markdown review document whose chart (matplotlib, a PNG written
next to it) stacks the GPUs of each period by way to pay, and save atomically."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import yaml

from kvopt.choices import PAYMENT_KINDS
from kvopt.errors import InputError
from kvopt.fileio import read_json_input, write_atomic, write_json_atomic
from kvopt.fleet.schedule.result import SCHEMA

FORMATS = ("json", "yaml", "markdown", "csv")
COLORS = {"owned": "#4c72b0", "reserved_3y": "#55a868", "reserved_1y": "#8fd19e",
          "on_demand": "#dd8452", "spot": "#c44e52"}
STACK = ("owned", "reserved_3y", "reserved_1y", "on_demand", "spot")
_TABLE_ROWS = 72  # periods listed in the Markdown table (the chart shows them all)


def load_schedule(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    data = read_json_input(p, "schedule")
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        got = data.get("schema") if isinstance(data, dict) else None
        raise InputError("schedule", str(p), f"schema {got!r} is not {SCHEMA!r}",
                         "write it with kvopt schedule --output")
    for key in ("inputs", "fleet", "periods", "cost", "savings", "solver"):
        if key not in data:
            raise InputError("schedule", str(p), f"has no '{key}'",
                             "write it with kvopt schedule --output")
    return dict(data)


def chart_png(d: dict[str, Any]) -> bytes:
    """Stacked GPUs per period by way to pay, with the fleet's $/h on a second axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    periods = d["periods"]
    x = list(range(1, len(periods) + 1))
    fig, ax = plt.subplots(figsize=(10, 3.8))
    bottom = [0.0] * len(periods)
    for kind in STACK:  # committed at the bottom, flexible on top
        ys = [float(p["gpus_by_kind"][kind]) for p in periods]
        if any(ys):
            ax.bar(x, ys, bottom=bottom, width=1.0, color=COLORS[kind], label=kind,
                   linewidth=0)
            bottom = [b + y for b, y in zip(bottom, ys, strict=True)]
    ax.set_xlabel("period")
    ax.set_ylabel("GPUs")
    ax2 = ax.twinx()
    ax2.plot(x, [p["usd_per_hour"] for p in periods], color="black", linewidth=1.2,
             label="\\$/h")
    ax2.set_ylabel("\\$/h")
    ax2.set_ylim(bottom=0)
    step = max(1, len(periods) // 14)
    ax.set_xticks(x[::step])
    ax.set_xticklabels([p["label"] for p in periods][::step], rotation=45, ha="right",
                       fontsize=7)
    handles, labels = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(handles + h2, labels + l2, loc="lower center", bbox_to_anchor=(0.5, 1.01),
              fontsize=8, ncol=6, frameon=False)
    ax.set_title(f"GPUs by way to pay (bars) and \\$/h (line): \\${d['cost']['total_usd']:,.0f}"
                 f" over {d['inputs']['hours']:g} h", pad=30)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def markdown(d: dict[str, Any], chart: str | None = None) -> str:
    i, c, sv, s = d["inputs"], d["cost"], d["savings"], d["solver"]
    lines = [f"# Schedule ({i['objective']}, {i['hours']:g} h, {len(d['periods'])} periods)",
             "", "## Inputs", ""]
    for w in i["workloads"]:
        slo = ", ".join(f"{k.replace('_ms', '')} {v:g} ms" for k, v in w["slo"].items()
                        if v is not None) or "none"
        where = f"; regions {', '.join(w['regions'])}" if w["regions"] else ""
        lines.append(f"- **{w['name']}**: {w['model']}, peak {w['rate_rps']:g} req/s, "
                     f"input {w['input_len']}, output {w['output_len']}; SLO {slo}; "
                     f"redundancy N+{w['redundancy']}{where}")
    rule = i["spot_rule"]
    lines.append(f"- ways to pay: {', '.join(i['payments'])}; spot rule: spares "
                 f"{'never' if rule['spares_not_spot'] else 'may be'} spot, spot at most "
                 f"{rule['max_share']:.0%} of capacity")
    for key, label in (("budget_usd_h", "budget $/h per period"), ("budget_usd",
                       "budget $ over the horizon"), ("upfront_budget_usd", "upfront budget $"),
                       ("power_cap_kw", "power cap kW")):
        if i.get(key) is not None:
            lines.append(f"- {label}: {i[key]:,.2f}")
    lines += ["", "## Cost", "",
              f"**${c['total_usd']:,.2f}** over the horizon (mean ${c['usd_per_hour_mean']:,.2f}"
              f"/h; paid upfront ${c['upfront_usd']:,.0f})", "",
              "| way to pay | $ | share |", "|---|---:|---:|"]
    for k, v in c["by_kind_usd"].items():
        if v:
            lines.append(f"| {k} | {v:,.2f} | {v / c['total_usd']:.1%} |")
    lines.append("")
    if sv["peak_on_demand_usd"] is not None:
        lines.append(f"- against peak provisioning on demand (${sv['peak_on_demand_usd']:,.2f})"
                     f": saves ${sv['vs_peak_on_demand_usd']:,.2f} "
                     f"({sv['vs_peak_on_demand_fraction']:.1%})")
    lines.append(f"- against the same schedule on demand (${sv['all_on_demand_usd']:,.2f}): "
                 f"saves ${sv['vs_all_on_demand_usd']:,.2f} "
                 f"({sv['vs_all_on_demand_fraction']:.1%})")
    lines += ["", "## Fleet", "",
              "| workload | GPU | region | TP | precision | max batch | req/s per replica "
              "| committed | flexible (max per period) |",
              "|---|---|---|---:|---|---:|---:|---|---|"]
    for f in d["fleet"]:
        com = ", ".join(f"{n} {k}" for k, n in f["committed"].items()) or "-"
        per = ", ".join(f"{max(v)} {k}" for k, v in f["per_period"].items()) or "-"
        lines.append(f"| {f['workload']} | {f['gpu']} | {f['region'] or '-'} | {f['tp']} | "
                     f"{f['weights']}/{f['kv_dtype']} | {f['max_batch']} | "
                     f"{f['rate_per_replica_rps']:.2f} | {com} | {per} |")
    lines += ["", "## Schedule", ""]
    if chart:
        lines += [f"![GPUs per period by way to pay]({chart})", ""]
    kinds = [k for k in PAYMENT_KINDS if any(p["gpus_by_kind"][k] for p in d["periods"])]
    lines += ["| period | label | hours | " + " | ".join(kinds) + " | GPUs | $/h |",
              "|---:|---|---:|" + "---:|" * (len(kinds) + 2)]
    for p in d["periods"][:_TABLE_ROWS]:
        lines.append(f"| {p['period']} | {p['label']} | {p['hours']:g} | "
                     + " | ".join(str(p["gpus_by_kind"][k]) for k in kinds)
                     + f" | {p['gpus']} | {p['usd_per_hour']:,.2f} |")
    if len(d["periods"]) > _TABLE_ROWS:
        lines.append(f"\n({len(d['periods']) - _TABLE_ROWS} more periods in the JSON and "
                     "the CSV export)")
    lines += ["", "## Solver", "",
              f"{s['solver']}: {s['status']}, objective {s['objective']}, best bound "
              f"{s['best_bound']}, gap {s['gap']}; {s['integer_variables']} integer + "
              f"{s['binary_variables']} binary variables, {s['constraints']} constraints; "
              f"build {s['build_s']:.2f} s, solve {s['solve_s']:.2f} s", ""]
    lines += [f"- note: {n}" for n in d["notes"]]
    return "\n".join(lines) + "\n"


def render(d: dict[str, Any], fmt: str, chart: str | None = None) -> str:
    if fmt not in FORMATS:
        raise InputError("--format", fmt, f"a schedule exports as {', '.join(FORMATS)}")
    if fmt == "json":
        return json.dumps(d, indent=2) + "\n"
    if fmt == "yaml":
        return str(yaml.safe_dump(d, sort_keys=False))
    if fmt == "csv":
        buf = io.StringIO()
        wr = csv.writer(buf)
        wr.writerow(["period", "label", "hours", "workload", "gpu", "region", "tp", "kind",
                     "replicas"])
        for f in d["fleet"]:
            for p in d["periods"]:
                t = p["period"] - 1
                for k, n in f["committed"].items():
                    wr.writerow([p["period"], p["label"], p["hours"], f["workload"], f["gpu"],
                                 f["region"], f["tp"], k, n])
                for k, v in f["per_period"].items():
                    if v[t]:
                        wr.writerow([p["period"], p["label"], p["hours"], f["workload"],
                                     f["gpu"], f["region"], f["tp"], k, v[t]])
        return buf.getvalue()
    return markdown(d, chart)


def save(d: dict[str, Any], path: str | Path, fmt: str | None = None) -> list[Path]:
    """Write ``d`` atomically (Markdown: the chart PNG beside it first, then the document
    that links it). Returns the files written."""
    p = Path(path)
    kind = fmt or {".json": "json", ".yaml": "yaml", ".yml": "yaml", ".md": "markdown",
                   ".csv": "csv"}.get(p.suffix.lower())
    if kind is None:
        raise InputError("path", str(p), "cannot tell the format from the extension",
                         "use .json, .yaml, .md or .csv, or give the format")
    if kind == "json":
        write_json_atomic(d, p)
        return [p]
    if kind == "markdown":
        png = p.with_suffix(".png")
        write_atomic(png, chart_png(d))
        write_atomic(p, render(d, kind, chart=png.name))
        return [png, p]
    write_atomic(p, render(d, kind))
    return [p]
