"""Inputs of a schedule: the horizon (periods, ways to pay, the spot rule, budgets) and the
options the MILP picks from — each candidate at its rate cap, with its prices per way to pay.

The options come from the plan's (:func:`kvopt.fleet.options.build_options`, with every
workload at its peak rate): the physics runs once per workload and candidate, whatever the
number of periods.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from kvopt.catalog.payments import PaymentBook, payment_book
from kvopt.choices import COMMITTED_KINDS, FLEXIBLE_KINDS, PAYMENT_KINDS, SCHEDULE_GOALS
from kvopt.errors import InfeasiblePlanError, InputError
from kvopt.fleet.demand import Profile, flat, rates_for
from kvopt.fleet.options import Evaluator, build_options
from kvopt.fleet.problem import FleetProblem, Option


@dataclass(frozen=True, kw_only=True)
class SpotRule:
    """How far spot capacity may be trusted: with ``spares_not_spot`` the N+k spare
    replicas of a workload are never spot (spot never carries the redundancy alone);
    ``max_share`` caps the share of a period's capacity spot may give."""

    spares_not_spot: bool = True
    max_share: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.max_share <= 1.0:
            raise InputError("spot_rule.max_share", self.max_share, "must be in [0, 1]",
                             "e.g. 0.5: spot gives at most half of a period's capacity")


@dataclass(frozen=True, kw_only=True)
class Horizon:
    """Demand over time and how the GPUs may be paid for."""

    profile: Profile = field(default_factory=flat)
    payments: tuple[str, ...] = PAYMENT_KINDS
    spot_rule: SpotRule = field(default_factory=SpotRule)
    budget_usd: float | None = None  # over the whole horizon
    upfront_budget_usd: float | None = None  # paid at purchase (reserved upfront, owned)
    price_book: str | None = None  # a user's file over models/prices.yaml's payments:
    owned_gpus: tuple[tuple[str, int], ...] = ()  # inventory key -> most owned GPUs

    def __post_init__(self) -> None:
        bad = [p for p in self.payments if p not in PAYMENT_KINDS]
        if bad or not self.payments:
            raise InputError("payments", bad or self.payments,
                             "allowed: " + ", ".join(PAYMENT_KINDS),
                             "list one or more ways to pay")
        for name, v in (("budget_usd", self.budget_usd),
                        ("upfront_budget_usd", self.upfront_budget_usd)):
            if v is not None and not v > 0:
                raise InputError(name, v, "must be > 0")


@dataclass(frozen=True, kw_only=True)
class Pay:
    """One way to pay for one option's GPUs."""

    kind: str
    usd_per_gpu_hour: float  # hourly equivalent
    upfront_usd_per_gpu: float = 0.0
    availability: float = 1.0  # expected share of capacity there (spot: 1 - interruption)

    @property
    def committed(self) -> bool:
        return self.kind in COMMITTED_KINDS


@dataclass(frozen=True, kw_only=True)
class SOption:
    """A plan option (candidate at its rate cap) with the ways it can be paid for."""

    index: int
    option: Option
    pays: tuple[Pay, ...]

    @property
    def workload(self) -> int:
        return self.option.workload

    @property
    def committed(self) -> tuple[Pay, ...]:
        return tuple(p for p in self.pays if p.kind in COMMITTED_KINDS)

    @property
    def flexible(self) -> tuple[Pay, ...]:
        return tuple(p for p in self.pays if p.kind in FLEXIBLE_KINDS)

    def pay(self, kind: str) -> Pay | None:
        return next((p for p in self.pays if p.kind == kind), None)


@dataclass(frozen=True)
class ScheduleData:
    """Everything the schedule MILP reads."""

    problem: FleetProblem
    horizon: Horizon
    options: list[SOption]
    demand: list[tuple[float, ...]]  # per workload: requests/s per period
    notes: tuple[str, ...] = ()

    @property
    def periods(self) -> range:
        return range(self.horizon.profile.periods)

    @property
    def hours(self) -> tuple[float, ...]:
        return self.horizon.profile.hours

    def need(self, j: int, t: int) -> int:
        """Replicas option j needs in period t at full availability (N + k)."""
        o = self.options[j]
        w = self.problem.workloads[o.workload]
        return math.ceil(self.demand[o.workload][t] / o.option.rate_cap_rps
                         + w.redundancy - 1e-9)

    def upper(self, j: int, t: int | None = None, *, capped: bool = True) -> int:
        """Big-M from data: the replicas option j can usefully run in period t (None: any
        period; committed replicas never exceed the non-spot peak), capped by the
        inventory of its region and GPU (unless not ``capped``) and the user's cap."""
        o = self.options[j]
        periods = self.periods if t is None else (t,)
        spot = o.pay("spot")
        a = spot.availability if spot and t is not None else 1.0
        w = self.problem.workloads[o.workload]
        need = max(math.ceil((self.demand[o.workload][s] / o.option.rate_cap_rps
                              + w.redundancy) / a - 1e-9) for s in periods)
        need = max(need, w.redundancy + 1 if w.redundancy else 0)
        cap = self.problem.inventory.get(o.option.candidate.inventory_key)
        if cap is not None and capped:
            need = min(need, cap // o.option.candidate.tp)
        if self.problem.max_replicas is not None:
            need = min(need, self.problem.max_replicas)
        return max(need, 0)


def _pays(o: Option, problem: FleetProblem, horizon: Horizon, book: PaymentBook
          ) -> tuple[Pay, ...]:
    """The ways to pay for option o: on-demand at the plan's price (a fleet region's own
    price, else the book's region price, else the catalog's), the book's other offers for
    its region and GPU, each only when the horizon allows it."""
    c = o.candidate
    offers = book.for_gpu(c.gpu, c.region)
    region = next((r for r in problem.space.regions if r.name == c.region), None)
    own_price = region is not None and c.gpu in dict(region.prices_usd_h)
    out = []
    for kind in horizon.payments:
        if kind == "on_demand":
            od = offers.get("on_demand")
            price = od.usd_per_gpu_hour if od and c.region and not own_price \
                else c.usd_per_hour / c.tp
            out.append(Pay(kind=kind, usd_per_gpu_hour=price))
        elif kind in offers:
            of = offers[kind]
            out.append(Pay(kind=kind, usd_per_gpu_hour=of.usd_per_gpu_hour,
                           upfront_usd_per_gpu=of.upfront_usd_per_gpu,
                           availability=of.availability))
    return tuple(out)


def schedule_data(problem: FleetProblem, *, evaluator: Evaluator | None = None,
                  options: list[Option] | None = None) -> ScheduleData:
    """The schedule's options and demand: candidates evaluated once (at each workload's peak
    rate, which only sets the replica bounds), priced per way to pay."""
    horizon = problem.horizon or Horizon()
    if problem.objective not in SCHEDULE_GOALS:
        raise InputError("goal", problem.objective, "a schedule optimizes one of: "
                         + ", ".join(SCHEDULE_GOALS),
                         "use kvopt size for latency, balanced or throughput")
    prof = horizon.profile
    demand = [rates_for(prof, w.name, w.rate_rps) for w in problem.workloads]
    peak = tuple(replace(w, rate_rps=max(max(d), 1e-9))
                 for w, d in zip(problem.workloads, demand, strict=True))
    at_peak = replace(problem, workloads=peak)
    opts = options if options is not None else build_options(
        at_peak, evaluator=evaluator).options
    book = payment_book(horizon.price_book)
    sopts: list[SOption] = []
    dropped = 0
    for o in opts:
        c = o.candidate
        w = problem.workloads[o.workload]
        if c.memory_per_gpu_gib > c.gpu_memory_gib or _misses_slo(o, w):
            dropped += 1
            continue
        pays = _pays(o, problem, horizon, book)
        if pays:
            sopts.append(SOption(index=len(sopts), option=o, pays=pays))
    for wi, w in enumerate(problem.workloads):
        if not any(s.workload == wi for s in sopts):
            raise InfeasiblePlanError(
                f"workload '{w.name}': no candidate can be paid for with "
                f"{', '.join(horizon.payments)} in its regions",
                data={"workload": w.name})
    notes = (f"{dropped} options exceed GPU memory or an SLO at their rate cap and were "
             "left out",) if dropped else ()
    return ScheduleData(problem=problem, horizon=horizon, options=sopts, demand=demand,
                        notes=notes)


def _misses_slo(o: Option, w: Any) -> bool:
    s = w.slo
    return any(lim is not None and v > lim * (1 + 1e-9) for v, lim in (
        (o.ttft_p99_ms, s.ttft_p99_ms), (o.tpot_p99_ms, s.tpot_p99_ms),
        (o.e2e_p99_ms, s.e2e_p99_ms)))
