"""Step times and step-time curves of many replicas at once (arrays over replicas).

The screening capacity model (:mod:`kvopt.serving.screen`) sizes thousands of candidate
replicas in one pass, so the per-replica objects of the analytic model become arrays:

* :class:`StackedSteps`: :meth:`StepCost.mean_step_s` of every replica (same equation: the
  token-parallel table, the LM head, the decode and prefill attention kernels, the step
  overhead) with the
  tables resampled on one shared geometric token grid (exact at its points, linear between);
* :func:`step_moments`: :meth:`SteadyModel.step_moments` (prompt bursts by Poisson
  quadrature, chunked over the free budget, the harmonic mean over the decoders' size-biased
  law) on replica-indexed arrays;
* :class:`Curves`: :meth:`SteadyModel.step_curve`, the step-time curve ``t(lambda)`` traced
  through ``x = lambda t`` with no root finding, and the rate where it diverges.

Only the plain case is covered (no prefix caching, speculative decoding or a draft model);
:mod:`kvopt.serving.screen` sends the others to the exact model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from kvopt.serving.quadrature import poisson_quadrature, size_biased_pair
from kvopt.serving.steady.base import MAX_STEP_S
from kvopt.serving.stepcost import AttentionPricing, StepCost

Array = npt.NDArray[np.float64]
Index = npt.NDArray[np.intp]
_GRID_POINTS = 128  # shared token grid (ratio ~1.08 per point up to 20k tokens)
_TRACE = np.geomspace(1e-2, 1e6, 57)  # others decoding along the curve (7 a decade)
_FINE = 7  # points refining the curve around its largest rate
_BLOCK = 24  # replicas per block of the trace (arrays that stay in cache)


@dataclass(frozen=True)
class StackedSteps:
    """Mean step time of R replicas: ``step(r, n, p)`` is ``costs[r].mean_step_s`` with
    ``n`` decoding sequences at each replica's mean context and ``p`` prefill tokens."""

    log_h: float  # log of the grid ratio
    top: float  # last grid point (tokens)
    grid: Array  # (K,)
    # token-parallel ops + all-reduces, and the LM head, linear between the grid points:
    # value = offset + slope x tokens on each segment (R * K,)
    linear_slope: Array
    head_slope: Array
    linear_offset: Array
    head_offset: Array
    df1: Array  # (R,) attention FLOPs and bytes of one decode sequence
    db1: Array
    pf_tok: Array  # (R,) attention FLOPs and bytes per prefilled prompt token
    pb_tok: Array
    new_mean: Array  # (R,) mean prompt tokens (head rows per prefilled prompt)
    pricing: AttentionPricing  # (R,) arrays: each replica's attention kernels
    overhead_s: Array
    prefill_first: Array  # (R,) bool: prompts run as a pass of their own (SGLang's default)
    encoder_s: Array  # (R,) encoding one prompt's images (multimodal requests)

    @classmethod
    def build(cls, costs: list[StepCost], ctx: Array, prompt_len: Array) -> StackedSteps:
        top = float(max(sc.grid[-1] for sc in costs))
        grid = np.geomspace(1.0, top, _GRID_POINTS)
        units = np.array([sc.attention_units(float(c), float(i))
                          for sc, c, i in zip(costs, ctx, prompt_len, strict=True)])
        linear = np.array([sc.linear(grid) for sc in costs])
        head = np.array([sc.head(grid) for sc in costs])

        def slopes(y: Array) -> Array:
            d = np.zeros_like(y)
            d[:, :-1] = np.diff(y, axis=1) / np.diff(grid)
            return d.ravel()

        g_all = np.tile(grid, len(costs))
        return cls(log_h=math.log(top) / (_GRID_POINTS - 1), top=top, grid=grid,
                   linear_slope=slopes(linear), head_slope=slopes(head),
                   linear_offset=linear.ravel() - slopes(linear) * g_all,
                   head_offset=head.ravel() - slopes(head) * g_all,
                   df1=units[:, 0], db1=units[:, 1], pf_tok=units[:, 2], pb_tok=units[:, 3],
                   new_mean=units[:, 4],
                   pricing=AttentionPricing.stack([sc.pricing for sc in costs]),
                   overhead_s=np.array([sc.overhead_s for sc in costs]),
                   prefill_first=np.array([sc.replica.engine.prefill_policy == "prefill_first"
                                           for sc in costs]),
                   encoder_s=np.array([sc.encoder_s for sc in costs]))

    def _table(self, offset: Array, slopes: Array, r: Index, x: Array) -> Array:
        """Row ``r`` of a (R, K) table at ``x`` tokens: 0 below one token, the last value
        beyond the grid, linear between grid points (``offset + slope x`` on each)."""
        k = self.grid.size
        xc = np.clip(x, 1.0, self.top)
        flat = np.minimum((np.log(xc) * (1.0 / self.log_h)).astype(np.intp), k - 2) + r * k
        out = offset[flat] + slopes[flat] * xc
        return np.asarray(np.where(x < 1.0, 0.0, out))

    def step(self, r: Index, n: Array | float, p: Array | float) -> Array:
        """Mean step time (s) of replicas ``r`` with ``n`` decoding and ``p`` prefill tokens
        (broadcast together; per-replica constants are gathered on ``r``'s own shape); a
        prefill-first replica's step is a prefill pass and a decode pass, as
        :meth:`SteadyModel.step`."""
        r = np.asarray(r, dtype=np.intp)
        n = np.asarray(n, dtype=np.float64)
        p = np.asarray(p, dtype=np.float64)
        mixed = self._pass(r, n, p)
        pf = self.prefill_first[r]
        if not pf.any():
            return mixed
        both = (np.where(n > 0, self._pass(r, n, np.zeros_like(p)), 0.0)
                + np.where(p > 0, self._pass(r, np.zeros_like(n), p), 0.0))
        return np.asarray(np.where(pf, both, mixed))

    def _pass(self, r: Index, n: Array, p: Array) -> Array:
        """One forward pass of ``n`` decoders and ``p`` prompt tokens."""
        prompts = p * (1.0 / np.maximum(self.new_mean[r], 1.0))
        rows = n + prompts
        att = self.pricing.take(r).time_s(
            dec_flops=n * self.df1[r], dec_bytes=n * self.db1[r], pre_flops=p * self.pf_tok[r],
            pre_bytes=p * self.pb_tok[r], dec_on=np.minimum(n, 1.0),
            pre_on=(p > 0).astype(np.float64))
        tok = n + p
        t: Array = (self._table(self.linear_offset, self.linear_slope, r, tok)
                    + self._table(self.head_offset, self.head_slope, r, rows)
                    + att + self.overhead_s[r] + prompts * self.encoder_s[r])
        return np.asarray(np.where(tok > 0, t, 0.0))


@dataclass(frozen=True)
class Mix:
    """Per-replica constants of a length mix and engine (arrays (R,)), as
    :class:`SteadyModel` derives them."""

    dec: Array  # decode steps per request (output tokens after the first)
    i_new: Array  # prompt tokens prefilled per request
    i_var: Array
    i_cv2: Array
    budget: Array  # token budget per step
    prefill_first: Array  # bool: decoders take none of the budget

    @classmethod
    def of(cls, models: list[Any]) -> Mix:
        def col(name: str) -> Array:
            return np.array([float(getattr(m, name)) for m in models])

        return cls(dec=col("dec_steps"), i_new=col("i_new"), i_var=col("i_var"),
                   i_cv2=col("i_cv2"), budget=col("budget"),
                   prefill_first=np.array([bool(m.prefill_first) for m in models]))


def step_moments(st: StackedSteps, mix: Mix, r: Index, lam: Array, t: Array, *,
                 others: Array | None = None, disp: Array | None = None
                 ) -> tuple[Array, Array]:
    """(mean, variance) of the step a decoding request sees, as
    :meth:`SteadyModel.step_moments`: the open loop's fluctuating decoders (``disp`` their
    variance over mean, two size-biased points) or exactly itself plus ``others``."""
    lam = np.asarray(lam, dtype=np.float64)[..., None]
    t = np.asarray(t, dtype=np.float64)[..., None]
    rr = np.asarray(r)[..., None]
    n = lam * mix.dec[rr] * t if others is None else np.asarray(others)[..., None]
    # the exact pmf on 0..11 up to mean 3.5, the tail folded on 11 (the analytic model's
    # uses 0..23 up to 6: the mass beyond 11 is below 1e-3 there and the means are
    # normalized), 12-point Gauss-Hermite above (the same as the analytic model's)
    k, w = poisson_quadrature(lam * t, terms=12, exact_below=3.5, fold_tail=True)
    spread = np.sqrt(k * mix.i_var[rr])
    inew = mix.i_new[rr]
    burst = np.concatenate([np.maximum(k * inew - spread, 0.0), k * inew + spread], axis=-1)
    w = np.concatenate([w, w], axis=-1) / 2
    free = np.where(mix.prefill_first[rr], mix.budget[rr],
                    np.maximum(mix.budget[rr] - (1.0 + n), 1.0))
    steps = np.maximum(1.0, burst / free)
    chunk = burst / steps
    cw = w * steps
    tot = np.sum(cw, axis=-1)
    if others is not None:  # itself plus exactly ``others``
        d = st.step(rr, 1.0 + np.maximum(n, 0.0), chunk)
        mean = np.sum(cw * d, axis=-1) / tot
        var = np.maximum(np.sum(cw * d * d, axis=-1) / tot - mean**2, 0.0)
        return mean, var
    v = np.maximum(np.asarray(disp, dtype=np.float64), 1.0) if disp is not None else None
    if v is None:  # a Poisson count: the size-biased mean only (the dispersion's table)
        d = st.step(rr, 1.0 + np.maximum(n, 0.0), chunk)
        mean = np.sum(cw * d, axis=-1) / tot
        return mean, np.zeros_like(mean)
    nodes, weights = size_biased_pair(np.maximum(n, 0.0)[..., 0], v)
    d0 = st.step(rr, 1.0 + nodes[..., 0:1], chunk)
    d1 = st.step(rr, 1.0 + nodes[..., 1:2], chunk)
    m0 = np.sum(cw * d0, axis=-1) / tot
    m1 = np.sum(cw * d1, axis=-1) / tot
    w0, w1 = weights[..., 0], weights[..., 1]
    mean = 1.0 / (w0 / np.maximum(m0, 1e-300) + w1 / np.maximum(m1, 1e-300))
    step = w0[..., None] * d0 + w1[..., None] * d1
    arith = w0 * m0 + w1 * m1
    var = np.maximum(np.sum(cw * step**2, axis=-1) / tot - arith**2, 0.0)
    return mean, var


_DISP_X = np.geomspace(1e-5, 1e7, 25)  # the analytic model's dispersion table (per step)


def dispersion_table(st: StackedSteps, mix: Mix, ids: Index) -> Array:
    """Variance over mean of the number decoding, tabulated at ``_DISP_X / per`` prompts
    per step for replicas ``ids`` (R, 25), as :meth:`SteadyModel._dispersion`:
    ``f / (1 - eta)``, ``eta`` the loop gain of the step at a Poisson count and ``f`` the
    arrivals' noise (:meth:`SteadyModel.prefill_noise`)."""
    r = np.repeat(ids[:, None], _DISP_X.size, axis=1)
    x = _DISP_X[None, :] / np.maximum(mix.dec[ids], 1.0)[:, None]
    f0, _ = step_moments(st, mix, r, x, np.ones_like(x))
    eta = np.gradient(np.log(f0), math.log(_DISP_X[1] / _DISP_X[0]), axis=1)
    decode = st.step(r, 1.0 + x * mix.dec[r], 0.0)
    rho_p = np.clip(1.0 - decode / np.maximum(f0, 1e-12), 0.0, 1.0)
    noise = 1.0 + rho_p + rho_p**2 * (1.0 + mix.i_cv2[r]) / 2.0
    return np.asarray(noise / (1.0 - np.clip(eta, 0.0, 0.9)))


def dispersion_at(table: Array, mix: Mix, ids: Index, x: Array) -> Array:
    """The table of :func:`dispersion_table` (rows ``ids``) at ``x`` prompts per step
    ((R, ...) rows), linear in log x and clamped at the ends like ``np.interp``."""
    per = np.maximum(mix.dec[ids], 1.0).reshape((-1,) + (1,) * (x.ndim - 1))
    step = math.log(_DISP_X[1] / _DISP_X[0])
    pos = np.clip((np.log(np.maximum(x * per, 1e-300)) - math.log(_DISP_X[0])) / step, 0.0,
                  _DISP_X.size - 1.0)
    j = np.minimum(pos.astype(np.intp), _DISP_X.size - 2)
    frac = pos - j
    rows = np.arange(table.shape[0]).reshape(per.shape)
    return np.asarray(table[rows, j] * (1 - frac) + table[rows, j + 1] * frac)


@dataclass(frozen=True)
class Curves:
    """The step-time curves of R replicas: along each row ``lam`` increases (the stable
    branch); ``t`` is the step time there; ``e`` its elasticity ``d ln t / d ln lam``."""

    lam: Array  # (R, X) (padded rows repeat their last point)
    t: Array
    e: Array
    lam_div: Array  # (R,) the largest sustainable rate of the step-time fixed point

    @classmethod
    def trace(cls, st: StackedSteps, mix: Mix) -> Curves:
        """``x -> (lam, t) = (x / F(x), F(x))``, ``F(x)`` the step seen at ``x`` prompts per
        step, then refined around the largest rate (as :meth:`SteadyModel.step_curve`); in
        blocks of replicas."""
        parts = [cls._trace(st, mix, np.arange(a, min(a + _BLOCK, mix.dec.size)))
                 for a in range(0, mix.dec.size, _BLOCK)]
        return cls(lam=np.concatenate([c.lam for c in parts]),
                   t=np.concatenate([c.t for c in parts]),
                   e=np.concatenate([c.e for c in parts]),
                   lam_div=np.concatenate([c.lam_div for c in parts]))

    @classmethod
    def _trace(cls, st: StackedSteps, mix: Mix, ids: Index) -> Curves:
        nrep = ids.size
        r = np.repeat(ids[:, None], _TRACE.size, axis=1)
        per = np.maximum(mix.dec[ids], 1.0)[:, None]
        x = _TRACE[None, :] / per
        table = dispersion_table(st, mix, ids)
        lam, t = _seen(st, mix, r, x, dispersion_at(table, mix, ids, x))
        ok = t <= MAX_STEP_S
        k = np.argmax(np.where(ok, lam, -np.inf), axis=1)
        rows = np.arange(nrep)
        lo = x[rows, np.maximum(k - 1, 0)]
        hi = x[rows, np.minimum(k + 1, _TRACE.size - 1)]
        frac = np.linspace(0.0, 1.0, _FINE + 2)[1:-1]
        xf = np.exp(np.log(lo)[:, None] + (np.log(hi) - np.log(lo))[:, None] * frac[None, :])
        lam_f, t_f = _seen(st, mix, r[:, :_FINE], xf, dispersion_at(table, mix, ids, xf))
        x = np.concatenate([x, xf], axis=1)
        lam, t = np.concatenate([lam, lam_f], axis=1), np.concatenate([t, t_f], axis=1)
        order = np.argsort(x, axis=1)
        lam, t = np.take_along_axis(lam, order, 1), np.take_along_axis(t, order, 1)
        x = np.take_along_axis(x, order, 1)
        # elasticity of the curve: d ln t / d ln lam = eta / (1 - eta), eta = d ln F / d ln x
        eta = _slopes(np.log(x), np.log(t))
        e_all = np.where(eta < 1.0, eta / np.maximum(1.0 - eta, 1e-9), 0.0)
        ok = t <= MAX_STEP_S
        lam_ok = np.where(ok, lam, -np.inf)
        prev = np.concatenate([np.full((nrep, 1), -np.inf),
                               np.maximum.accumulate(lam_ok, axis=1)[:, :-1]], axis=1)
        keep = ok & (lam_ok > prev)
        lam_div = np.where(keep.any(axis=1), np.max(np.where(keep, lam, 0.0), axis=1), 0.0)
        # pack each row's kept points first, then repeat the last kept point
        pos = np.argsort(~keep, axis=1, kind="stable")
        count = keep.sum(axis=1)
        col = np.minimum(np.arange(lam.shape[1])[None, :], np.maximum(count - 1, 0)[:, None])
        pick = np.take_along_axis(pos, col, 1)
        lam_k = np.take_along_axis(lam, pick, 1)
        t_k = np.take_along_axis(t, pick, 1)
        e = np.take_along_axis(e_all, pick, 1)
        return cls(lam=lam_k, t=t_k, e=np.maximum(e, 0.0), lam_div=lam_div)

    def at(self, r: Index, lam: Array) -> tuple[Array, Array]:
        """(step time, elasticity) of replicas ``r`` at rates ``lam`` (log-log
        interpolation, the first point's below it; inf at and beyond the divergence)."""
        r, lam = np.broadcast_arrays(np.asarray(r, dtype=np.intp),
                                     np.asarray(lam, dtype=np.float64))
        nrep, width = self.lam.shape
        # every row is increasing: one search over all rows, each shifted by its index
        llam = np.clip(np.log(np.maximum(self.lam, 1e-300)), -900.0, 900.0)
        keys = (llam + 2000.0 * np.arange(nrep)[:, None]).ravel()
        x = np.clip(np.log(np.maximum(lam, 1e-300)), -900.0, 900.0)
        base = r * width
        j = np.searchsorted(keys, x + 2000.0 * r, side="right") - 1
        j = np.clip(j, base, base + width - 2)
        flat_l, flat_t, flat_e = llam.ravel(), np.log(np.maximum(self.t, 1e-300)).ravel(), \
            self.e.ravel()
        x0, x1 = flat_l[j], flat_l[j + 1]
        span = x1 - x0
        s = np.where(span > 0, np.clip((x - x0) / np.where(span > 0, span, 1.0), 0.0, 1.0),
                     0.0)
        # cubic Hermite in log-log, the elasticities as slopes
        y0, y1, e0, e1 = flat_t[j], flat_t[j + 1], flat_e[j], flat_e[j + 1]
        s2, s3 = s * s, s * s * s
        t = np.exp((2 * s3 - 3 * s2 + 1) * y0 + (s3 - 2 * s2 + s) * span * e0
                   + (3 * s2 - 2 * s3) * y1 + (s3 - s2) * span * e1)
        e = np.where(span > 0, (6 * s2 - 6 * s) / np.where(span > 0, span, 1.0) * (y0 - y1),
                     0.0) + (3 * s2 - 4 * s + 1) * e0 + (3 * s2 - 2 * s) * e1
        t = np.where(lam >= self.lam_div[r], np.inf, t)
        return np.asarray(t), np.asarray(e)


def _slopes(x: Array, y: Array) -> Array:
    """``dy / dx`` along the last axis: second-order differences on uneven points (as
    numpy's gradient), one-sided at the ends."""
    h1 = x[..., 1:-1] - x[..., :-2]
    h2 = x[..., 2:] - x[..., 1:-1]
    den = h1 * h2 * (h1 + h2)
    mid = (h1**2 * y[..., 2:] - h2**2 * y[..., :-2] + (h2**2 - h1**2) * y[..., 1:-1]) / \
        np.where(den > 0, den, 1.0)
    first = (y[..., 1:2] - y[..., :1]) / np.maximum(x[..., 1:2] - x[..., :1], 1e-300)
    last = (y[..., -1:] - y[..., -2:-1]) / np.maximum(x[..., -1:] - x[..., -2:-1], 1e-300)
    return np.asarray(np.concatenate([first, np.where(den > 0, mid, 0.0), last], axis=-1))


def _seen(st: StackedSteps, mix: Mix, r: Index, x: Array, v: Array) -> tuple[Array, Array]:
    """(rate, step time) on the curve at ``x`` prompts per step (``v`` the dispersion)."""
    f, _ = step_moments(st, mix, r, x, np.ones_like(x), disp=v)
    return x / f, f
