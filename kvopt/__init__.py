"""kvopt: plan LLM serving deployments from physics (memory, roofline latency, cost).

Public API (stable names; everything else is internal)::

    from kvopt import estimate, load_model, load_gpu
    est = estimate(model="Llama-3.1-8B", gpu="H100-SXM", input_len=1024, output_len=256,
                   batch=32)
    est.to_dict()["latency"]["tpot_ms"]

Studies (README, "Studies"): ``Study``, ``load_study``, ``run_study``, ``load_results``; the
rest of the study API is in :mod:`kvopt.study`.
"""

from kvopt._version import __version__
from kvopt.catalog.engines import EngineProfile, engine_names, load_engine
from kvopt.catalog.gpus import GpuSpec, list_gpus, load_gpu
from kvopt.catalog.model_spec import ModelSpec
from kvopt.catalog.models import list_models, load_model, load_model_file
from kvopt.catalog.prices import price_for
from kvopt.curve import load_curve
from kvopt.errors import (
    CatalogError,
    InfeasiblePlanError,
    InputError,
    KvoptError,
    SolverError,
    UnsupportedError,
)
from kvopt.estimate import estimate
from kvopt.report import Estimate
from kvopt.study import Study, load_results, load_study, run_study

__all__ = [
    "CatalogError",
    "EngineProfile",
    "Estimate",
    "GpuSpec",
    "InfeasiblePlanError",
    "InputError",
    "KvoptError",
    "ModelSpec",
    "SolverError",
    "Study",
    "UnsupportedError",
    "__version__",
    "engine_names",
    "estimate",
    "list_gpus",
    "list_models",
    "load_curve",
    "load_engine",
    "load_gpu",
    "load_model",
    "load_model_file",
    "load_results",
    "load_study",
    "price_for",
    "run_study",
]
