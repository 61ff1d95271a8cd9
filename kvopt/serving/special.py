"""The special functions the serving model needs, on numpy arrays, without scipy.

Importing ``scipy.special`` costs ~0.25 s (its array-API layer pulls numpy.f2py and
numpy.testing), and once Pyomo is loaded it also imports scipy.stats, integrate, sparse and
spatial (Pyomo's deferred-import hook for scipy): ~0.5 s of a plan that otherwise takes
well under a second. These are built on the C library's ``erf``, ``erfc`` and ``lgamma``
(:mod:`math`, element by element) and short numpy series; ``tests/serving/test_special.py``
checks each against scipy.

* :func:`ndtr`: the standard normal CDF, ``erfc(-x / sqrt 2) / 2``.
* :func:`ndtri`: its inverse: P. J. Acklam's rational approximation (relative error
  < 1.2e-9) and one Halley step on :func:`ndtr` (to double precision), in the lower tail
  (the upper by symmetry, ``1 - p`` being exact there).
* :func:`erfinv`: ``ndtri((1 - y) / 2) / -sqrt 2`` in the tails, Newton steps on ``erf``
  near 0 (where ``(1 + y) / 2`` would lose ``y``'s digits).
* :func:`gammaln`: ``lgamma`` (a table for the integers up to 4,096 the Poisson sums use).
* :func:`pdtr`: the Poisson CDF ``P(K <= k)``, ``K ~ Poisson(m)``: the pmf at ``k`` times
  the sum of pmf ratios below ``k`` (``k < m``: ``sum_i prod_{t < i} (k - t) / m``), or
  one less that times the sum above (``k >= m``: ``sum_{i >= 1} prod_{t <= i} m / (k + t)``);
  both ratios are below one, so the terms fall geometrically and the sums stop at 1e-17.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import cache

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]

_SQRT2 = math.sqrt(2.0)
_SQRT1_2 = math.sqrt(0.5)
_SQRT2PI = math.sqrt(2.0 * math.pi)
_erf = np.frompyfunc(math.erf, 1, 1)
_erfc = np.frompyfunc(math.erfc, 1, 1)
_lgamma = np.frompyfunc(math.lgamma, 1, 1)
_TABLE = 4096  # lgamma of the integers 0..4096 by lookup


def _f64(x: object) -> Array:
    return np.asarray(x, dtype=np.float64)


def erfc(x: object) -> Array:
    """The complementary error function (the C library's, element by element)."""
    return np.asarray(_erfc(_f64(x)), dtype=np.float64)


def erf(x: object) -> Array:
    """The error function (the C library's, element by element)."""
    return np.asarray(_erf(_f64(x)), dtype=np.float64)


def ndtr(x: object) -> Array:
    """Standard normal CDF."""
    return np.asarray(0.5 * erfc(-_f64(x) * _SQRT1_2))


# P. J. Acklam's approximation of the normal quantile (2003), relative error < 1.15e-9
_A = (-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02,
      1.383577518672690e+02, -3.066479806614716e+01, 2.506628277459239e+00)
_B = (-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
      6.680131188771972e+01, -1.328068155288572e+01)
_C = (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
      -2.549732539343734e+00, 4.374664141464968e+00, 2.938163982698783e+00)
_D = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
      3.754408661907416e+00)
_P_LOW = 0.02425


def _poly(coef: tuple[float, ...], x: Array) -> Array:
    out = np.full_like(x, coef[0])
    for c in coef[1:]:
        out = out * x + c
    return out


def _ndtri_lower(q: Array) -> Array:
    """Normal quantiles of ``0 < q <= 0.5`` (Acklam, then one Halley step)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.sqrt(-2.0 * np.log(np.where(q < _P_LOW, q, 0.5)))
        tail = _poly(_C, t) / (_poly(_D, t) * t + 1.0)
        r = np.where(q < _P_LOW, 0.0, q - 0.5)
        s = r * r
        mid = _poly(_A, s) * r / (_poly(_B, s) * s + 1.0)
    x = np.where(q < _P_LOW, tail, mid)
    # Halley on ndtr(x) - q; no step where the density underflows (|x| > 37.5)
    ok = np.abs(x) < 37.5
    xs = np.where(ok, x, 0.0)
    e = 0.5 * erfc(-xs * _SQRT1_2) - np.where(ok, q, 0.5)
    u = e * _SQRT2PI * np.exp(xs * xs / 2.0)
    return np.asarray(np.where(ok, xs - u / (1.0 + xs * u / 2.0), x))


def ndtri(p: object) -> Array:
    """Standard normal quantile (-inf at 0, inf at 1, nan outside [0, 1])."""
    p = _f64(p)
    q = np.where(p > 0.5, 1.0 - p, p)  # exact for p >= 0.5
    inner = (q > 0) & (q <= 0.5)
    x = _ndtri_lower(np.where(inner, q, 0.25))
    x = np.where(p > 0.5, -x, x)
    out = np.where(inner, x, np.nan)
    out = np.where(p == 0.0, -np.inf, np.where(p == 1.0, np.inf, out))
    return np.asarray(out, dtype=np.float64)


def erfinv(y: object) -> Array:
    """Inverse error function (+-inf at +-1, nan outside [-1, 1])."""
    y = _f64(y)
    a = np.abs(y)
    # tails: erf(x) = 1 - 2 ndtr(-x sqrt 2), and 1 - |y| is exact for |y| >= 0.5
    tail = -ndtri((1.0 - a) / 2.0) / _SQRT2
    # near 0: Newton on erf from the series' first terms (converges in a few steps)
    small = a < 0.5
    ys = np.where(small, y, 0.0)
    x = ys * math.sqrt(math.pi) / 2.0 * (1.0 + math.pi / 12.0 * ys * ys)
    for _ in range(4):
        x = x - (erf(x) - ys) * math.sqrt(math.pi) / 2.0 * np.exp(x * x)
    out = np.where(small, x, np.sign(y) * tail)
    return np.asarray(np.where(np.isnan(y), np.nan, out), dtype=np.float64)


@cache
def _lgamma_table() -> Array:
    return np.array([math.lgamma(j) if j > 0 else math.inf for j in range(_TABLE + 1)])


def gammaln(x: object) -> Array:
    """``log |Gamma(x)|`` (inf at the poles 0, -1, ...)."""
    x = _f64(x)
    if x.size and np.all((x >= 0) & (x <= _TABLE) & (x == np.floor(x))):
        return np.asarray(_lgamma_table()[x.astype(np.intp)])
    pole = (x <= 0) & (x == np.floor(x))
    safe = np.where(pole | ~np.isfinite(x), 1.0, x)
    out = np.asarray(_lgamma(safe), dtype=np.float64)
    out = np.where(pole | np.isposinf(x), np.inf, out)
    return np.asarray(np.where(np.isnan(x) | np.isneginf(x), np.nan, out))


# Stirling's series for lgamma(n + 1) - ((n + 1/2) log n - n + log sqrt(2 pi)), n > 15
_STIRLING = (1.0 / 12, -1.0 / 360, 1.0 / 1260, -1.0 / 1680, 1.0 / 1188)


def _stirlerr(n: Array) -> Array:
    """The error of Stirling's formula for ``log n!`` (C. Loader, "Fast and accurate
    computation of binomial probabilities", 2000): the series above 15, else directly."""
    big = n > 15
    nb = np.where(big, n, 16.0)
    inv2 = 1.0 / (nb * nb)
    series = np.zeros_like(nb)
    for c in reversed(_STIRLING):
        series = series * inv2 + c
    small = np.where(big, 1.0, n)
    with np.errstate(divide="ignore", invalid="ignore"):
        direct = (gammaln(small + 1.0) - (small + 0.5) * np.log(small) + small
                  - math.log(_SQRT2PI))
    return np.asarray(np.where(big, series / nb, direct))


def _bd0(x: Array, m: Array) -> Array:
    """``x log(x / m) + m - x`` without cancellation (Loader): a series in
    ``v = (x - m) / (x + m)`` when ``x`` is near ``m``."""
    near = np.abs(x - m) < 0.1 * (x + m)
    with np.errstate(divide="ignore", invalid="ignore"):
        far = x * np.log(x / m) + m - x
        v = np.where(near, (x - m) / (x + m), 0.0)
    s = (x - m) * v
    ej = 2.0 * x * v
    for j in range(1, 12):  # v^2 < 1/121: each term ~100x smaller than the last
        ej = ej * v * v
        s = s + ej / (2 * j + 1)
    return np.asarray(np.where(near, s, far))


def poisson_pmf(k: object, m: object) -> Array:
    """``P(K = k)`` for ``K ~ Poisson(m)`` and integers ``k >= 0``, ``m > 0`` (Loader's
    saddle-point form: relative error ~1e-15 near the mean, where ``exp(k log m - m -
    lgamma(k + 1))`` loses the digits of its large terms; ~``1e-16 |log pmf|`` far out)."""
    k_, m_ = np.broadcast_arrays(_f64(k), _f64(m))
    pos = k_ > 0
    kp = np.where(pos, k_, 1.0)
    with np.errstate(over="ignore", under="ignore"):
        body = np.exp(-_stirlerr(kp) - _bd0(kp, m_)) / (_SQRT2PI * np.sqrt(kp))
        return np.asarray(np.where(pos, body, np.exp(-m_)))


Rows = npt.NDArray[np.intp]


def _tail_sum(ratio: Callable[[Rows, Array], Array], n: int) -> Array:
    """``sum_{i >= 1} prod_{t = 1..i} ratio(rows, t)`` for ``n`` rows whose ratios are below
    one (and fall with ``t``): columns are added 64 at a time until every row's last term
    is below 1e-17 of its sum."""
    total = np.zeros(n)
    last = np.ones(n)
    t0 = 1
    live: Rows = np.arange(n)
    while live.size:
        t = np.arange(t0, t0 + 64, dtype=np.float64)
        terms = last[live, None] * np.cumprod(ratio(live, t), axis=1)
        total[live] += terms.sum(axis=1)
        last[live] = terms[:, -1]
        live = live[last[live] > 1e-17 * total[live]]
        t0 += 64
    return total


def above_ratio(k: Array, m: Array) -> Array:
    """``P(K > k) / P(K = k)`` for ``K ~ Poisson(m)``, ``k >= m``:
    ``sum_{i >= 1} prod_{t = 1..i} m / (k + t)`` (each ratio below one)."""
    return _tail_sum(lambda r, t: m[r, None] / (k[r, None] + t[None, :]), k.size)


def pdtr(k: object, m: object) -> Array:
    """Poisson CDF ``P(K <= floor(k))`` for ``K ~ Poisson(m)`` (0 below k = 0)."""
    k_arr, m_arr = np.broadcast_arrays(np.floor(_f64(k)), _f64(m))
    kf, mf = k_arr.ravel(), m_arr.ravel()
    out = np.zeros(kf.size)
    out[(kf >= 0) & (mf == 0)] = 1.0
    out[np.isnan(kf) | np.isnan(mf) | (mf < 0)] = np.nan
    ok = np.nonzero((kf >= 0) & (mf > 0))[0]
    if ok.size:
        kk, mm = kf[ok], mf[ok]
        pmf = poisson_pmf(kk, mm)
        res = np.empty(ok.size)
        up = np.nonzero(kk >= mm)[0]
        if up.size:  # 1 - P(K > k)
            res[up] = np.maximum(1.0 - pmf[up] * above_ratio(kk[up], mm[up]), 0.0)
        down = np.nonzero(kk < mm)[0]
        if down.size:  # pmf(k) x (1 + sum_{i >= 1} prod_{t = 1..i} (k + 1 - t) / m)
            kd, md = kk[down], mm[down]
            below = _tail_sum(lambda r, t: np.maximum(kd[r, None] + 1.0 - t[None, :], 0.0)
                              / md[r, None], down.size)
            res[down] = pmf[down] * (1.0 + below)
        out[ok] = np.minimum(res, 1.0)
    return np.asarray(out.reshape(k_arr.shape))
