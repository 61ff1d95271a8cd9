"""Exhaustive enumeration of a single-configuration space: every runnable configuration of
the table times every replica count ``1..R``, evaluated at once (vectorized). It gives the
exact front NSGA-II is measured against, and explains an empty space."""

from __future__ import annotations

import time

import numpy as np

from kvopt.pareto.evaluation import IntArray, constraint_names, evaluate
from kvopt.pareto.front import Front, feasible_front
from kvopt.pareto.table import ConfigTable
from kvopt.space import Workload


def all_decisions(table: ConfigTable, max_replicas: int) -> IntArray:
    """Every decision (gpu, tp, precision, batch, replicas) of the space: each runnable
    configuration (in the table's C order) with ``replicas = 1..max_replicas`` — an
    ``(n_valid * max_replicas, 5)`` array."""
    g, t, p, b = np.nonzero(table.valid)
    reps = np.arange(1, max_replicas + 1)
    return np.column_stack([np.repeat(g, reps.size), np.repeat(t, reps.size),
                            np.repeat(p, reps.size), np.repeat(b, reps.size),
                            np.tile(reps, g.size)]).astype(np.int64)


def enumerate_all(table: ConfigTable, w: Workload, objectives: tuple[str, ...],
                  max_replicas: int, budget_usd_h: float | None) -> Front:
    """Exact front: every configuration x replica count, evaluated vectorized."""
    t0 = time.perf_counter()
    idx = all_decisions(table, max_replicas)
    ev = evaluate(table, w, idx, objectives, budget_usd_h)
    return feasible_front(idx, ev, method="exact", evaluations=idx.shape[0], started=t0)


def cheapest_feasible(table: ConfigTable, w: Workload, max_replicas: int,
                      budget_usd_h: float | None) -> float | None:
    """$/h of the cheapest feasible single-configuration fleet (None: none is feasible)."""
    if not table.valid.any():
        return None
    ev = evaluate(table, w, all_decisions(table, max_replicas), ("cost", "gpus"),
                  budget_usd_h)
    feas = np.all(ev.G <= 0, axis=1)
    return float(ev.F[feas, 0].min()) if feas.any() else None


def cheapest_per_config(table: ConfigTable, w: Workload, max_replicas: int,
                        budget_usd_h: float | None) -> IntArray:
    """Each runnable configuration's cheapest feasible decision (its fewest replicas that
    meet every constraint), cheapest first: an ``(n, 5)`` array, ``n`` <= the runnable
    configurations (those with no feasible replica count are left out)."""
    if not table.valid.any():
        return np.zeros((0, 5), dtype=np.int64)
    idx = all_decisions(table, max_replicas)
    ev = evaluate(table, w, idx, ("cost", "gpus"), budget_usd_h)
    feas = np.all(ev.G <= 0, axis=1)
    # rows come per configuration with replicas ascending: the first feasible row of each
    config = np.arange(idx.shape[0]) // max_replicas
    first = np.unique(config[feas], return_index=True)[1]
    rows = np.nonzero(feas)[0][first]
    return idx[rows[np.argsort(ev.F[rows, 0], kind="stable")]]


def emptying_constraints(table: ConfigTable, w: Workload, objectives: tuple[str, ...],
                         max_replicas: int, budget_usd_h: float | None) -> list[str]:
    """Which constraints empty the space: each that, dropped alone, would leave feasible
    points (or all that fail together)."""
    if not table.valid.any():
        return ["runs at all (memory, precision, TP)"]
    G = evaluate(table, w, all_decisions(table, max_replicas), objectives, budget_usd_h).G
    names = constraint_names(w, budget_usd_h)
    alone = [names[c] for c in range(G.shape[1])
             if np.any(np.all(np.delete(G, c, axis=1) <= 0, axis=1))]
    return alone or [n for c, n in enumerate(names) if not np.any(G[:, c] <= 0)] or names
