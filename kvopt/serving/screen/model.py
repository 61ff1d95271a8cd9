"""The screen's model of many replicas (that fit in memory) for one length mix: their
stacked step costs, step-time curves and the rate where prompts fill the budget, and the
slot-independent laws at any (replica, rate) rows (:class:`Screen`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from kvopt.serving.lengths import LengthDist
from kvopt.serving.replica import Replica
from kvopt.serving.results import Slo
from kvopt.serving.screen.laws import Laws
from kvopt.serving.screen.prefill import PromptLaw
from kvopt.serving.screen.steps import Curves, Mix, StackedSteps
from kvopt.serving.screen.tpot import Lengths, tpot_law
from kvopt.serving.screen.ttft import ttft_law
from kvopt.serving.serve import step_cost_for
from kvopt.serving.steady import SteadyModel

Array = npt.NDArray[np.float64]
Index = npt.NDArray[np.intp]


class Screen:
    """The screening model of many replicas (that fit in memory) for one length mix."""

    def __init__(self, replicas: Sequence[Replica], input_dist: LengthDist,
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
        self.models = ms
        self.late = np.array([m.admits_late for m in ms])
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

    def laws(self, r: Index, lam: Array, slo: Slo) -> Laws:
        """The slot-independent laws of replicas ``r`` at rates ``lam`` (rows)."""
        t, e = self.curves.at(r, lam)
        t = np.where(np.isfinite(t), t, 1e3)
        tp = tpot_law(self.st, self.mix, r, lam, t, e, self.lengths)
        var = np.sum(tp.weight * tp.sd**2, axis=1)
        slo_s = slo.ttft_p99_ms / 1e3 if slo.ttft_p99_ms is not None else None
        # time outside the steps: the request overhead, and the wait to be taken in (a
        # poll every few passes, attention-DP balancing: the steady model's open-loop
        # SteadyBase.admit_wait)
        shift = self.req_s[r]  # (a copy: indexed by an array)
        for i in np.unique(r[self.late[r]]):
            sel = r == i
            shift[sel] += self.models[int(i)].admit_wait(lam[sel], t[sel])
        tt = ttft_law(self.st, self.mix, r, lam, t, shift, self.lengths, self.prompt,
                      var, slo_s)
        return Laws(lam=lam, tpot=tp, tpot_p99=tp.p99(), ttft=tt)
