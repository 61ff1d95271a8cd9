"""What a capacity search takes and gives: latency objectives (:class:`Slo`) and the goodput
of one replica (:class:`CapacityResult`), shared by the exact search and the screen."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from kvopt.errors import InputError
from kvopt.serving.replica import Replica
from kvopt.units import GIB

NO_FIT = "does not fit in memory"
_FASTER = "a faster configuration (more TP, lower precision, another GPU)"


@dataclass(frozen=True, kw_only=True)
class Slo:
    """Latency objectives in milliseconds (None = unconstrained)."""

    ttft_p99_ms: float | None = None
    tpot_p99_ms: float | None = None
    e2e_p99_ms: float | None = None  # whole request: TTFT + all output tokens

    def __post_init__(self) -> None:
        for name in ("ttft_p99_ms", "tpot_p99_ms", "e2e_p99_ms"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise InputError(name, value, "must be > 0")


@dataclass(frozen=True, kw_only=True)
class CapacityResult:
    """Goodput of one replica: the highest rate that meets the SLO, and its operating point."""

    goodput_rps: float
    saturation_rps: float
    steady_state_batch: float
    ttft_p99_ms: float | None
    tpot_p99_ms: float | None
    output_tok_s: float
    binding: str  # what limits the goodput
    feasible: bool  # False: even an idle replica misses the SLO
    e2e_p99_ms: float | None = None
    # why a replica that does not fit has no goodput (memory per GPU); not serialized
    detail: str = field(default="", compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("detail")
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in d.items()}

    def explain(self) -> str:
        """One sentence: what limits the goodput, or why there is none and what to change."""
        if self.feasible:
            return (f"{self.goodput_rps:.4g} req/s per replica, limited by {self.binding} "
                    f"(saturation at {self.saturation_rps:.4g} req/s)")
        if self.binding == NO_FIT:
            return self.detail or (f"the replica {NO_FIT}; use more GPUs (--tp), "
                                   "lower-precision weights or a larger GPU")
        if (self.binding.endswith("SLO") and self.ttft_p99_ms is not None
                and self.tpot_p99_ms is not None):
            return (f"no rate meets the {self.binding}: even at light load the replica misses "
                    f"it (TTFT p99 {self.ttft_p99_ms:.4g} ms, TPOT p99 "
                    f"{self.tpot_p99_ms:.4g} ms); loosen the SLO or use {_FASTER}")
        return f"no rate is sustainable ({self.binding}); use {_FASTER}"


def unserved(binding: str, cap: float = 0.0, ttft_ms: float | None = None,
             tpot_ms: float | None = None, detail: str = "") -> CapacityResult:
    """No goodput: no sustainable rate at all (``cap`` 0), or even light load (its p99s
    ``ttft_ms``, ``tpot_ms``) misses the SLO for ``binding``."""
    return CapacityResult(goodput_rps=0.0, saturation_rps=cap, steady_state_batch=0.0,
                          ttft_p99_ms=ttft_ms, tpot_p99_ms=tpot_ms, output_tok_s=0.0,
                          binding=binding, feasible=False, detail=detail)


def no_fit(rep: Replica) -> CapacityResult:
    """The goodput of a replica whose weights leave no KV cache: none, and why."""
    return unserved(NO_FIT, detail=(
        f"{rep.model.name} with {rep.precision.weights} weights does not fit on "
        f"{rep.tp}x {rep.gpu.id} under {rep.engine.name} ({rep.weights_bytes / GIB:.1f} "
        f"GiB of weights and {rep.activation_bytes / GIB:.1f} GiB of activations per "
        f"{rep.gpu.memory_gib:g} GiB GPU leave no KV cache); use more GPUs (--tp), "
        "lower-precision weights or a larger GPU"))
