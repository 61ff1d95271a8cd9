"""Engine flags a user sets (``--engine-arg KEY=VALUE``, ``engine_args``): which there are,
their types and ranges, and an engine profile with them applied, each flag its own source
(:data:`USER_ARG`). A flag the engine does not have (TensorRT-LLM's batch waiting on vLLM,
SGLang's polling interval elsewhere) is a one-line input error naming the flag."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from kvopt.catalog.engine_admission import ADMIT_INTERVAL_MAX
from kvopt.catalog.model_spec import FP8_SCALINGS

if TYPE_CHECKING:
    from kvopt.catalog.engines import EngineProfile
    from kvopt.catalog.gpus import GpuSpec

PREFILL_POLICIES = ("mixed", "prefill_first")
# the engine flags a user may set (``--engine-arg KEY=VALUE``): (type, check, rule)
ENGINE_ARGS: dict[str, tuple[type, str]] = {
    "max_num_batched_tokens": (int, "an integer >= 1 (tokens per step: vLLM "
                               "--max-num-batched-tokens, TensorRT-LLM max_num_tokens, SGLang "
                               "--chunked-prefill-size)"),
    "max_num_seqs": (int, "an integer >= 1 (running sequences: vLLM --max-num-seqs, "
                     "TensorRT-LLM max_batch_size, SGLang --max-running-requests)"),
    "chunked_prefill": (bool, "true or false"),
    "prefill_policy": (str, f"one of {', '.join(PREFILL_POLICIES)}"),
    "memory_fraction": (float, "a number in (0, 1] (vLLM --gpu-memory-utilization, SGLang "
                        "--mem-fraction-static, TensorRT-LLM free_gpu_memory_fraction)"),
    "request_overhead_ms": (float, "a number >= 0"),
    "step_overhead_ms": (float, "a number >= 0"),
    "admit_interval_steps": (int, "an integer >= 1 (the scheduler takes in new requests every "
                             "N decode passes: SGLang --scheduler-recv-interval; engines "
                             "without such a flag take only 1)"),
    "adp_balance": (bool, "true or false (TensorRT-LLM attention_dp_config.enable_balance: "
                    "with attention DP, a prompt waits until every rank has one)"),
    "adp_timeout_iters": (int, "an integer >= 1 (attention_dp_config.timeout_iters)"),
    "adp_wait_iters": (int, "an integer >= 0 (attention_dp_config.batching_wait_iters)"),
    "batch_wait_timeout_iters": (int, "an integer >= 0 (TensorRT-LLM batch_wait_timeout_iters: "
                                 "passes a prompt may be held while others decode; 0: off)"),
    "batch_wait_max_tokens_ratio": (float, "a number in [0, 1] (TensorRT-LLM "
                                    "batch_wait_max_tokens_ratio: prompts are held until "
                                    "this share of max_num_tokens waits; 0: off)"),
    "fp8_scaling": (str, f"one of {', '.join(FP8_SCALINGS)} (how the FP8 checkpoint you "
                    "serve scales activations; it overrides the model's and the engine's)"),
}
USER_ARG = "user: --engine-arg"  # the source of a field the user set


# the largest engine flags kvopt models (kvopt.limits: bounded work per step)
SEQS_MAX = 65_536  # 32x the largest default max_num_seqs of any engine profile
STEP_TOKENS_MAX = 1_048_576  # tokens one step takes: 128x the largest default (8192)
OVERHEAD_MS_MAX = 60_000.0  # a minute per step or request


def with_args(profile: EngineProfile, args: dict[str, Any]) -> EngineProfile:
    """``profile`` with engine flags set by the user (:data:`ENGINE_ARGS`); each becomes
    its own source (:data:`USER_ARG`)."""
    import dataclasses

    from kvopt.errors import InputError

    changes: dict[str, Any] = {}
    for key, raw in args.items():
        if key not in ENGINE_ARGS:
            raise InputError("--engine-arg", key, "unknown engine argument",
                             f"use one of: {', '.join(ENGINE_ARGS)}")
        kind, rule = ENGINE_ARGS[key]
        value = _coerce(raw, kind)
        top = {"max_num_seqs": SEQS_MAX, "max_num_batched_tokens": STEP_TOKENS_MAX,
               "admit_interval_steps": ADMIT_INTERVAL_MAX, "adp_timeout_iters":
               ADMIT_INTERVAL_MAX, "adp_wait_iters": ADMIT_INTERVAL_MAX,
               "batch_wait_timeout_iters": ADMIT_INTERVAL_MAX}.get(key, math.inf)
        low = 0 if key in ("adp_wait_iters", "batch_wait_timeout_iters") else 1
        ok = value is not None and (
            (kind is int and low <= value <= top) or (kind is bool)
            or (key == "prefill_policy" and value in PREFILL_POLICIES)
            or (key == "fp8_scaling" and value in FP8_SCALINGS)
            or (key == "memory_fraction" and 0 < value <= 1)
            or (key == "batch_wait_max_tokens_ratio" and 0 <= value <= 1)
            or (key.endswith("_ms") and 0 <= value <= OVERHEAD_MS_MAX))
        if not ok:
            limit = (f" up to {top}" if kind is int else f" up to {OVERHEAD_MS_MAX:g}"
                     if key.endswith("_ms") else "")
            raise InputError("--engine-arg", f"{key}={raw}", f"must be {rule}{limit}")
        if key.startswith("adp_") and not profile.adp_balance_flag:
            raise InputError("--engine-arg", f"{key}={raw}",
                             f"{profile.name} has no attention-DP balancing (TensorRT-LLM's "
                             "attention_dp_config has)", "drop it")
        if key.startswith("batch_wait_") and value and not profile.batch_wait_flag:
            raise InputError("--engine-arg", f"{key}={raw}",
                             f"{profile.name} has no batch waiting (TensorRT-LLM's "
                             "batch_wait_timeout_iters and batch_wait_max_tokens_ratio are)",
                             "drop it")
        if key == "admit_interval_steps" and value > 1 and not profile.admit_interval_flag:
            raise InputError("--engine-arg", f"{key}={raw}",
                             f"{profile.name} takes in new requests at every pass and has no "
                             "admission interval (SGLang's --scheduler-recv-interval does)",
                             f"drop it or use {key}=1")
        changes[key] = value
    if not changes:
        return profile
    sources = dict(profile.sources)
    sources.update({k: USER_ARG for k in changes})
    return dataclasses.replace(profile, **changes, sources=tuple(sorted(sources.items())))


def apply_args(gpu: GpuSpec | str, engine: EngineProfile | str, args: dict[str, Any]
               ) -> tuple[GpuSpec, EngineProfile]:
    """(GPU, engine profile), each loaded where given by name, the profile with ``args`` set
    (:func:`with_args`)."""
    from kvopt.catalog.engines import load_engine
    from kvopt.catalog.gpus import load_gpu

    g = load_gpu(gpu) if isinstance(gpu, str) else gpu
    return g, with_args(load_engine(engine, g) if isinstance(engine, str) else engine, args)


def typed_args(args: dict[str, Any]) -> dict[str, Any]:
    """Engine flags as their types (``"20"`` -> 20, ``"true"`` -> True) for a record; the
    flags must have passed :func:`with_args` (unknown keys are left as given)."""
    return {k: (_coerce(v, ENGINE_ARGS[k][0]) if k in ENGINE_ARGS else v)
            for k, v in args.items()}


def _coerce(raw: Any, kind: type) -> Any:
    """``raw`` as ``kind`` (text from the command line, or a Python value), else None."""
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        return {"true": True, "1": True, "yes": True, "false": False, "0": False,
                "no": False}.get(text)
    if isinstance(raw, bool):
        return None
    try:
        value = kind(raw)
    except (TypeError, ValueError):
        return None
    if kind is int and isinstance(raw, float) and raw != value:
        return None
    if kind is float and not math.isfinite(value):
        return None
    return value
