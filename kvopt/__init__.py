"""kvopt: plan LLM serving deployments from physics (memory, roofline latency, serving
dynamics, cost) and exact optimization.

The front door (:mod:`kvopt.api`), re-exported here::

    import kvopt
    est = kvopt.estimate(model="Llama-3.1-8B", gpu="H100-SXM", input_len=1024,
                         output_len=256, rps=10)
    plan = kvopt.plan(model="Llama-3.1-8B", rps=20, input_len=1024, output_len=256,
                      slo_ttft_p99_ms=500, slo_tpot_p99_ms=50)

``kvopt.pareto_front`` is :func:`kvopt.api.pareto` (``kvopt.pareto`` is the subpackage).
Names load on first use (``import kvopt`` stays light for the CLI's ``--help``); every name
in ``__all__`` is stable, everything else is internal. Studies: ``Study``, ``load_study``,
``run_study``, ``load_results`` (the rest is in :mod:`kvopt.study`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from kvopt._version import __version__
from kvopt.errors import (
    CatalogError,
    InfeasiblePlanError,
    InputError,
    KvoptError,
    SolverError,
    UnsupportedError,
)

if TYPE_CHECKING:
    from kvopt.api import (
        ReplicaCapacity,
        capacity,
        compare,
        curve,
        disagg,
        estimate,
        plan,
        schedule,
        simulate,
        size,
        tco,
    )
    from kvopt.api import pareto as pareto_front
    from kvopt.catalog.engines import EngineProfile, engine_names, load_engine
    from kvopt.catalog.gpus import GpuSpec, list_gpus, load_gpu
    from kvopt.catalog.model_spec import ModelSpec
    from kvopt.catalog.models import list_models, load_model, load_model_file
    from kvopt.catalog.prices import price_for
    from kvopt.report import Estimate
    from kvopt.study import Study, load_results, load_study, run_study

_LAZY = {
    "kvopt.api": ("ReplicaCapacity", "capacity", "compare", "curve", "disagg", "estimate",
                  "plan", "schedule", "simulate", "size", "tco"),
    "kvopt.catalog.engines": ("EngineProfile", "engine_names", "load_engine"),
    "kvopt.catalog.gpus": ("GpuSpec", "list_gpus", "load_gpu"),
    "kvopt.catalog.model_spec": ("ModelSpec",),
    "kvopt.catalog.models": ("list_models", "load_model", "load_model_file"),
    "kvopt.catalog.prices": ("price_for",),
    "kvopt.report": ("Estimate",),
    "kvopt.study": ("Study", "load_results", "load_study", "run_study"),
}
_WHERE = {name: module for module, names in _LAZY.items() for name in names}
# kvopt.pareto is the subpackage, so the front door's pareto is re-exported as pareto_front
_RENAMED = {"pareto_front": ("kvopt.api", "pareto")}

__all__ = [
    "CatalogError",
    "EngineProfile",
    "Estimate",
    "GpuSpec",
    "InfeasiblePlanError",
    "InputError",
    "KvoptError",
    "ModelSpec",
    "ReplicaCapacity",
    "SolverError",
    "Study",
    "UnsupportedError",
    "__version__",
    "capacity",
    "compare",
    "curve",
    "disagg",
    "engine_names",
    "estimate",
    "list_gpus",
    "list_models",
    "load_engine",
    "load_gpu",
    "load_model",
    "load_model_file",
    "load_results",
    "load_study",
    "pareto_front",
    "plan",
    "price_for",
    "run_study",
    "schedule",
    "simulate",
    "size",
    "tco",
]


def __getattr__(name: str) -> Any:
    module, attr = _RENAMED.get(name, (_WHERE.get(name), name))
    if module is None:
        raise AttributeError(f"module 'kvopt' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value  # later lookups skip this hook
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
