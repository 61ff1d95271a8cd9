"""Quadrature and Poisson numerics shared by the analytic steady state and the screen.

* :func:`poisson_quadrature`: points and weights for ``E[g(K)]``, ``K ~ Poisson(mu)``: the
  exact pmf on ``0..terms-1`` for small means, 12-point Gauss-Hermite on the normal
  approximation above (probabilists' Hermite nodes, weights normalized to 1).
* :func:`poisson_inverse` / :func:`poisson_inverse_rows`: Poisson quantiles at given
  probabilities (CDF inversion; the normal approximation above mean 40).
* :func:`size_biased_pair`: two points matching three moments of the others a decoder sees
  (a negative binomial's size-biased law).
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import numpy.typing as npt

from kvopt.serving.special import erfinv, gammaln

Array = npt.NDArray[np.float64]

HERMITE_X, HERMITE_W = np.polynomial.hermite_e.hermegauss(12)
HERMITE_W = HERMITE_W / HERMITE_W.sum()


@cache
def _tables(terms: int) -> tuple[Array, Array, Array, Array, Array]:
    """(k, lgamma(k + 1), Hermite nodes, weights and mask padded to ``terms``)."""
    k = np.arange(terms, dtype=np.float64)
    lgamma_k1 = np.array([math.lgamma(j + 1) for j in range(terms)])
    pad = np.zeros(terms - HERMITE_X.size)
    return (k, lgamma_k1, np.concatenate([HERMITE_X, pad]), np.concatenate([HERMITE_W, pad]),
            np.concatenate([np.ones(HERMITE_X.size), pad]))


def poisson_quadrature(mu: Array, *, terms: int = 24, exact_below: float = 6.0,
                       fold_tail: bool = False) -> tuple[Array, Array]:
    """Points and weights for E[g(K)], K ~ Poisson(mu) (``mu`` has a trailing axis of 1):
    the exact pmf on 0..``terms - 1`` for mu <= ``exact_below`` (``fold_tail``: the mass
    beyond on the last point), 12-point Gauss-Hermite on the normal approximation above.
    The analytic model uses 24 terms up to mean 6; the screen 12 up to 3.5, tail folded
    (the mass beyond 11 is below 1e-3 there)."""
    k, lgamma_k1, gh_x, gh_w, gh_mask = _tables(terms)
    mu = np.maximum(np.asarray(mu, dtype=np.float64), 1e-12)
    small = mu <= exact_below
    small_w = np.exp(k * np.log(mu) - mu - lgamma_k1)
    if fold_tail:
        small_w[..., -1] += np.maximum(1.0 - small_w.sum(axis=-1), 0.0)
    big_k = np.maximum(0.0, mu + np.sqrt(mu) * gh_x) * gh_mask
    return np.where(small, k, big_k), np.where(small, small_w, gh_w)


def poisson_inverse(u: Array, mu: Array) -> Array:
    """Poisson quantiles at probabilities ``u`` for means ``mu`` (vectorized inversion of
    the CDF; a normal approximation above mean 40)."""
    mu = np.maximum(np.asarray(mu, dtype=np.float64), 0.0)
    u = np.asarray(u, dtype=np.float64)
    shape = np.broadcast_shapes(u.shape, mu.shape)
    mu, u = np.broadcast_to(mu, shape), np.broadcast_to(u, shape)
    flat_mu, flat_u = mu.ravel(), u.ravel()
    pmf = np.exp(-flat_mu)
    cdf = pmf.copy()
    flat_k = np.zeros(flat_mu.size)
    # draws still above their CDF move on; means above 40 take the normal approximation
    act = np.nonzero((cdf < flat_u) & (flat_mu <= 40))[0]
    for j in range(1, 96):
        if not act.size:
            break
        flat_k[act] += 1.0
        pmf[act] = pmf[act] * flat_mu[act] / j
        cdf[act] = cdf[act] + pmf[act]
        act = act[cdf[act] < flat_u[act]]
    k: Array = flat_k.reshape(mu.shape)
    big = mu > 40
    if big.any():
        k = np.where(big, poisson_normal(u, mu), k)
    return k


def poisson_normal(u: Array, mu: Array) -> Array:
    """The normal approximation of Poisson quantiles that both inversions use above mean 40:
    ``round(mu + sqrt(mu) z)`` (at least 0), ``z`` the standard normal quantile at ``u``."""
    return np.asarray(np.maximum(0.0, np.round(mu + np.sqrt(mu) * std_normal(u))))


def poisson_inverse_rows(u: Array, mu: Array) -> Array:
    """:func:`poisson_inverse` when the mean is per row and the probabilities per column
    (``u`` (Q,), ``mu`` (R,) -> (R, Q)): one CDF table per row, searched for every draw."""
    mu = np.maximum(np.asarray(mu, dtype=np.float64), 0.0)
    small = np.minimum(mu, 40.0)
    top = float(small.max()) if small.size else 0.0
    k = np.arange(math.ceil(top + 12.0 * math.sqrt(top) + 12.0) + 1, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        logp = k[None, :] * np.log(small)[:, None] - small[:, None] - gammaln(k + 1.0)[None, :]
    cdf = np.cumsum(np.exp(np.where(small[:, None] > 0, logp, np.where(k == 0, 0.0,
                                                                          -np.inf))), axis=1)
    out = np.empty((mu.size, u.size))
    for r in range(mu.size):
        out[r] = np.minimum(np.searchsorted(cdf[r], u, side="left"), k.size - 1)
    big = mu > 40
    if big.any():
        out[big] = poisson_normal(u[None, :], mu[big, None])
    return out


def size_biased_pair(n: Array, v: Array) -> tuple[Array, Array]:
    """Two points (others beside a decoder, weights) of the others a decoder sees when the
    number decoding has mean ``n`` and variance ``v n`` over time: a negative binomial
    NegBin(r, p = 1 / v), r = n / (v - 1) (a Poisson count when v = 1), whose size-biased
    law is 1 + M, M ~ NegBin(r + 1, p): mean n + v - 1, variance v (n + v - 1), skewness
    (2v - 1) / sqrt(variance). The two points match those three moments (the lower one
    clipped at no others); a test checks them against scipy's negative binomial."""
    n = np.maximum(np.asarray(n, dtype=np.float64), 0.0)
    v = np.broadcast_to(np.asarray(v, dtype=np.float64), n.shape)
    m = n + v - 1.0
    var = v * m
    sd = np.sqrt(np.maximum(var, 1e-300))
    gam = np.where(var > 1e-12, (2.0 * v - 1.0) / sd, 1e6)
    root = np.sqrt(gam * gam + 4.0)
    x_lo, x_hi = (gam - root) / 2, (gam + root) / 2  # x_lo x_hi = -1
    p_hi = -x_lo / (x_hi - x_lo)
    nodes = np.stack([np.maximum(m + x_lo * sd, 0.0), m + x_hi * sd], axis=-1)
    return nodes, np.stack([1.0 - p_hi, p_hi], axis=-1)


def std_normal(u: Array) -> Array:
    """Standard normal quantiles of uniforms ``u``."""
    return np.asarray(np.sqrt(2.0) * _erfinv(2.0 * np.asarray(u) - 1.0))


def _erfinv(x: Array) -> Array:
    return np.asarray(erfinv(np.clip(x, -0.999999, 0.999999)), dtype=np.float64)
