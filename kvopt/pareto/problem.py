"""The Pareto search as pymoo sees it: :class:`FleetProblem`, a vectorized mixed-variable
``Problem``, and :class:`FrontArchive`, the ``Callback`` that keeps every feasible point the
search evaluates.

This module imports pymoo at the top (its classes subclass pymoo's); only the NSGA-II path
(:func:`kvopt.pareto.search.run_nsga2`) imports it, so ``kvopt --help`` and the other
commands never load pymoo.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from pymoo.core.callback import Callback
from pymoo.core.mixed import MixedVariableSampling
from pymoo.core.problem import Problem
from pymoo.core.variable import Choice, Integer

from kvopt.pareto.evaluation import (
    Array,
    Evaluation,
    IntArray,
    constraint_names,
    evaluate,
    evaluate_disagg,
    evaluate_mixed,
)
from kvopt.pareto.table import ConfigTable
from kvopt.space import Workload

GROUP = ("gpu", "tp", "precision", "batch", "replicas")


class FleetProblem(Problem):  # type: ignore[misc]
    """Choose a fleet: minimize ``F(x)`` subject to ``G(x) <= 0``.

    Variables (pymoo mixed variables; a decision is a dict of them):

    - ``gpu``, ``tp``, ``precision``, ``batch``: ``Choice`` over the indices of the table's
      axes ``0..G-1``, ``0..T-1``, ``0..P-1``, ``0..B-1`` (categorical: no order implied);
    - ``replicas``: ``Integer`` in ``[1, max_replicas]``.

    With ``mixed`` (a heterogeneous fleet) or ``decode_table`` (disaggregated pools: this
    ``table`` is the prefill pool's) a second group follows, the same five names with the
    suffix ``_b``; a mixed fleet's ``replicas_b`` may be 0 (one group only), a decode pool
    needs at least one replica.

    Objectives: the requested ``objectives`` (names of
    :data:`~kvopt.pareto.evaluation.OBJECTIVES`), all minimized. Constraints: the
    normalized inequalities of :mod:`kvopt.pareto.evaluation` (runs at all, below
    saturation, SLOs, budget), feasible where every ``g <= 0``. Evaluation is vectorized:
    ``_evaluate`` receives a whole population and calls
    :func:`~kvopt.pareto.evaluation.evaluate` (or its mixed/disaggregated variant) once.
    """

    def __init__(self, table: ConfigTable, workload: Workload, objectives: tuple[str, ...],
                 *, max_replicas: int, budget_usd_h: float | None, mixed: bool = False,
                 decode_table: ConfigTable | None = None) -> None:
        self.table = table
        self.workload = workload
        self.objectives = objectives
        self.max_replicas = max_replicas
        self.budget_usd_h = budget_usd_h
        self.mixed = mixed
        self.decode_table = decode_table
        two = mixed or decode_table is not None
        self.names: tuple[str, ...] = GROUP + (tuple(n + "_b" for n in GROUP) if two else ())
        super().__init__(vars=self._variables(), n_obj=len(objectives),
                         n_ieq_constr=len(constraint_names(workload, budget_usd_h)),
                         elementwise=False)

    @property
    def fleet(self) -> str:
        """``single``, ``mixed`` or ``disagg``: the fleet the decisions describe."""
        if self.mixed:
            return "mixed"
        return "single" if self.decode_table is None else "disagg"

    def _variables(self) -> dict[str, Any]:
        G, T, P, B = self.table.shape
        out: dict[str, Any] = {}
        for suffix in ("", "_b") if len(self.names) > len(GROUP) else ("",):
            out["gpu" + suffix] = Choice(options=list(range(G)))
            out["tp" + suffix] = Choice(options=list(range(T)))
            out["precision" + suffix] = Choice(options=list(range(P)))
            out["batch" + suffix] = Choice(options=list(range(B)))
            low = 0 if (suffix and self.mixed) else 1  # a decode pool needs a replica
            out["replicas" + suffix] = Integer(bounds=(low, self.max_replicas))
        return out

    def decisions(self, X: Any) -> IntArray:
        """Decision dicts (pymoo's mixed-variable ``X``) as ``(N, 5)`` or ``(N, 10)`` rows of
        indices in the order of :attr:`names` (what the evaluation functions take)."""
        return np.array([[x[n] for n in self.names] for x in X], dtype=np.int64)

    def decision_dicts(self, idx: IntArray) -> list[dict[str, int]]:
        """The inverse of :meth:`decisions`: rows of indices as pymoo decision dicts."""
        return [dict(zip(self.names, map(int, row), strict=True)) for row in idx]

    def evaluation(self, idx: IntArray) -> Evaluation:
        """Objectives, constraints and metrics of decision rows ``idx``."""
        if self.decode_table is not None:
            return evaluate_disagg(self.table, self.decode_table, self.workload, idx,
                                   self.objectives, self.budget_usd_h)
        run = evaluate_mixed if self.mixed else evaluate
        return run(self.table, self.workload, idx, self.objectives, self.budget_usd_h)

    def _evaluate(self, X: Any, out: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        ev = self.evaluation(self.decisions(X))
        out["F"] = ev.F
        out["G"] = ev.G


class SeededSampling(MixedVariableSampling):  # type: ignore[misc]
    """pymoo's mixed-variable sampling with ``seeds`` (decision dicts) leading the initial
    population, the rest drawn at random as before. Seeding with known feasible decisions
    keeps a small or short search from ending with no feasible point when random draws
    miss a narrow feasible region (e.g. a cost cap leaving few replica counts)."""

    def __init__(self, seeds: list[dict[str, int]]) -> None:
        super().__init__()
        self.seeds = seeds

    def _do(self, problem: Any, n_samples: int, random_state: Any = None,
            **kwargs: Any) -> list[dict[str, Any]]:
        k = min(len(self.seeds), n_samples)
        rest: list[dict[str, Any]] = super()._do(problem, n_samples - k,
                                                 random_state=random_state, **kwargs)
        return [dict(d) for d in self.seeds[:k]] + rest


class DecisionKey:
    """Hash key of an individual for pymoo's ``HashDuplicateElimination``: its decision as a
    tuple of the variables ``names`` (exact duplicates in O(n)). pymoo applies the key to
    its own result too, so a tuple maps to itself. (A small object rather than a bound
    method of the problem: ``minimize`` deep-copies the algorithm, and with it the key.)"""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names

    def __call__(self, ind: Any) -> Any:
        return ind if isinstance(ind, tuple) else tuple(ind.X[n] for n in self.names)


class FrontArchive(Callback):  # type: ignore[misc]
    """An external archive for a :class:`FleetProblem` search, notified after each
    generation (the initial population's included).

    - :attr:`evaluated`: the feasible decisions (``G <= 0``) among the individuals evaluated
      in each generation (pymoo's ``algorithm.off``), so the front can be taken over every
      evaluation, not only the last population (whose crowding may discard good points);
    - :attr:`generations`: the feasible objectives of the algorithm's non-dominated set
      (``algorithm.opt``) after each generation, for convergence (hypervolume) per
      generation.

    ``progress(generation, n_gen)``, if given, is called after each generation.
    """

    def __init__(self, problem: FleetProblem, n_gen: int,
                 progress: Callable[[int, int], None] | None = None) -> None:
        super().__init__()
        self.problem = problem
        self.n_gen = n_gen
        self.progress = progress
        self.evaluated: list[IntArray] = []
        self.generations: list[Array] = []

    def notify(self, algorithm: Any) -> None:
        off = algorithm.off
        if off is not None and len(off):
            rows = self.problem.decisions(off.get("X"))
            G = np.asarray(off.get("G"), dtype=np.float64)
            self.evaluated.append(rows[np.all(G <= 0, axis=1)])
        opt = algorithm.opt
        feas = (np.asarray(opt.get("CV"), dtype=np.float64).ravel() <= 0)
        self.generations.append(np.asarray(opt.get("F")[feas], dtype=np.float64))
        if self.progress is not None:
            self.progress(algorithm.n_gen, self.n_gen)

    @property
    def archive(self) -> IntArray:
        """The distinct feasible decisions evaluated so far, sorted rows (none: ``(0, n)``
        with ``n`` the problem's variables)."""
        if not self.evaluated:
            return np.zeros((0, len(self.problem.names)), dtype=np.int64)
        return np.asarray(np.unique(np.vstack(self.evaluated), axis=0), dtype=np.int64)
