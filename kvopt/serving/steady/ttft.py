"""The TTFT core of a tagged request (no slot queueing): the residual of the running step
(Poisson arrivals land mid-step; closed-loop ones at a step end), the prompts ahead of it in
the step that prefills it (first come, first served), its own prompt and the budget-sized
chunks it takes. The running step is length-biased from the stationary law of the chain of
prompts per step (each step prefills the prompts that arrived during the one before: long
steps follow long steps)."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from kvopt.serving.quadrature import poisson_inverse, poisson_inverse_rows
from kvopt.serving.special import gammaln
from kvopt.serving.steady.draws import QUAD, D, running_step_index
from kvopt.serving.steady.fixed_point import FixedPoint

Array = npt.NDArray[np.float64]
_CHAIN_STATES = 64


class Ttft(FixedPoint):
    """The TTFT core on the quadrature draws."""

    def _ttft_core(self, lam: Array, t: Array, closed: bool = False, clients: float = 0.0,
                   cohorts: bool = False) -> tuple[Array, Array]:
        """TTFT draws without slot queueing, and the residual part, at rates ``lam`` with
        step times ``t`` (shape (R,) -> (R, Q)): residual of the running step (Poisson
        arrivals land mid-step; closed-loop ones at a step end), then the prefill step(s)."""
        i_me = self._i_draws
        n_sys = lam * self.dec_steps * t
        with np.errstate(over="ignore"):
            p_busy = np.where(lam > 0, 1.0 - np.exp(-n_sys), 0.0)
        busy = D.arrival_state[None, :] < p_busy[:, None]
        # a closed-loop request arrives at a step end: no running step to wait out
        resid = running = np.zeros((lam.size, QUAD))
        if not closed:
            # the step in progress at a Poisson arrival is length-biased, and long steps
            # follow long steps: the prompts of the next step arrive during this one
            dur, w = self.running_step_law(lam, n_sys)
            bw = w * dur
            cdf = np.cumsum(bw, axis=1) / np.maximum(bw.sum(axis=1, keepdims=True), 1e-300)
            # inverse-CDF draws of each row's running step
            running = np.take_along_axis(dur, running_step_index(cdf), axis=1)
            # with nobody decoding the replica may still be prefilling a prompt that
            # arrived just before (a prefill-only step d1 per arrival that finds it idle):
            # the arrival waits out the rest of it (at low load, the TTFT tail)
            # (length-biased: a long prompt is more likely the one in progress)
            sd = math.sqrt(self.i_var)
            d_lo, d_hi = (float(v) for v in self.step(0.0, np.minimum(np.array(
                [max(self.i_new - sd, 1.0), self.i_new + sd]), self.budget)))
            d1 = (d_lo + d_hi) / 2
            with np.errstate(over="ignore"):
                p_pf = (1.0 - p_busy) * (1.0 - np.exp(-lam * d1))
            prefilling = ~busy & (D.arrival_state[None, :] < (p_busy + p_pf)[:, None])
            pick = np.where(D.running_step < d_hi / (d_lo + d_hi), d_hi, d_lo)
            running = np.where(prefilling, pick[None, :], running)
            resid = np.where(busy | prefilling, D.residual * running, 0.0)
        # prompts that arrived earlier in the same running step are ahead of it (first come,
        # first served); those arriving during its residual join the same step behind it:
        # Poisson counts of random-length prompts
        n_dec = np.where(busy, n_sys[:, None], 0.0)
        # fixed-output requests from a closed loop move in cohorts: those prefilled
        # together finish together and come back at the same step end (:meth:`cohort_mix`)
        cohort = closed and cohorts and clients >= 1
        if cohort:  # a full cohort, or the one of the clients left over
            (g_full, share), *rest = self.cohort_mix(clients)
            g = np.where(D.cohort_pick < share, g_full, rest[0][0] if rest else g_full)
            k_ahead = np.broadcast_to(np.floor(D.ahead_share * g), (lam.size, QUAD))
            k_behind = g - 1.0 - k_ahead
            n_dec = np.broadcast_to(clients - g, (lam.size, QUAD))
        elif closed:  # desynchronized clients: those that finished in the same step as
            # its previous request arrive with it, K ~ Poisson(lam t), in random order. An
            # engine that polls only every few passes takes in together what arrived over
            # the window: those that came before it are ahead, those during its wait behind,
            # W passes' worth of each (kvopt.serving.admission.admit_wait_passes). (Open
            # loops keep the step's own co-arrivals: their polls come in quick succession
            # while prompts keep arriving, and the wait alone matches the simulator better)
            polled = (self.wait_passes(lam * t, clients=clients) * t if self.admits_late
                      else np.zeros_like(t))
            k_co = poisson_inverse_rows(D.co_arrivals, lam * (t + 2.0 * polled))
            k_ahead = np.floor(D.ahead_share * (k_co + 1.0))
            k_behind = k_co - k_ahead
        else:
            k_ahead, k_behind = np.split(poisson_inverse(
                np.concatenate([D.ahead_share, D.co_arrivals]), np.concatenate(
                    [lam[:, None] * np.where(resid > 0, running - resid, 0.0),
                     lam[:, None] * resid], axis=1)), 2, axis=1)
        ahead = np.maximum(k_ahead * self.i_new
                           + np.sqrt(k_ahead * self.i_var) * D.ahead_spread_normal, 0.0)
        behind = k_behind * self.i_new
        # its own prompt: prefix-cache hits skip the cached tokens
        i_me = np.where(D.prefix_hit < self.hit, np.maximum(i_me - self.shared, 1.0), i_me)
        free = self.free_budget(n_dec)
        # full-budget steps until its last chunk, then the step that finishes it (with
        # whatever fits behind it)
        total = ahead + i_me
        chunks = np.maximum(np.ceil(total / free), 1.0)
        last = total - (chunks - 1) * free
        step = self.prefill_done(n_dec, np.minimum(last + behind, free))
        # a full-budget chunk step takes one value per rate for a cohort (the other cohorts
        # decode beside it), otherwise one of two (idle or busy replica)
        if cohort:
            full_step = self.prefill_done(n_dec, self.free_budget(n_dec))
        else:
            n2 = np.stack([np.zeros_like(n_sys), n_sys], axis=1)
            full = self.prefill_done(n2, self.free_budget(n2))
            full_step = np.where(busy, full[:, 1:], full[:, :1])
        more = (chunks - 1) * full_step
        return np.asarray(resid + step + more), np.asarray(resid)

    def running_step_law(self, lam: Array, n_sys: Array) -> tuple[Array, Array]:
        """Durations of steps that prefill k = 0, 1, ... prompts (R, S), and how often
        such steps occur: the stationary law of the chain ``K' ~ Poisson(lam d(K))`` (the
        prompts of the next step arrive during this one), the whole cascade of long steps.
        Steps whose prompts fill the token budget all last the same, so they are one state
        (the budget defers the rest)."""
        full = max(1, math.ceil(self.budget / max(self.i_new, 1.0)))
        size = min(full, _CHAIN_STATES - 1) + 1
        k = np.arange(size, dtype=np.float64)
        dur = self.step((1.0 + n_sys)[:, None], np.minimum(k * self.i_new, self.budget))
        mu = np.maximum(lam[:, None] * dur, 1e-300)[:, :, None]  # (R, from, 1)
        j = k[None, None, :]
        pmf = np.exp(j * np.log(mu) - mu - gammaln(j + 1.0))
        # the last state: at least that many (one less the pmf below it)
        pmf[..., -1] = np.maximum(1.0 - pmf[..., :-1].sum(axis=-1), 0.0)
        # stationary law: pi (P - I) = 0, sum pi = 1
        a = np.swapaxes(pmf, 1, 2) - np.eye(size)
        a[:, -1, :] = 1.0
        b = np.zeros((lam.size, size))
        b[:, -1] = 1.0
        pi = np.maximum(np.linalg.solve(a, b[..., None])[..., 0], 0.0)
        if self.i_var > 0:  # k prompts of random length: k mean +- sqrt(k) sd tokens
            spread = np.sqrt(k * self.i_var)
            toks = np.concatenate([np.maximum(k * self.i_new - spread, 0.0),
                                   k * self.i_new + spread])
            dur = self.step((1.0 + n_sys)[:, None], np.minimum(toks, self.budget))
            pi = np.concatenate([pi, pi], axis=1) / 2
            order = np.argsort(dur, axis=1)
            dur, pi = np.take_along_axis(dur, order, 1), np.take_along_axis(pi, order, 1)
        if self.prefill_first:
            dur, pi = self._passes(n_sys, k, pi)
        return np.asarray(dur), np.asarray(pi)

    def _passes(self, n_sys: Array, k: Array, pi: Array) -> tuple[Array, Array]:
        """A prefill-first step is a prefill pass of its k prompts and a decode pass: an
        arrival finds one of the passes running (length-biased), and waits out that pass
        only (the next pass is its own prefill). The step law (R, S) becomes a pass law
        (R, S + S') over each step's decode pass and, for k >= 1, its prefill pass."""
        s = pi.shape[1] // k.size  # 1, or 2 when prompt lengths vary (two points each)
        toks = np.repeat(np.minimum(k * self.i_new, self.budget), s)[None, :]
        dec = np.repeat(self.step((1.0 + n_sys)[:, None], 0.0), pi.shape[1], axis=1)
        pre = np.broadcast_to(self.prefill_done(0.0, toks), pi.shape)
        has = np.broadcast_to(toks > 0, pi.shape)
        dur = np.concatenate([dec, pre], axis=1)
        w = np.concatenate([pi, np.where(has, pi, 0.0)], axis=1)
        w = w / np.maximum(w.sum(axis=1, keepdims=True), 1e-300)
        order = np.argsort(dur, axis=1)
        return np.take_along_axis(dur, order, 1), np.take_along_axis(w, order, 1)
