"""How long an arrived request waits for the scheduler to take it in, when the engine polls
for new requests only every N decode passes (SGLang ``--scheduler-recv-interval N``: a
decode pass weighs 1 and a pass that prefilled weighs more than N, so the scheduler polls
every N decode passes and right after any pass that prefilled; an idle engine polls at once).

A request that reaches a decoding engine at a pass boundary waits for the next poll. With
the passes since the last poll uniform over ``0 .. N - 1``, that is ``(N - 1) / 2`` passes
on average, which is the wait of a cohort of requests arriving together while others decode.
Arrivals spread over time (a Poisson stream, or a closed loop whose clients are out of step)
also find polls in quick succession: a poll that takes in a request is followed by a pass
that prefills it, after which the scheduler polls again, and keeps doing so while each
prefilling pass brings a new arrival. With ``r`` arrivals per pass (Poisson), the chain of
prefilling passes after a quiet window lasts ``e^r`` passes on average (it goes on with
probability ``1 - e^-r``), and an arrival during the chain is taken in at the next pass.
Per cycle of ``N`` decode passes and ``e^r`` prefilling ones, the arrivals in the decode
window wait ``(N - 1) / 2`` passes and the others none::

    W = N (N - 1) / 2 / (N + e^r) passes

(``(N - 1) / 2 x N / (N + 1)`` at light load; it falls to 0 as arrivals come every pass).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]


def admit_wait_passes(every: int | Array, arrivals_per_pass: Array | float, *,
                      cohort: bool = False) -> Array:
    """Mean decode passes a request arriving while the engine decodes waits before the
    scheduler takes it in, for an engine that polls every ``every`` decode passes (1: every
    pass, no wait; an array: one engine per element). ``cohort``: it arrives with a cohort
    of others (a fixed-output closed loop), whose wait is the phase of the poll cycle,
    ``(every - 1) / 2``; otherwise the arrivals are spread (``arrivals_per_pass`` of them per
    pass, Poisson): the module's ``W``."""
    r = np.asarray(arrivals_per_pass, dtype=np.float64)
    n = np.asarray(every, dtype=np.float64)
    if np.all(n <= 1):
        return np.zeros(np.broadcast(n, r).shape)
    if cohort:
        return np.asarray(np.broadcast_to((n - 1.0) / 2.0, np.broadcast(n, r).shape).copy())
    return np.asarray(n * (n - 1.0) / 2.0 / (n + np.exp(np.minimum(r, 700.0))))
