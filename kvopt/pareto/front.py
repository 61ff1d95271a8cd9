"""Fronts and their measures: the non-dominated filter, the :class:`Front` of a search,
objective normalization, hypervolume and the knee (balanced pick).

pymoo is imported inside the functions that use it (non-dominated sorting, the hypervolume
indicator), so importing this module stays light.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from kvopt.pareto.evaluation import Array, Evaluation, IntArray


def non_dominated(F: Array) -> IntArray:
    """Indices of the non-dominated rows of F (duplicates kept once). Row ``a`` dominates
    ``b`` when ``a <= b`` in every objective and ``a < b`` in one (all minimized)."""
    from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

    if F.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    _, first = np.unique(F, axis=0, return_index=True)
    first = np.sort(first)
    front = NonDominatedSorting().do(F[first], only_non_dominated_front=True)
    return np.asarray(first[np.asarray(front, dtype=np.int64)], dtype=np.int64)


@dataclass
class Front:
    """A front: decision indices, objectives, metrics, and how it was found."""

    idx: IntArray
    F: Array
    metrics: dict[str, Array]
    method: str
    evaluations: int
    seconds: float
    generations: list[Array] = field(default_factory=list)  # feasible F of each generation


def feasible_front(idx: IntArray, ev: Evaluation, *, method: str, evaluations: int,
                   started: float) -> Front:
    """The front of evaluated points ``idx`` (evaluation ``ev``): the non-dominated ones
    among the feasible (every ``g <= 0``). ``started``: the search's ``time.perf_counter()``
    at its start (the front's ``seconds`` run to now)."""
    feas = np.nonzero(np.all(ev.G <= 0, axis=1))[0]
    nd = feas[non_dominated(ev.F[feas])]
    return Front(idx[nd], ev.F[nd], {k: v[nd] for k, v in ev.metrics.items()}, method,
                 evaluations, time.perf_counter() - started)


@dataclass(frozen=True)
class Normalizer:
    """Maps objectives to [0, 1] with the ideal and nadir of a reference set,
    ``(F - ideal) / (nadir - ideal)`` (an objective constant over the set is scaled by 1);
    the hypervolume reference point is 1.1 in every objective."""

    ideal: Array
    nadir: Array

    @classmethod
    def of(cls, *fronts: Array) -> Normalizer:
        allf = np.vstack([f for f in fronts if f.size])
        ideal, nadir = allf.min(axis=0), allf.max(axis=0)
        return cls(ideal, np.where(nadir > ideal, nadir, ideal + 1.0))

    def __call__(self, F: Array) -> Array:
        return np.asarray((F - self.ideal) / (self.nadir - self.ideal), dtype=np.float64)


def hypervolume(F: Array, norm: Normalizer) -> float:
    """Hypervolume of F (normalized) w.r.t. the reference point 1.1 (pymoo's HV): the
    measure of the region dominated by the front and bounded by the reference point,
    ``vol(U_i [f_i, r])`` with ``r = (1.1, ..., 1.1)``; normalized values above 1.1 are
    clipped to it."""
    from pymoo.indicators.hv import HV

    if F.size == 0:
        return 0.0
    k = F.shape[1]
    Fn = np.minimum(norm(F), 1.1)
    return float(HV(ref_point=np.full(k, 1.1))(Fn))


KNEE_RULE = ("least total regret: each objective's excess over the front's best, relative "
             "to that best for cost, GPUs, throughput and latencies without an SLO (+100% "
             "counts 1), as a fraction of the SLO for latencies with one, per percentage "
             "point for quality loss; ties go to the cheaper point")


def knee(F: Array, norm: Normalizer | None = None, *,
         objectives: tuple[str, ...] | None = None,
         slo_ms: dict[str, float | None] | None = None) -> int:
    """The point a reviewer would pick (:data:`KNEE_RULE`). With the objectives' names,
    each objective ``j`` with front best ``b_j`` contributes its regret ``r_ij``:

    - cost, gpus and latencies without an SLO: ``(F_ij - b_j) / b_j`` (doubling counts 1);
    - ttft_p99/tpot_p99 with an SLO ``S``: ``(F_ij - b_j) / S`` (a latency well inside
      its SLO is worth little more money);
    - throughput (negated capacity): ``(F_ij - b_j) / |b_j|`` (the capacity given up);
    - quality: ``F_ij - b_j`` percentage points.

    The knee is ``argmin_i sum_j r_ij``, the cheapest among equals. Without names (or for
    a best of 0) an objective is scaled by its range over the front instead (the L1
    distance to the ideal point). ``norm`` is not used."""
    if F.shape[0] == 0:
        raise ValueError("an empty front has no knee")
    best = F.min(axis=0)
    span = F.max(axis=0) - best
    regret = np.zeros(F.shape[0])
    slo = slo_ms or {}
    for j in range(F.shape[1]):
        name = objectives[j] if objectives else ""
        d = F[:, j] - best[j]
        if name in ("ttft_p99", "tpot_p99") and slo.get(name):
            regret += d / float(slo[name])  # type: ignore[arg-type]
        elif name == "quality":
            regret += d
        elif name and abs(best[j]) > 0:
            regret += d / abs(best[j])
        elif span[j] > 0:
            regret += d / span[j]
    cost = F[:, objectives.index("cost")] if objectives and "cost" in objectives else (
        np.zeros(F.shape[0]))
    order = np.lexsort((cost, np.round(regret, 9)))
    return int(order[0])
