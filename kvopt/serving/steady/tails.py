"""Per-request draws at many rates (:class:`Rows`), shared by the max-batch levels of a
replica, and each level's slot wait.

A per-request TPOT averages its steps, which are correlated near capacity: a long step
collects more prompts, so the next prefills more (an AR(1) whose coefficient is the loop
gain of the fixed point), and the number decoding varies more than Poisson because decode
time grows with it (a linear-noise approximation with the elasticity ``e`` of the step-time
curve: variance ``n (1 + e)``; over a request's life a compound Poisson with that mean and
variance). Percentiles come from these draws (:mod:`kvopt.serving.steady.draws`).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from kvopt.serving.quadrature import poisson_inverse_rows
from kvopt.serving.queueing import budget_wait, erlang_c, slot_wait_rate
from kvopt.serving.steady.draws import QUAD, D, stats
from kvopt.serving.steady.state import Rows, SteadyState
from kvopt.serving.steady.ttft import Ttft

Array = npt.NDArray[np.float64]
_OTHERS_GRID = 9  # points of the step-moment curve over the others decoding, per rate
# (TPOT p99s within 0.15% of a 33-point curve)


class Tails(Ttft):
    """The slot-independent draws at many rates and the slot wait."""

    def rows(self, lam: Array, t: Array, *, closed: bool = False,
             running: float = 0.0, cohorts: bool = False) -> Rows:
        """The slot-independent draws at rates ``lam`` (step times ``t``), one row per rate:
        models that differ only in ``max_num_seqs`` share them (see :meth:`slot_wait`)."""
        lam = np.atleast_1d(np.asarray(lam, dtype=np.float64))
        t = np.atleast_1d(np.asarray(t, dtype=np.float64))
        ttft_core, resid = self._ttft_core(lam, t, closed=closed, clients=running,
                                           cohorts=cohorts)
        # the wait for the scheduler to take the request in (a poll every few passes, or
        # attention-DP balancing: :meth:`admit_wait`)
        ttft_core = ttft_core + self.admit_wait(lam, t, closed=closed, clients=running,
                                                cohorts=cohorts)[:, None]
        dec = self.dec_steps
        n = lam * dec * t
        e2e_core = np.mean(ttft_core, axis=1) + dec * t  # in the engine (slots, Little)
        b_wait = np.zeros((lam.size, QUAD))
        if not closed:  # queueing for token budget (M/D/1: :func:`budget_wait`)
            chance, mean = budget_wait(lam, t, self.i_new, self.budget)
            b_wait = np.where(D.arrival_state[None, :] < chance[:, None],
                              mean[:, None] * D.wait_exp[None, :], 0.0)
        # per-request TPOT: the others decoding, averaged over its life, and the prompt
        # bursts averaged over its steps
        if closed:  # a client's cycle also holds the request overhead
            others = np.broadcast_to(
                (max(running - 1.0, 0.0) * dec * t / np.maximum(e2e_core + self.req_s,
                                                                1e-12))[:, None],
                (lam.size, QUAD))
            z_step = np.broadcast_to(D.step_noise_normal[None, :], (lam.size, QUAD))
        else:
            # the decode time grows with the sequences running, which feeds back on their
            # number: a linear-noise approximation gives Var N = n (1 + e), with e the
            # elasticity d ln t / d ln lambda of the step-time curve, and correlations
            # (1 + e) times longer, so the life-average varies n (e + 2/3). Its law: those
            # arriving within one life before or after it, K ~ Poisson(2n), overlap it by
            # U(0, 1) of its life each (mean n, variance 2n/3: skewed when n is small); the
            # feedback widens the overlaps to U(0, b), b = 1 + 1.5 e, with K ~ Poisson(2n/b)
            # (mean n, variance n (e + 2/3))
            e_lam = self.elasticity(lam)
            f = self.prefill_noise(n, t)  # an arrival's prefill also holds up the others
            b = f * (1.0 + 1.5 * e_lam)
            k = poisson_inverse_rows(D.others_count, 2.0 * np.maximum(n, 0.0) / b)
            others = b[:, None] * np.maximum(0.0, k / 2 + np.sqrt(k / 12)
                                             * D.others_normal[None, :])
            # the requests arriving during its life, K_a ~ Poisson(n / b), are half of those
            # it overlaps and bring the prompts prefilled beside it: its step noise shares
            # their count. corr(others, K_a) = (b n / 2b) / sqrt((2 n b / 3) (n / b)) =
            # sqrt(3/8) whatever b; corr(their prompt tokens, K_a) = 1 / sqrt(1 + cv^2)
            rho = math.sqrt(3.0 / 8.0) / math.sqrt(1.0 + self.i_cv2)
            z_step = (rho * D.others_count_normal[None, :]
                      + math.sqrt(1.0 - rho**2) * D.step_noise_normal[None, :])
        # step moments vary smoothly with the others: evaluate on a grid and interpolate
        lo = others.min(axis=1)
        hi = others.max(axis=1) + 1e-9
        grid = np.linspace(lo, hi, _OTHERS_GRID, axis=1)
        g_mean, g_var = self.step_moments(np.repeat(lam[:, None], _OTHERS_GRID, axis=1),
                                           np.repeat(t[:, None], _OTHERS_GRID, axis=1), grid)
        # linear interpolation on each row's uniform grid (all rows at once)
        top = _OTHERS_GRID - 1.0
        pos = np.clip((others - lo[:, None]) / (hi - lo)[:, None] * top, 0.0, top)
        j = np.minimum(pos.astype(np.intp), _OTHERS_GRID - 2)
        frac = pos - j
        per = np.take_along_axis(g_mean, j, 1) * (1 - frac) + np.take_along_axis(
            g_mean, j + 1, 1) * frac
        var = np.take_along_axis(g_var, j, 1) * (1 - frac) + np.take_along_axis(
            g_var, j + 1, 1) * frac
        # its own output length sets how many step durations it averages over
        o_me = self._o_draws
        steps_me = np.maximum((o_me - 1.0) / self.E, 1.0)
        tpot = np.maximum(per + np.sqrt(var * self._ar1_factor(lam, closed)[:, None]
                                        / steps_me) * z_step, 0.0)
        if self.spec is not None:  # tokens accepted per step vary from step to step
            rel = math.sqrt(self.spec.tokens_variance) / self.E
            tpot = tpot * np.maximum(1.0 + rel / np.sqrt(steps_me) * D.others_normal, 0.2)
        # solved mean, per token
        tpot = tpot * (t / np.maximum(np.mean(tpot, axis=1), 1e-12))[:, None] / self.E
        return Rows(lam=lam, t=t, ttft_core=ttft_core + self.req_s, resid=resid,
                    budget_wait=b_wait,
                    e2e_core=e2e_core, tpot=tpot, out_tokens=np.maximum(o_me - 1.0, 0.0),
                    service_scv=self._service_scv(ttft_core, tpot, o_me))

    def _service_scv(self, ttft_core: Array, tpot: Array, o_me: Array) -> Array:
        """Squared coefficient of variation of how long a request holds its slot (TTFT
        core plus its decode), per row: the holding time is nearly fixed when the output
        length is, which halves an M/M/c queue's waits (Allen-Cunneen)."""
        hold = ttft_core + np.maximum(o_me - 1.0, 0.0) * tpot
        mean = np.mean(hold, axis=1)
        return np.asarray(np.var(hold, axis=1) / np.maximum(mean, 1e-300) ** 2)

    def _ar1_factor(self, lam: Array, closed: bool) -> Array:
        """Variance of the mean of a request's step durations, per unit of (one step's
        variance / its steps), for open loops. A step that runs long collects more
        arrivals (and, over time, more decoders), so the next one runs long too: successive
        steps form an AR(1) whose coefficient is the loop gain of the step-time fixed point,
        ``phi = e / (1 + e)`` with ``e`` the curve's elasticity (``1 + e = 1 / (1 - phi)``).
        The exact factor for the mean of N AR(1) steps is taken at the mean request length;
        it is ``1 / (1 - phi)^2`` for long requests. Closed loops have no such feedback (one
        arrival per completion)."""
        if closed:
            return np.ones_like(lam)
        e = self.elasticity(lam)
        phi = np.clip(e / (1.0 + e), 0.0, 0.99)  # < 1 below the divergence
        steps = max(self.dec_steps, 1.0)
        return np.asarray((1.0 / (1.0 - phi**2)) * ((1.0 + phi) / (1.0 - phi) - 2.0 * phi * (
            1.0 - phi**steps) / (steps * (1.0 - phi) ** 2)))

    def slot_wait(self, rows: Rows) -> Array:
        """Queueing for a sequence slot, per row: an M/G/c queue over this model's slots,
        by Allen-Cunneen: the chance of waiting is Erlang C's, the wait is exponential with
        M/M/c's mean times ``(1 + SCV) / 2`` (SCV of the holding time: a fixed output
        length halves the waits)."""
        offered = rows.lam * rows.e2e_core
        full = offered >= self.slots  # every slot busy on average: the queue never drains
        pw = erlang_c(self.slots, np.where(full, 0.0, offered))
        with np.errstate(divide="ignore"):
            rate = np.where(full, 1.0, slot_wait_rate(self.slots, rows.e2e_core, rows.lam,
                                                      rows.service_scv))
        wait = np.where(D.arrival_state[None, :] < pw[:, None],
                        D.wait_exp[None, :] / rate[:, None], 0.0)
        return np.where(full[:, None], np.inf, wait)

    def _metrics(self, mode: str, value: float, lam: float, t: float, cap: float, limit: str,
                 *, closed: bool, extra_wait: float = 0.0, running: float = 0.0,
                 cohorts: bool = False) -> SteadyState:
        rows = self.rows(np.array([lam]), np.array([t]), closed=closed, running=running,
                         cohorts=cohorts)
        wait = rows.budget_wait[0] + extra_wait
        if not closed:
            wait = wait + self.slot_wait(rows)[0]
        return self.state_at(rows, 0, wait, mode=mode, value=value, cap=cap, limit=limit)

    def state_at(self, rows: Rows, r: int, wait: Array, *, mode: str, value: float, cap: float,
               limit: str) -> SteadyState:
        """The steady state of row ``r`` given its total wait draws."""
        lam, t = float(rows.lam[r]), float(rows.t[r])
        ttft = rows.ttft_core[r] + wait
        queue = wait + rows.resid[r]  # arrival -> first scheduled (next step boundary)
        tpot = rows.tpot[r]
        e2e = stats(ttft + rows.out_tokens * tpot)
        e2e_mean = float(np.mean(ttft)) + self.dec_steps * t
        return SteadyState(
            mode=mode, value=value, saturated=False, capacity_rps=cap, throughput_rps=lam,
            output_tok_s=lam * self.o_mean, total_tok_s=lam * (self.i_mean + self.o_mean),
            steady_state_batch=lam * float(rows.e2e_core[r]),
            utilization=min(1.0, lam / cap) if cap > 0 else 1.0, queue_s=float(np.mean(queue)),
            ttft_s=stats(ttft), tpot_s=stats(tpot),
            e2e_mean_s=e2e_mean, limit=limit, e2e_p99_s=e2e[3],
            e2e_s=(e2e_mean, e2e[1], e2e[2], e2e[3]))
