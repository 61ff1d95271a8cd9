"""How long an arrived request waits for the scheduler to take it in. When the engine polls
for new requests only every N decode passes (SGLang ``--scheduler-recv-interval N``: a
decode pass weighs 1 and a pass that prefilled weighs more than N, so the scheduler polls
every N decode passes and right after any pass that prefilled; an idle engine polls at once).

A request that reaches a decoding engine at a pass boundary waits for the next poll. With
the passes since the last poll uniform over ``0 .. N - 1``, that is ``(N - 1) / 2`` passes
on average, which is the wait of a cohort of requests arriving together while others decode.
Arrivals spread over time (a Poisson stream, or a closed loop whose clients are out of step)
also find polls in quick succession: a poll that takes in a request is followed by a pass
that prefills it, after which the scheduler polls again, and keeps doing so while each
prefilling pass brings a new arrival. With ``r`` arrivals per pass (Poisson), the chain of
prefilling passes after a quiet window lasts ``e^r`` passes on average (it goes on with
probability ``1 - e^-r``), and an arrival during the chain is taken in at the next pass.
Per cycle of ``N`` decode passes and ``e^r`` prefilling ones, the arrivals in the decode
window wait ``(N - 1) / 2`` passes and the others none::

    W = N (N - 1) / 2 / (N + e^r) passes

(``(N - 1) / 2 x N / (N + 1)`` at light load; it falls to 0 as arrivals come every pass).

TensorRT-LLM's attention-DP balancing (``attention_dp_config.enable_balance``) holds the
prompts it took in until every rank has one, or a timeout: :func:`balance_wait_passes`; its
batch waiting (``batch_wait_timeout_iters``, ``batch_wait_max_tokens_ratio``) holds prompts
while others decode until enough prompt tokens wait, or a timeout: :func:`batch_wait_passes`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from kvopt.serving.special import gammaln

if TYPE_CHECKING:
    from kvopt.catalog.engines import EngineProfile

Array = npt.NDArray[np.float64]


def admit_wait_passes(every: int | Array, arrivals_per_pass: Array | float, *,
                      cohort: bool = False) -> Array:
    """Mean decode passes a request arriving while the engine decodes waits before the
    scheduler takes it in, for an engine that polls every ``every`` decode passes (1: every
    pass, no wait; an array: one engine per element). ``cohort``: it arrives with a cohort
    of others (a fixed-output closed loop), whose wait is the phase of the poll cycle,
    ``(every - 1) / 2``; otherwise the arrivals are spread (``arrivals_per_pass`` of them per
    pass, Poisson): the module's ``W``."""
    r = np.asarray(arrivals_per_pass, dtype=np.float64)
    n = np.asarray(every, dtype=np.float64)
    if np.all(n <= 1):
        return np.zeros(np.broadcast(n, r).shape)
    if cohort:
        return np.asarray(np.broadcast_to((n - 1.0) / 2.0, np.broadcast(n, r).shape).copy())
    return np.asarray(n * (n - 1.0) / 2.0 / (n + np.exp(np.minimum(r, 700.0))))


def balance_wait_passes(ranks: int, timeout: int, wait: int, arrivals_per_pass: Array | float,
                        *, cohort: bool = False) -> Array:
    """Mean passes a prompt is held by attention-DP balancing (TensorRT-LLM
    ``attention_dp_config.enable_balance``): the engine holds the prompts until every one of
    its ``ranks`` has one (then ``wait`` more passes while every rank decodes) or
    ``timeout`` passes have gone by since the last release, and then releases them all.

    From a release, each rank gets prompts at ``r = arrivals_per_pass / ranks`` per pass
    (Poisson): its first at ``X_i ~ Exp(r)``; the hold ends at ``L = max X_i + wait`` when that
    comes before ``timeout``, else at ``timeout``. Rank i's prompts in the hold wait
    ``(L - X_i) + r (L - X_i)^2 / 2`` passes in all (its first, then those after it), of
    ``1 + r (L - X_i)`` prompts (none when ``X_i >= L``). Holds that end early are averaged on
    fixed draws of the ``X_i`` given ``max X_i < timeout`` (the last rank's first prompt
    ends the hold: prompts do not land uniformly in it); those that run to the timeout, per
    rank on a grid of ``X_i`` (the ranks independent). A prompt's mean wait is the ratio of
    the expected sums, less half a pass (prompts arrive at pass boundaries). ``cohort``:
    the prompts come as a cohort spread over every rank, held ``wait`` passes."""
    shape = np.shape(arrivals_per_pass)
    if ranks <= 1:
        return np.zeros(shape)
    if cohort:
        return np.full(shape, float(wait))
    r = np.maximum(np.ravel(np.asarray(arrivals_per_pass, dtype=np.float64)), 1e-12) / ranks
    T = float(timeout)
    with np.errstate(over="ignore", under="ignore"):
        early = (-np.expm1(-r * T)) ** ranks  # P(max X_i < timeout)
    # holds that end early: draws given max X_i < timeout
    u_top, u_rest = _hold_draws(ranks)
    q = u_top[None, :] * early[:, None]  # quantiles of the largest, within P(M < T)
    top = -np.log1p(-(q ** (1.0 / ranks))) / r[:, None]
    below = -np.expm1(-r[:, None] * top)  # CDF of one X at the largest
    rest = -np.log1p(-u_rest[None, :, :] * below[:, :, None]) / r[:, None, None]
    x = np.concatenate([top[:, :, None], rest], axis=2)
    hold = np.minimum(top + wait, T)[:, :, None]
    held = np.maximum(hold - x, 0.0)
    rr = r[:, None, None]
    num_e = (held + rr * held**2 / 2.0).sum(axis=2).mean(axis=1)
    den_e = ((x < hold) + rr * held).sum(axis=2).mean(axis=1)
    # holds that run to the timeout: each rank's first prompt at X < T (a grid), then more
    g = (np.arange(timeout) + 0.5)[None, :]
    dens = r[:, None] * np.exp(-r[:, None] * g)  # density of X on the grid (dx = 1)
    num_t = ranks * (dens * ((T - g) + r[:, None] * (T - g) ** 2 / 2.0)).sum(axis=1)
    den_t = ranks * (dens * (1.0 + r[:, None] * (T - g))).sum(axis=1)
    num = early * num_e + (1.0 - early) * num_t
    den = early * den_e + (1.0 - early) * den_t
    out = np.maximum(num / np.maximum(den, 1e-300) - 0.5, 0.0)
    return np.asarray(out.reshape(shape))


def batch_wait_passes(timeout: int, needed: Array | float, arrivals_per_pass: Array | float,
                      *, cohort: bool = False, cohort_size: float = 1.0) -> Array:
    """Mean passes a prompt is held by TensorRT-LLM's batch waiting (``PyExecutor``, with
    ``batch_wait_timeout_iters`` = ``timeout`` and ``batch_wait_max_tokens_ratio`` > 0):
    while requests decode, the scheduled prompts are held back until their prompt tokens and
    the decoding requests reach the ratio of ``max_num_tokens`` (``needed`` prompts of the
    mean length do) or ``timeout`` passes have been held, and are then released together.

    The first prompt after a release starts a hold; the others arrive at ``r`` per pass
    (Poisson) and the hold ends at ``L = min(timeout, S_m)``, ``S_m`` the ``m = needed - 1``-th
    of them (none needed: no hold). Prompts in the hold wait ``int_0^L (1 + N(t)) dt`` passes
    in all, ``sum_{j < m} (1 + j) P(N(T) > j) / r``, over ``1 + E min(N(T), m)`` prompts; the
    later ones arrive at pass boundaries (half a pass less each). ``cohort``: the prompts come
    together, ``cohort_size`` of them: held the whole timeout unless they are enough."""
    need = np.asarray(needed, dtype=np.float64)
    r = np.asarray(arrivals_per_pass, dtype=np.float64)
    shape = np.broadcast(need, r).shape
    T = float(timeout)
    if timeout <= 0:
        return np.zeros(shape)
    if cohort:
        return np.asarray(np.where(np.broadcast_to(need, shape) > cohort_size, T, 0.0))
    m = np.ravel(np.broadcast_to(np.ceil(need) - 1.0, shape))
    x = np.maximum(np.ravel(np.broadcast_to(r, shape)), 1e-12) * T  # arrivals in a hold
    top = int(min(max(float(np.max(x + 12.0 * np.sqrt(x))) + 30.0, 2.0), float(_POISSON_MAX)))
    j = np.arange(top + 1, dtype=np.float64)
    with np.errstate(divide="ignore", under="ignore"):
        pmf = np.exp(j[None, :] * np.log(x)[:, None] - x[:, None] - gammaln(j + 1.0)[None, :])
    # P(N(T) >= j): summed from above (exact in the tail), or from below where the sums
    # stop short of the mass (a hold of more than ~19,000 arrivals)
    surv = np.where((x + 12.0 * np.sqrt(x) + 30.0 > top)[:, None],
                    1.0 - np.cumsum(pmf, axis=1) + pmf, np.cumsum(pmf[:, ::-1], axis=1)[:, ::-1])
    above = surv[:, 1:]  # P(N(T) > j), j = 0 .. top - 1
    jj = j[None, :-1]
    inside = jj < m[:, None]
    held = T * np.sum(np.where(inside, (1.0 + jj) * above / x[:, None], 0.0), axis=1)
    count = 1.0 + np.sum(np.where(inside, above, 0.0), axis=1)
    # a threshold beyond the sums' reach holds to the timeout: T (1 + x / 2) over 1 + x
    beyond = m > top
    held = np.where(beyond, T * (1.0 + x / 2.0), held)
    count = np.where(beyond, 1.0 + x, count)
    out = np.where(m >= 1.0, np.maximum((held - 0.5 * (count - 1.0)) / count, 0.0), 0.0)
    return np.asarray(out.reshape(shape))


_POISSON_MAX = 20_000  # terms of the Poisson sums (a hold of 1,000 passes at 15 arrivals each)
_DRAWS = 256


@cache
def _hold_draws(ranks: int) -> tuple[Array, Array]:
    """Fixed uniforms: stratified ones for the largest first arrival (as a quantile of the
    early holds) and the others' (conditionally below it), (draws,) and (draws, ranks - 1)."""
    rng = np.random.default_rng(20260505)
    return (np.arange(_DRAWS) + 0.5) / _DRAWS, rng.random((_DRAWS, ranks - 1))


@dataclass
class BalanceHold:
    """TensorRT-LLM's attention-DP balancing, pass by pass (``PyExecutor._balance_adp_requests``
    with ``enable_balance``): the state of its two counters, shared by the estimate's
    benchmark recurrence and the simulator."""

    timeout: int
    wait: int
    held: int = 0  # passes since the last release without a prompt on every rank
    batching: int = 0  # passes held with a prompt on every rank

    @classmethod
    def of(cls, eng: EngineProfile) -> BalanceHold:
        """The counters of ``eng``'s attention_dp_config, at rest."""
        return cls(eng.adp_timeout_iters, eng.adp_wait_iters)

    def release(self, every_rank_has_prompt: bool, every_rank_decodes: bool) -> bool:
        """Whether this pass releases the held prompts: when every rank has one (after
        ``wait`` passes while every rank decodes), else after ``timeout`` passes or when some
        rank has nothing to decode."""
        if every_rank_has_prompt:
            self.held = 0
            if every_rank_decodes and self.batching < self.wait:
                self.batching += 1
                return False
            self.batching = 0
            return True
        self.held += 1
        if self.held >= self.timeout or not every_rank_decodes:
            self.held = 0
            return True
        return False


@dataclass
class BatchWait:
    """TensorRT-LLM's batch waiting, pass by pass (``PyExecutor``: the scheduled prompts are
    dropped from a pass that also decodes while the held-pass counter is below ``timeout``
    and the pass's tokens, prompts in full plus one per decoding request, are below
    ``threshold``; a release resets the counter). Shared by the estimate's benchmark
    recurrence and the simulator."""

    timeout: int
    threshold: float
    held: int = 0

    @classmethod
    def of(cls, eng: EngineProfile) -> BatchWait:
        """The counter of ``eng``'s batch waiting, at rest."""
        return cls(eng.batch_wait_timeout_iters, eng.batch_wait_tokens)

    def release(self, tokens: float, decoding: bool) -> bool:
        """Whether this pass runs the prompts it scheduled (``tokens``: theirs and the
        decodes'; ``decoding``: the pass also decodes)."""
        if not decoding:
            return True
        if self.held < self.timeout and tokens < self.threshold:
            self.held += 1
            return False
        self.held = 0
        return True
