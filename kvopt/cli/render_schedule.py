"""Rendering of schedules, TCO and comparisons by region or way to pay (rich tables)."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from kvopt.choices import PAYMENT_KINDS
from kvopt.cli.render import _console, _fmt

_MAX_ROWS = 48  # periods shown (the JSON has them all)


def schedule_tables(d: dict[str, Any]) -> None:
    c = _console()
    t = Table(title=f"Schedule ({d['inputs']['objective']}, {d['inputs']['hours']:g} h)")
    for col in ("workload", "GPU", "region", "TP", "precision", "req/s per replica",
                "committed", "per period (max)"):
        t.add_column(col)
    for f in d["fleet"]:
        com = ", ".join(f"{n} {k}" for k, n in f["committed"].items()) or "-"
        per = ", ".join(f"{max(v)} {k}" for k, v in f["per_period"].items()) or "-"
        t.add_row(f["workload"], f["gpu"], f["region"] or "-", str(f["tp"]),
                  f"{f['weights']}/{f['kv_dtype']}", _fmt(f["rate_per_replica_rps"], 2),
                  com, per)
    c.print(t)
    kinds = [k for k in PAYMENT_KINDS if any(p["gpus_by_kind"][k] for p in d["periods"])]
    t = Table(title="GPUs per period by way to pay")
    for col in ("period", "label", "hours", *kinds, "GPUs", "$/h"):
        t.add_column(col, justify="left" if col == "label" else "right")
    periods = d["periods"]
    shown = periods if len(periods) <= _MAX_ROWS else periods[:_MAX_ROWS]
    for p in shown:
        t.add_row(str(p["period"]), p["label"], f"{p['hours']:g}",
                  *(str(p["gpus_by_kind"][k]) for k in kinds), str(p["gpus"]),
                  _fmt(p["usd_per_hour"], 2))
    c.print(t)
    if len(periods) > len(shown):
        c.print(f"({len(periods) - len(shown)} more periods in the JSON)")
    cost, sv, s = d["cost"], d["savings"], d["solver"]
    c.print(f"horizon cost ${cost['total_usd']:,.2f} (mean ${cost['usd_per_hour_mean']:,.2f}/h"
            f"; upfront ${cost['upfront_usd']:,.0f}): " + ", ".join(
                f"{k} ${v:,.2f}" for k, v in cost["by_kind_usd"].items() if v))
    if sv["peak_on_demand_usd"] is not None:
        c.print(f"saves ${sv['vs_peak_on_demand_usd']:,.2f} "
                f"({sv['vs_peak_on_demand_fraction']:.1%}) against peak provisioning on "
                f"demand (${sv['peak_on_demand_usd']:,.2f})")
    c.print(f"saves ${sv['vs_all_on_demand_usd']:,.2f} ({sv['vs_all_on_demand_fraction']:.1%}"
            f") against the same schedule on demand (${sv['all_on_demand_usd']:,.2f})")
    c.print(f"{s['solver']} {s['status']}, objective {s['objective']}, bound "
            f"{s['best_bound']}, gap {s['gap']}; {s['integer_variables']} integer + "
            f"{s['binary_variables']} binary variables, {s['constraints']} constraints; "
            f"build {s['build_s'] * 1e3:.0f} ms, solve {s['solve_s'] * 1e3:.0f} ms")
    for note in d["notes"]:
        c.print(f"note: {note}")


def tco_tables(d: dict[str, Any]) -> None:
    c = _console()
    t = Table(title=f"Owning one {d['gpu']} ({d['region']}): TCO per GPU-hour")
    for col in ("part", "$/GPU-h", "from"):
        t.add_column(col)
    t.add_row("amortization", _fmt(d["amortization_usd_per_gpu_hour"], 3),
              f"${d['purchase_usd_per_gpu']:,.0f} over {d['amortization_years']:g} years")
    t.add_row("power", _fmt(d["power_usd_per_gpu_hour"], 3),
              f"{d['tdp_w']:g} W TDP x PUE {d['pue']:g} x ${d['usd_per_kwh']:g}/kWh")
    t.add_row("hosting", _fmt(d["hosting_usd_per_gpu_hour"], 3),
              f"${d['hosting_usd_per_kw_month']:g}/kW-month x {d['server_kw_per_gpu']:g} kW")
    t.add_row("TCO", _fmt(d["tco_usd_per_gpu_hour"], 3), "")
    c.print(t)
    t = Table(title=f"Own against rent (utilization {d['utilization']:.0%})")
    for col in ("rent", "$/GPU-h", "$/available GPU-h", "own if rented above",
                "break-even months"):
        t.add_column(col, justify="left" if col == "rent" else "right")
    for r in d["rent"]:
        months = r["breakeven_months"]
        t.add_row(r["rent"], _fmt(r["usd_per_gpu_hour"], 3),
                  _fmt(r["usd_per_available_gpu_hour"], 3),
                  f"{r['breakeven_utilization']:.0%} of hours",
                  "never" if months is None else f"{months:.1f}")
    c.print(t)


def compare_by_table(rows: list[dict[str, Any]], by: str) -> None:
    t = Table(title=f"Best schedule per {by}")
    for col in (by, "fleet", "horizon $", "mean $/h", "upfront $", "peak GPUs",
                "vs peak on demand", "note"):
        t.add_column(col, overflow="fold")
    for r in rows:
        frac = r.get("vs_peak_on_demand_fraction")
        t.add_row(r["label"], r.get("fleet", "-"), _fmt(r.get("total_usd"), 2),
                  _fmt(r.get("usd_per_hour_mean"), 2), _fmt(r.get("upfront_usd"), 0),
                  str(r.get("peak_gpus", "-")), "-" if frac is None else f"{frac:.1%}",
                  r.get("note", ""))
    _console().print(t)
