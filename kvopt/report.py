"""Result value objects shared by `estimate`, the serving model and the simulator.

``Estimate.to_dict()`` is the ``--json`` shape; keys are only ever added, never renamed.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True, kw_only=True)
class MemoryReport:
    weights_gib: float
    kv_cache_gib: float
    activations_gib: float
    overhead_gib: float
    total_gib: float
    gpu_gib: float
    fits: bool
    kv_bytes_per_token: float
    kv_capacity_tokens: int
    max_concurrent_seqs: int
    reason: str = ""


@dataclass(frozen=True, kw_only=True)
class LatencyReport:
    prefill_ms: float
    ttft_ms: float  # mean
    decode_step_ms: float
    tpot_ms: float  # mean
    e2e_ms: float  # mean
    ttft_p50_ms: float
    ttft_p90_ms: float
    ttft_p99_ms: float
    tpot_p50_ms: float
    tpot_p90_ms: float
    tpot_p99_ms: float
    queue_ms: float  # mean wait before the first scheduling
    e2e_p50_ms: float = math.inf  # whole request: TTFT + all output tokens
    e2e_p90_ms: float = math.inf
    e2e_p99_ms: float = math.inf


@dataclass(frozen=True, kw_only=True)
class LoadReport:
    mode: str  # batch | concurrency | rps | offline
    value: float
    steady_state_batch: float  # mean sequences running
    utilization: float  # offered load / capacity
    saturated: bool
    capacity_rps: float | None = None  # highest sustainable request rate (Poisson)
    limit: str = ""  # what bounds the capacity


@dataclass(frozen=True, kw_only=True)
class ThroughputReport:
    output_tok_s: float
    total_tok_s: float
    requests_s: float


@dataclass(frozen=True, kw_only=True)
class UtilizationReport:
    mfu: float
    mbu: float
    arithmetic_intensity: float
    bottleneck: str


@dataclass(frozen=True, kw_only=True)
class CostReport:
    usd_per_hour: float | None
    usd_per_million_output_tokens: float | None
    price_source: str = ""


@dataclass(frozen=True, kw_only=True)
class Estimate:
    """Result of :func:`estimate`; ``to_dict()`` is the ``--json`` shape."""

    model: str
    gpu: str
    tp: int
    ep: int = 1  # expert-parallel ranks, attention-DP ranks, pipeline stages (GPUs: tp x dp x pp)
    dp: int = 1
    pp: int = 1
    weights: str
    kv_dtype: str
    engine: str
    memory: MemoryReport
    latency: LatencyReport
    throughput: ThroughputReport
    utilization: UtilizationReport
    cost: CostReport
    load: LoadReport
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["notes"] = list(self.notes)
        return dict(finite(d))


def finite(obj: Any) -> Any:
    """JSON has no infinity: saturated figures become null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [finite(v) for v in obj]
    return obj
