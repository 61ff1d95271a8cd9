"""pymoo's mixed-variable mating without its per-parent objects.

:class:`pymoo.core.mixed.MixedVariableMating` recombines each variable group (every
``Choice`` alone, the ``Integer`` together) by wrapping each parent's values of the group
in a new ``Individual``: ~1,000 objects per mating call, which took most of a 10,000-
evaluation search. :class:`LeanMixedMating` runs the same selection, crossover and mutation
operators, in the same order and with the same random draws, on light parent records: the
offspring (and so the whole seeded search) are the same (``tests/pareto`` compares them
with pymoo's class).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pymoo.core.mixed import MixedVariableMating
from pymoo.core.population import Population
from pymoo.core.problem import Problem
from pymoo.core.variable import Choice

_N_PARENTS = 2  # pymoo's mixed mating: two parents make two offspring
_N_OFFSPRINGS = 2


class _Parent:
    """What a crossover reads of a parent: ``get("X")``."""

    __slots__ = ("X",)

    def __init__(self, x: Any) -> None:
        self.X = x

    def get(self, key: str) -> Any:
        return self.X if key == "X" else None


class LeanMixedMating(MixedVariableMating):  # type: ignore[misc]
    """:class:`pymoo.core.mixed.MixedVariableMating` (same operators, same draws), with the
    parents of each variable group as light records."""

    def _do(self, problem: Any, pop: Any, n_offsprings: int, parents: bool = False,
            random_state: Any = None, **kwargs: Any) -> Any:
        variables = problem.vars
        by_type: dict[type, list[str]] = {}
        for name, var in variables.items():
            by_type.setdefault(type(var), []).append(name)
        recomb: list[tuple[type, list[str]]] = []
        for clazz, names in by_type.items():
            if clazz == Choice:
                recomb += [(clazz, [n]) for n in names]
            else:
                recomb.append((clazz, names))
        off = Population.new(X=[{} for _ in range(n_offsprings)])
        if not parents:
            n_select = math.ceil(n_offsprings / _N_OFFSPRINGS)
            pop = self.selection(problem, pop, n_select, _N_PARENTS, random_state=random_state,
                                 **kwargs)
        decisions = [[parent.X for parent in mating] for mating in pop]
        for clazz, names in recomb:
            crossover = self.crossover[clazz]
            assert (crossover.n_parents == _N_PARENTS
                    and crossover.n_offsprings == _N_OFFSPRINGS)
            dtype = "O" if clazz is Choice else None
            group = [[_Parent(np.array([x[n] for n in names], dtype=dtype)) for x in mating]
                     for mating in decisions]
            sub = Problem(vars={n: variables[n] for n in names},
                          xl=np.array([getattr(variables[n], "lb", None) for n in names]),
                          xu=np.array([getattr(variables[n], "ub", None) for n in names]))
            child = crossover(sub, group, random_state=random_state, **kwargs)
            child = self.mutation[clazz](sub, child, random_state=random_state, **kwargs)
            values = child.get("X")
            for k in range(n_offsprings):
                x = off[k].X
                for i, name in enumerate(names):
                    x[name] = values[k][i]
        return off
