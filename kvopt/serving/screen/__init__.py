"""Screening capacity: the goodput of thousands of candidate configurations in one pass.

:func:`kvopt.serving.capacity.capacity_levels` searches each replica's SLO boundary on the
analytic model's 1,024 quadrature draws per rate (0.25-0.5 ms a rate, 15-60 rates a
replica). The screen answers the same question from draw-free laws, arrays over every
replica, max-batch level and rate at once:

1. every replica's step-time curve, the rate where it diverges and where prompts fill the
   token budget (:mod:`.steps`, :class:`.model.Screen`);
2. the laws that do not depend on the slots, TPOT and the TTFT core (:mod:`.tpot`,
   :mod:`.ttft`, :mod:`.prefill`), on a grid of rates per replica (:mod:`.laws`);
3. each level's checks, as the exact search has them (saturation: the rate against the
   replica's limit and the load against the level's slots; each SLO: its p99 against the
   limit, the waits for the budget and the slots added in closed form): on the grid, then
   inside the first failing interval by regula falsi (Illinois), the slot-independent laws
   interpolated between its ends (log rate) (:mod:`.search`).

The screen is its own approximation of the analytic model: ``benchmarks/screen_accuracy.py``
measures its goodput against :func:`capacity_levels`. Prefix caching and speculative
decoding are not screened; replicas with attention data parallelism or pipeline stages
(:mod:`kvopt.serving.parallel_step`) get the exact search.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kvopt.errors import InputError
from kvopt.serving.lengths import LengthDist
from kvopt.serving.replica import Replica
from kvopt.serving.results import CapacityResult, Slo, no_fit
from kvopt.serving.screen.model import Screen
from kvopt.serving.screen.search import search
from kvopt.serving.serve import check_context

__all__ = ["Screen", "screen_levels"]


def screen_levels(replicas: Sequence[Replica], *, input_dist: LengthDist,
                  output_dist: LengthDist, slo: Slo | None = None,
                  batches: Sequence[int] | None = None) -> list[list[CapacityResult]]:
    """Goodput of every replica at every max-batch level, ``[replica][level]``, by the
    screen (see the module docstring); ``batches`` None: each replica's engine cap on
    running sequences (one level)."""
    slo = slo or Slo()
    for b in batches or ():
        if not b >= 1:
            raise InputError("batch levels", b, "must be >= 1")
    for rep in replicas:
        check_context(rep, input_dist, output_dist)
    width = len(batches) if batches is not None else 1
    # attention DP and pipeline stages compose the step differently: the exact model
    exact = [i for i, rep in enumerate(replicas) if rep.fits and (rep.dp > 1 or rep.pp > 1)]
    fit = [i for i, rep in enumerate(replicas) if rep.fits and i not in exact]
    out: list[list[CapacityResult]] = [
        [] if rep.fits else [no_fit(rep) for _ in range(width)]
        for rep in replicas]
    if fit:
        sc = Screen([replicas[i] for i in fit], input_dist, output_dist)
        levels = np.array([list(batches) if batches is not None
                           else [replicas[i].engine.max_num_seqs] for i in fit],
                          dtype=np.float64)
        for k, found in zip(fit, search(sc, slo, levels), strict=True):
            out[k] = found
    if exact:
        from kvopt.serving.capacity import capacity_levels

        for k in exact:
            rep = replicas[k]
            out[k] = capacity_levels(rep, input_dist=input_dist, output_dist=output_dist,
                                     slo=slo, batches=list(batches) if batches is not None
                                     else [rep.engine.max_num_seqs // rep.dp])  # per rank
    return out


