"""NSGA-II over a fleet space: pymoo's mixed-variable GA with rank-and-crowding survival on
a :class:`~kvopt.pareto.problem.FleetProblem`, seeded (same seed, same front bit for bit);
the front is taken over every feasible point evaluated
(:class:`~kvopt.pareto.problem.FrontArchive`). pymoo is imported when a search runs."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from kvopt.errors import InputError
from kvopt.pareto.front import Front, feasible_front
from kvopt.pareto.table import ConfigTable
from kvopt.space import Workload

if TYPE_CHECKING:
    from kvopt.pareto.problem import FleetProblem

METHODS = {"single": "nsga2", "mixed": "nsga2-mixed", "disagg": "nsga2-disagg"}


def run_nsga2(table: ConfigTable, w: Workload, objectives: tuple[str, ...], *,
              max_replicas: int, budget_usd_h: float | None, pop: int, gens: int, seed: int,
              progress: Callable[[int, int], None] | None = None,
              mixed: bool = False, decode_table: ConfigTable | None = None) -> Front:
    """NSGA-II (pymoo MixedVariableGA with rank-and-crowding survival), seeded; the initial
    population starts with each configuration's cheapest feasible fleet (:func:`_seeds`). ``mixed``
    searches heterogeneous fleets of two configuration groups; ``decode_table`` makes
    ``table`` the prefill pool and searches disaggregated prefill/decode pools. Offspring
    that repeat a decision already in the population are dropped (hashed). The front: the
    non-dominated points of every feasible evaluation (the archive keeps the good points
    the last population's crowding discarded; no extra evaluations)."""
    from pymoo.algorithms.moo.nsga2 import RankAndCrowding
    from pymoo.core.duplicate import HashDuplicateElimination
    from pymoo.core.mixed import MixedVariableGA
    from pymoo.optimize import minimize

    from kvopt.pareto.mating import LeanMixedMating
    from kvopt.pareto.problem import (
        DecisionKey,
        FleetProblem,
        FrontArchive,
        SeededSampling,
    )

    if pop < 2:
        raise InputError("--pop", pop, "needs at least 2 individuals")
    if gens < 1:
        raise InputError("--gens", gens, "needs at least 1 generation")
    t0 = time.perf_counter()
    problem = FleetProblem(table, w, objectives, max_replicas=max_replicas,
                           budget_usd_h=budget_usd_h, mixed=mixed, decode_table=decode_table)
    dedupe = HashDuplicateElimination(func=DecisionKey(problem.names))
    algorithm = MixedVariableGA(pop_size=pop, survival=RankAndCrowding(),
                                sampling=SeededSampling(_seeds(problem, pop)),
                                mating=LeanMixedMating(eliminate_duplicates=dedupe),
                                eliminate_duplicates=dedupe)
    archive = FrontArchive(problem, gens, progress)
    res = minimize(problem, algorithm, ("n_gen", gens), seed=seed, callback=archive,
                   verbose=False)
    idx = archive.archive
    front = feasible_front(idx, problem.evaluation(idx), method=METHODS[problem.fleet],
                           evaluations=int(res.algorithm.evaluator.n_eval), started=t0)
    front.generations = archive.generations
    return front


def _seeds(problem: FleetProblem, pop: int) -> list[dict[str, int]]:
    """Up to half the initial population: each configuration's cheapest feasible
    single-configuration decision, cheapest first (a mixed fleet's second group empty).
    Disaggregated pools are drawn at random only (their feasibility couples two tables)."""
    from kvopt.pareto.exact import cheapest_per_config

    if problem.decode_table is not None:
        return []
    rows = cheapest_per_config(problem.table, problem.workload, problem.max_replicas,
                               problem.budget_usd_h)[: max(1, pop // 2)]
    if problem.mixed:
        rows = np.hstack([rows, np.zeros_like(rows)])
    return problem.decision_dicts(rows)
