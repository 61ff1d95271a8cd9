"""What each engine can run beyond tensor parallelism, and how its MoE layers exchange
tokens: the ``parallelism`` section of ``models/engines/<name>.yaml`` (each fact sourced).

* ``expert_parallel``: ``whole_group`` (vLLM: experts over every GPU of a stage, or sliced,
  so ``ep`` is 1 or ``tp x dp``) or ``divides`` (SGLang, TensorRT-LLM: any ``ep`` dividing
  ``tp x dp``).
* ``attention_dp``: ``any_tp`` (each attention-DP rank a TP group of ``tp`` GPUs) or ``tp1``
  (TensorRT-LLM: one GPU per attention rank).
* ``pipeline``: whether the engine runs pipeline stages.
* ``moe_dispatch`` (and ``moe_dispatch_multinode_nvlink``, where the engine switches on a
  multi-node NVLink domain with more expert ranks than a token's experts): one of
  :data:`kvopt.physics.parallel_ops.DISPATCH`.

An engine without the section (llama.cpp, TensorRT-LLM's Triton backend) runs tensor
parallelism only.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from kvopt.catalog.gpus import GpuSpec
from kvopt.catalog.model_spec import ModelSpec
from kvopt.catalog.paths import models_dir
from kvopt.catalog.yamlio import read_yaml
from kvopt.errors import CatalogError, InputError
from kvopt.physics.parallel import Parallel
from kvopt.physics.parallel_ops import DISPATCH

_KEYS = {"expert_parallel": ("whole_group", "divides"), "attention_dp": ("any_tp", "tp1"),
         "pipeline": (True, False), "moe_dispatch": DISPATCH,
         "moe_dispatch_multinode_nvlink": DISPATCH}


@cache
def support(engine: str) -> dict[str, Any]:
    """The engine's ``parallelism`` facts (empty: tensor parallelism only)."""
    path = models_dir() / "engines" / f"{engine}.yaml"
    if not path.is_file():
        return {}
    node = (read_yaml(path) or {}).get("parallelism")
    if node is None:
        return {}
    out: dict[str, Any] = {}
    for key, allowed in _KEYS.items():
        if key not in node:
            continue
        item = node[key]
        if not isinstance(item, dict) or "value" not in item or not item.get("source"):
            raise CatalogError(f"{path}: field 'parallelism.{key}' must be a mapping with "
                               "'value' and a non-empty 'source'")
        value = item["value"]
        if value not in allowed:
            raise CatalogError(f"{path}: parallelism.{key} = {value!r} must be one of "
                               f"{', '.join(map(str, allowed))}")
        out[key] = value
    return out


def check_engine(engine: str, par: Parallel) -> None:
    """Raise :class:`InputError` when ``engine`` cannot run the layout ``par``."""
    if par.plain:
        return
    s = support(engine)
    if not s:
        raise InputError("engine", engine, f"kvopt models tensor parallelism only for "
                         f"{engine} (layout {par.label})", "use vllm, sglang or trtllm")
    if par.ep > 1 and s.get("expert_parallel") == "whole_group" and par.ep != par.world:
        raise InputError("ep", par.ep, f"{engine} spreads the experts over every GPU of a "
                         f"stage or none (--enable-expert-parallel): ep is 1 or tp x dp = "
                         f"{par.world}", f"use ep {par.world} or 1")
    if par.dp > 1 and s.get("attention_dp") == "tp1" and par.tp != 1:
        raise InputError("dp", par.dp, f"{engine}'s attention data parallelism runs one GPU "
                         "per attention rank (enable_attention_dp)",
                         f"use tp 1 with dp {par.world}")
    if par.pp > 1 and not s.get("pipeline", False):
        raise InputError("pp", par.pp, f"{engine} does not run pipeline stages")


def dispatch(engine: str, par: Parallel, model: ModelSpec, gpu: GpuSpec) -> str:
    """How ``engine``'s MoE layers exchange tokens between attention-DP ranks on ``gpu``."""
    s = support(engine)
    mode = str(s.get("moe_dispatch", DISPATCH[0]))
    nvl = s.get("moe_dispatch_multinode_nvlink")
    if (nvl is not None and gpu.interconnect_kind == "nvlink" and gpu.max_gpus_per_node > 8
            and model.moe is not None and par.ep > model.moe.experts_per_token):
        return str(nvl)
    return mode
