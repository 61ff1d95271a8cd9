"""How routed tokens spread over expert-parallel ranks: the load of the busiest rank.

An MoE layer runs as fast as its busiest expert-parallel rank. With ``T`` tokens each routed
to ``k`` distinct experts out of ``E``, and the experts split evenly over ``ep`` ranks of
``E / ep`` experts, a token sends ``Y`` of its ``k`` pairs to a given rank, ``Y``
hypergeometric (``k`` draws from ``E``, ``E / ep`` successes)::

    E[Y] = k / ep        Var[Y] = k (1/ep) (1 - 1/ep) (E - k) / (E - 1)

Under independent, uniform routing (the router a load-balancing loss trains towards) a
rank's pairs ``X_j = sum over tokens of Y`` have mean ``mu = T k / ep`` and variance
``s^2 = T Var[Y]``; the ranks share the fixed total ``T k``, so they are exchangeable with
correlation ``-1 / (ep - 1)`` and, in the normal limit,
``X_j = mu + s sqrt(ep / (ep - 1)) (Z_j - mean(Z))`` with ``Z`` i.i.d. standard normal. The
expected busiest rank is then

    E[max_j X_j] = mu + s sqrt(ep / (ep - 1)) e(ep),    e(n) = E[max of n standard normals]

capped by what one rank can receive (``T min(k, E / ep)``). :func:`busiest_rank_factor`
returns ``E[max] / mu`` (1 for ``ep`` = 1). Real routers are not uniform (DeepSeek balances
with a bias term, and popular experts exist), so this is the imbalance of a perfectly
trained router: a lower bound on the one a deployment sees without expert-load balancing.

``e(n)`` is the integral ``int x n phi(x) Phi(x)^(n-1) dx`` evaluated numerically
(``e(2) = 1/sqrt(pi) = 0.5642``, ``e(8) = 1.4236``).
"""

from __future__ import annotations

import math
from functools import cache
from typing import Any

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]


@cache
def expected_max_normal(n: int) -> float:
    """``E[max of n i.i.d. standard normals]`` (0 for n = 1), by quadrature on a fine grid."""
    if n <= 1:
        return 0.0
    x = np.linspace(-9.0, 9.0, 20001)
    phi = np.exp(-x * x / 2) / math.sqrt(2 * math.pi)
    cdf = 0.5 * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))
    integrand = x * n * phi * cdf ** (n - 1)
    return float(np.sum(integrand) * (x[1] - x[0]))


def pairs_per_token_variance(*, experts: int, k: int, ep: int) -> float:
    """``Var[Y]``: the spread of one token's pairs on one rank (hypergeometric)."""
    if ep <= 1 or experts <= 1:
        return 0.0
    p = 1.0 / ep
    return k * p * (1 - p) * (experts - k) / (experts - 1)


def busiest_rank_factor(tokens: Any, *, experts: int, k: int, ep: int) -> Array:
    """``E[max pairs on a rank] / (T k / ep)`` for ``tokens`` tokens (arrays broadcast): 1 at
    ``ep`` = 1, larger for few tokens over many ranks, towards 1 as ``T`` grows."""
    t = np.asarray(tokens, dtype=np.float64)
    if ep <= 1:
        return np.ones_like(t)
    mu = t * k / ep
    s = np.sqrt(t * pairs_per_token_variance(experts=experts, k=k, ep=ep))
    top = mu + s * math.sqrt(ep / (ep - 1)) * expected_max_normal(ep)
    cap = t * min(k, experts // ep)
    safe = np.where(mu > 0, mu, 1.0)
    return np.asarray(np.where(mu > 0, np.minimum(top, cap) / safe, 1.0))


def touched_experts(tokens: Any, *, experts: int, k: int) -> Array:
    """Experts with at least one of ``tokens`` tokens routed to them (uniform routing):
    ``E (1 - (1 - k/E)^T)``."""
    t = np.asarray(tokens, dtype=np.float64)
    return np.asarray(experts * (1 - (1 - k / experts) ** t))


def ranks_per_token(*, experts: int, k: int, ep: int) -> float:
    """Distinct expert-parallel ranks one token's ``k`` experts sit on (uniform routing):
    ``ep (1 - C(E - E/ep, k) / C(E, k))`` — the copies an all-to-all dispatch sends."""
    if ep <= 1:
        return 1.0
    per = experts // ep
    miss = math.comb(experts - per, k) / math.comb(experts, k) if experts - per >= k else 0.0
    return ep * (1.0 - miss)
