"""Capacity under SLOs: the highest Poisson request rate a replica sustains (goodput).

:func:`capacity` and :func:`capacity_levels` run the exact search
(:mod:`kvopt.serving.exact`) on the analytic steady state, cached by replica, lengths,
SLO and level; :func:`capacity_many` dispatches between that exact search and the screen
(:mod:`kvopt.serving.screen`, every replica at once); :func:`meets_at` checks one rate.
Candidates that share a replica share its step-cost table and steady model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from kvopt.caching import Memo
from kvopt.errors import InputError
from kvopt.serving.exact import checks, search
from kvopt.serving.features import PrefixCache, SpecDecode
from kvopt.serving.lengths import LengthDist
from kvopt.serving.replica import Replica
from kvopt.serving.results import CapacityResult, Slo, no_fit
from kvopt.serving.serve import check_context, steady_model
from kvopt.serving.steady import capacities

METHODS = ("exact", "screen")
# goodputs by (replica, lengths, SLO, prefix, spec, max_num_seqs, tolerance)
_CACHE: Memo[tuple[object, ...], CapacityResult] = Memo("capacity results", 65536)


def capacity(replica: Replica, *, input_dist: LengthDist, output_dist: LengthDist,
             slo: Slo | None = None, prefix: PrefixCache | None = None,
             spec: SpecDecode | None = None, max_num_seqs: int | None = None,
             rel_tol: float = 0.005) -> CapacityResult:
    """Goodput of ``replica`` for a length mix under ``slo``."""
    key = (replica, input_dist.label, output_dist.label, slo, prefix, spec, max_num_seqs,
           rel_tol)
    if key in _CACHE:
        return _CACHE[key]
    check_context(replica, input_dist, output_dist)
    return _CACHE.put(key, _capacity(replica, input_dist, output_dist, slo, prefix, spec,
                                     max_num_seqs, rel_tol))


def _capacity(replica: Replica, input_dist: LengthDist, output_dist: LengthDist,
              slo: Slo | None, prefix: PrefixCache | None, spec: SpecDecode | None,
              max_num_seqs: int | None, rel_tol: float) -> CapacityResult:
    if not replica.fits:
        return no_fit(replica)
    model = steady_model(replica, input_dist, output_dist, prefix=prefix, spec=spec,
                         max_num_seqs=max_num_seqs)
    return search({0: model}, slo or Slo(), rel_tol)[0]


def capacity_many(replicas: list[Replica], *, input_dist: LengthDist,
                  output_dist: LengthDist, slo: Slo | None = None,
                  method: str = "exact") -> list[CapacityResult]:
    """Goodput of many candidate replicas (the sizing MILP and the Pareto search call this).

    Candidates with the same replica are evaluated once. ``method``: ``"exact"``, the
    analytic model's search one replica at a time; ``"screen"``, the draw-free screening
    model over all of them at once (:mod:`kvopt.serving.screen`: ~20x faster per
    configuration over a catalog, its own approximation of the analytic model; its error
    is measured by ``benchmarks/screen_accuracy.py``)."""
    if method not in METHODS:
        raise InputError("method", method, f"one of: {', '.join(METHODS)}")
    if method == "screen":
        from kvopt.serving.screen import screen_levels

        unique = list(dict.fromkeys(replicas))
        found = screen_levels(unique, input_dist=input_dist, output_dist=output_dist,
                              slo=slo)
        by_rep = {rep: res[0] for rep, res in zip(unique, found, strict=True)}
        return [by_rep[rep] for rep in replicas]
    seen: dict[Replica, CapacityResult] = {}
    out = []
    for rep in replicas:
        if rep not in seen:
            seen[rep] = capacity(rep, input_dist=input_dist, output_dist=output_dist, slo=slo)
        out.append(seen[rep])
    return out


def capacity_levels(replica: Replica, *, input_dist: LengthDist, output_dist: LengthDist,
                    slo: Slo | None = None, batches: Sequence[int],
                    prefix: PrefixCache | None = None, spec: SpecDecode | None = None,
                    rel_tol: float = 0.005) -> list[CapacityResult]:
    """:func:`capacity` at each max-batch level of one replica, searched together.

    The levels differ only in their sequence slots, so the draws that do not depend on the
    slots (step times, TTFT without slot queueing, TPOT) are computed once per rate for all
    of them on a shared rate grid; each level adds its Erlang-C slot wait and checks the
    SLO. The bracket around each level's SLO boundary is then refined on sub-grids (all
    levels in one evaluation) until it is narrower than ``rel_tol``, like the bisection of
    :func:`capacity_of`."""
    slo = slo or Slo()
    keys = {b: (replica, input_dist.label, output_dist.label, slo, prefix, spec, b, rel_tol)
            for b in batches}
    todo = sorted({b for b in batches if keys[b] not in _CACHE})
    if todo:
        check_context(replica, input_dist, output_dist)
        if not replica.fits:
            found = {b: _capacity(replica, input_dist, output_dist, slo, prefix, spec, b,
                                  rel_tol) for b in todo}
        else:
            models = {b: steady_model(replica, input_dist, output_dist, prefix=prefix,
                                      spec=spec, max_num_seqs=b) for b in todo}
            # levels at or above the KV-cache limit have the same slots: solve one of each
            by_slots: dict[tuple[float, str], int] = {}
            for b, m in models.items():
                by_slots.setdefault((m.slots, m.limit_slots), b)
            missed: dict[int, float] = {}
            solved = search({b: models[b] for b in by_slots.values()}, slo, rel_tol, missed)
            found = {}
            for b, m in models.items():
                rep_b = by_slots[(m.slots, m.limit_slots)]
                found[b] = solved[rep_b]
                if rep_b in missed:
                    _miss(_fact_key(replica, input_dist, output_dist, prefix, spec, b), slo,
                          missed[rep_b])
        for b, res in found.items():
            _CACHE.put(keys[b], res)
    return [_CACHE[keys[b]] for b in batches]


def meets_at(replica: Replica, *, input_dist: LengthDist, output_dist: LengthDist, slo: Slo,
             batches: Sequence[int], rate_rps: float) -> list[bool]:
    """Whether ``replica`` at each max-batch level meets ``slo`` at the one Poisson rate
    ``rate_rps``: the same checks as :func:`capacity_levels` makes at each rate it tries,
    for the cost of one rate. Since the p99s rise with the rate, False at ``rate_rps``
    means the level's goodput is below it (the planner proves a candidate dominated with
    it, see :mod:`kvopt.confirm`). A level known to miss an SLO no tighter at a rate no
    higher (an earlier check or search) misses without being evaluated again."""
    check_context(replica, input_dist, output_dist)
    if not replica.fits or not rate_rps > 0:
        return [False] * len(batches)
    levels = list(dict.fromkeys(batches))
    keys = {b: _fact_key(replica, input_dist, output_dist, None, None, b) for b in levels}
    if all(_known_miss(keys[b], slo, rate_rps) for b in levels):
        return [False] * len(batches)
    models = {b: steady_model(replica, input_dist, output_dist, max_num_seqs=b)
              for b in levels}
    found = dict.fromkeys(models, False)
    base = next(iter(models.values()))
    if base.step_curve()[0] > rate_rps:  # else beyond every level's capacity (at most the
        # rate where step times diverge)
        lams = np.array([float(rate_rps)])
        live = levels
        rows = None
        if slo != Slo():
            # the SLO checks first, as if no capacity bound the rate: below a level's
            # capacity they are its checks, at or above it the level misses anyway, so a
            # level that fails them misses (and its capacity need not be solved)
            rows = base.rows(lams, base.step_times(lams))
            live = [b for b in levels if checks(models[b], rows, math.inf, slo)[0][0]]
        if live:
            caps = dict(zip(live, capacities([models[b] for b in live]), strict=True))
            live = [b for b in live if caps[b][0] > rate_rps]
        if live:
            if rows is None:
                rows = base.rows(lams, base.step_times(lams))
            for b in live:
                found[b] = bool(checks(models[b], rows, caps[b][0], slo)[0][0])
    for b in levels:
        if not found[b]:
            _miss(keys[b], slo, rate_rps)
    return [found[b] for b in batches]


# the rates at which each level of a replica missed an SLO: by (replica, lengths, prefix,
# spec, level), [(SLO, rate)] (a miss implies misses at higher rates and tighter SLOs)
_MISSES: Memo[tuple[object, ...], list[tuple[Slo, float]]] = Memo("SLO misses", 65536)


def _fact_key(replica: Replica, input_dist: LengthDist, output_dist: LengthDist,
              prefix: PrefixCache | None, spec: SpecDecode | None, level: int
              ) -> tuple[object, ...]:
    return (replica, input_dist.label, output_dist.label, prefix, spec, level)


def _no_looser(a: Slo, b: Slo) -> bool:
    """Whether ``a`` is at least as strict as ``b`` in every limit (None: no limit)."""
    return all(lb is None or (la is not None and la <= lb) for la, lb in (
        (a.ttft_p99_ms, b.ttft_p99_ms), (a.tpot_p99_ms, b.tpot_p99_ms),
        (a.e2e_p99_ms, b.e2e_p99_ms)))


def _implies(fact: tuple[Slo, float], slo: Slo, rate_rps: float) -> bool:
    return rate_rps >= fact[1] and _no_looser(slo, fact[0])


def _known_miss(key: tuple[object, ...], slo: Slo, rate_rps: float) -> bool:
    return any(_implies(f, slo, rate_rps) for f in _MISSES.get(key) or ())


def _miss(key: tuple[object, ...], slo: Slo, rate_rps: float) -> None:
    """Remember that a level misses ``slo`` at ``rate_rps`` (dropping what that implies)."""
    facts = _MISSES.get(key) or []
    if any(_implies(f, slo, rate_rps) for f in facts):
        return
    _MISSES.put(key, [f for f in facts if not _implies((slo, rate_rps), f[0], f[1])]
                + [(slo, rate_rps)])
