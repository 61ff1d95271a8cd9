"""kvopt's numpy special functions against scipy's (and exact sums where scipy itself is
approximate), and the serving stack importing no scipy (with Pyomo loaded, importing it
also pulls scipy.stats and more: ~0.5 s of a plan)."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal, getcontext

import numpy as np
import pytest
import scipy.special as ss

from kvopt.serving import special as sp
from kvopt.serving.queueing import erlang_c
from tests.paths import ROOT

RNG = np.random.default_rng(7)


def _rel(got: np.ndarray, want: np.ndarray) -> float:
    assert np.array_equal(np.isnan(got), np.isnan(want))
    assert np.array_equal(got[np.isinf(want)], want[np.isinf(want)])
    ok = np.isfinite(want) & (want != 0)
    assert np.all(got[want == 0] == 0)
    return float(np.max(np.abs(got[ok] - want[ok]) / np.abs(want[ok])))


def test_ndtr_and_ndtri() -> None:
    x = np.concatenate([RNG.normal(size=5000) * 3, np.linspace(-8, 8, 3201),
                        [0.0, np.inf, -np.inf, np.nan]])
    assert _rel(sp.ndtr(x), ss.ndtr(x)) < 1e-14
    deep = np.linspace(-37, -8, 300)  # erfc's own rounding of x / sqrt 2 there
    assert _rel(sp.ndtr(deep), ss.ndtr(deep)) < 1e-12
    p = np.concatenate([RNG.uniform(size=5000), np.logspace(-300, -1, 400),
                        1 - np.logspace(-16, -1, 200), (np.arange(1024) + 0.5) / 1024,
                        [0.0, 0.5, 1.0, np.nan, -0.1, 1.1]])
    assert _rel(sp.ndtri(p), ss.ndtri(p)) < 1e-13
    assert sp.ndtri(np.array([0.3, 0.7])).shape == (2,)
    assert float(sp.ndtri(0.975)) == pytest.approx(1.959963984540054, rel=1e-15)


def test_erfinv_near_zero_and_in_the_tails() -> None:
    y = np.concatenate([RNG.uniform(-1, 1, 5000), np.logspace(-20, -1e-6, 400),
                        -np.logspace(-20, -1, 100), [0.0, 1.0, -1.0, 0.999999, -0.999999,
                                                     np.nan, 2.0]])
    assert _rel(sp.erfinv(y), ss.erfinv(y)) < 1e-14


def test_gammaln() -> None:
    x = np.concatenate([RNG.uniform(0.01, 5000, 3000), np.arange(0, 5000.0), [0.5, 1e-5, 1e5,
                                                                             -1.0, -2.5]])
    assert _rel(sp.gammaln(x), ss.gammaln(x)) < 1e-13
    assert np.isinf(sp.gammaln(np.array([0.0, -3.0]))).all()


def _poisson_cdf_exact(k: int, m: float) -> Decimal:
    getcontext().prec = 60
    mu = Decimal(m)
    term = (-mu).exp()
    total = term
    for j in range(1, k + 1):
        term = term * mu / j
        total += term
    return total


def test_pdtr_against_scipy_and_exact_sums() -> None:
    k = np.floor(RNG.uniform(0, 3000, 4000))
    m = RNG.uniform(1e-3, 3000, 4000)
    want = ss.pdtr(k, m)
    big = want > 1e-30  # deep tails: scipy's own error grows to ~5e-12 there
    assert _rel(sp.pdtr(k, m)[big], want[big]) < 1e-12
    small = (np.floor(RNG.uniform(0, 30, 4000)), RNG.uniform(0, 60, 4000))
    assert _rel(sp.pdtr(*small), ss.pdtr(*small)) < 1e-13
    at_mean = np.arange(0, 3000.0)
    assert _rel(sp.pdtr(at_mean, at_mean + 0.5), ss.pdtr(at_mean, at_mean + 0.5)) < 1e-13
    for kk, mm in ((2126, 2989.92496880787), (900, 1000.3), (1000, 999.5), (50, 80.2)):
        exact = _poisson_cdf_exact(kk, mm)
        assert abs(Decimal(float(sp.pdtr(kk, mm))) / exact - 1) < Decimal("1e-13")
    assert float(sp.pdtr(5, 0.0)) == 1.0 and float(sp.pdtr(-1, 3.0)) == 0.0
    assert sp.pdtr(np.array([[1, 2], [3, 4]]), 2.0).shape == (2, 2)


def test_poisson_pmf_is_accurate_where_the_plain_formula_loses_digits() -> None:
    getcontext().prec = 60
    # near the mean to ~1e-15; far in a tail the exponent's own rounding (|log pmf| ~ 155)
    for k, m, tol in ((0, 3.5, "1e-15"), (1, 1e-3, "1e-15"), (2000, 2100.25, "1e-14"),
                      (17, 16.9, "1e-15"), (2500, 2499.5, "1e-14"), (4000, 3000.5, "1e-12")):
        mu = Decimal(m)
        fact = Decimal(1)
        for j in range(2, k + 1):
            fact *= j
        exact = (-mu).exp() * mu ** k / fact
        assert abs(Decimal(float(sp.poisson_pmf(k, m))) / exact - 1) < Decimal(tol), (k, m)


def test_erlang_c_matches_the_scipy_formula() -> None:
    """The Erlang C the serving model used with scipy's pdtr and gammaln."""
    servers = np.floor(RNG.uniform(1, 3000, 3000))
    offered = servers * RNG.uniform(0.0, 1.3, 3000)

    def reference(c: np.ndarray, a: np.ndarray) -> np.ndarray:
        pos = a > 0
        a_safe = np.where(pos, a, 1.0)
        pmf = np.exp(c * np.log(a_safe) - a_safe - ss.gammaln(c + 1.0))
        b = np.where(pos, pmf / np.maximum(ss.pdtr(c, a_safe), 1e-300), 0.0)
        rho = a / c
        with np.errstate(invalid="ignore"):
            return np.where(a >= c, 1.0, b / (1 - rho + rho * b))

    got, want = erlang_c(servers, offered), reference(servers, offered)
    live = want > 1e-200
    assert _rel(got[live], want[live]) < 1e-10
    assert np.all(got[~live] < 1e-190)


def test_the_serving_stack_imports_no_scipy() -> None:
    code = ("import sys, kvopt.space, kvopt.fleet.plan, kvopt.serving.screen, "
            "kvopt.serving.capacity, kvopt.pareto.run; "
            "from kvopt.serving.lengths import parse_dist; "
            "parse_dist('lognormal:mean=500,sigma=0.8'); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'scipy'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout.strip()
    assert out == "[]"
