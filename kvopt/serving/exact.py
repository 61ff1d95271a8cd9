"""The exact capacity search: the highest Poisson rate at which one replica's analytic
steady state (:mod:`kvopt.serving.steady`) meets the SLOs, at every max-batch level of the
replica at once.

Both p99s grow with the rate (checked by the property tests), so the SLO-limited rate is
bracketed on a first-pass rate grid (denser near capacity) and refined in log rate by
inverse quadratic interpolation or a secant; :func:`capacity_of` is the plain bisection it
is tested against. The levels differ only in their sequence slots, so the draws that do not
depend on the slots (step times, TTFT without slot queueing, TPOT) are computed once per
rate for all of them; each level adds its Erlang-C slot wait and checks the SLO.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from kvopt.serving.results import CapacityResult, Slo, unserved
from kvopt.serving.steady import Rows, SteadyModel, SteadyState, capacities, p99_rows

Array = npt.NDArray[np.float64]


def _meets(st: SteadyState, slo: Slo) -> tuple[bool, str]:
    if st.saturated:
        return False, "saturation"
    if slo.ttft_p99_ms is not None and not st.ttft_s[3] * 1e3 <= slo.ttft_p99_ms:
        return False, "ttft_p99 SLO"
    if slo.tpot_p99_ms is not None and not st.tpot_s[3] * 1e3 <= slo.tpot_p99_ms:
        return False, "tpot_p99 SLO"
    if slo.e2e_p99_ms is not None and not st.e2e_p99_s * 1e3 <= slo.e2e_p99_ms:
        return False, "e2e_p99 SLO"
    return True, ""


def capacity_of(model: SteadyModel, slo: Slo, *, rel_tol: float = 0.005) -> CapacityResult:
    """Goodput of one steady model under ``slo`` by bisection on the rate, one
    :meth:`SteadyModel.poisson` at a time: the reference that the grid-and-secant search
    of :func:`capacity` and :func:`capacity_levels` is tested against."""
    cap, limit = model.capacity()
    if cap <= 0:
        return unserved_at(limit)
    top = model.poisson(cap * 0.999)
    ok, why = _meets(top, slo)
    if ok:
        return result_at(top, cap, limit)
    low = model.poisson(cap * 1e-4)
    ok_low, why_low = _meets(low, slo)
    if not ok_low:
        return unserved_at(why_low, cap, low)
    lo, hi = cap * 1e-4, cap * 0.999
    best = low
    while hi - lo > rel_tol * hi:
        mid = (lo + hi) / 2
        st = model.poisson(mid)
        ok, why_mid = _meets(st, slo)
        if ok:
            lo, best = mid, st
        else:
            hi, why = mid, why_mid
    return result_at(best, cap, why)


def unserved_at(binding: str, cap: float = 0.0, st: SteadyState | None = None
                ) -> CapacityResult:
    """No goodput: no sustainable rate at all (``cap`` 0), or even light load (``st``, its
    p99s reported) misses the SLO for ``binding``."""
    return unserved(binding, cap, st.ttft_s[3] * 1e3 if st else None,
                    st.tpot_s[3] * 1e3 if st else None)


def result_at(st: SteadyState, cap: float, binding: str) -> CapacityResult:
    return CapacityResult(goodput_rps=st.throughput_rps, saturation_rps=cap,
                          steady_state_batch=st.steady_state_batch,
                          ttft_p99_ms=st.ttft_s[3] * 1e3, tpot_p99_ms=st.tpot_s[3] * 1e3,
                          output_tok_s=st.output_tok_s, binding=binding, feasible=True,
                          e2e_p99_ms=st.e2e_p99_s * 1e3)


_GRID = np.array([1e-4, 0.01, 0.05, 0.15, 0.3, 0.5, 0.7, 0.85, 0.95, 0.999])  # first pass:
# fractions of the largest capacity, denser near it where SLO boundaries usually lie


def checks(m: SteadyModel, rows: Rows, cap: float, slo: Slo
            ) -> tuple[Array, dict[str, Array], list[str], Array]:
    """(meets the SLO, margin of each check, why not, total wait draws) per row for model
    ``m``. A check's margin is log(value / limit) (<= 0 where it passes): the refinement
    interpolates the zero of the check that fails at the top of the bracket."""
    slot = m.slot_wait(rows)
    wait = rows.budget_wait + slot
    ttft = rows.ttft_core + wait
    queued = bool(slot.any())  # no slot wait: the TTFT draws are the shared ones
    offered = rows.lam * rows.e2e_core
    with np.errstate(divide="ignore", invalid="ignore"):
        # distance to saturation: the rate against capacity, the load against the slots
        sat_margin = np.maximum(np.log(rows.lam / cap), np.log(offered / m.slots))
        sat = (rows.lam >= cap) | ~np.isfinite(ttft).all(axis=1)
        sat_margin = np.where(sat, np.maximum(sat_margin, 1e-9), np.minimum(sat_margin, 0.0))
        checks: list[tuple[Array, str]] = [(sat_margin, "saturation")]
        if slo.ttft_p99_ms is not None:
            p = p99_rows(ttft) if queued else rows.p99("ttft", ttft)
            checks.append((np.log(p * 1e3 / slo.ttft_p99_ms), "ttft_p99 SLO"))
        if slo.tpot_p99_ms is not None:
            checks.append((np.log(rows.p99("tpot", rows.tpot) * 1e3 / slo.tpot_p99_ms),
                           "tpot_p99 SLO"))
        if slo.e2e_p99_ms is not None:
            e2e_draws = ttft + rows.out_tokens * rows.tpot
            e2e = p99_rows(e2e_draws) if queued else rows.p99("e2e", e2e_draws)
            checks.append((np.log(e2e * 1e3 / slo.e2e_p99_ms), "e2e_p99 SLO"))
    why = [""] * rows.lam.size
    for margin, name in reversed(checks):  # the first failing check names the reason
        for r in np.nonzero(~(margin <= 0))[0]:
            why[int(r)] = name
    ok = np.all(np.stack([c <= 0 for c, _ in checks]), axis=0)
    return ok, {name: c for c, name in checks}, why, wait


@dataclass
class _Bracket:
    """The SLO boundary of one level lies in (lo, hi]: lo meets it, hi does not."""

    lo: float
    hi: float
    lo_m: dict[str, float]  # each check's margin at lo (all <= 0)
    hi_m: dict[str, float]
    why_hi: str  # the check that fails at hi
    best: tuple[Rows, int, Array]  # the row at lo and its wait draws
    prev: tuple[float, dict[str, float]] | None = None  # the last end replaced
    rounds: int = 0
    side: int = 0  # the end that moved alone last round (+1: lo, -1: hi, 0: both/none)
    w_lo: float = 1.0  # Illinois weights on the end margins
    w_hi: float = 1.0
    shrink: float = 0.0  # log-width ratio of the bracket over the last round (0: none yet)

    def probes(self, rel_tol: float) -> Array:
        """Two rates straddling the estimated zero of the failing check's margin in log
        rate: inverse quadratic interpolation through the bracket's ends and the last
        point it dropped (margins are curved near saturation), else a secant
        (Illinois-weighted so that an end that stops moving does not stall it), else
        the bracket split in thirds. Thirds also when the last round did not halve the
        bracket: a margin that is flat then steep (slot queueing) or flat and noisy (a p99
        of draws) defeats interpolation, and thirds shrink the bracket threefold."""
        lo, hi = math.log(self.lo), math.log(self.hi)
        m_lo = self.lo_m[self.why_hi] * self.w_lo
        m_hi = self.hi_m[self.why_hi] * self.w_hi
        x = math.nan
        if (self.rounds < 8 and not self.shrink > 0.5 and math.isfinite(m_lo)
                and math.isfinite(m_hi) and m_hi > m_lo):
            x = lo + (hi - lo) * -m_lo / (m_hi - m_lo)
            if self.prev is not None and self.w_lo == self.w_hi == 1.0:
                x = _iqi(((lo, m_lo), (hi, m_hi),
                          (math.log(self.prev[0]), self.prev[1].get(self.why_hi, math.nan))),
                         lo, hi, x)
        if math.isfinite(x):
            a, c = math.exp(x) * (1 - 0.4 * rel_tol), math.exp(x) * (1 + 0.4 * rel_tol)
        else:
            a, c = math.exp(lo + (hi - lo) / 3), math.exp(lo + 2 * (hi - lo) / 3)
        a = min(max(a, self.lo), self.hi)
        c = min(max(c, self.lo), self.hi)
        return np.array([a, c])

    def update(self, part: Rows, ok: Array, margins: dict[str, Array], why: list[str],
               wait: Array) -> None:
        self.rounds += 1
        width = math.log(self.hi / self.lo)
        moved_lo = moved_hi = False
        for r in np.argsort(part.lam):
            lam = float(part.lam[r])
            if not self.lo < lam < self.hi:
                continue
            here = {name: float(v[r]) for name, v in margins.items()}
            if ok[r]:
                self.prev = (self.lo, self.lo_m)
                self.lo, self.lo_m, self.best = lam, here, (part, int(r), wait[r])
                self.w_lo, moved_lo = 1.0, True
            else:
                self.prev = (self.hi, self.hi_m)
                self.hi, self.hi_m, self.why_hi = lam, here, why[r]
                self.w_hi, moved_hi = 1.0, True
                break
        side = (1 if moved_lo else 0) - (1 if moved_hi else 0)
        if side != 0 and side == self.side:  # Illinois: the same end moved twice alone
            if side > 0:
                self.w_hi /= 2
            else:
                self.w_lo /= 2
        self.side = side
        self.shrink = math.log(self.hi / self.lo) / width if width > 0 else 0.0


def _iqi(pts: tuple[tuple[float, float], ...], lo: float, hi: float, fallback: float
         ) -> float:
    """Inverse quadratic interpolation: the ``x`` where the parabola in the margin through
    three (x, margin) points gives margin 0, if it lies inside (lo, hi)."""
    (x0, m0), (x1, m1), (x2, m2) = pts
    if not all(math.isfinite(v) for v in (m0, m1, m2)) or min(
            abs(m0 - m1), abs(m0 - m2), abs(m1 - m2)) < 1e-12:
        return fallback
    x = (x0 * m1 * m2 / ((m0 - m1) * (m0 - m2)) + x1 * m0 * m2 / ((m1 - m0) * (m1 - m2))
         + x2 * m0 * m1 / ((m2 - m0) * (m2 - m1)))
    return x if lo < x < hi else fallback


def search(models: dict[int, SteadyModel], slo: Slo, rel_tol: float,
           misses: dict[int, float] | None = None) -> dict[int, CapacityResult]:
    """Each level's goodput; ``misses`` (when given) gets, per level, a rate at which it
    misses the SLO (its bracket's upper end), where the search found one."""
    out: dict[int, CapacityResult] = {}
    misses = {} if misses is None else misses
    caps = dict(zip(models, capacities(list(models.values())), strict=True))
    live = [b for b in models if caps[b][0] > 0]
    for b in models:
        if b not in live:
            out[b] = unserved_at(caps[b][1])
    if not live:
        return out
    base = models[live[0]]  # any level: the rows do not depend on the slots
    top = max(caps[b][0] for b in live)
    # each level's top end, and one light-load point below every level's capacity
    light = min(caps[b][0] for b in live) * 1e-4
    ends = [caps[b][0] * 0.999 for b in live] + [light]
    lams = np.unique(np.concatenate([top * _GRID, ends]))
    rows = base.rows(lams, base.step_times(lams))
    brackets: dict[int, _Bracket] = {}
    for b in live:
        m, (cap, limit) = models[b], caps[b]
        ok, margin, why, wait = checks(m, rows, cap, slo)
        i_top = int(np.searchsorted(lams, cap * 0.999))
        i_low = int(np.searchsorted(lams, light))
        if ok[i_top]:
            out[b] = result_at(m.state_at(rows, i_top, wait[i_top], mode="rps",
                                        value=float(lams[i_top]), cap=cap, limit=limit),
                             cap, limit)
            continue
        if not ok[i_low]:
            misses[b] = float(lams[i_low])
            out[b] = unserved_at(why[i_low], cap, m.state_at(
                rows, i_low, wait[i_low], mode="rps", value=float(lams[i_low]), cap=cap,
                limit=limit))
            continue
        # the first failure above the light-load point closes the bracket
        i = i_low + int(np.argmin(ok[i_low:i_top + 1]))
        brackets[b] = _Bracket(lo=float(lams[i - 1]), hi=float(lams[i]),
                               lo_m={k: float(v[i - 1]) for k, v in margin.items()},
                               hi_m={k: float(v[i]) for k, v in margin.items()},
                               why_hi=why[i], best=(rows, i - 1, wait[i - 1]),
                               prev=(float(lams[i - 2]), {k: float(v[i - 2])
                                                          for k, v in margin.items()})
                               if i >= 2 else None)
    while True:
        open_ = [b for b, k in brackets.items() if k.hi - k.lo > rel_tol * k.hi]
        if not open_:
            break
        probes = {b: brackets[b].probes(rel_tol) for b in open_}
        lams = np.unique(np.concatenate(list(probes.values())))
        rows = base.rows(lams, base.step_times(lams))
        for b in open_:
            idx = np.searchsorted(lams, probes[b])
            part = rows.take(idx)
            ok, margin, why, wait = checks(models[b], part, caps[b][0], slo)
            brackets[b].update(part, ok, margin, why, wait)
    for b, k in brackets.items():
        misses[b] = k.hi
        part, r, wait_r = k.best
        cap, limit = caps[b]
        out[b] = result_at(models[b].state_at(part, r, wait_r, mode="rps",
                                            value=float(part.lam[r]), cap=cap, limit=limit),
                         cap, k.why_hi)
    return out
