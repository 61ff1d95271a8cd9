"""The step-time fixed point of open loops and the capacity it gives.

A tagged request sees, by PASTA for Poisson arrivals, ``N`` other decoding sequences with
``N ~ Poisson(n)`` where Little's law gives ``n = lambda x (O - 1) x TPOT``. Each step also
carries the prompts that arrived during the previous step, ``p = lambda x TPOT x I`` tokens.
So the mean time per output token solves the fixed point

    TPOT = f(1 + n, p),   n = lambda (O - 1) TPOT,   p = lambda TPOT I

with ``f`` the step a decoder sees (:meth:`FixedPoint.step_seen`); it has a solution iff
the replica keeps up. The capacity is the least of the rate where the fixed point stops
existing, where sequences in flight fill the slots and where prompt tokens fill the
budget.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from kvopt.caching import Memo
from kvopt.serving.quadrature import poisson_quadrature, size_biased_pair
from kvopt.serving.steady.base import MAX_STEP_S, SteadyBase

Array = npt.NDArray[np.float64]
# step-time curves by model physics (models that differ only in max_num_seqs share one)
_CURVES: Memo[tuple[object, ...], tuple[object, tuple[float, Array, Array]]] = Memo(
    "steady step-time curves", 4096)


class FixedPoint(SteadyBase):
    """Step times, the fixed point and the capacity of open loops."""

    def prefill_noise(self, n: Array, t: Array) -> Array:
        """Noise of the number decoding per arrival, against a Poisson count's, with ``n``
        decoding and steps of ``t``: an arrival is one more decoder and, while its prompt is
        prefilled, holds every decoder up, delaying ``kappa = lam c I`` completions (``c I``
        its prefill time; ``E kappa = rho_p``, the share of the step spent prefilling, the
        step minus its decode-only part). Both ride on the arrival, so its noise is
        ``(1 + kappa)^2 lam`` against the completions' ``lam``:
        ``f = (1 + E (1 + kappa)^2) / 2 = 1 + rho_p + rho_p^2 (1 + cv^2) / 2``, ``cv`` the
        prompt length's coefficient of variation."""
        decode = self.step(1.0 + np.asarray(n, dtype=np.float64), 0.0)
        rho_p = np.clip(1.0 - decode / np.maximum(t, 1e-12), 0.0, 1.0)
        return np.asarray(1.0 + rho_p + rho_p**2 * (1.0 + self.i_cv2) / 2.0)

    def step_seen(self, lam: Array, t: Array, others: Array | None = None) -> Array:
        """Mean step a decoding request sees at rate ``lam`` when steps take ``t``: with
        ``others`` decoding beside it, or the open loop's fluctuating number, whose
        dispersion ``v`` (variance / mean) comes from :meth:`_dispersion`."""
        if others is not None:  # a closed loop's clients: itself and exactly ``others``
            return self.step_moments(lam, t, others, points=1)[0]
        lam = np.asarray(lam, dtype=np.float64)
        t = np.asarray(t, dtype=np.float64)
        return self.step_moments(lam, t, disp=self._dispersion(lam * t))[0]

    def _dispersion(self, x: Array) -> Array:
        """Variance over mean of the number decoding at ``x = lam t`` prompts per step.
        Linear noise: ``v = f / (1 - eta)``, with ``eta = d ln F / d ln x`` the loop gain of
        the step at a Poisson count (``v = 1``) and ``f`` the arrivals' extra noise
        (:meth:`prefill_noise`). Tabulated once per model on a coarse grid of ``x``."""
        if self._disp_table is None:
            per = max(self.dec_steps, 1.0)
            xs = np.geomspace(1e-5, 1e7, 25) / per
            one = np.ones_like(xs)
            f0 = self.step_moments(xs, one, points=1)[0]
            eta = np.gradient(np.log(f0), np.log(xs))
            v = self.prefill_noise(xs * self.dec_steps, f0) / (1.0 - np.clip(eta, 0.0, 0.9))
            self._disp_table = (np.log(xs), v)
        lx, v = self._disp_table
        with np.errstate(divide="ignore"):
            return np.asarray(np.interp(np.log(np.maximum(np.asarray(x, dtype=np.float64),
                                                          1e-300)), lx, v))

    def step_moments(self, lam: Array, t: Array, others: Array | None = None,
                      disp: Array | None = None, points: int = 2) -> tuple[Array, Array]:
        """Expected time per output token for a decoding request at rate ``lam`` when steps
        take ``t``: prompts arrive in bursts of ``K ~ Poisson(lam t)`` per step; a burst of P
        tokens beyond the free budget F spreads over ``P / F`` steps (chunked prefill), each
        giving the decoders one token. Expectation over K by quadrature (Jensen matters:
        a step with a prompt can be compute-bound while decode-only steps are not), then
        the harmonic mean over the decoders in the step (``disp``: their variance over
        mean, 1 for a Poisson count; ``points=1``: exactly itself plus ``others``)."""
        lam = np.asarray(lam, dtype=np.float64)[..., None]
        t = np.asarray(t, dtype=np.float64)[..., None]
        n = (lam * self.dec_steps * t if others is None
             else np.asarray(others, dtype=np.float64)[..., None])
        mu = lam * t
        k, w = poisson_quadrature(mu)
        # compound Poisson: K prompts of random length -> K*mean +- sqrt(K)*sd (2 points)
        spread = np.sqrt(k * self.i_var)
        burst = np.concatenate([np.maximum(k * self.i_new - spread, 0.0),
                                k * self.i_new + spread], axis=-1)
        w = np.concatenate([w, w], axis=-1) / 2
        n = np.broadcast_to(n, (*burst.shape[:-1], 1))
        free = self.free_budget(1.0 + n)
        steps = np.maximum(1.0, burst / free)
        # the decoders in a step: N of mean n and variance v n over time (a Poisson count
        # when v = 1, else a negative binomial). Tokens come one per decoder per step, so
        # the step a decoder sees is E_T[N] / E_T[N / d(N)]: the harmonic mean of d over
        # N's size-biased law, itself plus M ~ NegBin (Poisson when v = 1) of mean
        # n + v - 1, on two points (:func:`size_biased_pair`): a mixture of experts' step
        # is steep and concave in the decoders, so their spread matters there
        v = (np.ones_like(n) if disp is None
             else np.maximum(np.asarray(disp, dtype=np.float64)[..., None], 1.0)
             * np.ones_like(n))
        if points == 1:  # the size-biased mean alone (a slope, or a closed loop's clients)
            nodes, weights = (np.maximum(n, 0.0) + v - 1.0), np.ones_like(n)
        else:
            nodes, weights = size_biased_pair(np.maximum(n, 0.0)[..., 0], v[..., 0])
        # all points in one step evaluation (the leading axis)
        nd = np.moveaxis(nodes, -1, 0)[..., None]
        d = list(self.step(1.0 + nd, np.broadcast_to(burst / steps, (points, *burst.shape))))
        cw = w * steps
        tot = np.sum(cw, axis=-1)
        means = [np.sum(cw * d_i, axis=-1) / tot for d_i in d]
        inv = sum(weights[..., i] / np.maximum(means[i], 1e-300) for i in range(points))
        mean = 1.0 / inv
        step = sum(weights[..., i:i + 1] * d[i] for i in range(points))
        arith = sum(weights[..., i] * means[i] for i in range(points))
        var = np.maximum(np.sum(cw * step**2, axis=-1) / tot - arith**2, 0.0)
        return np.asarray(mean), np.asarray(var)

    def tpot(self, lam: Array) -> Array:
        """Mean TPOT at Poisson rates ``lam`` (inf where the replica cannot keep up): the
        fixed point ``t = step_seen(lam, t)``, the root of ``h(x) = log step_seen(lam, e^x)
        - x`` between the idle step (``h >= 0``: load only lengthens steps) and 30 s
        (``h <= 0`` iff the replica keeps up), by regula falsi with the Illinois rule
        (vectorized; to 1e-9 in log t, about 6-10 evaluations instead of 21 for bisection)."""
        lam = np.atleast_1d(np.asarray(lam, dtype=np.float64))
        base = max(float(self.step(1.0, 0.0)), 1e-9)
        a = np.full_like(lam, math.log(base))
        b = np.full_like(lam, math.log(MAX_STEP_S))

        def h(x: Array, rate: Array) -> Array:
            return np.asarray(np.log(self.step_seen(rate, np.exp(x))) - x)

        fa, fb = np.maximum(h(a, lam), 0.0), h(b, lam)
        ok = fb <= 0
        root = b.copy()
        todo = ok & (fa > 0)
        root[ok & (fa <= 0)] = a[ok & (fa <= 0)]  # idle: the step does not lengthen
        side = np.zeros_like(lam)  # which end moved last (+1: a, -1: b)
        for _ in range(60):
            if not todo.any():
                break
            i = np.nonzero(todo)[0]
            ai, bi, fai, fbi = a[i], b[i], fa[i], fb[i]
            denom = fbi - fai
            c = np.where(denom < 0, bi - fbi * (bi - ai) / np.where(denom < 0, denom, -1.0),
                         (ai + bi) / 2)
            fc = h(c, lam[i])
            move_b = fc <= 0
            # Illinois: halve the stale end's value when the same end moves twice
            fa[i] = np.where(move_b & (side[i] == -1), fai / 2, np.where(move_b, fai, fc))
            fb[i] = np.where(~move_b & (side[i] == 1), fbi / 2, np.where(move_b, fc, fbi))
            a[i] = np.where(move_b, ai, c)
            b[i] = np.where(move_b, c, bi)
            side[i] = np.where(move_b, -1.0, 1.0)
            hit = np.abs(fc) < 1e-9
            done = hit | (b[i] - a[i] < 1e-9)
            root[i] = np.where(hit, c, np.where(done, b[i], root[i]))
            todo[i[done]] = False
        root[todo] = b[todo]
        return np.where(ok, np.exp(root), np.inf)

    def feasible(self, lam: Array) -> tuple[Array, Array]:
        """(1.0 where feasible else 0.0, step time) for rates ``lam``: the fixed point
        exists, the sequences in flight fit the slots, and prompt tokens fit the budget."""
        lam = np.asarray(lam, dtype=np.float64)
        t = self.tpot(lam)
        with np.errstate(invalid="ignore"):
            ok = (np.isfinite(t) & (lam * (self.dec_steps + 1.0) * t < self.slots)
                  & (lam * t * self.i_new < self.budget))
        return np.asarray(ok, dtype=np.float64), t

    def step_curve(self) -> tuple[float, Array, Array]:
        """(rate where the step-time fixed point stops existing, log-rate grid, log step
        time on it). Independent of the slot cap, so models that differ only in
        ``max_num_seqs`` share it.

        The step a decoding request sees depends on the rate and the step time only
        through ``x = lam t`` (prompts per step; ``x`` times the decode steps per request
        are the others decoding), ``F(x) = step_seen(lam, t)``. So the fixed points
        ``t = F(lam t)`` are the curve ``x -> (lam, t) = (x / F(x), F(x))``, traced with
        no root finding. For a rate the stable fixed point is the smallest ``x`` that
        reaches it: the curve keeps the points where ``lam`` is a new maximum, up to steps
        of 30 s; the largest ``lam`` on it is the divergence (refined around it)."""
        hit = _CURVES.get(self._phys_key)
        if hit is not None and hit[0] is self.sc:
            return hit[1]
        base = float(self.step(1.0, 0.0))
        per = max(self.dec_steps, 1.0)
        x = np.geomspace(1e-5, 1e7, 121) / per  # others decoding from 1e-5 to 1e7

        def trace(x: Array) -> tuple[Array, Array]:
            t = self.step_seen(x, np.ones_like(x))  # lam = x, t = 1: lam t = x
            return x / t, t

        lam, ts = trace(x)
        ok = ts <= MAX_STEP_S
        if ok.any():
            # refine where the divergence lies: around the largest rate on the curve, or
            # between the last step under 30 s and the first above
            k = int(np.argmax(np.where(ok, lam, -np.inf)))
            lo, hi = x[max(k - 1, 0)], x[min(k + 1, x.size - 1)]
            fine = np.geomspace(lo, hi, 34)[1:-1]
            lam_f, ts_f = trace(fine)
            x = np.concatenate([x, fine])
            lam, ts = np.concatenate([lam, lam_f]), np.concatenate([ts, ts_f])
            order = np.argsort(x)
            lam, ts = lam[order], ts[order]
            ok = ts <= MAX_STEP_S
        # the stable branch: points (under 30 s) where the rate is a new maximum
        lam_ok = np.where(ok, lam, -np.inf)
        prev = np.concatenate([[-np.inf], np.maximum.accumulate(lam_ok)[:-1]])
        keep = ok & (lam_ok > prev)
        lam_div = float(lam[keep].max()) if keep.any() else 0.0
        xs, ys = np.log(lam[keep]), np.log(ts[keep])
        if xs.size < 2:
            xs, ys = np.log(np.array([1e-12, 2e-12])), np.log(np.array([base, base]))
        curve = (lam_div, xs, ys)
        _CURVES.put(self._phys_key, (self.sc, curve))
        return curve

    def _budget_root(self, lam_div: float) -> float:
        """The rate where prompt tokens per step reach the budget: ``lam t(lam) I = B`` on
        the log-log step-time curve, solved in closed form on the segment that crosses
        (bisection when the crossing lies below the curve's first point)."""
        _, x, y = self.step_curve()
        target = math.log(self.budget / max(self.i_new, 1e-12))
        g = x + y  # log(lam t) at the curve points: rises with the rate
        j = int(np.searchsorted(g, target))
        if 0 < j < x.size:
            slope = (y[j] - y[j - 1]) / (x[j] - x[j - 1])
            log_lam = (target - y[j - 1] + slope * x[j - 1]) / (1.0 + slope)
            return float(min(math.exp(log_lam), lam_div))
        lo, hi = 0.0, lam_div
        for _ in range(60):
            mid = (lo + hi) / 2
            lo, hi = (lo, mid) if self._budget_excess(mid) >= 0 else (mid, hi)
        return lo

    def _budget_excess(self, lam: float) -> float:
        """Prompt tokens arriving per step minus the token budget (>= 0: cannot keep up)."""
        return lam * self._t_interp(lam) * self.i_new - self.budget

    def _t_interp(self, lam: float) -> float:
        """Step time at one rate (see :meth:`step_times`)."""
        return float(self.step_times(np.array([lam]))[0])

    def step_times(self, lam: Array) -> Array:
        """Step times at rates ``lam``: log-log interpolation on the shared curve, the fixed
        point itself below its first point, inf at and beyond the divergence."""
        _, x, y = self.step_curve()
        lam = np.atleast_1d(np.asarray(lam, dtype=np.float64))
        with np.errstate(divide="ignore"):
            out = np.exp(np.interp(np.log(lam), x, y))
        low = lam <= math.exp(x[0])
        if low.any():
            out[low] = self.tpot(lam[low])
        out[lam >= math.exp(x[-1])] = np.inf
        return np.asarray(out)

    def elasticity(self, lam: Array) -> Array:
        """``d ln t / d ln lambda`` of the step-time curve at rates ``lam`` (its local
        slope; 0 below the curve's first point, the last slope beyond its end)."""
        _, x, y = self.step_curve()
        lam = np.atleast_1d(np.asarray(lam, dtype=np.float64))
        slope = np.gradient(y, x) if x.size > 2 else np.zeros_like(x)
        with np.errstate(divide="ignore"):
            e = np.interp(np.log(lam), x, slope, left=0.0, right=float(slope[-1]))
        return np.asarray(np.maximum(e, 0.0))
