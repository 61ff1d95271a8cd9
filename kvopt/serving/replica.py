"""A resolved replica: model x GPU x TP x precision x engine, with its memory budget.

Everything that does not depend on the load is computed once here: the precision, the
weights per GPU, the KV pool the engine leaves (sized for its largest step), the KV bytes
per token and per block.
"""

from __future__ import annotations

from dataclasses import dataclass

from kvopt.catalog.engines import EngineProfile, load_engine
from kvopt.catalog.gpus import GpuSpec, load_gpu
from kvopt.catalog.model_spec import ModelSpec
from kvopt.catalog.models import load_model
from kvopt.errors import InputError
from kvopt.physics.comm import allreduce_model
from kvopt.physics.memory import (
    activation_bytes,
    kv_bytes_per_token,
    kv_bytes_per_token_layer,
    weight_bytes_per_gpu,
)
from kvopt.physics.ops import step_ops
from kvopt.physics.precision import Precision, resolve_precision
from kvopt.physics.tp import check_tp
from kvopt.units import GIB, MS_PER_S, US_PER_S


def kv_pool_bytes(eng: EngineProfile, *, gpu_bytes: float, weights_bytes: float,
                  activation_bytes: float) -> float:
    """Bytes the engine leaves for the KV cache on one GPU (negative = does not fit).

    * ``total`` (vLLM, SGLang, llama.cpp): ``fraction x GPU - weights - activations``; the
      runtime overhead (CUDA context, graphs, comm buffers) lives in the ``1 - fraction``
      headroom, and only what exceeds the headroom comes out of the pool.
    * ``free_after_weights`` (TensorRT-LLM): ``fraction x (GPU - weights - activations -
      runtime)``.
    """
    overhead = eng.runtime_overhead_gib * GIB
    if eng.memory_fraction_applies_to == "free_after_weights":
        free = gpu_bytes - weights_bytes - activation_bytes - overhead
        return free * eng.memory_fraction if free > 0 else free
    headroom = (1.0 - eng.memory_fraction) * gpu_bytes
    return (eng.memory_fraction * gpu_bytes - weights_bytes - activation_bytes
            - max(0.0, overhead - headroom))


@dataclass(frozen=True, kw_only=True)
class Replica:
    """One serving replica (a TP group) and its engine's memory budget (per GPU)."""

    model: ModelSpec
    gpu: GpuSpec
    tp: int
    precision: Precision
    engine: EngineProfile
    weights_bytes: float
    activation_bytes: float  # peak transient memory of the engine's largest step
    kv_pool_bytes: float  # what is left for the KV cache (<= 0: does not fit)
    kv_bytes_per_token: float  # all layers, per GPU, below any sliding window
    kv_bytes_per_block_layer: float  # one block of one layer, per GPU

    @property
    def fits(self) -> bool:
        return self.kv_pool_bytes > 0

    @property
    def kv_capacity_tokens(self) -> int:
        """Tokens of full-attention KV the pool holds (windowed layers hold fewer per token)."""
        return max(0, int(self.kv_pool_bytes // self.kv_bytes_per_token))

    @property
    def kv_capacity_blocks(self) -> int:
        """Paged blocks (counted over all layers, as engines allocate them) the pool holds."""
        per_block = self.kv_bytes_per_block_layer * self.model.num_layers
        return max(0, int(self.kv_pool_bytes // per_block))

    @property
    def n_gpus(self) -> int:
        return self.tp

    @property
    def request_overhead_s(self) -> float:
        """Time per request outside the engine steps (see EngineProfile)."""
        return self.engine.request_overhead_ms / MS_PER_S

    @property
    def step_overhead_s(self) -> float:
        """Engine time per step not overlapped with GPU work: host-side scheduling and, for
        engines that do not replay CUDA graphs, one launch per kernel."""
        launch = 0.0
        if not self.engine.cuda_graphs:
            ops = step_ops(self.model, tp=self.tp, precision=self.precision, seqs=1.0, new=1.0,
                           past=1.0)
            kernels = sum(op.count for op in ops) + (2 * self.model.num_layers
                                                     if self.tp > 1 else 0)
            launch = kernels * self.engine.kernel_launch_us / US_PER_S
        return self.engine.step_overhead_ms / MS_PER_S + launch


def build_replica(*, model: str | ModelSpec, gpu: str | GpuSpec, tp: int = 1,
                  weights: str = "bf16", kv_dtype: str | None = None,
                  engine: str | EngineProfile = "vllm") -> Replica:
    """Resolve names, validate TP and precision, and size the engine's memory."""
    m = model if isinstance(model, ModelSpec) else load_model(model)
    g = gpu if isinstance(gpu, GpuSpec) else load_gpu(gpu)
    if isinstance(tp, bool) or not isinstance(tp, int) or tp < 1:
        raise InputError("tp", tp, "must be a positive integer")
    check_tp(m, tp)
    allreduce_model(g, tp)
    eng = engine if isinstance(engine, EngineProfile) else load_engine(engine, g)
    prec = resolve_precision(gpu=g, weights=weights, kv_dtype=kv_dtype, engine=eng.name,
                             hidden_size=m.hidden_size)
    w_b = weight_bytes_per_gpu(m, tp, prec)
    act_b = float(activation_bytes(m, tokens=eng.step_tokens, seqs=eng.max_num_seqs, tp=tp,
                                   act_bytes=prec.activation_bytes))
    pool = kv_pool_bytes(eng, gpu_bytes=g.memory_bytes, weights_bytes=w_b, activation_bytes=act_b)
    return Replica(
        model=m, gpu=g, tp=tp, precision=prec, engine=eng, weights_bytes=w_b,
        activation_bytes=act_b, kv_pool_bytes=pool,
        kv_bytes_per_token=kv_bytes_per_token(m, prec.kv_bytes_per_value, tp),
        kv_bytes_per_block_layer=eng.block_size * kv_bytes_per_token_layer(
            m, tp, prec.kv_bytes_per_value),
    )
