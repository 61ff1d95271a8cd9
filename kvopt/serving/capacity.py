"""Capacity under SLOs: the highest Poisson request rate a replica sustains (goodput).

For each candidate replica the saturation rate comes from the steady-state model; SLOs on
TTFT p99 and TPOT p99 then lower it. Both percentiles grow with the rate (checked by the
property tests), so the SLO-limited rate is found by bisection. Candidates that share a
replica share its step-cost table and steady model.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from kvopt.errors import InputError
from kvopt.serving.features import PrefixCache, SpecDecode
from kvopt.serving.lengths import LengthDist
from kvopt.serving.serve import check_context, steady_model
from kvopt.serving.steady import SteadyModel, SteadyState


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

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in d.items()}


def _meets(st: SteadyState, slo: Slo) -> tuple[bool, str]:
    if st.saturated:
        return False, "saturation"
    if slo.ttft_p99_ms is not None and not st.ttft_s[3] * 1e3 <= slo.ttft_p99_ms:
        return False, "ttft_p99 SLO"
    if slo.tpot_p99_ms is not None and not st.tpot_s[3] * 1e3 <= slo.tpot_p99_ms:
        return False, "tpot_p99 SLO"
    if slo.e2e_p99_ms is not None and not st.e2e_p99_s * 1e3 <= slo.e2e_p99_ms:
        return False, "e2e_p99 SLO"
    return True, ""


def capacity_of(model: SteadyModel, slo: Slo, *, rel_tol: float = 0.005) -> CapacityResult:
    """Goodput of one steady model under ``slo`` (bisection on the rate)."""
    cap, limit = model.capacity()
    if cap <= 0:
        return CapacityResult(goodput_rps=0.0, saturation_rps=0.0, steady_state_batch=0.0,
                              ttft_p99_ms=None, tpot_p99_ms=None, output_tok_s=0.0,
                              binding=limit, feasible=False)
    top = model.poisson(cap * 0.999)
    ok, why = _meets(top, slo)
    if ok:
        return _result(top, cap, limit)
    low = model.poisson(cap * 1e-4)
    ok_low, why_low = _meets(low, slo)
    if not ok_low:
        return CapacityResult(goodput_rps=0.0, saturation_rps=cap, steady_state_batch=0.0,
                              ttft_p99_ms=low.ttft_s[3] * 1e3, tpot_p99_ms=low.tpot_s[3] * 1e3,
                              output_tok_s=0.0, binding=why_low, feasible=False)
    lo, hi = cap * 1e-4, cap * 0.999
    best = low
    while hi - lo > rel_tol * hi:
        mid = (lo + hi) / 2
        st = model.poisson(mid)
        ok, why_mid = _meets(st, slo)
        if ok:
            lo, best = mid, st
        else:
            hi, why = mid, why_mid
    return _result(best, cap, why)


def _result(st: SteadyState, cap: float, binding: str) -> CapacityResult:
    return CapacityResult(goodput_rps=st.throughput_rps, saturation_rps=cap,
                          steady_state_batch=st.steady_state_batch,
                          ttft_p99_ms=st.ttft_s[3] * 1e3, tpot_p99_ms=st.tpot_s[3] * 1e3,
                          output_tok_s=st.output_tok_s, binding=binding, feasible=True,
                          e2e_p99_ms=st.e2e_p99_s * 1e3)


def capacity(replica: Any, *, input_dist: LengthDist, output_dist: LengthDist,
             slo: Slo | None = None, prefix: PrefixCache | None = None,
             spec: SpecDecode | None = None, max_num_seqs: int | None = None,
             rel_tol: float = 0.005) -> CapacityResult:
    """Goodput of ``replica`` for a length mix under ``slo``."""
    key = (replica, input_dist.label, output_dist.label, slo, prefix, spec, max_num_seqs,
           rel_tol)
    if key in _CACHE:
        return _CACHE[key]
    check_context(replica, input_dist, output_dist)
    if len(_CACHE) > 65536:
        _CACHE.clear()
    _CACHE[key] = _capacity(replica, input_dist, output_dist, slo, prefix, spec, max_num_seqs,
                            rel_tol)
    return _CACHE[key]


_CACHE: dict[tuple[object, ...], CapacityResult] = {}


def _capacity(replica: Any, input_dist: LengthDist, output_dist: LengthDist, slo: Slo | None,
              prefix: PrefixCache | None, spec: SpecDecode | None, max_num_seqs: int | None,
              rel_tol: float) -> CapacityResult:
    if not replica.fits:
        return CapacityResult(goodput_rps=0.0, saturation_rps=0.0, steady_state_batch=0.0,
                              ttft_p99_ms=None, tpot_p99_ms=None, output_tok_s=0.0,
                              binding="does not fit in memory", feasible=False)
    return capacity_of(steady_model(replica, input_dist, output_dist, prefix=prefix, spec=spec,
                                    max_num_seqs=max_num_seqs), slo or Slo(), rel_tol=rel_tol)


def capacity_many(replicas: list[Any], *, input_dist: LengthDist, output_dist: LengthDist,
                  slo: Slo | None = None) -> list[CapacityResult]:
    """Goodput of many candidate replicas (the sizing MILP and the Pareto search call this).

    Candidates with the same replica are evaluated once."""
    seen: dict[Any, CapacityResult] = {}
    out = []
    for rep in replicas:
        if rep not in seen:
            seen[rep] = capacity(rep, input_dist=input_dist, output_dist=output_dist, slo=slo)
        out.append(seen[rep])
    return out
