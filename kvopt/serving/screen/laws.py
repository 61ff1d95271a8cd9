"""The slot-independent laws of the screen at rows of (replica, rate): TPOT and the TTFT
core (their p99 with the waits comes in :mod:`kvopt.serving.screen.search`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from kvopt.serving.screen.tpot import TpotLaw
from kvopt.serving.screen.ttft import TtftLaw

Array = npt.NDArray[np.float64]
Index = npt.NDArray[np.intp]


@dataclass(frozen=True)
class Laws:
    """Slot-independent laws at rows of (replica, rate)."""

    lam: Array
    tpot: TpotLaw
    tpot_p99: Array
    ttft: TtftLaw

    def take(self, idx: Index) -> Laws:
        tp = self.tpot
        return Laws(lam=self.lam[idx], tpot=TpotLaw(mean=tp.mean[idx], sd=tp.sd[idx],
                                                     skew=tp.skew[idx], weight=tp.weight),
                     tpot_p99=self.tpot_p99[idx], ttft=self.ttft.take(idx))

    @staticmethod
    def concat(a: Laws, b: Laws) -> Laws:
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
        return Laws(lam=np.concatenate([a.lam, b.lam]), tpot=tp,
                     tpot_p99=np.concatenate([a.tpot_p99, b.tpot_p99]), ttft=tt)
