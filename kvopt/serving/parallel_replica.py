"""A replica laid out with expert, attention-data or pipeline parallelism
(:class:`kvopt.physics.parallel.Parallel`): its memory per GPU and the engine it is served
as.

Per GPU of the largest stage: the weights of :func:`kvopt.physics.parallel_ops.weight_bytes`,
the activations of a rank's largest step plus the gathered hidden states of the other
attention ranks, the KV of the stage's layers. The ``dp`` attention ranks are served as one
engine with ``dp`` times a rank's ``max_num_seqs`` and token budget (each rank schedules
its own batch up to the engine's per-rank limits: vLLM's engine cores, TensorRT-LLM's
``max_batch_size`` per attention-DP rank) and the KV blocks of all of them
(:attr:`kvopt.serving.replica.Replica.kv_capacity_blocks`).
"""

from __future__ import annotations

import dataclasses

from kvopt.catalog.engines import EngineProfile
from kvopt.catalog.gpus import GpuSpec
from kvopt.catalog.model_spec import ModelSpec
from kvopt.errors import InputError
from kvopt.physics.memory import (
    activation_bytes,
    kv_bytes_per_token,
    kv_bytes_per_token_layer,
    linear_state_bytes,
)
from kvopt.physics.parallel import Parallel, check, stage_layers
from kvopt.physics.parallel_ops import gather_buffer_bytes, weight_bytes
from kvopt.physics.precision import resolve_precision
from kvopt.serving.parallel_engine import check_engine
from kvopt.serving.replica import Replica, kv_pool_bytes


def build_parallel(*, model: ModelSpec, gpu: GpuSpec, par: Parallel, weights: str,
                   kv_dtype: str | None, engine: EngineProfile,
                   keep_16bit: tuple[str, ...] = (), bits_per_weight: float = 0.0,
                   fp8_scaling: str = "dynamic", fp8_from: str = "") -> Replica:
    """The replica of ``model`` on ``par.gpus`` GPUs of ``gpu`` (TP already checked;
    ``keep_16bit``/``bits_per_weight``/``fp8_scaling``/``fp8_from``: the checkpoint's own
    format, as in build_replica)."""
    check(model, par)
    check_engine(engine.name, par)
    if par.pp > 1 and any(k != "full" for k in model.kinds):
        raise InputError("pp", par.pp, f"{model.name} has sliding-window, linear or "
                         "cross-attention layers, whose split over pipeline stages kvopt "
                         "does not model", "use --pp 1 (tensor, expert or data parallelism)")
    prec = resolve_precision(gpu=gpu, weights=weights, kv_dtype=kv_dtype, engine=engine.name,
                             hidden_size=model.hidden_size, keep_16bit=keep_16bit,
                             bits_per_weight=bits_per_weight, fp8_scaling=fp8_scaling,
                             fp8_weight_only=engine.fp8_weight_only, fp8_from=fp8_from)
    w_b = weight_bytes(model, par, prec)
    act_b = float(activation_bytes(model, tokens=engine.step_tokens, seqs=engine.max_num_seqs,
                                   tp=par.tp, act_bytes=prec.activation_bytes))
    act_b += gather_buffer_bytes(model, par, tokens=engine.step_tokens,
                                 act_bytes=prec.activation_bytes)
    pool = kv_pool_bytes(engine, gpu_bytes=gpu.memory_bytes, weights_bytes=w_b,
                         activation_bytes=act_b)
    per_layer = kv_bytes_per_token_layer(model, par.tp, prec.kv_bytes_per_value)
    served = engine
    if par.dp > 1:
        served = dataclasses.replace(
            engine, max_num_seqs=engine.max_num_seqs * par.dp,
            max_num_batched_tokens=engine.max_num_batched_tokens * par.dp)
    return Replica(
        model=model, gpu=gpu, tp=par.tp, precision=prec, engine=served, weights_bytes=w_b,
        activation_bytes=act_b, kv_pool_bytes=pool,
        kv_bytes_per_token=(per_layer * stage_layers(model, par.pp) if par.pp > 1 else
                            kv_bytes_per_token(model, prec.kv_bytes_per_value, par.tp)),
        kv_bytes_per_block_layer=engine.block_size * per_layer, ep=par.ep, dp=par.dp,
        pp=par.pp, seq_state_bytes=linear_state_bytes(model, par.tp))
