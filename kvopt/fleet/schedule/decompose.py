"""The decomposition shortcut: with one configuration per workload the objective is a sum
of per-workload terms, and without the coupling families (inventory, owned caps, budgets,
power: shared by the workloads) the problem splits into one small problem per workload.
Each workload's exact best alone (:func:`kvopt.fleet.schedule.prune.alone`, the least over
its options) sums to a lower bound of the MILP; when that combination also satisfies every
coupling constraint and replica bound it is feasible for the MILP, so it is optimal (gap 0)
and HiGHS is not needed. Otherwise the MILP runs, pruned by these bounds."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from kvopt.fleet.schedule.problem import ScheduleData
from kvopt.fleet.schedule.prune import Alone
from kvopt.fleet.schedule.result import Entry


def combine(d: ScheduleData, found: dict[int, Alone]) -> tuple[Entry, ...] | None:
    """Each workload's best option alone, as schedule entries, when together they keep
    every coupling constraint and replica bound (None otherwise)."""
    best: dict[int, int] = {}
    for j, a in found.items():
        wi = d.options[j].workload
        if wi not in best or a.value < found[best[wi]].value:
            best[wi] = j
    if len(best) != len(d.problem.workloads) or not all(
            np.isfinite(found[j].value) for j in best.values()):
        return None
    entries = []
    T = len(d.hours)
    gpus: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(T))
    owned: dict[str, float] = defaultdict(float)
    spend = np.zeros(T)
    power = np.zeros(T)
    upfront = 0.0
    for j in best.values():
        a, o = found[j], d.options[j]
        c = o.option.candidate
        n_com = sum(a.committed.values())
        reps = n_com + a.on_demand + a.spot
        if n_com > d.upper(j) or np.any(a.on_demand + a.spot > np.array(
                [d.upper(j, t) for t in d.periods])):
            return None
        gpus[c.inventory_key] += c.tp * reps
        power += c.power_kw * reps
        committed = dict(a.committed)
        flexible = {k: tuple(int(x) for x in v) for k, v in (("on_demand", a.on_demand),
                                                             ("spot", a.spot)) if v.any()}
        for kind, n in committed.items():
            p = o.pay(kind)
            assert p is not None
            spend += c.tp * n * p.usd_per_gpu_hour
            upfront += c.tp * n * p.upfront_usd_per_gpu
            if kind == "owned":
                owned[c.inventory_key] += c.tp * n
        for kind, v in flexible.items():
            p = o.pay(kind)
            assert p is not None
            spend += c.tp * np.asarray(v) * p.usd_per_gpu_hour
        entries.append(Entry(option=j, committed=committed, flexible=flexible))
    inv = d.problem.inventory
    if any(k in inv and used.max() > inv[k] for k, used in gpus.items()):
        return None
    caps = dict(d.horizon.owned_gpus)
    if any(k in caps and n > caps[k] for k, n in owned.items()):
        return None
    tol = 1e-9
    fp = d.problem
    if fp.budget_usd_h is not None and spend.max() > fp.budget_usd_h * (1 + tol):
        return None
    hz = d.horizon
    if hz.budget_usd is not None and float(spend @ np.asarray(d.hours)) > hz.budget_usd * (
            1 + tol):
        return None
    if hz.upfront_budget_usd is not None and upfront > hz.upfront_budget_usd * (1 + tol):
        return None
    if fp.power_cap_kw is not None and power.max() > fp.power_cap_kw * (1 + tol):
        return None
    return tuple(sorted(entries, key=lambda e: e.option))
