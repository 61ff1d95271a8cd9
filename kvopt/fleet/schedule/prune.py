"""Exact option pruning for the schedule MILP (one configuration per workload).

The objective is a sum over workloads of what each one's chosen option costs over the
horizon. For every option j a lower bound LB_j on that cost is computed alone (no
coupling: inventory, budget and power dropped; spot replicas continuous), and LB*_w =
min_{j in w} LB_j. Any schedule that uses j costs at least LB_j + sum_{w' != w} LB*_w'.
Given a feasible schedule of cost UB (a restricted MILP over each workload's few best
options), an option with LB_j + sum_{w' != w} LB*_w' > UB is in no optimal schedule and is
left out; the MILP over the rest has the same optimum. Tests compare with the full MILP and
brute force.

LB_j = min over integer committed replicas C of  H w_c C + sum_t h_t phi_t(C), where w_c is
the cheapest committed weight per replica-hour and phi_t(C) the cheapest flexible top-up:
on demand alone, max(0, N_t - C) whole replicas (N_t = ceil(L_t / g + k)); with spot, the
spares rule's on-demand floor o = max(0, k - C) and the rest at the cheaper of on-demand and
spot per unit of capacity (w_spot / a), as a continuous amount.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from kvopt.fleet.schedule.build import tie_break, weights
from kvopt.fleet.schedule.problem import ScheduleData, SOption


def _weights(d: ScheduleData, o: SOption, eps: float,
             lam: dict[str, float] | None) -> dict[str, float]:
    """Objective weight per replica-hour by kind, owned GPUs priced ``lam`` more per GPU-hour
    on their key (the Lagrange multipliers of the owned caps)."""
    wt = {p.kind: weights(d, o, p, eps) for p in o.pays}
    if lam and "owned" in wt:
        c = o.option.candidate
        wt["owned"] += lam.get(c.inventory_key, 0.0) * c.tp
    return wt


def lower_bounds(d: ScheduleData, lam: dict[str, float] | None = None) -> list[float]:
    """LB_j for every option (inf: the option cannot serve the horizon alone); with
    ``lam``, of the Lagrangian objective (owned GPUs priced ``lam`` more)."""
    eps = tie_break(d)
    hours = np.asarray(d.hours, dtype=float)
    H = float(hours.sum())
    rule = d.horizon.spot_rule
    out = []
    for o in d.options:
        w = d.problem.workloads[o.workload]
        k = w.redundancy
        g = o.option.rate_cap_rps
        load = np.asarray(d.demand[o.workload], dtype=float) / g + k  # replica units
        need = np.ceil(load - 1e-9)
        if k:
            need = np.maximum(need, k + 1)
        wt = _weights(d, o, eps, lam)
        committed = [wt[p.kind] for p in o.committed]
        cmax = int(need.max()) if committed else 0
        C = np.arange(cmax + 1, dtype=float)[:, None]
        w_c = min(committed) if committed else 0.0
        phi = np.full((C.shape[0], hours.size), np.inf)
        if "on_demand" in wt:
            phi = np.minimum(phi, wt["on_demand"] * np.maximum(0.0, need[None, :] - C))
        spot = o.pay("spot")
        if spot is not None:
            floor = np.maximum(0.0, k - C) if rule.spares_not_spot else np.zeros_like(C)
            unit = wt["spot"] / spot.availability
            if "on_demand" in wt:
                unit = min(unit, wt["on_demand"])
                base = wt["on_demand"] * floor
            else:  # spares must be committed
                base = np.where(floor > 0, np.inf, 0.0)
            phi = np.minimum(phi, base + unit * np.maximum(0.0, load[None, :] - C - floor))
        phi = np.where(need[None, :] <= C, 0.0, phi)  # committed alone covers the period
        total = H * w_c * C[:, 0] + (phi * hours[None, :]).sum(axis=1)
        lb = float(total.min())
        if d.problem.objective == "quality":
            lb += o.option.candidate.quality_loss_pct
        out.append(lb if math.isfinite(lb) else math.inf)
    return out


def best_per_workload(d: ScheduleData, lbs: list[float], keep: int) -> list[int]:
    """The ``keep`` options of lowest LB of every workload (a restricted model's options)."""
    out: list[int] = []
    for wi in range(len(d.problem.workloads)):
        js = sorted((j for j, o in enumerate(d.options) if o.workload == wi),
                    key=lambda j: lbs[j])
        out += [j for j in js[:keep] if math.isfinite(lbs[j])]
    return out


def survivors(d: ScheduleData, lbs: list[float], ub: float) -> list[int]:
    """Options that can be in an optimal schedule of cost <= ub (see the module doc)."""
    best: dict[int, float] = {}
    for o, lb in zip(d.options, lbs, strict=True):
        best[o.workload] = min(best.get(o.workload, math.inf), lb)
    floor = sum(best.values())
    tol = 1e-9 * max(abs(ub), 1.0)
    return [o.index for o, lb in zip(d.options, lbs, strict=True)
            if math.isfinite(lb) and floor - best[o.workload] + lb <= ub + tol]


@dataclass(frozen=True)
class Alone:
    """Option j's best schedule on its own (other workloads absent: the shared budgets and
    power dropped, its own key's inventory and owned cap kept): its objective value,
    committed replicas by kind and flexible ones per period."""

    value: float
    committed: dict[str, int]
    on_demand: np.ndarray
    spot: np.ndarray


def _committed_cost(d: ScheduleData, j: int, wt: dict[str, float], cmax: int) -> tuple[
        np.ndarray, list[dict[str, int]]]:
    """Per total committed count C (0..cmax): the cheapest split between owned (up to the
    key's owned cap) and the cheapest other committed kind, in weight per hour."""
    o = d.options[j]
    cap_gpus = dict(d.horizon.owned_gpus).get(o.option.candidate.inventory_key)
    own_cap = cmax if cap_gpus is None else cap_gpus // o.option.candidate.tp
    other = min((p.kind for p in o.committed if p.kind != "owned"), key=lambda q: wt[q],
                default=None)
    cost = np.full(cmax + 1, np.inf)
    splits: list[dict[str, int]] = [{} for _ in range(cmax + 1)]
    for c in range(cmax + 1):
        best = np.inf
        for n_own in (range(min(c, own_cap) + 1) if "owned" in wt else (0,)):
            rest = c - n_own
            if rest and other is None:
                continue
            v = n_own * wt.get("owned", 0.0) + (rest * wt[other] if rest and other else 0.0)
            if v < best:
                best = v
                splits[c] = {k: n for k, n in (("owned", n_own), (other or "", rest)) if n}
        cost[c] = best
    return cost, splits


def alone(d: ScheduleData, j: int, eps: float | None = None,
          lam: dict[str, float] | None = None) -> Alone:
    """The exact best schedule of option j alone: for every committed count C (split
    between owned, up to its cap, and the cheapest other committed kind), each period's
    cheapest whole on-demand and spot replicas (enumerated) meeting the demand with spot at
    its availability, k + 1 replicas, the spares rule, spot's share and the option's
    replica bounds. ``eps``: the objective's tie-break weight (computed when not given)."""
    eps = tie_break(d) if eps is None else eps
    o = d.options[j]
    w = d.problem.workloads[o.workload]
    k = w.redundancy
    hours = np.asarray(d.hours, dtype=float)
    load = np.asarray(d.demand[o.workload], dtype=float) / o.option.rate_cap_rps + k
    wt = _weights(d, o, eps, lam)
    least = k + 1 if k else 0
    committed = any(p.committed for p in o.pays)
    cmax = min(int(max(np.ceil(load - 1e-9).max(), least)), d.upper(j)) if committed else 0
    spot = o.pay("spot")
    a = spot.availability if spot else 1.0
    smax = int(np.ceil(load.max() / a - 1e-9)) if spot else 0
    C = np.arange(cmax + 1, dtype=float)[:, None, None]
    S = np.arange(smax + 1, dtype=float)[None, None, :]
    L = load[None, :, None]
    od = np.maximum(0.0, np.ceil(L - C - a * S - 1e-9))
    od = np.maximum(od, least - C - S)
    rule = d.horizon.spot_rule
    if spot is not None and rule.spares_not_spot:
        od = np.maximum(od, np.where(S > 0, k - C, 0.0))
    if spot is not None and rule.max_share < 1.0:
        need = (1 - rule.max_share) * a * S - rule.max_share * C
        od = np.where(S > 0, np.maximum(od, np.ceil(need / max(rule.max_share, 1e-12)
                                                    - 1e-9)), od)
        if rule.max_share == 0.0:
            od = np.where(S > 0, np.inf, od)
    od = np.maximum(od, 0.0)
    if "on_demand" not in wt:
        od = np.where(od > 0, np.inf, 0.0)
    ut = np.array([d.upper(j, t) for t in d.periods], dtype=float)[None, :, None]
    od = np.where(od + S > ut, np.inf, od)  # the option's bound (its key's inventory)
    od_cost = np.where(np.isinf(od), np.inf, wt.get("on_demand", 0.0) * np.where(
        np.isinf(od), 0.0, od))
    cost = od_cost + wt.get("spot", 0.0) * S
    best_s = np.argmin(cost, axis=2)  # (C, T)
    per = np.take_along_axis(cost, best_s[:, :, None], axis=2)[:, :, 0]
    ccost, splits = _committed_cost(d, j, wt, cmax) if committed else (np.zeros(1), [{}])
    total = (per * hours[None, :]).sum(axis=1) + float(hours.sum()) * ccost
    c = int(np.argmin(total))
    value = float(total[c])
    if d.problem.objective == "quality":
        value += o.option.candidate.quality_loss_pct
    s_t = best_s[c].astype(float)
    o_t = np.take_along_axis(od[c], best_s[c][:, None], axis=1)[:, 0]
    return Alone(value=value if math.isfinite(value) else math.inf, committed=splits[c],
                 on_demand=o_t, spot=s_t)


def tighten(d: ScheduleData, lbs: list[float], lam: dict[str, float] | None = None
            ) -> tuple[list[float], dict[int, Alone]]:
    """Exact values for the options that can be their workload's best alone (cheap lower
    bound below the best exact value found), in the order of their cheap bounds; the
    others keep their cheap bound (still valid)."""
    out = list(lbs)
    found: dict[int, Alone] = {}
    eps = tie_break(d)
    for wi in range(len(d.problem.workloads)):
        js = sorted((j for j, o in enumerate(d.options) if o.workload == wi),
                    key=lambda j: lbs[j])
        best = math.inf
        for j in js:
            if lbs[j] >= best or not math.isfinite(lbs[j]):
                break
            found[j] = alone(d, j, eps, lam)
            out[j] = max(out[j], found[j].value)
            best = min(best, found[j].value)
    return out, found


def lagrangian(d: ScheduleData, ub: float, *, rounds: int = 12
               ) -> tuple[list[float], float, dict[str, float]]:
    """Stronger bounds when the owned caps couple the workloads: subgradient steps on
    multipliers lam_K >= 0 of the caps sum n_j c_j,owned <= O_K (Polyak steps towards the
    feasible cost ``ub``). For any lam the Lagrangian LB(lam) = sum_w min_j V_j(lam) - H
    sum_K lam_K O_K bounds the problem from below, and option j stays a candidate only if
    V_j(lam) + sum_{w' != w} min V(lam) - H sum lam O <= ub. Returns (per-option bounds
    V_j(lam), the constant - H sum lam O, lam) of the best round."""
    caps = dict(d.horizon.owned_gpus)
    H = float(sum(d.hours))
    lam: dict[str, float] = {}
    best: tuple[list[float], float, dict[str, float]] | None = None
    best_lb = -math.inf
    for _ in range(rounds):
        lbs, found = tighten(d, lower_bounds(d, lam), lam)
        const = -H * sum(lam.get(k, 0.0) * cap for k, cap in caps.items())
        per_w: dict[int, int] = {}
        for j, v in enumerate(lbs):
            w = d.options[j].workload
            if w not in per_w or v < lbs[per_w[w]]:
                per_w[w] = j
        lb = sum(lbs[j] for j in per_w.values()) + const
        if lb > best_lb:
            best_lb, best = lb, (lbs, const, dict(lam))
        used = dict.fromkeys(caps, 0.0)
        for j in per_w.values():
            key = d.options[j].option.candidate.inventory_key
            if key in used and j in found:
                used[key] += found[j].committed.get("owned", 0) * d.options[j].option.candidate.tp
        grad = {k: H * (used[k] - caps[k]) for k in caps}
        norm = sum(g * g for g in grad.values())
        if norm == 0 or ub - lb <= 1e-9 * max(abs(ub), 1.0):
            break
        step = (ub - lb) / norm
        lam = {k: max(0.0, lam.get(k, 0.0) + step * g) for k, g in grad.items()}
    assert best is not None
    return best


def survivors_with(d: ScheduleData, lbs: list[float], const: float, ub: float) -> list[int]:
    """:func:`survivors` for Lagrangian bounds (``const`` = - H sum lam O)."""
    return survivors(d, lbs, ub - const)
