"""Inputs of a sizing problem and the discrete options the MILP chooses among."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from kvopt.choices import GOALS
from kvopt.errors import InputError
from kvopt.space import Candidate, Space, Workload

if TYPE_CHECKING:
    from kvopt.fleet.schedule.problem import Horizon

OBJECTIVES = GOALS
LOAD_LEVELS = (1.0, 0.75, 0.5, 0.25)  # operating points offered to latency objectives


@dataclass(frozen=True, kw_only=True)
class FleetProblem:
    """Workloads to serve and the constraints on the fleet."""

    workloads: tuple[Workload, ...]
    space: Space
    availability: tuple[tuple[str, int], ...] = ()  # GPU id -> most GPUs of that type
    budget_usd_h: float | None = None
    power_cap_kw: float | None = None
    objective: str = "cost"
    allow_mixing: bool = False  # several configurations per workload
    max_replicas: int | None = None  # per option, on top of the data-derived bound
    # demand over time and ways to pay (kvopt schedule); None: one rate, on-demand prices
    horizon: Horizon | None = None

    @cached_property
    def inventory(self) -> dict[str, int]:
        """GPU caps by inventory key (``GPU`` or ``region:GPU``), computed once (every
        option's replica bound reads it)."""
        caps = dict(self.availability)
        for r in self.space.regions:
            for gpu, n in r.availability:
                caps[f"{r.name}:{gpu}"] = n
        return caps

    def __post_init__(self) -> None:
        if not self.workloads:
            raise InputError("workloads", (), "at least one workload is needed")
        names = [w.name for w in self.workloads]
        if len(set(names)) != len(names):
            raise InputError("workloads", names, "workload names must be unique")
        if self.objective not in OBJECTIVES:
            raise InputError("objective", self.objective, f"allowed: {', '.join(OBJECTIVES)}")
        if self.budget_usd_h is not None and not self.budget_usd_h > 0:
            raise InputError("budget_usd_h", self.budget_usd_h, "must be > 0")
        if self.power_cap_kw is not None and not self.power_cap_kw > 0:
            raise InputError("power_cap_kw", self.power_cap_kw, "must be > 0")
        known = [r.name for r in self.space.regions]
        for w in self.workloads:
            for r in w.regions:
                if r not in known:
                    raise InputError(f"workload {w.name}: regions", r,
                                     "names no region of the fleet; allowed: "
                                     + (", ".join(known) or "(the fleet defines none)"),
                                     "define it under regions: or drop it from the list")
        for gpu, n in self.availability:
            if n < 0:
                raise InputError(f"availability[{gpu}]", n, "must be >= 0")
        if self.objective in ("latency", "balanced"):
            for w in self.workloads:
                if (w.slo.ttft_p99_ms is None and w.slo.tpot_p99_ms is None
                        and w.slo.e2e_p99_ms is None):
                    raise InputError(f"workload {w.name}: slo", None,
                                     f"the '{self.objective}' objective minimizes the worst "
                                     "SLO ratio", "give a TTFT or TPOT p99 SLO")
        if self.objective == "throughput" and self.budget_usd_h is None:
            raise InputError("budget_usd_h", None,
                             f"the '{self.objective}' objective spends a budget",
                             "give --budget-usd-h")


@dataclass(frozen=True, kw_only=True)
class Option:
    """A candidate at an operating point: serve at most ``rate_cap_rps`` per replica."""

    index: int
    workload: int  # index into problem.workloads
    candidate: Candidate
    level: float  # fraction of the candidate's goodput
    rate_cap_rps: float
    ttft_p99_ms: float  # at rate_cap_rps per replica
    tpot_p99_ms: float
    e2e_p99_ms: float
    slo_ratio: float  # max(p99 / SLO) over the workload's SLOs at that point
    upper: int  # big-M: most replicas the option can usefully take (from data)


def slo_ratio(w: Workload, ttft_p99_ms: float, tpot_p99_ms: float,
              e2e_p99_ms: float = 0.0) -> float:
    ratios = []
    if w.slo.e2e_p99_ms is not None:
        ratios.append(e2e_p99_ms / w.slo.e2e_p99_ms)
    if w.slo.ttft_p99_ms is not None:
        ratios.append(ttft_p99_ms / w.slo.ttft_p99_ms)
    if w.slo.tpot_p99_ms is not None:
        ratios.append(tpot_p99_ms / w.slo.tpot_p99_ms)
    return max(ratios, default=0.0)


def replica_bound(w: Workload, rate_cap: float, gpus_per_replica: int,
                  problem: FleetProblem, gpu: str) -> int:
    """Big-M for one option, from data: enough replicas for the demand plus redundancy,
    never more than the GPU inventory (or the user's cap) allows. ``gpu`` is the
    candidate's inventory key (``GPU`` or ``region:GPU``)."""
    need = math.ceil(w.rate_rps / rate_cap - 1e-9) + w.redundancy
    avail = problem.inventory
    if gpu in avail:
        need = min(need, avail[gpu] // gpus_per_replica)
    if problem.max_replicas is not None:
        need = min(need, problem.max_replicas)
    return max(need, 0)
