"""What the analytic steady state reports: :class:`SteadyState` (one load) and
:class:`Rows` (the slot-independent draws at many rates, shared by the max-batch levels of
one replica)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from kvopt.serving.steady.draws import p99_rows

Array = npt.NDArray[np.float64]

@dataclass(frozen=True, kw_only=True)
class SteadyState:
    """Steady-state metrics of one replica under one load (seconds, requests/s, tokens/s)."""

    mode: str
    value: float
    saturated: bool
    capacity_rps: float  # highest sustainable Poisson rate (no SLO)
    throughput_rps: float
    output_tok_s: float
    total_tok_s: float
    steady_state_batch: float  # mean sequences running
    utilization: float  # offered load / capacity (closed loops: 1 when the engine is the limit)
    queue_s: float
    ttft_s: tuple[float, float, float, float]  # mean, p50, p90, p99
    tpot_s: tuple[float, float, float, float]
    e2e_mean_s: float
    e2e_p99_s: float = math.inf  # TTFT + output tokens x TPOT, per request
    e2e_s: tuple[float, float, float, float] = (math.inf,) * 4  # mean, p50, p90, p99
    limit: str  # what bounds the capacity: compute/memory step time, max_num_seqs, kv, budget



@dataclass(frozen=True)
class Rows:
    """Slot-independent draws of a steady model at R rates (arrays (R,) or (R, Q))."""

    lam: Array
    t: Array
    ttft_core: Array  # TTFT without any queueing
    resid: Array  # part of it spent waiting for the running step to end
    budget_wait: Array  # M/D/1 wait for token budget (open loops)
    e2e_core: Array  # mean TTFT core + decode time
    tpot: Array  # per-request time per output token
    out_tokens: Array  # (Q,) output tokens after the first, per draw
    service_scv: Array  # squared coefficient of variation of a slot's holding time
    memo: dict[str, Array] = field(default_factory=dict, compare=False, repr=False)

    def p99(self, name: str, x: Array) -> Array:
        """p99 per row of ``x``, remembered under ``name`` (slot-independent draws are
        shared by every max-batch level)."""
        if name not in self.memo:
            self.memo[name] = p99_rows(x)
        return self.memo[name]

    def take(self, idx: npt.NDArray[np.intp]) -> Rows:
        return Rows(lam=self.lam[idx], t=self.t[idx], ttft_core=self.ttft_core[idx],
                    resid=self.resid[idx], budget_wait=self.budget_wait[idx],
                    e2e_core=self.e2e_core[idx], tpot=self.tpot[idx],
                    out_tokens=self.out_tokens, service_scv=self.service_scv[idx])
