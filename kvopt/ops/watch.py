"""`kvopt watch`: a running deployment against the plan it was deployed from.

Every interval the engines' Prometheus endpoints are scraped (:mod:`kvopt.ops.metrics`)
and the window since the last scrape is compared with the plan's fleet entry: the request
rate with the planned rate and the goodput (the most a replica serves within the SLOs),
the p99 TTFT/TPOT from the histograms with the SLOs and with kvopt's prediction at the
observed rate (:func:`kvopt.api.estimate`, the entry's configuration with the plan's engine
release or, where the plan was made with one, its calibration of the entry's GPU and
engine), the KV cache use
and the queue; the GPUs' $/h and the $ per million tokens at the observed load.

Alerts (:data:`ALERTS`) and the health a check can read from the exit code
(:data:`kvopt.choices.WATCH_EXIT_CODES`): ``critical`` for over-utilization and SLO
breaches, ``warning`` for under-utilization that lasted longer than the window, an SLO at
risk and a prediction drift beyond the tolerance (``kvopt validate``'s 20% by default).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kvopt.choices import WATCH_STATUSES
from kvopt.errors import InputError, KvoptError
from kvopt.ops.metrics import ScrapeError, Snapshot, Window, combine, detect_engine, parse
from kvopt.ops.metrics import window as make_window

ALERTS = {
    "over_utilized": "the rate exceeds the goodput, the queue holds a full batch or the "
                     "KV cache is nearly full",
    "under_utilized": "the rate stayed below a fraction of the planned rate for longer "
                      "than the window",
    "slo_at_risk": "a p99 is near its SLO (critical once above it)",
    "prediction_drift": "a p99 differs from kvopt's prediction at the observed rate by "
                        "more than the tolerance",
}
Predictor = Callable[[float], "tuple[float | None, float | None]"]


@dataclass(frozen=True, kw_only=True)
class Thresholds:
    """When an alert fires (every field a fraction or a count; see :data:`ALERTS`)."""

    over_util: float = 1.0  # observed rate / goodput above this: over-utilized
    kv_full: float = 0.95  # KV cache use at or above this: over-utilized (preemptions)
    under_util: float = 0.5  # observed / planned rate below this ...
    under_window_s: float = 600.0  # ... for longer than this: under-utilized
    slo_risk: float = 0.9  # p99 / SLO at or above this: at risk (above 1: breached)
    tolerance_pct: float = 20.0  # |observed / predicted - 1| beyond this: drift
    min_requests: int = 20  # fewer completions in a window: too few for a p99

    def __post_init__(self) -> None:
        for name in ("over_util", "kv_full", "under_util", "slo_risk"):
            v = getattr(self, name)
            if not 0 < v <= 10:
                raise InputError(f"--{name.replace('_', '-')}", v, "must be in (0, 10]")
        if self.under_window_s < 0 or self.tolerance_pct <= 0 or self.min_requests < 1:
            raise InputError("thresholds", self, "windows >= 0, tolerance > 0, "
                             "min requests >= 1")


@dataclass(frozen=True, kw_only=True)
class Target:
    """What the watched replicas of one fleet entry were planned to do."""

    workload: str
    entry: dict[str, Any]
    input_len: Any
    output_len: Any
    replicas: int  # replicas watched (one metrics URL each)
    rate_rps: float  # planned rate of the watched replicas
    goodput_rps: float | None
    slo_ttft_p99_ms: float | None
    slo_tpot_p99_ms: float | None
    usd_per_hour: float  # the watched replicas' GPUs
    # the engine release whose fitted overheads the plan's candidates ran with (None: the
    # engine profile's own figures)
    engine_version: str | None = None
    # the engine flags the plan's candidates ran with (inputs.space.engine_args)
    engine_args: tuple[tuple[str, Any], ...] = ()
    # the (GPU, engine) cards of the plan's calibration of this entry's GPU and engine
    # (inputs.space.calibrations), if the plan was made with one (plan --profile)
    calibration: tuple[Any, Any] | None = None

    @property
    def queue_limit(self) -> int:
        return int(self.entry["max_batch"]) * self.replicas


def target(plan: dict[str, Any], *, entry: str | None, replicas: int) -> Target:
    """The fleet entry ``entry`` (its 1-based index or workload name; default: the only
    one) of a loaded plan, scaled to ``replicas`` watched replicas."""
    fleet = plan["fleet"]
    if not fleet:
        raise InputError("plan", "fleet", "the plan has no fleet entry")
    if entry is None:
        if len(fleet) > 1:
            raise InputError("--entry", None, f"the plan has {len(fleet)} fleet entries",
                             "give --entry N (1.." + str(len(fleet)) + ") or a workload name")
        e = fleet[0]
    elif entry.isdigit() and 1 <= int(entry) <= len(fleet):
        e = fleet[int(entry) - 1]
    else:
        named = [f for f in fleet if f["workload"] == entry]
        if len(named) != 1:
            names = ", ".join(f"{i + 1}={f['workload']}" for i, f in enumerate(fleet))
            raise InputError("--entry", entry, f"not one fleet entry ({names})",
                             "give an index or a workload name with one entry")
        e = named[0]
    w = next(x for x in plan["inputs"]["workloads"] if x["name"] == e["workload"])
    per_replica = float(e["usd_per_hour"]) / int(e["replicas"])
    space = plan["inputs"].get("space", {})
    from kvopt.bench.calibrate import plan_calibration

    cal = plan_calibration(plan, e["gpu"], e.get("engine") or "vllm", field="plan",
                           value=f"fleet entry {e['workload']!r}")
    good = e.get("goodput_per_replica_rps")
    return Target(workload=e["workload"], entry=dict(e), input_len=w["input_len"],
                  output_len=w["output_len"], replicas=replicas,
                  rate_rps=float(e["rate_per_replica_rps"]) * replicas,
                  goodput_rps=float(good) * replicas if good else None,
                  slo_ttft_p99_ms=w["slo"].get("ttft_p99_ms"),
                  slo_tpot_p99_ms=w["slo"].get("tpot_p99_ms"),
                  usd_per_hour=per_replica * replicas,
                  engine_version=space.get("engine_version"),
                  engine_args=tuple(sorted((space.get("engine_args") or {}).items())),
                  calibration=cal)


class KvoptPredictor:
    """kvopt's p99 TTFT/TPOT of one replica at a rate (requests/s), the entry's
    configuration and the workload's lengths; (None, None) when it cannot say, with the
    reason in :attr:`error`."""

    def __init__(self, t: Target) -> None:
        self.entry = t.entry
        self.engine_version = t.engine_version
        self.engine_args = dict(t.engine_args)
        self.hardware = t.calibration  # a calibrated (GPU, engine), or None
        self.lengths: dict[str, Any] = {}
        for kind, v in (("input", t.input_len), ("output", t.output_len)):
            text = str(v)
            self.lengths[f"{kind}_len" if text.isdigit() else f"{kind}_len_dist"] = (
                int(text) if text.isdigit() else text)
        self.cache: dict[float, tuple[float | None, float | None]] = {}
        self.error = ""

    def __call__(self, rps_per_replica: float) -> tuple[float | None, float | None]:
        from kvopt import api

        key = float(f"{rps_per_replica:.2g}")
        if key <= 0:
            return None, None
        if key not in self.cache:
            e = self.entry
            gpu, engine = self.hardware or (e["gpu"], e.get("engine") or "vllm")
            try:
                est = api.estimate(model=e["model"], gpu=gpu, tp=int(e["tp"]),
                                   ep=int(e.get("ep", 1)), dp=int(e.get("dp", 1)),
                                   pp=int(e.get("pp", 1)),
                                   weights=e["weights"], kv_dtype=e["kv_dtype"],
                                   engine=engine,  # a calibration carries its overheads
                                   engine_version=None if self.hardware else
                                   self.engine_version, rps=key,
                                   engine_args={**self.engine_args,
                                                "max_num_seqs": int(e["max_batch"])},
                                   **self.lengths).to_dict()["latency"]
                self.cache[key] = (est.get("ttft_p99_ms"), est.get("tpot_p99_ms"))
            except KvoptError as exc:
                self.error = f"kvopt cannot predict this entry: {exc}"
                self.cache[key] = (None, None)
        return self.cache[key]


@dataclass(frozen=True, kw_only=True)
class Alert:
    kind: str
    severity: str  # warning | critical
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "severity": self.severity, "message": self.message}


@dataclass(frozen=True, kw_only=True)
class Report:
    """One interval: the window, the plan's and kvopt's figures, cost, alerts, status."""

    time: float
    window: Window | None
    target: Target
    predicted: dict[str, float | None]
    cost: dict[str, float | None]
    alerts: tuple[Alert, ...]
    status: str
    error: str = ""  # why the endpoint could not be read, or why kvopt did not predict

    def to_dict(self) -> dict[str, Any]:
        t = self.target
        return {"time": round(self.time, 3), "status": self.status,
                "observed": self.window.to_dict() if self.window else None,
                "planned": {"workload": t.workload, "replicas": t.replicas,
                            "rate_rps": t.rate_rps, "goodput_rps": t.goodput_rps,
                            "slo_ttft_p99_ms": t.slo_ttft_p99_ms,
                            "slo_tpot_p99_ms": t.slo_tpot_p99_ms},
                "predicted": self.predicted, "cost": self.cost,
                "alerts": [a.to_dict() for a in self.alerts], "error": self.error}


def worst(statuses: list[str]) -> str:
    """The worst status by :data:`kvopt.choices.WATCH_STATUSES` order."""
    return max(statuses, key=WATCH_STATUSES.index, default="ok")


@dataclass
class Watcher:
    """Judges windows against a target; remembers how long the rate has been low."""

    target: Target
    thresholds: Thresholds = field(default_factory=Thresholds)
    predict: Predictor | None = None
    low_since: float | None = None

    def evaluate(self, w: Window, now: float) -> Report:
        t, th = self.target, self.thresholds
        alerts: list[Alert] = []
        rate = w.requests_s
        if rate is not None and t.goodput_rps and rate > th.over_util * t.goodput_rps:
            alerts.append(Alert(kind="over_utilized", severity="critical", message=(
                f"{rate:.3g} req/s > {th.over_util:g} x the goodput {t.goodput_rps:.3g} "
                "req/s: p99s will exceed the SLOs; add replicas (re-plan at this rate)")))
        elif w.waiting is not None and w.waiting >= t.queue_limit:
            alerts.append(Alert(kind="over_utilized", severity="critical", message=(
                f"{w.waiting:.0f} requests waiting >= a full batch ({t.queue_limit}): "
                "arrivals outpace the replicas; add replicas")))
        elif w.kv_usage is not None and w.kv_usage >= th.kv_full:
            alerts.append(Alert(kind="over_utilized", severity="critical", message=(
                f"KV cache {w.kv_usage:.0%} full (>= {th.kv_full:.0%}): requests will be "
                "preempted; lower max batch or add replicas")))
        low = rate is not None and rate < th.under_util * t.rate_rps
        self.low_since = (self.low_since if self.low_since is not None else now - w.seconds
                          ) if low else None
        if low and self.low_since is not None and now - self.low_since > th.under_window_s:
            alerts.append(Alert(kind="under_utilized", severity="warning", message=(
                f"{rate:.3g} req/s < {th.under_util:.0%} of the planned {t.rate_rps:.3g} "
                f"req/s for {now - self.low_since:.0f} s (window {th.under_window_s:g} s): "
                "fewer replicas or a cheaper GPU would do; re-plan at this rate")))
        enough = w.completed >= th.min_requests
        pred_ttft = pred_tpot = None
        note = ""
        if self.predict is not None and rate and enough:
            pred_ttft, pred_tpot = self.predict(rate / t.replicas)
            note = getattr(self.predict, "error", "")
        for name, seen, slo, pred in (("TTFT", w.ttft_p99_ms, t.slo_ttft_p99_ms, pred_ttft),
                                      ("TPOT", w.tpot_p99_ms, t.slo_tpot_p99_ms, pred_tpot)):
            if seen is None or not enough:
                continue
            if slo and seen >= th.slo_risk * slo:
                over = seen > slo
                alerts.append(Alert(
                    kind="slo_at_risk", severity="critical" if over else "warning",
                    message=f"{name} p99 {seen:.4g} ms {'>' if over else '>='} "
                            f"{'the' if over else f'{th.slo_risk:.0%} of the'} SLO {slo:g} ms"
                            f" over {w.completed:.0f} requests"))
            if pred and abs(seen / pred - 1) * 100 > th.tolerance_pct:
                alerts.append(Alert(kind="prediction_drift", severity="warning", message=(
                    f"{name} p99 {seen:.4g} ms vs kvopt's {pred:.4g} ms at {rate:.3g} req/s "
                    f"({(seen / pred - 1) * 100:+.0f}%, tolerance {th.tolerance_pct:g}%): "
                    "calibrate (kvopt bench + kvopt calibrate) and re-plan")))
        tok = w.output_tok_s
        total = (tok or 0.0) + (w.prompt_tok_s or 0.0)
        cost = {"usd_per_hour": t.usd_per_hour,
                "usd_per_million_output_tokens": t.usd_per_hour / (tok * 3600) * 1e6
                if tok else None,
                "usd_per_million_tokens": t.usd_per_hour / (total * 3600) * 1e6
                if total else None,
                "planned_usd_per_million_output_tokens":
                t.entry.get("usd_per_million_output_tokens")}
        status = worst([a.severity for a in alerts])
        return Report(time=now, window=w, target=t, cost=cost, alerts=tuple(alerts),
                      predicted={"ttft_p99_ms": pred_ttft, "tpot_p99_ms": pred_tpot,
                                 "plan_ttft_p99_ms": t.entry["predicted"].get("ttft_p99_ms"),
                                 "plan_tpot_p99_ms": t.entry["predicted"].get("tpot_p99_ms")},
                      status=status, error=note)


def _fmt(v: float | None, unit: str = "", digits: str = ".3g") -> str:
    return "-" if v is None else f"{v:{digits}}{unit}"


def line(r: Report) -> list[str]:
    """The report as readable lines: one summary, then one per alert."""
    stamp = time.strftime("%H:%M:%S", time.localtime(r.time))
    if r.window is None:
        return [f"{stamp} {r.status.upper()}: {r.error}"]
    w, t, p, c = r.window, r.target, r.predicted, r.cost
    out = [f"{stamp} {r.status.upper():8} {t.workload} x{t.replicas}: "
           f"{_fmt(w.requests_s)} req/s (plan {t.rate_rps:.3g}, goodput "
           f"{_fmt(t.goodput_rps)}); TTFT p99 {_fmt(w.ttft_p99_ms, ' ms', '.4g')} (SLO "
           f"{_fmt(t.slo_ttft_p99_ms)}, kvopt {_fmt(p['ttft_p99_ms'], '', '.4g')}); TPOT p99 "
           f"{_fmt(w.tpot_p99_ms, ' ms', '.4g')} (SLO {_fmt(t.slo_tpot_p99_ms)}, kvopt "
           f"{_fmt(p['tpot_p99_ms'], '', '.4g')}); KV "
           f"{'-' if w.kv_usage is None else f'{w.kv_usage:.0%}'}; queue "
           f"{_fmt(w.waiting, '', '.0f')}; ${c['usd_per_hour']:.2f}/h, "
           f"${_fmt(c['usd_per_million_output_tokens'])}/M output tokens"]
    out += [f"  {a.severity.upper()} {a.kind}: {a.message}" for a in r.alerts]
    if r.error:
        out.append(f"  note: {r.error}")
    return out


def run(urls: list[str], watcher: Watcher, *, engine: str = "auto", interval_s: float = 15.0,
        count: int = 0, emit: Callable[[Report], None],
        fetch: Callable[[str], str] | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep) -> str:
    """Scrape ``urls`` every ``interval_s`` and ``emit`` a report per window; after
    ``count`` reports (0: until interrupted) return the worst status seen."""
    from kvopt.ops.metrics import scrape

    get = fetch or scrape
    seen: list[str] = []
    last: Snapshot | None = None
    while True:
        try:
            texts = [get(u) for u in urls]
            eng = engine if engine != "auto" else detect_engine(texts[0])
            if eng is None:
                raise ScrapeError(urls[0], "no vLLM or SGLang metric in the scrape "
                                  "(give --engine, or check the URL)")
            now = clock()
            snap = combine([parse(x, engine=eng, t=now) for x in texts])
        except KvoptError as exc:
            now, last = clock(), None
            r = Report(time=now, window=None, target=watcher.target, predicted={},
                       cost={}, alerts=(), status="unreachable", error=str(exc))
            emit(r)
            seen.append(r.status)
        else:
            if last is not None:
                r = watcher.evaluate(make_window(last, snap), now)
                emit(r)
                seen.append(r.status)
            last = snap
        if count and len(seen) >= count:
            return worst(seen)
        sleep(interval_s)
