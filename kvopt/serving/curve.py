"""One replica's latency-throughput curve: the analytic estimate at several loads.

``load_curve`` evaluates :func:`kvopt.serving.estimate.estimate` at each load: by default 10 Poisson
rates from 5% to 95% of the replica's capacity and one at 110% (saturated), or given rates
or closed-loop client counts. ``kvopt curve`` prints it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from kvopt.errors import InputError
from kvopt.serving.estimate import estimate
from kvopt.serving.load import Load

LOW, HIGH, ABOVE = 0.05, 0.95, 1.1  # default rates: fractions of the capacity


def _checked(values: Sequence[float], field: str, integer: bool) -> list[float]:
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) \
                or v <= 0 or (integer and not float(v).is_integer()):
            raise InputError(field, v, "every value must be a " + (
                "positive integer" if integer else "finite number > 0"))
        out.append(float(v))
    if not out:
        raise InputError(field, list(values), "give at least one value")
    return sorted(set(out))


def load_curve(*, rps: Sequence[float] | None = None,
               concurrency: Sequence[int] | None = None, points: int = 10,
               **replica: Any) -> dict[str, Any]:
    """Latency and throughput of one replica at several loads.

    ``replica``: the keyword arguments of :func:`kvopt.serving.estimate.estimate` other than the
    load (model, gpu, tp, weights, kv_dtype, engine, lengths or length distributions,
    price, prefix, spec). Give ``rps`` (Poisson rates), ``concurrency`` (client counts) or
    neither (``points`` rates up to capacity, plus one above). Returns ``{"model", "gpu",
    "tp", "weights", "kv_dtype", "engine", "mode", "capacity_rps", "limit", "points":
    [...], "notes"}``; infinite figures (a queue that never drains) stay ``inf``."""
    if rps is not None and concurrency is not None:
        raise InputError("load", "rps and concurrency", "give one of them, not both")
    if isinstance(points, bool) or not isinstance(points, int) or not 2 <= points <= 100:
        raise InputError("points", points, "must be an integer from 2 to 100")
    # the capacity first (and the replica's errors: does not fit, context too long)
    probe = estimate(load=Load(mode="rps", value=1e-6), **replica)
    cap = probe.load.capacity_rps or 0.0
    if concurrency is not None:
        mode, values = "concurrency", _checked(concurrency, "concurrency", integer=True)
    elif rps is not None:
        mode, values = "rps", _checked(rps, "rps", integer=False)
    else:
        if cap <= 0:
            raise InputError("load", "default rates", f"the replica sustains no request rate "
                             f"({probe.load.limit}), so there is no curve to draw")
        mode = "rps"
        step = (HIGH - LOW) / (points - 1)
        values = [cap * (LOW + i * step) for i in range(points)] + [cap * ABOVE]
    rows = []
    for value in values:
        e = estimate(load=Load(mode=mode, value=value), **replica)
        lat, ld = e.latency, e.load
        rows.append({"value": value, "saturated": ld.saturated,
                     "utilization": ld.utilization, "steady_state_batch": ld.steady_state_batch,
                     "ttft_p50_ms": lat.ttft_p50_ms, "ttft_p90_ms": lat.ttft_p90_ms,
                     "ttft_p99_ms": lat.ttft_p99_ms, "tpot_p50_ms": lat.tpot_p50_ms,
                     "tpot_p90_ms": lat.tpot_p90_ms, "tpot_p99_ms": lat.tpot_p99_ms,
                     "queue_ms": lat.queue_ms, "requests_s": e.throughput.requests_s,
                     "output_tok_s": e.throughput.output_tok_s,
                     "usd_per_million_output_tokens": e.cost.usd_per_million_output_tokens})
    return {"model": probe.model, "gpu": probe.gpu, "tp": probe.tp, "weights": probe.weights,
            "kv_dtype": probe.kv_dtype, "engine": probe.engine, "mode": mode,
            "capacity_rps": cap, "limit": probe.load.limit, "points": rows,
            "notes": [n for n in probe.notes if not n.startswith("rps load:")]}
