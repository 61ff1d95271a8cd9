"""TTFT of many replicas at many rates without draws (the screening model).

The analytic model (:meth:`kvopt.serving.steady.SteadyModel._ttft_core`) draws a request's
TTFT from 1,024 fixed quadrature points per rate. Here the same composition is laid out
as terms whose survival is exact at any time:

* the state of the replica at the arrival: busy (chance ``1 - exp(-n)``, ``n`` decoding),
  prefilling a prompt that arrived while it was idle, or idle;
* the running step it lands in: length-biased, from the chain of prompts per step (long
  steps follow long steps), as five atoms over probability strata (the tail resolved);
  where in it the arrival lands (three points, the late ones resolved): the residual it
  waits;
* the prompts prefilled in the same step: ahead of it (arrived earlier in that step) and
  behind it (arrived during its residual): a compound Poisson number of prompt lengths
  (none, or two atoms shaped like the length law); with little room beside its last chunk
  the ones behind add the time of the tokens that fit instead;
* its own prompt, exactly (the input distribution's survival on a fine token grid) and
  the budget-sized chunks the tokens take (a prefill-time table per row, with both sides
  of every chunk boundary);

so ``P(core > x) = sum over terms of P(tokens > G^-1(x - shift))``. The waits for the token
budget (M/D/1) and for a slot (Erlang C, Allen-Cunneen) are exponential, as in the
analytic model: they smooth the core's survival (on a time grid that holds the SLO itself)
in closed form.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from kvopt.serving.screen.prefill import (
    InverseTable,
    PromptLaw,
    crossing,
    exp_smooth,
    forward_rows,
    interp_rows,
    inverse_rows,
    prefill_table,
    token_grid,
)
from kvopt.serving.screen.steps import Mix, StackedSteps
from kvopt.serving.screen.tpot import Lengths

Array = npt.NDArray[np.float64]
Index = npt.NDArray[np.intp]
# where in the running step an arrival lands (uniform): the middles of the strata
# [0, .5], [.5, .9], [.9, 1] (the late arrivals, the long residuals, resolved)
_LAND_U = np.array([0.25, 0.7, 0.95])
_LAND_W = np.array([0.5, 0.4, 0.1])
_GEO = 4  # geometric time points of the core's survival (beside the idle prefill times)
_REFINE = 4  # time points where it crosses 10% .. 0.1%


@dataclass(frozen=True)
class TtftLaw:
    """Per row: the survival of the TTFT core (no waits) on a time grid ``x`` (exact at
    its points, linear between; 1 below, its last value above), its mean without the
    request overhead, and the SCV of a slot's holding time (for Allen-Cunneen)."""

    x: Array  # (rows, X) seconds, increasing
    surv: Array  # (rows, X)
    core_mean: Array  # (rows,)
    hold_scv: Array  # (rows,)

    def take(self, idx: Index) -> TtftLaw:
        return TtftLaw(x=self.x[idx], surv=self.surv[idx], core_mean=self.core_mean[idx],
                       hold_scv=self.hold_scv[idx])

    def core_at(self, x: Array) -> Array:
        """P(core > x) per row (``x`` one per row)."""
        return interp_rows(self.x, self.surv, x)

    def waited(self, x: Array, rho_b: Array, mean_b: Array, pw: Array, mean_s: Array
               ) -> tuple[Array, Array]:
        """(chance of no wait, P(TTFT > x and some wait)) per row, with the budget wait
        (chance ``rho_b``, mean ``mean_b``) and the slot wait (``pw``, ``mean_s``): one
        uniform decides both waits (each below its chance, as the analytic model draws
        them) and they share one unit exponential: no wait, one of them, or both (their
        means added); the core's survival smoothed by it in closed form."""
        both = np.minimum(rho_b, pw)
        one = np.maximum(rho_b, pw) - both
        mean_one = np.where(rho_b > pw, mean_b, mean_s)
        out = np.zeros_like(x)
        for share, m in ((one, mean_one), (both, mean_b + mean_s)):
            live = np.nonzero(share > 0)[0]
            if live.size:
                out[live] += share[live] * exp_smooth(self.x[live], self.surv[live], x[live],
                                                       m[live])
        return 1.0 - both - one, out

    def survival(self, x: Array, rho_b: Array, mean_b: Array, pw: Array, mean_s: Array
                 ) -> Array:
        """P(TTFT > x) per row with both waits (see :meth:`waited`)."""
        none, waited = self.waited(x, rho_b, mean_b, pw, mean_s)
        return np.asarray(np.clip(none * self.core_at(x) + waited, 0.0, 1.0))


def ttft_law(st: StackedSteps, mix: Mix, r: Index, lam: Array, t: Array, req_s: Array,
             lengths: Lengths, prompt: PromptLaw, tpot_var: Array,
             slo_s: float | None = None) -> TtftLaw:
    """TTFT without the slot wait at rates ``lam`` (rows), as
    :meth:`SteadyModel._ttft_core` composes it: the state at the arrival (busy with
    chance ``1 - exp(-n)``, prefilling a prompt, idle), the length-biased running step
    and where in it the arrival lands (its residual), the prompts ahead of it in that step
    (Poisson, their lengths convolved exactly), its own prompt and the budget-sized chunks
    it takes (see the module docstring). ``tpot_var``: the variance of a request's TPOT
    (for the holding time's SCV); ``slo_s``: a TTFT limit, made a grid point (its
    survival exact there)."""
    rows = r.size
    inew, budget, dec = mix.i_new[r], mix.budget[r], mix.dec[r]
    n_sys = lam * dec * t
    p_busy = np.where(lam > 0, 1.0 - np.exp(-n_sys), 0.0)
    # the running step at a busy arrival: steps prefilling k prompts; the chain K' ~
    # Poisson(lam d(K)) (long steps follow long steps) by three power iterations; then
    # length-biased atoms: no prompt, one (+- the prompt's sd), two or more (+- sd)
    k = np.arange(8, dtype=np.float64)
    isd = np.sqrt(mix.i_var[r])
    dur_k = st.step(r[:, None], (1.0 + n_sys)[:, None], np.minimum(k * inew[:, None],
                                                                    budget[:, None]))
    lg = np.array([math.lgamma(v + 1) for v in k])
    pi = _poisson_rows(lam * t, k, lg)
    for _ in range(3):
        trans = _poisson_rows((lam[:, None] * dur_k).ravel(), k, lg).reshape(rows, 8, 8)
        pi = np.einsum("rk,rkj->rj", pi, trans)
    run, w_run = _running_atoms(st, r, n_sys, inew, isd, budget, pi, dur_k)
    d_pf = st.step(r[:, None], np.zeros((rows, 2)), np.minimum(
        np.stack([np.maximum(inew - isd, 1.0), inew + isd], axis=1), budget[:, None]))
    p_pf = (1.0 - p_busy) * (1.0 - np.exp(-lam * d_pf.mean(axis=1)))
    w_pf = d_pf / np.maximum(d_pf.sum(axis=1, keepdims=True), 1e-300)
    p_idle = np.maximum(1.0 - p_busy - p_pf, 0.0)
    # prefill time of ``tau`` tokens (own prompt and those ahead) beside n decoders, in
    # budget-sized chunks: a table per row for the busy (n) and the idle (0) replica
    far = 2.0 * prompt.far + 8.0 * prompt.mean
    tau_busy = token_grid(budget - n_sys, far)
    tau_idle = token_grid(budget, far)
    g_busy = prefill_table(st, r, n_sys, budget, tau_busy)
    g_idle = prefill_table(st, r, np.zeros(rows), budget, tau_idle)
    # TTFT core = shift (request overhead + residual) + prefill time of its tokens, per
    # term (state, running atom, landing point): its survival at any time is exact
    shifts, coefs, extras, kws, tabs = [], [], [], [], []
    for tab, share, runs, w_runs in ((0, p_busy, run, w_run), (1, p_pf, d_pf, w_pf)):
        # prompts prefilled in the same step, ahead of it (arrived earlier in the running
        # step) or behind it (during its residual): Poisson(lam x running step) in all
        n_dec = n_sys if tab == 0 else np.zeros(rows)
        free = np.maximum(budget - n_dec, 1.0)
        per_token = np.asarray(st.step(r, n_dec, free) - st.step(r, n_dec, 0.0)) / free
        # what is left of the budget beside a mean prompt's last chunk: all the tokens
        # behind it can take (the analytic model's min(last + behind, free))
        room = free - (inew - np.floor(np.maximum(inew - 1.0, 0.0) / free) * free)
        for j in range(runs.shape[1]):
            for u, wu in zip(_LAND_U, _LAND_W, strict=True):
                # ahead of it: prompts that arrived earlier in the running step (their
                # tokens come first); behind it: those arriving during its residual,
                # prefilled beside its last chunk. With room for a few prompts beside it
                # their tokens join the others' (the same compound Poisson law, its
                # tail); else none, or their conditional mean count, as much as fits
                wide = room > 2.0 * inew
                mu_a = lam * np.where(wide, 1.0, 1.0 - u) * runs[:, j]
                ext, ext_w = prompt.extra(mu_a)
                mu_b = np.where(wide, 0.0, lam * u * runs[:, j])
                p_b = np.exp(-mu_b)
                k_b = mu_b / np.maximum(1.0 - p_b, 1e-300)
                behind = np.minimum(k_b * inew, room) * per_token
                cases = [(p_b, np.zeros(rows))]
                if not wide.all():  # a behind atom only where some row has little room
                    cases.append((1.0 - p_b, behind))
                for w_b, delay in cases:
                    shifts.append(req_s + u * runs[:, j] + delay)
                    coefs.append(share * w_runs[:, j] * wu * w_b)
                    extras.append(ext)
                    kws.append(ext_w)
                    tabs.append(tab)
    shifts.append(req_s)
    coefs.append(p_idle)
    extras.append(np.zeros((rows, 3)))
    kws.append(np.broadcast_to(np.array([1.0, 0.0, 0.0]), (rows, 3)))
    tabs.append(1)
    core = _Core(shift=np.stack(shifts, axis=1), coef=np.stack(coefs, axis=1),
                 extra=np.stack(extras, axis=1), kw=np.stack(kws, axis=1), tab=np.array(tabs),
                 tau=(tau_busy, tau_idle), g=(g_busy, g_idle), prompt=prompt,
                 inv=(InverseTable.of(tau_busy, g_busy), InverseTable.of(tau_idle, g_idle)))
    # a time grid for the waits and the moments: an idle replica's prefill of the prompt
    # at its tail quantiles (where an idle arrival's survival steps down) and geometric
    # points up to the longest residual plus a long prompt with two more ahead of it; then
    # refined where the survival crosses 10% .. 0.1% (the p99 lies there); and the SLO
    q = prompt.tail_lengths
    idle = req_s[:, None] + forward_rows(tau_idle, g_idle, np.broadcast_to(q, (rows, q.size)))
    far_x = req_s + np.max(run, axis=1) + np.max(d_pf, axis=1) + forward_rows(
        tau_busy, g_busy, np.full((rows, 1), float(q[-1]) + 2.0 * prompt.mean))[:, 0]
    lo = np.maximum(idle[:, 0] * 0.5, 1e-6)
    geo = np.exp(np.log(lo)[:, None] + np.log(np.maximum(far_x / lo, 1.0 + 1e-9))[:, None]
                 * np.linspace(0.0, 1.0, _GEO)[None, :])
    x1 = np.concatenate([idle, geo], axis=1)
    s1 = core.surv_grid(x1)
    order1 = np.argsort(x1, axis=1)
    xs1, ss1 = np.take_along_axis(x1, order1, 1), np.take_along_axis(s1, order1, 1)
    a = crossing(xs1, ss1, 0.1)
    b = crossing(xs1, ss1, 0.001)
    x2 = a[:, None] + (b - a)[:, None] * np.linspace(0.0, 1.0, _REFINE)[None, :]
    parts_x, parts_s = [x1, x2], [s1, core.surv_grid(x2)]
    if slo_s is not None:
        xs = np.full((rows, 1), slo_s)
        parts_x.append(xs)
        parts_s.append(core.surv(xs))
    x = np.concatenate(parts_x, axis=1)
    order = np.argsort(x, axis=1)
    x = np.take_along_axis(x, order, 1)
    surv = np.minimum.accumulate(np.take_along_axis(np.concatenate(parts_s, axis=1), order,
                                                    1), axis=1)
    # mean and variance of the core: areas under its survival (1 up to the overhead)
    dx = np.diff(x, axis=1)
    core_mean = lo - req_s + np.sum((surv[:, 1:] + surv[:, :-1]) / 2 * dx, axis=1)
    core_sq = lo**2 + np.sum((surv[:, 1:] * x[:, 1:] + surv[:, :-1] * x[:, :-1]) * dx, axis=1)
    core_var = np.maximum(core_sq - (core_mean + req_s) ** 2, 0.0)
    hold_mean = core_mean + dec * t
    o_var = float(np.dot(lengths.out_w, lengths.out**2) - np.dot(lengths.out_w,
                                                                 lengths.out) ** 2)
    hold_var = core_var + o_var * t**2 + (dec**2 + o_var) * tpot_var
    return TtftLaw(x=x, surv=surv, core_mean=core_mean,
                   hold_scv=hold_var / np.maximum(hold_mean, 1e-300) ** 2)


@dataclass(frozen=True)
class _Core:
    """TTFT without waits as terms ``shift + prefill time of the tokens``: each term's
    weight, shift, chance of 0, 1, 2+ extra prompts in the step, and which prefill table
    (0: beside the decoders, 1: an idle replica) it uses."""

    shift: Array  # (rows, M)
    coef: Array  # (rows, M)
    extra: Array  # (rows, M, 3) tokens of the other prompts in the step (three atoms)
    kw: Array  # (rows, M, 3) their weights
    tab: Array  # (M,)
    tau: tuple[Array, Array]  # (rows, T) tokens of each table
    g: tuple[Array, Array]  # (rows, T) their prefill times
    prompt: PromptLaw
    inv: tuple[InverseTable, InverseTable]  # the tables inverted on a uniform time grid

    def surv(self, x: Array) -> Array:
        """P(TTFT core > x) for times ``x`` (rows, X)."""
        out = np.zeros_like(x)
        for m in range(self.tab.size):
            t = int(self.tab[m])
            need = inverse_rows(self.tau[t], self.g[t], x - self.shift[:, m:m + 1])
            s = np.zeros_like(x)
            for a in range(self.kw.shape[2]):
                s += self.kw[:, m, a:a + 1] * self.prompt.at(need - self.extra[:, m, a:a + 1])
            out += self.coef[:, m:m + 1] * s
        return np.asarray(np.clip(out, 0.0, 1.0))

    def surv_grid(self, x: Array) -> Array:
        """:meth:`surv` with the prefill tables inverted on their uniform time grid (the
        chunk boundaries' jumps smoothed over one grid step): for time grids."""
        out = np.zeros_like(x)
        for m in range(self.tab.size):
            need = self.inv[int(self.tab[m])].at(x - self.shift[:, m:m + 1])
            s = np.zeros_like(x)
            for a in range(self.kw.shape[2]):
                s += self.kw[:, m, a:a + 1] * self.prompt.at(need - self.extra[:, m, a:a + 1])
            out += self.coef[:, m:m + 1] * s
        return np.asarray(np.clip(out, 0.0, 1.0))


def _poisson_rows(mu: Array, k: Array, lg: Array) -> Array:
    """Poisson pmf on ``k`` per mean (rows, K), the tail folded into the last point."""
    mu = np.maximum(mu, 1e-300)[:, None]
    p = np.exp(k[None, :] * np.log(mu) - mu - lg[None, :])
    p[:, -1] += np.maximum(1.0 - p.sum(axis=1), 0.0)
    return np.asarray(p)


_RUN_EDGES = np.array([0.0, 0.6, 0.88, 0.97, 0.995, 1.0])  # strata of the running step


def _running_atoms(st: StackedSteps, r: Index, n_sys: Array, inew: Array, isd: Array,
                   budget: Array, pi: Array, dur_k: Array) -> tuple[Array, Array]:
    """Atoms (durations, weights) of the length-biased running step: steps prefilling k
    prompts (their total length +- its sd), weighted by how often they run and how long,
    then one atom per probability stratum of that law (its conditional mean), the long
    tail resolved."""
    rows, nk = pi.shape
    k = np.arange(1, nk, dtype=np.float64)[None, :]
    spread = np.sqrt(k) * isd[:, None]
    toks = np.concatenate([np.maximum(k * inew[:, None] - spread, 1.0),
                           k * inew[:, None] + spread], axis=1)
    d = st.step(r[:, None], (1.0 + n_sys)[:, None], np.minimum(toks, budget[:, None]))
    dur = np.concatenate([dur_k[:, :1], d], axis=1)
    w = np.concatenate([pi[:, :1], pi[:, 1:] / 2, pi[:, 1:] / 2], axis=1) * dur
    w = w / np.maximum(w.sum(axis=1, keepdims=True), 1e-300)
    order = np.argsort(dur, axis=1)
    dur, w = np.take_along_axis(dur, order, 1), np.take_along_axis(w, order, 1)
    hi = np.cumsum(w, axis=1)
    lo = hi - w
    atoms = []
    for a, b in itertools.pairwise(_RUN_EDGES):
        part = np.clip(np.minimum(hi, b) - np.maximum(lo, a), 0.0, None)
        atoms.append(np.sum(part * dur, axis=1) / (b - a))
    return np.stack(atoms, axis=1), np.broadcast_to(np.diff(_RUN_EDGES), (rows, len(atoms)))


