"""Predicted versus measured, metric by metric: error, bias and pass/fail.

The prediction is kvopt's estimate for the measured replica under the measured load and
lengths. ``error_pct = (predicted - measured) / measured x 100``; the bias is ``over`` when
kvopt predicts more than was measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kvopt.bench.result import per_token_block
from kvopt.report import Estimate

METRICS = (  # (name, bench block/key, estimate latency key)
    ("ttft_mean_ms", ("ttft_ms", "mean"), "ttft_ms"),
    ("ttft_p99_ms", ("ttft_ms", "p99"), "ttft_p99_ms"),
    ("itl_mean_ms", ("itl_ms", "mean"), "tpot_ms"),
    ("itl_p99_ms", ("itl_ms", "p99"), "tpot_p99_ms"),
)


@dataclass(frozen=True)
class Check:
    metric: str
    predicted: float
    measured: float
    error_pct: float
    bias: str
    passed: bool


def compare(est: Estimate, bench: dict[str, Any], tolerance_pct: float) -> list[Check]:
    """Predicted vs measured per metric. The per-token metrics compare kvopt's TPOT with
    the bench's ``tpot_ms`` when it has one (``tpot_*`` checks), else with ``itl_ms``
    (``itl_*`` checks); see :func:`kvopt.bench.result.per_token_block`."""
    d = est.to_dict()
    out = []
    kind, per_token = per_token_block(bench)
    pairs: list[tuple[str, float | None, float]] = []
    for name, (block, stat), key in METRICS:
        if block == "itl_ms":
            pairs.append((name.replace("itl", kind), d["latency"][key], per_token[stat]))
        else:
            pairs.append((name, d["latency"][key], float(bench[block][stat])))
    pairs.append(("output_tok_s", d["throughput"]["output_tok_s"], float(bench["output_tok_s"])))
    for name, pred, meas in pairs:
        if pred is None or meas <= 0:
            continue
        err = (pred - meas) / meas * 100.0
        out.append(Check(name, float(pred), meas, err, "over" if err > 0 else "under",
                         abs(err) <= tolerance_pct))
    return out
