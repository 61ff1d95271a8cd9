"""An engine's Prometheus metrics: scrape, parse (prometheus-client's text parser) and turn
two scrapes into window figures (request rate, token rates, histogram quantiles).

Metric names per engine, each with the names older or newer releases use:

* vLLM (V1 engine; docs "Production Metrics", ``vllm/v1/metrics/loggers.py``):
  ``vllm:num_requests_running``/``waiting`` gauges, ``vllm:kv_cache_usage_perc`` (0-1;
  ``vllm:gpu_cache_usage_perc`` before v0.10), counters ``vllm:request_success_total``,
  ``vllm:prompt_tokens_total``, ``vllm:generation_tokens_total`` and histograms
  ``vllm:time_to_first_token_seconds``, ``vllm:request_time_per_output_token_seconds``
  (per-request TPOT; ``vllm:time_per_output_token_seconds`` is the inter-token latency of
  older releases, ``vllm:inter_token_latency_seconds`` of newer ones),
  ``vllm:e2e_request_latency_seconds``.
* SGLang (docs "Production Metrics", ``sglang/srt/metrics/collector.py``):
  ``sglang:num_running_reqs``, ``sglang:num_queue_reqs``, ``sglang:token_usage`` (0-1),
  counters ``sglang:num_requests_total``, ``sglang:prompt_tokens_total``,
  ``sglang:generation_tokens_total`` and histograms ``sglang:time_to_first_token_seconds``,
  ``sglang:time_per_output_token_seconds`` / ``sglang:inter_token_latency_seconds``,
  ``sglang:e2e_request_latency_seconds``.

Series with several label sets (models, engine indices, finish reasons) are summed; the KV
cache use is their mean. Imports prometheus-client only when a scrape is parsed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from kvopt.errors import InputError

# quantity -> metric family names (as prometheus-client names them: counters without the
# _total suffix), first found wins
ENGINE_METRICS: dict[str, dict[str, tuple[str, ...]]] = {
    "vllm": {
        "running": ("vllm:num_requests_running",),
        "waiting": ("vllm:num_requests_waiting",),
        "kv_usage": ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
        "requests": ("vllm:request_success",),
        "prompt_tokens": ("vllm:prompt_tokens",),
        "generation_tokens": ("vllm:generation_tokens",),
        "ttft": ("vllm:time_to_first_token_seconds",),
        "tpot": ("vllm:request_time_per_output_token_seconds",
                 "vllm:time_per_output_token_seconds", "vllm:inter_token_latency_seconds"),
        "e2e": ("vllm:e2e_request_latency_seconds",),
    },
    "sglang": {
        "running": ("sglang:num_running_reqs",),
        "waiting": ("sglang:num_queue_reqs",),
        "kv_usage": ("sglang:token_usage",),
        "requests": ("sglang:num_requests",),
        "prompt_tokens": ("sglang:prompt_tokens",),
        "generation_tokens": ("sglang:generation_tokens",),
        "ttft": ("sglang:time_to_first_token_seconds",),
        "tpot": ("sglang:time_per_output_token_seconds", "sglang:inter_token_latency_seconds"),
        "e2e": ("sglang:e2e_request_latency_seconds",),
    },
}
WATCH_ENGINES = tuple(ENGINE_METRICS)
GAUGES = ("running", "waiting", "kv_usage")
COUNTERS = ("requests", "prompt_tokens", "generation_tokens")
HISTOGRAMS = ("ttft", "tpot", "e2e")
# the metric a Kubernetes HPA scales on (waiting requests), per engine
WAITING_METRIC = {e: m["waiting"][0] for e, m in ENGINE_METRICS.items()}


@dataclass(frozen=True)
class Histogram:
    """Cumulative bucket counts by upper bound (``+Inf`` last), with sum and count."""

    bounds: tuple[float, ...]
    counts: tuple[float, ...]
    total: float
    count: float

    def minus(self, earlier: Histogram | None) -> Histogram:
        """The observations since ``earlier`` (all of them after a counter reset or a change
        of buckets)."""
        if (earlier is None or earlier.bounds != self.bounds or earlier.count > self.count):
            return self
        return Histogram(self.bounds, tuple(a - b for a, b in zip(self.counts, earlier.counts,
                                                                  strict=True)),
                         self.total - earlier.total, self.count - earlier.count)

    def quantile(self, q: float) -> float | None:
        """Prometheus' ``histogram_quantile``: linear within the bucket that holds rank
        q x count; the highest finite bound when it falls in ``+Inf``; None when empty."""
        if self.count <= 0 or not self.bounds:
            return None
        rank = q * self.counts[-1]
        lower, below = 0.0, 0.0
        for le, c in zip(self.bounds, self.counts, strict=True):
            if c >= rank:
                if math.isinf(le):
                    finite = [b for b in self.bounds if not math.isinf(b)]
                    return finite[-1] if finite else None
                if c == below:
                    return le
                return lower + (le - lower) * (rank - below) / (c - below)
            lower, below = le, c
        return None


@dataclass(frozen=True)
class Snapshot:
    """One scrape: the engine, when (monotonic seconds) and the quantities found."""

    engine: str
    t: float
    gauges: dict[str, float] = field(default_factory=dict)
    counters: dict[str, float] = field(default_factory=dict)
    histograms: dict[str, Histogram] = field(default_factory=dict)
    found: dict[str, str] = field(default_factory=dict)  # quantity -> metric name used


def detect_engine(text: str) -> str | None:
    """``vllm`` or ``sglang`` from the metric prefixes in a scrape (None: neither)."""
    for engine in WATCH_ENGINES:
        if f"\n{engine}:" in "\n" + text:
            return engine
    return None


def parse(text: str, *, engine: str, t: float) -> Snapshot:
    """The quantities of ``engine`` in one Prometheus text exposition."""
    from prometheus_client.parser import text_string_to_metric_families

    if engine not in ENGINE_METRICS:
        raise InputError("--engine", engine, f"one of: {', '.join(WATCH_ENGINES)}")
    try:
        families: dict[str, Any] = {}
        for f in text_string_to_metric_families(text):
            families[f.name] = f
            if f.name.endswith("_total"):  # an untyped counter keeps its suffix
                families.setdefault(f.name[:-6], f)
    except (ValueError, TypeError, IndexError) as exc:
        raise InputError("metrics", text[:40], f"not Prometheus text ({exc})",
                         "point --metrics-url at the engine's /metrics") from None
    snap = Snapshot(engine=engine, t=t)
    for quantity, names in ENGINE_METRICS[engine].items():
        name = next((n for n in names if n in families and families[n].samples), None)
        if name is None:
            continue
        fam = families[name]
        snap.found[quantity] = name
        if quantity in HISTOGRAMS:
            snap.histograms[quantity] = _histogram(fam.samples, name)
        else:
            values = [s.value for s in fam.samples
                      if s.name in (name, f"{name}_total", fam.name)]
            if not values:
                continue
            if quantity == "kv_usage":
                snap.gauges[quantity] = sum(values) / len(values)
            elif quantity in GAUGES:
                snap.gauges[quantity] = sum(values)
            else:
                snap.counters[quantity] = sum(values)
    return snap


def _histogram(samples: list[Any], name: str) -> Histogram:
    buckets: dict[float, float] = {}
    total = count = 0.0
    for s in samples:
        if s.name == f"{name}_bucket":
            le = float(s.labels["le"])
            buckets[le] = buckets.get(le, 0.0) + s.value
        elif s.name == f"{name}_sum":
            total += s.value
        elif s.name == f"{name}_count":
            count += s.value
    bounds = tuple(sorted(buckets))
    return Histogram(bounds, tuple(buckets[b] for b in bounds), total, count)


@dataclass(frozen=True)
class Window:
    """What the engine did between two scrapes."""

    seconds: float
    requests_s: float | None
    prompt_tok_s: float | None
    output_tok_s: float | None
    completed: float
    ttft_p99_ms: float | None
    tpot_p99_ms: float | None
    e2e_p99_ms: float | None
    running: float | None
    waiting: float | None
    kv_usage: float | None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def window(earlier: Snapshot, later: Snapshot) -> Window:
    """Rates and p99s over ``earlier`` -> ``later`` (a counter that went down restarted:
    its new value is the window's); gauges are ``later``'s."""
    dt = later.t - earlier.t
    if dt <= 0:
        raise InputError("interval", dt, "the two scrapes must be apart in time")

    def rate(q: str) -> float | None:
        if q not in later.counters:
            return None
        now, before = later.counters[q], earlier.counters.get(q, 0.0)
        return (now - before if now >= before else now) / dt

    def p99_ms(q: str) -> float | None:
        h = later.histograms.get(q)
        if h is None:
            return None
        v = h.minus(earlier.histograms.get(q)).quantile(0.99)
        return None if v is None else v * 1e3

    done = later.histograms.get("e2e") or later.histograms.get("ttft")
    key = "e2e" if "e2e" in later.histograms else "ttft"
    completed = done.minus(earlier.histograms.get(key)).count if done else 0.0
    req = rate("requests")
    if req is None and done is not None:  # an engine without a request counter
        req = completed / dt
    return Window(seconds=dt, requests_s=req, prompt_tok_s=rate("prompt_tokens"),
                  output_tok_s=rate("generation_tokens"), completed=completed,
                  ttft_p99_ms=p99_ms("ttft"), tpot_p99_ms=p99_ms("tpot"),
                  e2e_p99_ms=p99_ms("e2e"), running=later.gauges.get("running"),
                  waiting=later.gauges.get("waiting"), kv_usage=later.gauges.get("kv_usage"))


def combine(snaps: list[Snapshot]) -> Snapshot:
    """Several replicas' scrapes as one (summed counters, gauges and buckets; KV use is
    the mean; the time is the latest)."""
    if len(snaps) == 1:
        return snaps[0]
    out = Snapshot(engine=snaps[0].engine, t=max(s.t for s in snaps))
    for s in snaps:
        out.found.update(s.found)
        for k, v in s.counters.items():
            out.counters[k] = out.counters.get(k, 0.0) + v
        for k, v in s.gauges.items():
            out.gauges[k] = out.gauges.get(k, 0.0) + v
        for k, h in s.histograms.items():
            o = out.histograms.get(k)
            out.histograms[k] = h if o is None or o.bounds != h.bounds else Histogram(
                h.bounds, tuple(a + b for a, b in zip(o.counts, h.counts, strict=True)),
                o.total + h.total, o.count + h.count)
    if "kv_usage" in out.gauges:
        n = sum(1 for s in snaps if "kv_usage" in s.gauges)
        out.gauges["kv_usage"] /= n
    return out


def check_url(url: str) -> str:
    """An http(s) URL with a host (before any scrape: a typo is a one-line error)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError on a bad port
    except ValueError as exc:
        raise InputError("--metrics-url", url, f"not a URL ({exc})",
                         "e.g. http://127.0.0.1:8000/metrics") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError("--metrics-url", url, "must be an http:// or https:// URL with a host",
                         "e.g. http://127.0.0.1:8000/metrics")
    return url


def scrape(url: str, *, timeout_s: float = 5.0) -> str:
    """GET the metrics text; a failure is a :class:`ScrapeError` naming the URL."""
    import httpx

    try:
        r = httpx.get(url, timeout=timeout_s)
    except httpx.HTTPError as exc:
        raise ScrapeError(url, f"unreachable ({type(exc).__name__}: {exc})") from None
    if r.status_code != 200:
        raise ScrapeError(url, f"HTTP {r.status_code}")
    return r.text


class ScrapeError(InputError):
    """The metrics endpoint did not answer with metrics."""

    def __init__(self, url: str, why: str) -> None:
        super().__init__("--metrics-url", url, why,
                         "is the engine running, and is this its /metrics URL?")
