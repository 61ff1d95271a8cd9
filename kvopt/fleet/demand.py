"""Demand over time: a horizon of periods (hours each) and every workload's request rate in
each, from a fleet file's ``demand:``, a CSV (``period,hours,rps`` rows, or
``period,hours,workload,rps`` for several workloads) or a request trace binned into periods
(``TIMESTAMP,ContextTokens,GeneratedTokens`` as the Azure LLM inference traces have them,
or ``timestamp,input_len,output_len``; CSV or JSONL), whose prompt and output lengths become
the workload's length distributions.

The physics never sees a period: a candidate's goodput is the same at 3 a.m. and at noon;
only the schedule MILP grows with the periods.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from kvopt.errors import InputError
from kvopt.fileio import read_text_input
from kvopt.limits import MAX_PERIODS, PERIOD_HOURS, RPS
from kvopt.serving.lengths import LengthDist

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
# trace column spellings: (time, prompt tokens, output tokens)
TRACE_COLUMNS = (("TIMESTAMP", "ContextTokens", "GeneratedTokens"),
                 ("timestamp", "input_len", "output_len"),
                 ("timestamp", "prompt_tokens", "output_tokens"))


@dataclass(frozen=True, kw_only=True)
class Profile:
    """Periods of a horizon: ``hours[t]`` long, named ``labels[t]``; ``rps`` gives a
    workload's rate in each period (workloads not named run at their ``rate_rps``)."""

    hours: tuple[float, ...]
    labels: tuple[str, ...]
    rps: tuple[tuple[str, tuple[float, ...]], ...] = ()

    def __post_init__(self) -> None:
        n = len(self.hours)
        if n == 0:
            raise InputError("demand", "no periods", "give at least one period")
        if n > MAX_PERIODS:
            raise InputError("demand", f"{n} periods", f"at most {MAX_PERIODS} periods (the "
                             "schedule's MILP grows with them)", "use longer periods")
        if len(self.labels) != n:
            raise InputError("demand.labels", len(self.labels), f"need one per period ({n})")
        for i, h in enumerate(self.hours):
            PERIOD_HOURS.check(f"demand period {i + 1}: hours", h)
        for name, rates in self.rps:
            if len(rates) != n:
                raise InputError(f"demand.rps.{name}", len(rates),
                                 f"needs one rate per period ({n})")
            for i, r in enumerate(rates):
                if not (isinstance(r, int | float) and 0 <= r <= RPS.hi):
                    raise InputError(f"demand.rps.{name}[{i}]", r, f"must be from 0 (idle) to "
                                     f"{RPS.hi:g} req/s ({RPS.why})")

    @property
    def periods(self) -> int:
        return len(self.hours)

    @property
    def total_hours(self) -> float:
        return float(sum(self.hours))

    def where(self, t: int) -> str:
        """``period 14 (Mon 13:00)``: a period for messages, numbered from 1."""
        return f"period {t + 1} ({self.labels[t]})"


def week_labels(hours: tuple[float, ...], start: str = "Mon 00:00") -> tuple[str, ...]:
    """``Mon 00:00``, ``Mon 01:00``, ... from the cumulative hours since ``start``."""
    day, _, hm = start.partition(" ")
    h0 = DAYS.index(day) * 24 + int(hm.split(":")[0]) if day in DAYS else 0
    out, at = [], float(h0)
    for h in hours:
        whole = int(at) % (7 * 24)
        minutes = round((at - int(at)) * 60)
        out.append(f"{DAYS[whole // 24]} {whole % 24:02d}:{minutes:02d}")
        at += h
    return tuple(out)


def flat(hours: float = 1.0) -> Profile:
    """One period in which every workload runs at its ``rate_rps`` (today's plan)."""
    return Profile(hours=(hours,), labels=("flat",))


def profile_from(node: dict[str, Any], names: tuple[str, ...], field: str = "demand"
                 ) -> Profile:
    """A profile from a fleet file's ``demand:`` mapping: ``hours`` (one number or a list),
    ``labels`` (optional), ``rps`` (workload -> rate per period) and/or ``scale`` (rate
    multipliers applied to every other workload's ``rate_rps`` — returned as
    ``("*", scale)``, see :func:`rates_for`)."""
    hours_node = node.get("hours", 1)
    lengths = [len(v) for v in (node.get("rps") or {}).values()]
    if isinstance(node.get("scale"), list):
        lengths.append(len(node["scale"]))
    if isinstance(hours_node, list):
        lengths.append(len(hours_node))
    if not lengths:
        raise InputError(field, node, "give rps (per workload) or scale (one per period)",
                         "e.g. demand: {hours: 1, scale: [0.4, 0.3, 1.0]}")
    n = max(lengths)
    hours = tuple(float(h) for h in hours_node) if isinstance(hours_node, list) \
        else (float(hours_node),) * n
    rps = []
    for name, rates in (node.get("rps") or {}).items():
        if str(name) not in names:
            raise InputError(f"{field}.rps", name, "names no workload; allowed: "
                             + ", ".join(names))
        rps.append((str(name), tuple(float(r) for r in rates)))
    if "scale" in node:
        rps.append(("*", tuple(float(s) for s in node["scale"])))
    labels = tuple(str(x) for x in node["labels"]) if node.get("labels") else week_labels(hours)
    return Profile(hours=hours, labels=labels, rps=tuple(rps))


def rates_for(profile: Profile, name: str, base_rps: float) -> tuple[float, ...]:
    """A workload's rates: its own row, else ``base_rps`` x the ``scale`` row, else flat."""
    own = dict(profile.rps)
    if name in own:
        return own[name]
    if "*" in own:
        return tuple(base_rps * s for s in own["*"])
    return (base_rps,) * profile.periods


def read_demand_csv(path: str | Path, names: tuple[str, ...]) -> Profile:
    """``period,hours,rps`` (one workload, or every workload when there is one) or
    ``period,hours,workload,rps`` rows; ``period`` is a label (``Mon 13:00``) or a number
    (labels then count hours from Monday 00:00)."""
    p = Path(path)
    field = "--demand"
    rows = list(csv.DictReader(read_text_input(p, field).splitlines()))
    cols = set(rows[0]) if rows else set()
    if not {"period", "hours", "rps"} <= cols:
        raise InputError(field, str(p), f"columns {sorted(cols)}; need period,hours,rps "
                         "(and workload with several workloads)",
                         "e.g. a header 'period,hours,rps' and one row per period")
    long = "workload" in cols
    if not long and len(names) != 1:
        raise InputError(field, str(p), f"one rps column for {len(names)} workloads",
                         "add a 'workload' column naming each row's workload")
    order: list[str] = []
    hours: dict[str, float] = {}
    rates: dict[str, dict[str, float]] = {}
    for i, row in enumerate(rows, start=2):
        key = str(row["period"]).strip()
        name = str(row["workload"]).strip() if long else names[0]
        if name not in names:
            raise InputError(field, f"{p}:{i}", f"workload {name!r} is not in the fleet; "
                             "allowed: " + ", ".join(names))
        try:
            h, r = float(row["hours"]), float(row["rps"])
        except (TypeError, ValueError):
            raise InputError(field, f"{p}:{i}", "hours and rps must be numbers") from None
        if key not in hours:
            order.append(key)
            hours[key] = h
        elif hours[key] != h:
            raise InputError(field, f"{p}:{i}", f"period {key} has hours {hours[key]:g} "
                             f"and {h:g}", "give every row of a period the same hours")
        rates.setdefault(name, {})[key] = r
    hs = tuple(hours[k] for k in order)
    numeric = all(k.replace(".", "", 1).isdigit() for k in order)
    labels = week_labels(hs) if numeric else tuple(order)
    rps = tuple((n, tuple(rates[n].get(k, 0.0) for k in order)) for n in rates)
    return Profile(hours=hs, labels=labels, rps=rps)


@dataclass(frozen=True, kw_only=True)
class Trace:
    """A request trace binned into periods, and the lengths it saw."""

    profile: Profile
    input_dist: LengthDist
    output_dist: LengthDist
    requests: int


def _time_s(value: str | float, where: str) -> float:
    if isinstance(value, int | float):
        return float(value)
    text = str(value).strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:  # '2023-11-16 18:15:46.6805900' (7 fractional digits: trim to 6)
        head, dot, frac = text.partition(".")
        return datetime.fromisoformat(head + (dot + frac[:6] if dot else "")).timestamp()
    except ValueError:
        raise InputError("--trace", where, f"time {text!r} is neither seconds nor an ISO "
                         "date-time") from None


def _rows(p: Path) -> list[dict[str, Any]]:
    text = read_text_input(p, "--trace")
    if p.suffix.lower() in (".jsonl", ".ndjson") or text.lstrip().startswith("{"):
        out = []
        for i, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    out.append(dict(json.loads(line)))
                except (json.JSONDecodeError, TypeError, ValueError):
                    raise InputError("--trace", f"{p}:{i}", "not a JSON object") from None
        return out
    return list(csv.DictReader(text.splitlines()))


def _dist(values: np.ndarray, label: str) -> LengthDist:
    uniq, counts = np.unique(np.maximum(values, 1.0), return_counts=True)
    return LengthDist("trace", uniq.astype(float), counts / counts.sum(), label)


def read_trace(path: str | Path, *, period_hours: float = 1.0, name: str = "trace",
               start: str | None = None) -> Trace:
    """Bin a trace into periods of ``period_hours``: the rate of each period (requests /
    seconds), and the prompt and output length distributions of all its requests.
    ``start`` labels the first period (default: the trace's own first time, else
    ``Mon 00:00``)."""
    p = Path(path)
    rows = _rows(p)
    if not rows:
        raise InputError("--trace", str(p), "has no requests")
    cols = next((c for c in TRACE_COLUMNS if set(c) <= set(rows[0])), None)
    if cols is None:
        raise InputError("--trace", str(p), f"columns {sorted(rows[0])}",
                         "need TIMESTAMP,ContextTokens,GeneratedTokens (Azure LLM inference "
                         "trace) or timestamp,input_len,output_len")
    tcol, icol, ocol = cols
    times = np.empty(len(rows))
    ins = np.empty(len(rows))
    outs = np.empty(len(rows))
    for i, row in enumerate(rows):
        where = f"{p}:{i + 2}"
        times[i] = _time_s(row[tcol], where)
        try:
            ins[i], outs[i] = float(row[icol]), float(row[ocol])
        except (TypeError, ValueError):
            raise InputError("--trace", where, "token counts must be numbers") from None
    PERIOD_HOURS.check("--period-hours", period_hours)
    if not np.isfinite(times).all():
        raise InputError("--trace", str(p), "has a time that is not finite")
    width = period_hours * 3600.0
    t0 = float(times.min())
    span = (float(times.max()) - t0) / width
    if span + 1 > MAX_PERIODS:
        raise InputError("--period-hours", period_hours, f"the trace spans {span:.0f} periods "
                         f"of it; a schedule takes at most {MAX_PERIODS}",
                         f"use --period-hours {math.ceil(period_hours * (span + 1) / MAX_PERIODS)}"
                         " or more")
    n = max(1, math.ceil(span + 1e-9))
    counts = np.bincount(np.minimum(((times - t0) // width).astype(int), n - 1), minlength=n)
    hours = (period_hours,) * n
    if start is None and not all(str(r[tcol]).replace(".", "", 1).isdigit() for r in rows[:1]):
        first = datetime.fromtimestamp(t0)
        start = f"{DAYS[first.weekday()]} {first.hour:02d}:00"  # rounded to the hour
    labels = week_labels(hours, start or "Mon 00:00")
    rates = tuple(float(c) / width for c in counts)
    prof = Profile(hours=hours, labels=labels, rps=((name, rates),))
    return Trace(profile=prof, input_dist=_dist(ins, f"trace:{p.name}:prompt"),
                 output_dist=_dist(outs, f"trace:{p.name}:output"), requests=len(rows))

