"""Screening capacity: the goodput of thousands of candidate configurations in one pass.

:func:`kvopt.serving.capacity.capacity_levels` searches each replica's SLO boundary on the
analytic model's 1,024 quadrature draws per rate (0.25-0.5 ms a rate, 15-60 rates a
replica). The screen answers the same question from draw-free laws, arrays over every
replica, max-batch level and rate at once:

1. every replica's step-time curve, the rate where it diverges and where prompts fill the
   token budget (:mod:`kvopt.serving.screen_steps`);
2. the laws that do not depend on the slots, TPOT and the TTFT core
   (:mod:`kvopt.serving.screen_tpot`, :mod:`kvopt.serving.screen_ttft`), on a grid of
   rates per replica;
3. each level's checks, as the exact search has them (saturation: the rate against the
   replica's limit and the load against the level's slots; each SLO: its p99 against the
   limit, the waits for the budget and the slots added in closed form): on the grid, then
   inside the first failing interval by regula falsi (Illinois), the slot-independent laws
   interpolated between its ends (log rate).

The screen is its own approximation of the analytic model: ``benchmarks/screen_accuracy.py``
measures its goodput against :func:`capacity_levels`. Prefix caching and speculative
decoding are not screened.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from kvopt.errors import InputError
from kvopt.serving.capacity import CapacityResult, Slo
from kvopt.serving.lengths import LengthDist
from kvopt.serving.screen_prefill import PromptLaw
from kvopt.serving.screen_search import search, unserved
from kvopt.serving.screen_steps import Curves, Mix, StackedSteps
from kvopt.serving.screen_tpot import Lengths, TpotLaw, tpot_law
from kvopt.serving.screen_ttft import TtftLaw, ttft_law
from kvopt.serving.serve import check_context, step_cost_for
from kvopt.serving.steady import SteadyModel

Array = npt.NDArray[np.float64]
Index = npt.NDArray[np.intp]


@dataclass(frozen=True)
class _Laws:
    """Slot-independent laws at rows of (replica, rate)."""

    lam: Array
    tpot: TpotLaw
    tpot_p99: Array
    ttft: TtftLaw

    def take(self, idx: Index) -> _Laws:
        tp = self.tpot
        return _Laws(lam=self.lam[idx], tpot=TpotLaw(mean=tp.mean[idx], sd=tp.sd[idx],
                                                     skew=tp.skew[idx], weight=tp.weight),
                     tpot_p99=self.tpot_p99[idx], ttft=self.ttft.take(idx))

    @staticmethod
    def concat(a: _Laws, b: _Laws) -> _Laws:
        """The rows of ``a`` then those of ``b`` (time grids padded to one width)."""
        ta, tb = a.ttft, b.ttft
        width = max(ta.x.shape[1], tb.x.shape[1])

        def pad(v: Array) -> Array:
            return np.concatenate([v, np.repeat(v[:, -1:], width - v.shape[1], 1)], 1)

        tt = TtftLaw(x=np.concatenate([pad(ta.x), pad(tb.x)]),
                     surv=np.concatenate([pad(ta.surv), pad(tb.surv)]),
                     core_mean=np.concatenate([ta.core_mean, tb.core_mean]),
                     hold_scv=np.concatenate([ta.hold_scv, tb.hold_scv]))
        tp = TpotLaw(mean=np.concatenate([a.tpot.mean, b.tpot.mean]),
                     sd=np.concatenate([a.tpot.sd, b.tpot.sd]),
                     skew=np.concatenate([a.tpot.skew, b.tpot.skew]), weight=a.tpot.weight)
        return _Laws(lam=np.concatenate([a.lam, b.lam]), tpot=tp,
                     tpot_p99=np.concatenate([a.tpot_p99, b.tpot_p99]), ttft=tt)


class Screen:
    """The screening model of many replicas (that fit in memory) for one length mix."""

    def __init__(self, replicas: Sequence[Any], input_dist: LengthDist,
                 output_dist: LengthDist) -> None:
        self.replicas = list(replicas)
        costs = [step_cost_for(rep) for rep in self.replicas]
        ms = [SteadyModel(sc, input_dist, output_dist) for sc in costs]
        self.st = StackedSteps.build(costs, np.array([m.ctx for m in ms]),
                                     np.array([m.i_mean for m in ms]))
        self.mix = Mix.of(ms)
        self.curves = Curves.trace(self.st, self.mix)
        self.lengths = Lengths.of(input_dist, output_dist)
        self.prompt = PromptLaw.of(input_dist)
        self.req_s = np.array([m.req_s for m in ms])
        self.kv_slots = np.array([m.kv_slots for m in ms])
        self.o_mean = np.array([m.o_mean for m in ms])
        self.top = np.minimum(self.curves.lam_div, self._budget_rate())

    def _budget_rate(self) -> Array:
        """Per replica, the rate where prompt tokens per step reach the budget (inf if the
        step-time curve diverges first): bisection in log rate."""
        r = np.arange(len(self.replicas))
        hi = self.curves.lam_div * (1 - 1e-9)
        t_hi, _ = self.curves.at(r, hi)
        over = hi * t_hi * self.mix.i_new >= self.mix.budget
        lo = np.log(np.maximum(hi * 1e-9, 1e-300))
        up = np.log(np.maximum(hi, 1e-300))
        for _ in range(50):
            mid = (lo + up) / 2
            lam = np.exp(mid)
            t, _ = self.curves.at(r, lam)
            fill = lam * t * self.mix.i_new >= self.mix.budget
            lo, up = np.where(fill, lo, mid), np.where(fill, mid, up)
        return np.asarray(np.where(over, np.exp(lo), np.inf))

    def laws(self, r: Index, lam: Array, slo: Slo) -> _Laws:
        """The slot-independent laws of replicas ``r`` at rates ``lam`` (rows)."""
        t, e = self.curves.at(r, lam)
        t = np.where(np.isfinite(t), t, 1e3)
        tp = tpot_law(self.st, self.mix, r, lam, t, e, self.lengths)
        var = np.sum(tp.weight * tp.sd**2, axis=1)
        slo_s = slo.ttft_p99_ms / 1e3 if slo.ttft_p99_ms is not None else None
        tt = ttft_law(self.st, self.mix, r, lam, t, self.req_s[r], self.lengths, self.prompt,
                      var, slo_s)
        return _Laws(lam=lam, tpot=tp, tpot_p99=tp.p99(), ttft=tt)


def screen_levels(replicas: Sequence[Any], *, input_dist: LengthDist,
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
    fit = [i for i, rep in enumerate(replicas) if rep.fits]
    out: list[list[CapacityResult]] = [
        [] if rep.fits else [unserved("does not fit in memory") for _ in range(width)]
        for rep in replicas]
    if fit:
        sc = Screen([replicas[i] for i in fit], input_dist, output_dist)
        levels = np.array([list(batches) if batches is not None
                           else [replicas[i].engine.max_num_seqs] for i in fit],
                          dtype=np.float64)
        for k, found in zip(fit, search(sc, slo, levels), strict=True):
            out[k] = found
    return out


