"""The screen's search (:mod:`kvopt.serving.screen`): every level's checks on each
replica's grid of rates, the first failing interval, and the boundary inside it.

The checks are those of :func:`kvopt.serving.capacity._checks`: saturation (the rate
against the replica's limit, the load against the level's slots) and each SLO (its p99
against the limit), the waits for the token budget and for a slot added to the TTFT in
closed form. Between two grid rates the slot-independent laws are interpolated in log
rate (their tails in log probability).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from kvopt.serving.queueing import budget_wait, erlang_c
from kvopt.serving.results import CapacityResult, Slo, unserved
from kvopt.serving.screen.laws import Laws
from kvopt.serving.screen.model import Screen
from kvopt.serving.screen.prefill import crossing
from kvopt.serving.screen.ttft import TtftLaw
from kvopt.serving.special import ndtri

Array = npt.NDArray[np.float64]
Index = npt.NDArray[np.intp]
# rates per replica (fractions of its top rate), dense near the top where boundaries lie
FRACTIONS = np.array([1e-4, 0.01, 0.06, 0.2, 0.42, 0.65, 0.83, 0.93, 0.999])
_BISECT = 24  # at most, steps inside a grid interval (secant; bisection every third)
# strata of a normal for the output time (their middle quantiles, the tail resolved)
_Z_EDGES = np.array([0.0, 0.25, 0.5, 0.75, 0.9, 0.96, 0.985, 0.995, 0.999, 1.0])
_Z_NODES = np.asarray(ndtri((_Z_EDGES[:-1] + _Z_EDGES[1:]) / 2))
_Z_W = np.diff(_Z_EDGES)


def search(sc: Screen, slo: Slo, levels: Array) -> list[list[CapacityResult]]:
    """Goodput of each replica of ``sc`` at each of its max-batch ``levels`` (R, L)."""
    nrep, nlev, ng = len(sc.replicas), levels.shape[1], FRACTIONS.size
    grid = sc.top[:, None] * FRACTIONS[None, :]  # (R, G)
    laws = sc.laws(np.repeat(np.arange(nrep), ng), grid.ravel(), slo)
    grid, laws = _refine_grid(sc, laws, slo, grid)
    free = _slot_free(sc, laws, slo, grid)
    cr = np.repeat(np.arange(nrep), nlev)  # configs: (replica, level)
    slots = np.minimum(levels, sc.kv_slots[:, None]).ravel()
    good = _bisect(sc, laws, slo, cr, slots, grid, free)
    sat = _bisect(sc, laws, Slo(), cr, slots, grid, np.full_like(free, -np.inf))
    return _results(sc, laws, slo, cr, slots, grid, good, sat)


@dataclass(frozen=True)
class _Point:
    """Configs (replica ``r``, ``slots``) at rates ``lam``, between grid rows ``row0`` and
    ``row1`` of the laws with weight ``w`` (log rate)."""

    r: Index
    slots: Array
    lam: Array
    row0: Index
    row1: Index
    w: Array


def _checks(sc: Screen, laws: Laws, p: _Point, slo: Slo, *, p99: bool = False
            ) -> tuple[npt.NDArray[np.bool_], dict[str, Array], dict[str, Array]]:
    """(meets all, margin per check (<= 0 passes), operating point) at points ``p``."""
    r, lam, w = p.r, p.lam, p.w
    t, _ = sc.curves.at(r, lam)
    t = np.where(np.isfinite(t), t, 1e3)
    tt0, tt1 = laws.ttft.take(p.row0), laws.ttft.take(p.row1)
    core_mean = (1 - w) * tt0.core_mean + w * tt1.core_mean
    scv = (1 - w) * tt0.hold_scv + w * tt1.hold_scv
    rho_b, mean_b = budget_wait(lam, t, sc.mix.i_new[r], sc.mix.budget[r])
    e2e_core = core_mean + sc.mix.dec[r] * t
    offered = lam * e2e_core
    run = np.maximum(np.floor(p.slots), 1.0)  # every slot busy: the capacity's closed loop
    full = offered >= run
    pw = np.where(full, 1.0, erlang_c(p.slots, np.where(full, 0.0, offered)))
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = (p.slots / e2e_core - lam) * 2.0 / (1.0 + scv)
        mean_s = np.where(full, 0.0, 1.0 / np.maximum(rate, 1e-300))
        sat = np.maximum(np.log(lam / sc.top[r]), np.log(offered / run))
        log_tpot = (1 - w) * np.log(laws.tpot_p99[p.row0]) + w * np.log(laws.tpot_p99[p.row1])

    def ttft_surv(x: Array) -> Array:
        """P(TTFT > x) between the two grid rates: each end's core with this rate's
        waits, interpolated in log probability (tails grow by orders of magnitude across
        an interval)."""
        s0 = np.maximum(tt0.survival(x, rho_b, mean_b, pw, mean_s), 1e-300)
        s1 = np.maximum(tt1.survival(x, rho_b, mean_b, pw, mean_s), 1e-300)
        return np.asarray(np.exp((1 - w) * np.log(s0) + w * np.log(s1)))

    bad = full | (lam >= sc.top[r])
    margins = {"saturation": np.where(bad, np.maximum(sat, 1e-9), np.minimum(sat, 0.0))}
    if slo.ttft_p99_ms is not None:
        margins["ttft_p99 SLO"] = _tail(ttft_surv(np.full(lam.shape, slo.ttft_p99_ms / 1e3)))
    if slo.tpot_p99_ms is not None:
        margins["tpot_p99 SLO"] = log_tpot - np.log(slo.tpot_p99_ms / 1e3)
    if slo.e2e_p99_ms is not None:
        margins["e2e_p99 SLO"] = _tail(_e2e_surv(sc, laws, p, ttft_surv,
                                                 np.full(lam.shape, slo.e2e_p99_ms / 1e3)))
    ok = ~bad
    for name, m in margins.items():
        if name != "saturation":
            m[bad] = np.maximum(m[bad], 1e-9)
        ok &= m <= 0
    point = {"batch": offered, "tpot_p99": np.exp(log_tpot)}
    if p99:
        point["ttft_p99"] = _p99(ttft_surv, (tt0, tt1), mean_s + mean_b)
        if slo.e2e_p99_ms is not None:  # by bisection in log time around the limit
            lo = np.full(lam.shape, np.log(slo.e2e_p99_ms / 1e3 / 10.0))
            hi = np.full(lam.shape, np.log(slo.e2e_p99_ms / 1e3 * 10.0))
            for _ in range(24):
                mid = (lo + hi) / 2
                above = _e2e_surv(sc, laws, p, ttft_surv, np.exp(mid)) > 0.01
                lo, hi = np.where(above, mid, lo), np.where(above, hi, mid)
            point["e2e_p99"] = np.exp((lo + hi) / 2)
    return ok, margins, point


def _tail(p: Array) -> Array:
    """log(P(value > limit) / 1%): <= 0 where the p99 meets the limit."""
    return np.asarray(np.log(np.maximum(p, 1e-300) / 0.01))


def _p99(surv: Any, tts: tuple[TtftLaw, TtftLaw], waits: Array) -> Array:
    """The 99th percentile of a survival function per row (a point between two grid
    rows' laws ``tts``): bracketed between the lower of their cores' p99 (waits only add)
    and the higher plus 6 mean waits (widened while the tail still exceeds 1% there),
    then regula falsi on the log of the tail (smooth in log time), bisection every third
    step."""
    p0, p1 = (crossing(t.x, t.surv, 0.01) for t in tts)
    lo = np.log(np.maximum(np.minimum(p0, p1) * 0.999, 1e-9))
    hi = np.log(np.maximum(p0, p1) * 1.001 + 6.0 * waits + 1e-6)

    def f(x: Array) -> Array:
        return np.asarray(np.log(np.maximum(surv(np.exp(x)), 1e-300)) - np.log(0.01))

    f_lo, f_hi = f(lo), f(hi)
    for _ in range(3):  # widen until the tail at the top is under 1%
        wide = f_hi > 0
        if not wide.any():
            break
        lo, f_lo = np.where(wide, hi, lo), np.where(wide, f_hi, f_lo)
        hi = np.where(wide, hi + np.log(4.0), hi)
        f_hi = np.where(wide, f(hi), f_hi)
    for it in range(8):
        ok = (f_lo > 0) & (f_hi < 0) & (it % 3 != 2)
        mid = np.where(ok, lo + (hi - lo) * np.clip(f_lo / np.where(ok, f_lo - f_hi, 1.0),
                                                      0.05, 0.95), (lo + hi) / 2)
        fm = f(mid)
        above = fm > 0
        lo, f_lo = np.where(above, mid, lo), np.where(above, fm, f_lo)
        hi, f_hi = np.where(above, hi, mid), np.where(above, f_hi, fm)
    return np.asarray(np.exp((lo + hi) / 2))


def _e2e_surv(sc: Screen, laws: Laws, p: _Point, ttft_surv: Any, x: Array) -> Array:
    """P(TTFT + output tokens x TPOT > x): per output stratum the request's TPOT follows
    its law (independent of the TTFT), on probability strata of its normal score (the
    upper tail resolved: it sets the p99 of a long request)."""
    tp = laws.tpot
    out = np.zeros_like(x)
    for j, (o, wj) in enumerate(zip(sc.lengths.out, sc.lengths.out_w, strict=True)):
        mu = (1 - p.w) * tp.mean[p.row0, j] + p.w * tp.mean[p.row1, j]
        sd = (1 - p.w) * tp.sd[p.row0, j] + p.w * tp.sd[p.row1, j]
        skew = (1 - p.w) * tp.skew[p.row0, j] + p.w * tp.skew[p.row1, j]
        for z, wz in zip(_Z_NODES, _Z_W, strict=True):
            # the TPOT law's Cornish-Fisher quantile at the node (its skew kept)
            tpot = mu + sd * (z + skew * (z * z - 1.0) / 6.0)
            out += wj * wz * ttft_surv(x - o * np.maximum(tpot, 0.0))
    return out


_ROUNDS = 2  # rates added per replica around its slot-free boundary (one per round)


def _refine_grid(sc: Screen, laws: Laws, slo: Slo, grid: Array) -> tuple[Array, Laws]:
    """Add rates where each replica's checks with unlimited slots start failing, one per
    round at the zero of their largest margin interpolated in log rate inside the failing
    bracket (regula falsi): that boundary is shared by every level whose slots do not
    bind, and the slot-independent laws are interpolated between grid rates."""
    nrep, ng = grid.shape
    cr = np.arange(nrep)
    huge = np.full(nrep, 1e12)
    margin = np.zeros((nrep, ng))
    for g in range(ng):
        _, m, _ = _checks(sc, laws, _grid_point(cr, huge, grid, np.full(nrep, g)), slo)
        margin[:, g] = _worst(m)
    fail = margin > 0
    first = np.where(fail.any(axis=1), np.argmax(fail, axis=1), ng)
    f = np.clip(first, 1, ng - 1)
    a, b = np.log(grid[cr, f - 1]), np.log(grid[cr, f])
    ma, mb = margin[cr, f - 1], margin[cr, f]
    live = np.nonzero((first > 0) & (first < ng))[0]  # a crossing below the top rate
    # replicas without one get copies of their top row (no new law: never searched)
    extra = np.repeat(grid[:, -1:], _ROUNDS, axis=1)
    rows_extra = np.repeat((cr * ng + ng - 1)[:, None], _ROUNDS, axis=1)
    side = np.zeros(live.size)  # +1: the low end moved last, -1: the high end
    a, b, ma, mb = a[live], b[live], ma[live], mb[live]
    base = nrep * ng
    for k in range(_ROUNDS if live.size else 0):
        # Illinois: an end that stayed last round counts half (margins near a divergence
        # are very convex, so plain regula falsi creeps from one side)
        ma_w = np.where(side == -1, ma / 2, ma)
        mb_w = np.where(side == 1, mb / 2, mb)
        frac = np.where((mb_w > ma_w) & np.isfinite(ma_w) & np.isfinite(mb_w),
                        np.clip(-ma_w / np.where(mb_w > ma_w, mb_w - ma_w, 1.0), 0.1, 0.9),
                        0.5)
        lam = np.exp(a + (b - a) * frac)
        one = sc.laws(live, lam, slo)
        # the new rate's margins, on a one-rate grid of its own
        rows = np.arange(live.size)
        _, m, _ = _checks(sc, one, _Point(r=live, slots=np.full(live.size, 1e12), lam=lam,
                                          row0=rows, row1=rows, w=np.zeros(live.size)), slo)
        mm = _worst(m)
        up = mm > 0
        b, mb = np.where(up, np.log(lam), b), np.where(up, mm, mb)
        a, ma = np.where(up, a, np.log(lam)), np.where(up, ma, mm)
        side = np.where(up, -1.0, 1.0)
        extra[live, k] = lam
        rows_extra[live, k] = base + rows
        base += live.size
        laws = laws.concat(laws, one)
    both = np.concatenate([grid, extra], axis=1)
    order = np.argsort(both, axis=1, kind="stable")
    rows_all = np.concatenate([cr[:, None] * ng + np.arange(ng)[None, :], rows_extra], axis=1)
    merged = laws.take(np.take_along_axis(rows_all, order, 1).ravel())
    return np.take_along_axis(both, order, 1), merged


def _slot_free(sc: Screen, laws: Laws, slo: Slo, grid: Array) -> Array:
    """(R, G): the largest SLO margin (saturation aside) of each replica at each grid
    rate with unlimited slots (no slot wait): every level's SLO margins are at least
    these, and equal them where its slot wait is negligible."""
    nrep, ng = grid.shape
    cr = np.arange(nrep)
    huge = np.full(nrep, 1e12)
    out = np.full((nrep, ng), -np.inf)
    for g in range(ng):
        _, m, _ = _checks(sc, laws, _grid_point(cr, huge, grid, np.full(nrep, g)), slo)
        slos = [v for k, v in m.items() if k != "saturation"]
        if slos:
            out[:, g] = np.max(np.stack(slos), axis=0)
    return out


def _grid_point(cr: Index, slots: Array, grid: Array, g: Index | Array,
                w: Array | None = None, lam: Array | None = None) -> _Point:
    """Configs ``cr`` at grid rate ``g`` (or at ``lam`` inside the interval from ``g``,
    weight ``w`` in log rate)."""
    ng = grid.shape[1]
    g = np.asarray(g, dtype=np.intp)
    row0 = cr * ng + g
    row1 = cr * ng + np.minimum(g + 1, ng - 1)
    w = np.zeros(cr.size) if w is None else w
    lam = grid[cr, g] if lam is None else lam
    return _Point(r=cr, slots=slots, lam=lam, row0=row0, row1=row1, w=w)


def _worst(margins: dict[str, Array]) -> Array:
    """The largest margin of the checks (<= 0 where all pass)."""
    return np.asarray(np.max(np.stack(list(margins.values())), axis=0))


def _bisect(sc: Screen, laws: Laws, slo: Slo, cr: Index, slots: Array, grid: Array,
            free: Array) -> tuple[Array, Array, Array, Array, Array]:
    """Per config: (last passing rate (0: none), first failing rate (inf: none), grid
    interval, its weight (log rate) at the passing rate and at the failing one).

    On the grid first: the saturation check per config, the SLO checks from the
    slot-free margins ``free`` wherever the slot wait is negligible (chance < 1e-9), the
    full checks elsewhere. Inside the first failing interval the zero of the largest
    margin by regula falsi with the Illinois rule (margins are smooth in log rate there),
    to a bracket under 0.1% of the rate."""
    nc, ng = cr.size, grid.shape[1]
    rows = cr[:, None] * ng + np.arange(ng)[None, :]
    lam = grid[cr]
    t, _ = sc.curves.at(np.repeat(cr, ng), lam.ravel())
    t = np.where(np.isfinite(t), t, 1e3).reshape(nc, ng)
    offered = lam * (laws.ttft.core_mean[rows] + sc.mix.dec[cr, None] * t)
    top = sc.top[cr, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        run = np.maximum(np.floor(slots), 1.0)[:, None]
        sat = np.maximum(np.log(lam / top), np.log(offered / run))
    bad = (offered >= run) | (lam >= top)
    sat = np.where(bad, np.maximum(sat, 1e-9), np.minimum(sat, 0.0))
    pw = erlang_c(np.repeat(slots, ng), np.where(bad, 0.0, offered).ravel()).reshape(nc, ng)
    worst = np.maximum(sat, free[cr])
    has_slo = any(v is not None for v in (slo.ttft_p99_ms, slo.e2e_p99_ms))
    need = np.nonzero((pw > 1e-9) & ~bad & has_slo)
    if need[0].size:
        pt = _grid_point(cr[need[0]], slots[need[0]], grid, need[1])
        worst[need] = _worst(_checks(sc, laws, pt, slo)[1])
    ok = worst <= 0
    first = np.where(ok.all(axis=1), ng, np.argmax(~ok, axis=1))
    # a level may pass again above a failure (flat p99s): the first failure decides
    lo_g = np.maximum(first - 1, 0)
    inside = (first > 0) & (first < ng)
    lo = np.where(first == 0, 0.0, grid[cr, lo_g])
    hi = np.where(first >= ng, np.inf, grid[cr, np.minimum(first, ng - 1)])
    w_lo = np.zeros(nc)
    w_hi = np.zeros(nc)
    idx = np.nonzero(inside)[0]
    if idx.size:
        a, b = np.log(grid[cr[idx], lo_g[idx]]), np.log(grid[cr[idx], lo_g[idx] + 1])
        wl, wh = np.zeros(idx.size), np.ones(idx.size)
        fl, fh = worst[idx, lo_g[idx]], worst[idx, lo_g[idx] + 1]
        side = np.zeros(idx.size)  # +1: the low end moved last, -1: the high end
        for it in range(_BISECT):
            k = np.nonzero((wh - wl) * (b - a) > 2.5e-3)[0]
            if not k.size:
                break
            secant = np.isfinite(fl[k]) & np.isfinite(fh[k]) & (fh[k] > fl[k]) & (it % 3 != 2)
            step = np.clip(-fl[k] / np.where(secant, fh[k] - fl[k], 1.0), 0.02, 0.98)
            wm = wl[k] + (wh[k] - wl[k]) * np.where(secant, step, 0.5)
            pt = _grid_point(cr[idx[k]], slots[idx[k]], grid, lo_g[idx[k]], wm,
                             np.exp(a[k] + (b[k] - a[k]) * wm))
            fm = _worst(_checks(sc, laws, pt, slo)[1])
            up = fm > 0
            hi_k, lo_k = k[up], k[~up]
            # Illinois: an end that stays twice in a row has its value halved
            fl[hi_k] = np.where(side[hi_k] == -1, fl[hi_k] / 2, fl[hi_k])
            fh[lo_k] = np.where(side[lo_k] == 1, fh[lo_k] / 2, fh[lo_k])
            wh[hi_k], fh[hi_k] = wm[up], fm[up]
            wl[lo_k], fl[lo_k] = wm[~up], fm[~up]
            side[hi_k], side[lo_k] = -1.0, 1.0
        lo[idx] = np.exp(a + (b - a) * wl)
        hi[idx] = np.exp(a + (b - a) * wh)
        w_lo[idx], w_hi[idx] = wl, wh
    lo = np.where(ok[:, 0], lo, 0.0)
    return lo, hi, lo_g, w_lo, w_hi


def _results(sc: Screen, laws: Laws, slo: Slo, cr: Index, slots: Array, grid: Array,
             good: tuple[Array, ...], sat: tuple[Array, ...]) -> list[list[CapacityResult]]:
    lo, hi, g0, w_lo, w_hi = good
    served = lo > 0
    cap = np.where(sat[0] > 0, sat[0], 0.0)
    # the operating point at the goodput, and the failing check just above it
    at = _grid_point(cr, slots, grid, g0, w_lo, np.where(served, lo, grid[cr, 0]))
    _, _, point = _checks(sc, laws, at, slo, p99=True)
    above = _grid_point(cr, slots, grid, g0, w_hi, np.where(np.isfinite(hi), hi,
                                                            grid[cr, -1]))
    _, margins, _ = _checks(sc, laws, above, slo)
    out: list[list[CapacityResult]] = [[] for _ in sc.replicas]
    for c in range(cr.size):
        i = int(cr[c])
        why = next((n for n, m in margins.items() if not m[c] <= 0), "saturation")
        ttft = float(point["ttft_p99"][c]) * 1e3
        tpot = float(point["tpot_p99"][c]) * 1e3
        if served[c] and slo.ttft_p99_ms is not None:
            # the TTFT check passed at the goodput: its p99 is at most the limit (the
            # percentile's own search stops within a fraction of a percent of it)
            ttft = min(ttft, slo.ttft_p99_ms)
        if not served[c]:
            out[i].append(unserved(why if sc.top[i] > 0 else "step time (compute/memory)",
                                    float(cap[c]), ttft, tpot))
            continue
        g = float(lo[c])
        binding = "saturation" if not np.isfinite(hi[c]) else why
        out[i].append(CapacityResult(
            goodput_rps=g, saturation_rps=float(max(cap[c], g)),
            steady_state_batch=float(point["batch"][c]), ttft_p99_ms=ttft, tpot_p99_ms=tpot,
            output_tok_s=g * float(sc.o_mean[i]), binding=binding, feasible=True,
            e2e_p99_ms=None if "e2e_p99" not in point else min(
                float(point["e2e_p99"][c]) * 1e3, float(slo.e2e_p99_ms or math.inf))))
    return out
