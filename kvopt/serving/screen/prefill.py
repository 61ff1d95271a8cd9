"""Prefill-time tables, the prompt-length law and survival-function helpers of the
screening TTFT model (:mod:`kvopt.serving.screen.ttft`), arrays over rows of (replica,
rate).

* a row's prefill time of ``tau`` tokens beside its decoders, in budget-sized chunks, on
  tokens that hold both sides of every chunk boundary, and its inverse on a uniform time
  grid;
* the prompt length's survival on a fine token grid (exact for the input distribution);
* piecewise-linear survival functions: evaluation, crossing of a level, and their smoothing
  by an exponential wait in closed form.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from kvopt.serving.lengths import LengthDist
from kvopt.serving.screen.steps import StackedSteps
from kvopt.serving.screen.tpot import PROMPT_EDGES, strata

Array = npt.NDArray[np.float64]
Index = npt.NDArray[np.intp]
TOKENS = 40  # prefill-time table points per row (tokens, geometric and chunk edges)


def token_grid(free: Array, far: float) -> Array:
    """Per row, the prefill token counts to tabulate: geometric up to ``far`` plus both
    sides of each chunk boundary (multiples of the free budget: a new step starts there,
    so the prefill time jumps)."""
    geo = np.concatenate([[0.0], np.geomspace(1.0, far, TOKENS - 9)])
    free = np.maximum(free, 1.0)[:, None]
    k = np.arange(1, 5, dtype=np.float64)[None, :]
    edges = np.minimum(np.concatenate([k * free, k * free + 1.0], axis=1), far)
    return np.sort(np.concatenate([np.broadcast_to(geo, (free.shape[0], geo.size)), edges],
                                  axis=1), axis=1)


def prefill_table(st: StackedSteps, r: Index, n_dec: Array, budget: Array, tau: Array
                   ) -> Array:
    """Time to prefill ``tau`` tokens beside ``n_dec`` decoders in budget-sized chunks
    (full chunks, then the last), per row (rows, T), non-decreasing."""
    free = np.maximum(budget - n_dec, 1.0)[:, None]
    chunks = np.maximum(np.ceil(tau / free), 1.0)
    last = tau - (chunks - 1.0) * free
    full = st.step(r, n_dec, free[:, 0])[:, None]
    g = (chunks - 1.0) * full + st.step(r[:, None], n_dec[:, None], np.minimum(last, free))
    return np.asarray(np.maximum.accumulate(g, axis=1))


def inverse_rows(tau: Array, g: Array, y: Array) -> Array:
    """For each row's non-decreasing table ``g`` over its tokens ``tau`` (rows, T), the
    tokens that take time ``y`` (rows, X): -1 below the table (nothing fits), beyond every
    length above it."""
    j = np.clip((g[:, None, :] <= y[:, :, None]).sum(axis=2) - 1, 0, tau.shape[1] - 2)
    g0 = np.take_along_axis(g, j, 1)
    g1 = np.take_along_axis(g, j + 1, 1)
    t0 = np.take_along_axis(tau, j, 1)
    t1 = np.take_along_axis(tau, j + 1, 1)
    f = np.clip((y - g0) / np.maximum(g1 - g0, 1e-300), 0.0, 1.0)
    out = t0 + (t1 - t0) * f
    return np.asarray(np.where(y < g[:, :1], -1.0, np.where(y >= g[:, -1:], 1e12, out)))


_INV = 64  # points of the inverted prefill tables


@dataclass(frozen=True)
class InverseTable:
    """Tokens prefilled by time ``y`` per row, on a uniform time grid up to the table's
    last time (-1 below its first time, beyond every prompt above its last)."""

    y0: Array  # (rows,)
    dy: Array  # (rows,)
    tokens: Array  # (rows, _INV)

    @classmethod
    def of(cls, tau: Array, g: Array) -> InverseTable:
        """Invert each row's non-decreasing table: one sorted search over all rows, each
        row's times scaled into [row, row + 1)."""
        rows, width = g.shape
        y0, y1 = g[:, 0], g[:, -1]
        span = np.maximum(y1 - y0, 1e-12)
        dy = span / (_INV - 1)
        base = np.arange(rows, dtype=np.float64)[:, None]
        keys = (base + 0.999 * (g - y0[:, None]) / span[:, None]).ravel()
        want = base + 0.999 * np.linspace(0.0, 1.0, _INV)[None, :]
        j = np.searchsorted(keys, want.ravel(), side="right").reshape(rows, _INV) - 1
        start = np.arange(rows)[:, None] * width
        j = np.clip(j, start, start + width - 2)  # flat index into the row's table
        gf, tf = g.ravel(), tau.ravel()
        g0, g1 = gf[j], gf[j + 1]
        y = y0[:, None] + dy[:, None] * np.arange(_INV)[None, :]
        f = np.clip((y - g0) / np.maximum(g1 - g0, 1e-300), 0.0, 1.0)
        t0 = tf[j]
        return cls(y0=y0, dy=dy, tokens=t0 + (tf[j + 1] - t0) * f)

    def at(self, y: Array) -> Array:
        """Tokens prefilled by times ``y`` (rows first, any trailing axes)."""
        tail = (1,) * (y.ndim - 1)
        pos = (y - self.y0.reshape(-1, *tail)) * (1.0 / self.dy.reshape(-1, *tail))
        pc = np.clip(pos, 0.0, _INV - 1.001)
        j = pc.astype(np.intp)
        f = pc - j
        flat = j + (np.arange(y.shape[0]) * _INV).reshape(-1, *tail)
        tok = self.tokens.ravel()
        t0 = tok[flat]
        out = t0 + (tok[flat + 1] - t0) * f
        out[pos < 0] = -1.0
        out[pos > _INV - 1] = 1e12
        return np.asarray(out)


@dataclass(frozen=True)
class PromptLaw:
    """The prompt length's survival on a fine token grid and its strata (shared by every
    replica): what a request's own prompt adds to the tokens prefilled before its first
    token."""

    tokens: Array  # (T,) uniform
    surv: Array  # (T,) P(prompt > tokens)
    mean: float
    second: float  # E[prompt^2]
    strata: tuple[Array, Array]  # (J,) lengths, (J,) weights
    shape: tuple[Array, Array]  # (2,) conditional means over strata / the mean, weights

    @classmethod
    def of(cls, dist: LengthDist) -> PromptLaw:
        width = max(float(dist.max) / 2048.0, 1.0)
        bins = math.ceil(float(dist.max) / width) + 2
        pmf = np.zeros(bins)
        np.add.at(pmf, np.round(dist.values / width).astype(np.intp), dist.probs)
        return cls(tokens=np.arange(bins, dtype=np.float64) * width,
                   surv=np.clip(1.0 - np.cumsum(pmf), 0.0, 1.0),
                   mean=dist.mean, second=dist.second_moment,
                   strata=strata(dist, PROMPT_EDGES), shape=_shape(dist))

    @property
    def far(self) -> float:
        return float(self.tokens[-1])

    @property
    def tail_lengths(self) -> Array:
        """Prompt lengths at the median, p90, p99, p99.9 and the longest."""
        qs = (0.5, 0.9, 0.99, 0.999)
        idx = [min(int(np.searchsorted(-self.surv, -(1.0 - q))), self.tokens.size - 1)
               for q in qs]
        return np.array([*(self.tokens[i] for i in idx), self.far])

    @property
    def _surv0(self) -> Array:
        return self.surv

    def at(self, tau: Array) -> Array:
        """P(prompt > tau) (1 below 0: ``surv`` starts at 1 for a prompt of 0 tokens)."""
        pos = np.clip(tau * (1.0 / self.tokens[1]), 0.0, self.tokens.size - 1.001)
        j = pos.astype(np.intp)
        s0 = self._surv0[j]
        return np.asarray(s0 + (self._surv0[j + 1] - s0) * (pos - j))

    def extra(self, mu: Array) -> tuple[Array, Array]:
        """Tokens of the other prompts prefilled in the same step, K ~ Poisson(mu) of them:
        (shifts, weights) (..., 3). None with chance e^-mu; else the sum given K >= 1 on
        two atoms with its conditional mean and variance, shaped like the prompt length
        (the conditional means of its lower 80% and its top 20%, so a long prompt ahead
        keeps the length law's skew); a fixed length (no shape) takes mean +- sd."""
        mu = np.maximum(mu, 0.0)
        p0 = np.exp(-mu)
        some = np.maximum(1.0 - p0, 1e-300)
        m1 = mu * self.mean / some
        m2 = (mu * self.second + mu * mu * self.mean**2) / some
        sd = np.sqrt(np.maximum(m2 - m1 * m1, 0.0))
        rho, w = self.shape
        spread = float(np.sqrt(np.dot(w, (rho - 1.0) ** 2)))
        if spread > 1e-6:
            scale = sd / np.maximum(m1 * spread, 1e-300)
            atoms = m1[..., None] * (1.0 + scale[..., None] * (rho - 1.0))
            weights = (1.0 - p0)[..., None] * w
        else:
            atoms = np.stack([m1 - sd, m1 + sd], axis=-1)
            weights = (1.0 - p0)[..., None] * np.array([0.5, 0.5])
        shifts = np.concatenate([np.zeros_like(mu)[..., None], np.maximum(atoms, 0.0)], -1)
        return shifts, np.concatenate([p0[..., None], weights], axis=-1)


_SHAPE_EDGES = np.array([0.0, 0.8, 1.0])


def _shape(dist: LengthDist) -> tuple[Array, Array]:
    """The prompt length's conditional means over probability strata (the tail
    resolved), relative to its mean, and the strata's weights."""
    order = np.argsort(dist.values)
    v, p = dist.values[order].astype(np.float64), dist.probs[order]
    hi = np.cumsum(p)
    lo = hi - p
    means = []
    for a, b in itertools.pairwise(_SHAPE_EDGES):
        part = np.clip(np.minimum(hi, b) - np.maximum(lo, a), 0.0, None)
        means.append(float(np.dot(part, v)) / (b - a))
    return np.array(means) / dist.mean, np.diff(_SHAPE_EDGES)


def interp_rows(xg: Array, yg: Array, x: Array) -> Array:
    """Each row's piecewise-linear function (``xg`` increasing) at ``x`` (one per row):
    its first value below the grid, its last above."""
    j = np.clip((xg < x[:, None]).sum(axis=1) - 1, 0, xg.shape[1] - 2)
    rows = np.arange(x.size)
    x0, x1 = xg[rows, j], xg[rows, j + 1]
    y0, y1 = yg[rows, j], yg[rows, j + 1]
    f = np.clip((x - x0) / np.maximum(x1 - x0, 1e-300), 0.0, 1.0)
    return np.asarray(y0 + (y1 - y0) * f)


def exp_smooth(xg: Array, yg: Array, x: Array, m: Array) -> Array:
    """``E[S(x - m E)]``, E a unit exponential, for each row's piecewise-linear survival S
    (1 below its grid, its last value above): ``(1/m) int_{-inf}^x S(y) e^{-(x-y)/m} dy``,
    in closed form on each segment (``[(S(y) - s m) e^{-(x-y)/m}]`` for slope s); one
    exponential per grid point."""
    m = np.maximum(np.asarray(m, dtype=np.float64), 1e-300)[:, None]
    xx = x[:, None]
    at = np.minimum(xg, xx)  # the grid clipped at x
    with np.errstate(over="ignore", under="ignore"):
        e = np.exp((at - xx) / m)
    slope = np.diff(yg, axis=1) / np.maximum(np.diff(xg, axis=1), 1e-300)
    s_hi = yg[:, :-1] + slope * (at[:, 1:] - xg[:, :-1])
    sm = slope * m
    seg = (s_hi - sm) * e[:, 1:] - (yg[:, :-1] - sm) * e[:, :-1]
    seg = np.where(at[:, 1:] > at[:, :-1], seg, 0.0)
    below = e[:, 0]  # S = 1 below the grid
    above = yg[:, -1] * (1.0 - e[:, -1])
    return np.asarray(np.clip(below + seg.sum(axis=1) + above, 0.0, 1.0))


def forward_rows(tau: Array, g: Array, tokens: Array) -> Array:
    """Each row's table ``g`` over its tokens ``tau`` at ``tokens`` (rows, N): linear, the
    last value beyond the table."""
    j = np.clip((tau[:, None, :] <= tokens[:, :, None]).sum(axis=2) - 1, 0, tau.shape[1] - 2)
    t0 = np.take_along_axis(tau, j, 1)
    t1 = np.take_along_axis(tau, j + 1, 1)
    f = np.clip((tokens - t0) / np.maximum(t1 - t0, 1e-300), 0.0, 1.0)
    return np.asarray(np.take_along_axis(g, j, 1) * (1 - f) + np.take_along_axis(g, j + 1, 1)
                      * f)


def crossing(x: Array, s: Array, level: float) -> Array:
    """Per row, where the non-increasing ``s`` over ``x`` falls to ``level`` (linear)."""
    j = np.clip((s > level).sum(axis=1) - 1, 0, x.shape[1] - 2)
    rows = np.arange(x.shape[0])
    s0, s1 = s[rows, j], s[rows, j + 1]
    f = np.clip((s0 - level) / np.maximum(s0 - s1, 1e-300), 0.0, 1.0)
    return np.asarray(x[rows, j] + (x[rows, j + 1] - x[rows, j]) * f)
