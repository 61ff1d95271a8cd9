"""The schedule MILP: one builder per constraint family, each adding named Pyomo components.

Notation: options j (a candidate at its rate cap, of workload w(j), in region r(j) on GPU
type G(j); inventory key K(j) = r(j):G(j)); periods t of h_t hours, H = sum_t h_t; ways to
pay p: committed C = {reserved_1y, reserved_3y, owned} (fixed for the horizon), flexible
F = {on_demand, spot} (per period). g_j requests/s per replica, n_j GPUs per replica, e_j kW
per replica at TDP; pi_jp $/GPU-hour (hourly equivalent; owned: TCO), u_jp $ upfront per
GPU; a_jp expected availability (spot: 1 - interruption rate, else 1); L_wt requests/s;
k_w the N+k redundancy; N_jt = ceil(L_wt / g_j + k_w); U_j, U_jt big-Ms from data
(:meth:`ScheduleData.upper`). Variables: y_j binary (option chosen), c_jp integer
(committed replicas), f_jpt integer (flexible replicas in period t). X_jt = sum_C c_jp +
sum_F f_jpt is option j's replicas in period t; S_t = sum_j n_j (sum_C pi_jp c_jp + sum_F
pi_jp f_jpt) the fleet's $/h in period t (committed replicas at their hourly equivalent);
f_jst is f_j,spot,t, f_jot f_j,on_demand,t, R_jt = L_wt / g_j + k_w, mu_jt = a_j / (R_jt -
floor(R_jt)) where that is below 1 (mixed-integer rounding), and sum_w a sum over the
options of workload w. Builders are in this module except `weights`
(:func:`kvopt.fleet.schedule.build.weights`).

| equation | Pyomo name | builder |
|---|---|---|
| sum_C c_jp <= U_j y_j | `link_committed` | `add_link` |
| sum_F f_jpt <= U_jt y_j | `link_flexible` | `add_link` |
| sum_{j in w} g_j (sum_C c_jp + sum_F a_jp f_jpt - k_w y_j) >= L_wt | `demand` | `add_demand` |
| X_jt >= (k_w + 1) y_j (k_w > 0) | `redundancy` | `add_redundancy` |
| sum_{j in w} y_j <= 1 (no mixing) | `one_config` | `add_choice` |
| X_jt >= N_jt y_j (no mixing; valid inequality) | `cover` | `add_cover` |
| sum_C c_jp + f_jot + mu_jt f_jst >= ceil(R_jt) y_j (MIR) | `cover_spot` | `add_cover` |
| sum_C c_jp + f_j,on_demand,t >= k_w y_j | `spot_spares` | `add_spot_rule` |
| (1 - s) sum_w a_j g_j f_jst <= s sum_w g_j (X_jt - f_jst) | `spot_share` | `add_spot_rule` |
| sum_{j: K(j)=K} n_j X_jt <= A_K | `inventory` | `add_inventory` |
| sum_{j: K(j)=K} n_j c_j,owned <= O_K | `owned_cap` | `add_inventory` |
| S_t <= B_h | `budget_period` | `add_budget` |
| sum_t h_t S_t <= B | `budget_horizon` | `add_budget` |
| sum_j n_j sum_C u_jp c_jp <= B_upfront | `budget_upfront` | `add_budget` |
| sum_j e_j X_jt <= P | `power` | `add_power` |
| min sum_jp w_jp (H c_jp + sum_t h_t f_jpt) (+ sum_j q_j y_j) | `objective` | `weights` |

w_jp is the objective's weight per replica-hour: cost n_j pi_jp; gpus n_j and power e_j,
each + eps n_j pi_jp (a cost tie-break too small to trade); quality eps n_j pi_jp with the
quality loss q_j of the chosen option. Spot counts at its expected availability in
``demand``; ``spot_spares`` keeps the N+k spares off spot and ``spot_share`` caps spot's
share s of capacity (both the user's :class:`~kvopt.fleet.schedule.problem.SpotRule`).
Memory and SLOs are met by construction: options that miss them at their rate cap are
left out (their figures do not change by the hour).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pyomo.environ as pyo

from kvopt.fleet.schedule.problem import ScheduleData


def _committed(m: Any, j: int) -> Any:
    return sum(m.c[j, p] for p in m.kc[j])


def _replicas(m: Any, j: int, t: int) -> Any:
    return _committed(m, j) + sum(m.f[j, p, t] for p in m.kf[j])


def add_link(m: Any, d: ScheduleData) -> int:
    """link_committed[j]: sum_C c_jp <= U_j y_j and link_flexible[j,t]: sum_F f_jpt <=
    U_jt y_j — replicas only on a chosen option (big-Ms from data)."""
    jc = [j for j in m.J if m.kc[j]]
    jf = [(j, t) for j in m.J if m.kf[j] for t in m.T]
    m.link_committed = pyo.Constraint(jc, rule=lambda m, j: _committed(m, j)
                                      <= m.u[j] * m.y[j])
    m.link_flexible = pyo.Constraint(jf, rule=lambda m, j, t: sum(
        m.f[j, p, t] for p in m.kf[j]) <= m.ut[j, t] * m.y[j])
    return len(jc) + len(jf)


def add_demand(m: Any, d: ScheduleData) -> int:
    """demand[w,t]: sum_{j in w} g_j (sum_C c_jp + sum_F a_jp f_jpt - k_w y_j) >= L_wt —
    every period's rate is served with k_w replicas of each chosen option down, spot at
    its expected availability."""
    by_w = m.by_w

    def rule(m: Any, w: int, t: int) -> Any:
        k = d.problem.workloads[w].redundancy
        if not by_w[w]:  # no option of w in this (restricted) model
            return pyo.Constraint.Infeasible if d.demand[w][t] > 0 else pyo.Constraint.Skip
        return sum(d.options[j].option.rate_cap_rps * (
            _committed(m, j) + sum(m.avail[j, p] * m.f[j, p, t] for p in m.kf[j])
            - k * m.y[j]) for j in by_w[w]) >= d.demand[w][t]

    m.demand = pyo.Constraint(m.W, m.T, rule=rule)
    return len(m.W) * len(m.T)


def add_redundancy(m: Any, d: ScheduleData) -> int:
    """redundancy[j,t]: X_jt >= (k_w + 1) y_j — a chosen option runs k_w + 1 replicas or
    more in every period."""
    idx = [(j, t) for j in m.J if d.problem.workloads[d.options[j].workload].redundancy
           for t in m.T]
    m.redundancy = pyo.Constraint(idx, rule=lambda m, j, t: _replicas(m, j, t) >= (
        d.problem.workloads[d.options[j].workload].redundancy + 1) * m.y[j])
    return len(idx)


def add_choice(m: Any, d: ScheduleData) -> int:
    """one_config[w]: sum_{j in w} y_j <= 1 — one configuration per workload for the whole
    horizon (unless mixing)."""
    if d.problem.allow_mixing:
        return 0
    m.one_config = pyo.Constraint(m.W, rule=lambda m, w: sum(m.y[j] for j in m.by_w[w]) <= 1)
    return len(m.W)


def add_cover(m: Any, d: ScheduleData) -> int:
    """cover[j,t]: X_jt >= N_jt y_j — with one configuration per workload the chosen option
    alone covers each period (availability <= 1, so at least N_jt replicas; a valid
    inequality that tightens the LP relaxation)."""
    if d.problem.allow_mixing:
        return 0
    idx = [(j, t) for j in m.J for t in m.T if d.need(j, t) > 0]
    m.cover = pyo.Constraint(idx, rule=lambda m, j, t: _replicas(m, j, t)
                             >= min(d.need(j, t), m.ut[j, t]) * m.y[j])
    # with spot at availability a < 1: the mixed-integer rounding of the option's own
    # demand row (C + o) + a s >= R (C + o and s integers): (C + o) + min(1, a / f) s >=
    # ceil(R), f = R - floor(R), tighter than the row itself when a < f
    mu: dict[tuple[int, int], tuple[float, int]] = {}
    for j in m.J:
        if "spot" not in m.kf[j] or m.avail[j, "spot"] >= 1.0:
            continue
        o = d.options[j]
        k = d.problem.workloads[o.workload].redundancy
        for t in m.T:
            r = d.demand[o.workload][t] / o.option.rate_cap_rps + k
            f = r - int(r)
            a = m.avail[j, "spot"]
            if f > a + 1e-9 and r > 0:
                mu[j, t] = (a / f, int(r) + 1)

    def mir(m: Any, j: int, t: int) -> Any:
        od = m.f[j, "on_demand", t] if "on_demand" in m.kf[j] else 0
        coef, rhs = mu[j, t]
        return _committed(m, j) + od + coef * m.f[j, "spot", t] >= rhs * m.y[j]

    m.cover_spot = pyo.Constraint(sorted(mu), rule=mir)
    return len(idx) + len(mu)


def add_spot_rule(m: Any, d: ScheduleData) -> int:
    """spot_spares[j,t]: sum_C c_jp + f_j,on_demand,t >= k_w y_j — the N+k spares are never
    spot; spot_share[w,t]: (1 - s) sum a g f_spot <= s sum g (X - f_spot) — spot gives at
    most a share s of a period's capacity (only when s < 1)."""
    rule = d.horizon.spot_rule
    spot = [j for j in m.J if "spot" in m.kf[j]]
    count = 0
    if rule.spares_not_spot:
        idx = [(j, t) for j in spot
               if d.problem.workloads[d.options[j].workload].redundancy for t in m.T]

        def spares(m: Any, j: int, t: int) -> Any:
            od = m.f[j, "on_demand", t] if "on_demand" in m.kf[j] else 0
            k = d.problem.workloads[d.options[j].workload].redundancy
            return _committed(m, j) + od >= k * m.y[j]

        m.spot_spares = pyo.Constraint(idx, rule=spares)
        count += len(idx)
    if rule.max_share < 1.0 and spot:
        s = rule.max_share
        ws = sorted({d.options[j].workload for j in spot})

        def share(m: Any, w: int, t: int) -> Any:
            js = m.by_w[w]
            g = {j: d.options[j].option.rate_cap_rps for j in js}
            sp = [j for j in js if "spot" in m.kf[j]]
            return (1 - s) * sum(m.avail[j, "spot"] * g[j] * m.f[j, "spot", t] for j in sp) \
                <= s * sum(g[j] * (_replicas(m, j, t) - (m.f[j, "spot", t] if j in sp else 0))
                           for j in js)

        m.spot_share = pyo.Constraint(ws, m.T, rule=share)
        count += len(ws) * len(m.T)
    return count


def add_inventory(m: Any, d: ScheduleData) -> int:
    """inventory[K,t]: sum_{K(j)=K} n_j X_jt <= A_K — GPUs on hand per region and type in
    every period; owned_cap[K]: sum n_j c_j,owned <= O_K — GPUs one may own there."""
    avail = d.problem.inventory
    by_k: dict[str, list[int]] = defaultdict(list)
    for j in m.J:
        by_k[d.options[j].option.candidate.inventory_key].append(j)
    keys = sorted(k for k in by_k if k in avail)
    m.inventory = pyo.Constraint(keys, m.T, rule=lambda m, k, t: sum(
        d.options[j].option.candidate.tp * _replicas(m, j, t) for j in by_k[k]) <= avail[k])
    owned = dict(d.horizon.owned_gpus)
    okeys = sorted(k for k in by_k if k in owned
                   and any("owned" in m.kc[j] for j in by_k[k]))
    m.owned_cap = pyo.Constraint(okeys, rule=lambda m, k: sum(
        d.options[j].option.candidate.tp * m.c[j, "owned"] for j in by_k[k]
        if "owned" in m.kc[j]) <= owned[k])
    return len(keys) * len(m.T) + len(okeys)


def spend_usd_h(m: Any, d: ScheduleData, t: int) -> Any:
    """$/h of the fleet in period t (committed at their hourly equivalent)."""
    return sum(d.options[j].option.candidate.tp * (
        sum(m.price[j, p] * m.c[j, p] for p in m.kc[j])
        + sum(m.price[j, p] * m.f[j, p, t] for p in m.kf[j])) for j in m.J)


def add_budget(m: Any, d: ScheduleData) -> int:
    """budget_period[t]: $/h in period t <= B_h; budget_horizon: sum_t h_t $/h_t <= B;
    budget_upfront: sum_j n_j sum_C u_jp c_jp <= B_upfront."""
    count = 0
    p = d.problem
    if p.budget_usd_h is not None:
        m.budget_period = pyo.Constraint(m.T, rule=lambda m, t: spend_usd_h(m, d, t)
                                         <= p.budget_usd_h)
        count += len(m.T)
    if d.horizon.budget_usd is not None:
        m.budget_horizon = pyo.Constraint(expr=sum(
            d.hours[t] * spend_usd_h(m, d, t) for t in m.T) <= d.horizon.budget_usd)
        count += 1
    if d.horizon.upfront_budget_usd is not None:
        m.budget_upfront = pyo.Constraint(expr=sum(
            d.options[j].option.candidate.tp * m.upfront[j, q] * m.c[j, q]
            for j in m.J for q in m.kc[j]) <= d.horizon.upfront_budget_usd)
        count += 1
    return count


def add_power(m: Any, d: ScheduleData) -> int:
    """power[t]: sum_j e_j X_jt <= P — fleet power at TDP in every period (kW)."""
    cap = d.problem.power_cap_kw
    if cap is None:
        return 0
    m.power = pyo.Constraint(m.T, rule=lambda m, t: sum(
        d.options[j].option.candidate.power_kw * _replicas(m, j, t) for j in m.J) <= cap)
    return len(m.T)
