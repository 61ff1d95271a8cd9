"""``capacity: confirm``: the exact search only where it can change the plan.

A plan with one configuration per workload and a goal of cost, GPUs or power (or quality)
needs, per workload, only the candidates its MILP can choose. The screen ranks every
replica; the exact search (:func:`kvopt.serving.capacity.capacity_levels`) runs where the
answer matters, and each other replica is proven unneeded by at most one exact check
(:func:`kvopt.serving.capacity.meets_at`) instead of searched:

* :func:`prove_dominated`: a cheaper replica on the same GPU serves more, so
  :func:`kvopt.fleet.options.undominated` drops the replica's options anyway;
* :func:`prove_costlier` (goal cost or GPUs, one workload, no inventory or power cap):
  the replica cannot match the cheapest fleet found, so
  :func:`kvopt.fleet.options.cheapest_only` drops its options anyway.

Both checks rest on the p99s rising with the rate (checked by the property tests): a
replica that misses the SLO at a rate ``r`` at every max-batch level has exact goodputs
below ``r`` at every level. ``tests/test_space.py`` compares the options with those of the
exact search on every candidate, against brute force.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kvopt.caching import Memo

if TYPE_CHECKING:
    from kvopt.space import Candidate, Space, Workload

# evaluate_pruned's reason for the configurations prove_costlier dropped (not searched)
COSTLIER = "costlier: cannot match the cheapest fleet"
_NEED_TOL = 1e-9  # the cover constraint's tolerance (kvopt.fleet.constraints.add_cover)


@dataclass(frozen=True, kw_only=True)
class Bound:
    """The MILP pays the cheapest one-configuration fleet of a workload: ``per_replica``
    "usd" ($/h) or "gpus" times its replicas, solved to the relative gap ``rel_gap``;
    ``max_replicas`` caps the replicas of an option. An option is needed only if its fewest
    replicas cost no more than :meth:`limit` of the cheapest fleet."""

    per_replica: str = "usd"
    rel_gap: float = 1e-4
    max_replicas: int | None = None

    def __post_init__(self) -> None:
        if self.per_replica not in ("usd", "gpus"):
            raise ValueError(f"per_replica: {self.per_replica!r}")
        if not 0 <= self.rel_gap < 1:
            raise ValueError(f"rel_gap: {self.rel_gap!r}")

    def limit(self, cheapest: float) -> float:
        """The most a needed option's fleet can cost when the cheapest costs ``cheapest``:
        a solution within the gap (``|obj - bound| <= gap |obj|``), plus HiGHS's absolute
        gap and rounding."""
        return cheapest * (1.0 + self.rel_gap / (1.0 - self.rel_gap) + 1e-9) + 1e-6

    def weight(self, usd_per_hour: float, gpus: int) -> float:
        return usd_per_hour if self.per_replica == "usd" else float(gpus)


def replicas_needed(rate_rps: float, redundancy: int, goodput_rps: float) -> float:
    """The fewest replicas of one option that serve ``rate_rps`` with ``redundancy`` spares
    in the MILP: its cover constraint ``ceil(L / g + k - 1e-9)``, and at least ``k + 1``
    (the demand needs a replica beyond the spares); inf without goodput."""
    if not goodput_rps > 0:
        return math.inf
    return float(max(redundancy + 1,
                     math.ceil(rate_rps / goodput_rps + redundancy - _NEED_TOL)))


def replicas_enough(rate_rps: float, redundancy: int, goodput_rps: float,
                    max_replicas: int | None) -> float:
    """Replicas of one option that surely meet the demand ``g (x - k) >= L``:
    :func:`replicas_needed`, one more where the cover's tolerance falls short; inf beyond
    the option's replica bound (:func:`kvopt.fleet.problem.replica_bound` without an
    inventory: ``ceil(L / g - 1e-9) + k``, at most ``max_replicas``)."""
    n = replicas_needed(rate_rps, redundancy, goodput_rps)
    if not math.isfinite(n):
        return n
    if goodput_rps * (n - redundancy) < rate_rps:
        n += 1
    cap = math.ceil(rate_rps / goodput_rps - _NEED_TOL) + redundancy
    if max_replicas is not None:
        cap = min(cap, max_replicas)
    return n if n <= cap else math.inf


def _feasible(c: Candidate, w: Workload) -> bool:
    """The MILP can choose ``c`` at its goodput: it fits and its p99s meet the SLOs."""
    s = w.slo
    return (c.memory_per_gpu_gib <= c.gpu_memory_gib
            and (s.ttft_p99_ms is None or c.ttft_p99_ms <= s.ttft_p99_ms)
            and (s.tpot_p99_ms is None or c.tpot_p99_ms <= s.tpot_p99_ms)
            and (s.e2e_p99_ms is None or c.e2e_p99_ms <= s.e2e_p99_ms))


Search = Callable[[int], "list[Candidate]"]
_PROVEN: Memo[tuple[object, ...], frozenset[int]] = Memo("dominance proofs", 4096)


def _screen_best(workload: Workload, space: Space, reps: list[Any]) -> list[float]:
    """Each replica's best goodput over the levels, by the screen (0: none)."""
    from kvopt.serving.screen import screen_levels

    screened = screen_levels(reps, input_dist=workload.input_dist,
                             output_dist=workload.output_dist, slo=workload.slo,
                             batches=space.batches) if reps else []
    return [max((r.goodput_rps for r in lv if r.feasible), default=0.0) for lv in screened]


def _misses_at(workload: Workload, space: Space, rep: Any, rate_rps: float) -> bool:
    """One exact check: ``rep`` misses the SLO at ``rate_rps`` at every level (so each
    level's goodput is below it)."""
    from kvopt.serving.capacity import meets_at

    return not any(meets_at(rep, input_dist=workload.input_dist,
                            output_dist=workload.output_dist, slo=workload.slo,
                            batches=space.batches, rate_rps=rate_rps))


def prove_dominated(workload: Workload, space: Space, items: Sequence[tuple[int, Any, float]],
                    by_quality: bool, search: Search) -> frozenset[int]:
    """The indices of the replicas ``items`` ((GPUs, replica, quality loss) each) proven
    dominated: the exact search runs on those no cheaper replica of the same GPU beats on
    the screen (same or fewer GPUs, and with ``by_quality`` the same or lower quality
    loss); each other replica is proven dominated by one exact check: at every batch level
    it misses the SLO at the best exact goodput ``g`` of a cheaper replica on its GPU that
    fits in memory. Its goodput is then below ``g``, so that replica serves more for no
    more dollars, GPUs, kW or quality loss, and :func:`kvopt.fleet.options.undominated`
    would drop it. A replica that passes the check gets the exact search too.
    ``search(i)``: replica ``i``'s candidates by the exact search. Cached by (replicas,
    lengths, SLO, batch levels, ``by_quality``): the rest of a workload (its name, rate,
    prices, regions) does not change it."""
    key = (tuple(it[1] for it in items), workload.input_dist.label,
           workload.output_dist.label, workload.slo, space.batches, by_quality)
    hit = _PROVEN.get(key)
    if hit is not None:
        return hit
    best = _screen_best(workload, space, [it[1] for it in items])

    def cheaper(a: int, b: int) -> bool:  # a costs no more than b in every column
        (gpus_a, rep_a, loss_a), (gpus_b, rep_b, loss_b) = items[a], items[b]
        return (a != b and rep_a.gpu.id == rep_b.gpu.id and gpus_a <= gpus_b
                and (not by_quality or loss_a <= loss_b))

    ranked = [b for b in range(len(items))
              if any(cheaper(a, b) and best[a] > best[b] for a in range(len(items)))]
    # each searched replica's exact goodputs, at the levels that fit in memory
    exact = {i: [c.goodput_rps for c in search(i) if c.memory_per_gpu_gib <= c.gpu_memory_gib]
             for i in range(len(items)) if i not in ranked}
    proven = set()
    for b in ranked:
        top = max((g for a, gs in exact.items() if cheaper(a, b) for g in gs), default=0.0)
        if top > 0 and _misses_at(workload, space, items[b][1], top):
            proven.add(b)
    return _PROVEN.put(key, frozenset(proven))


def prove_costlier(workload: Workload, space: Space, items: Sequence[tuple[float, int, Any]],
                   bound: Bound, search: Search) -> frozenset[int]:
    """The indices of the replicas ``items`` (($/h, GPUs, replica) each) proven unable to
    serve the workload alone as cheaply as :meth:`Bound.limit` of the cheapest fleet found.

    The cheapest fleet ``C`` found so far (the incumbent) is the least ``w x replicas``
    (``w`` dollars or GPUs per replica) over the exactly searched replicas' feasible
    candidates (fit, meet the SLOs, within ``max_replicas``). A replica of weight ``w``
    can then only matter with at most ``n = floor(limit(C) / w)`` replicas, so with a
    goodput of at least ``r = L / (n - k)`` (``L`` the rate, ``k`` the spare replicas; a
    hair lower for rounding). If even ``k + 1`` replicas cost more, it is proven without a
    check; else one exact check at ``r`` proves it when it misses the SLO there at every
    level (every level's goodput is below ``r``, so it needs more than ``n`` replicas);
    else it gets the exact search and may lower ``C``. Whatever is proven costs more than
    ``limit(C)`` >= ``limit`` of the cheapest fleet over every candidate, which
    :func:`kvopt.fleet.options.cheapest_only` drops from the options anyway.

    The order only decides how much is proven: the screen ranks a first batch of replicas
    (those with the most bandwidth per dollar) to find an incumbent, then every replica
    its price does not already rule out; each is visited cheapest (screened) fleet first.
    Cached like :func:`prove_dominated`, with the rate, spares, weights and bound."""
    rate, k = workload.rate_rps, workload.redundancy
    weight = [bound.weight(usd, gpus) for usd, gpus, _ in items]
    reps = [it[2] for it in items]
    key = (tuple(reps), tuple(weight), workload.input_dist.label, workload.output_dist.label,
           workload.slo, space.batches, rate, k, bound)
    hit = _PROVEN.get(key)
    if hit is not None:
        return hit
    est: dict[int, float] = {}

    def screen(idx: list[int]) -> None:
        best = _screen_best(workload, space, [reps[i] for i in idx])
        est.update({i: weight[i] * replicas_needed(rate, k, g)
                    for i, g in zip(idx, best, strict=True)})

    cheapest = math.inf
    proven: set[int] = set()

    def priced_out(i: int) -> bool:
        return weight[i] * (k + 1) > bound.limit(cheapest)

    def visit(i: int) -> None:
        nonlocal cheapest
        w = weight[i]
        if math.isfinite(cheapest):
            if priced_out(i):
                proven.add(i)
                return
            n = math.floor(bound.limit(cheapest) / w * (1 + 1e-12))
            # goodputs below r need more than n replicas, with a margin for rounding
            r = rate / ((n - k + _NEED_TOL) * (1 + _NEED_TOL))
            if _misses_at(workload, space, reps[i], r):
                proven.add(i)
                return
        for c in search(i):
            if _feasible(c, workload):
                cheapest = min(cheapest, w * replicas_enough(rate, k, c.goodput_rps,
                                                             bound.max_replicas))

    def ranked(idx: list[int]) -> list[int]:
        return sorted(idx, key=lambda j: (est.get(j, math.inf), weight[j], j))

    # bandwidth per dollar (or per GPU) first: LLM serving is mostly memory-bound
    by_value = sorted(range(len(items)), key=lambda j: (
        weight[j] / (reps[j].gpu.bandwidth_bytes_s * items[j][1]), j))
    first = by_value[:_FIRST]
    screen(first)
    for i in ranked(first):
        visit(i)
    for i in by_value[_FIRST:]:
        visit(i)
    return _PROVEN.put(key, frozenset(proven))


_FIRST = 24  # replicas screened before an incumbent exists
