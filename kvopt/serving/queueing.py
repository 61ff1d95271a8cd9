"""Queueing formulas shared by the analytic steady state and the screen.

* :func:`erlang_c`: the chance an arrival waits in an M/M/c queue (c servers = sequence
  slots), from Erlang B: the Poisson pmf at c over its cdf up to c (Erlang B's known
  identity, stable for thousands of servers).
* :func:`slot_wait_rate`: Allen-Cunneen's M/G/c wait, exponential with the M/M/c rate
  ``c / E[hold] - lambda`` scaled by ``2 / (1 + SCV)`` (SCV of the holding time: a fixed
  output length nearly fixes it, which halves the waits): the Allen-Cunneen approximation
  (A. O. Allen, "Probability, Statistics, and Queueing Theory", 2nd ed., 1990).
* :func:`budget_wait`: the M/D/1 wait for the token budget, prompt tokens per step over
  the budget ``rho``: none with chance ``1 - rho``, else exponential (the Cramer-Lundberg
  shape) with the M/D/1 mean ``rho t / (2 (1 - rho))`` overall.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from kvopt.serving.special import above_ratio, gammaln

Array = npt.NDArray[np.float64]


def erlang_c(servers: Array | float, offered: Array) -> Array:
    """Probability that an arrival waits in an M/M/c queue with ``floor(servers)`` (at
    least 1) servers at offered load ``offered`` (per row: ``servers`` broadcasts against
    ``offered``); 1 at or beyond saturation, 0 with no load."""
    c, a = np.broadcast_arrays(np.maximum(np.floor(np.asarray(servers, dtype=np.float64)),
                                          1.0), np.asarray(offered, dtype=np.float64))
    b = np.where(a >= c, 1.0, 0.0)  # at or beyond saturation every arrival waits
    live = (a > 0) & (a < c)
    if live.any():
        cl, al = c[live], a[live]
        pmf = np.exp(cl * np.log(al) - al - gammaln(cl + 1.0))
        # Erlang B = pmf(c) / cdf(c), cdf(c) = 1 - pmf(c) x P(K > c) / P(K = c)
        b[live] = pmf / np.maximum(1.0 - pmf * above_ratio(cl, al), 1e-300)
    rho = a / c
    return np.asarray(np.where(a >= c, 1.0, b / (1 - rho + rho * b)))


def slot_wait_rate(slots: Array | float, hold_s: Array, lam: Array, scv: Array) -> Array:
    """Rate (1/s) of the exponential slot wait given that an arrival waits, by
    Allen-Cunneen: ``(slots / hold - lam) x 2 / (1 + scv)`` (``hold``: mean time a request
    holds its slot)."""
    return np.asarray((slots / hold_s - lam) * 2.0 / (1.0 + scv))


def budget_wait(lam: Array, t: Array, i_new: Array | float, budget: Array | float
                ) -> tuple[Array, Array]:
    """(chance, mean when it happens) of the M/D/1 wait for the token budget at rates
    ``lam`` with steps of ``t``: ``rho = lam t i_new / budget`` (prompt tokens per step over
    the budget); 0 chance outside (0, 1)."""
    rho = lam * t * i_new / budget
    ok = (rho > 0) & (rho < 1)
    mean = np.where(ok, t / (2.0 * (1.0 - np.where(ok, rho, 0.0))), 0.0)
    return np.where(ok, rho, 0.0), mean
