"""Tensor-parallel split rules (Megatron-style, as vLLM/SGLang/TRT-LLM shard).

Attention heads are split across the TP group: ``num_heads % tp == 0`` is required. KV heads
are split when ``num_kv_heads >= tp`` (then ``num_kv_heads % tp == 0``) and replicated when
fewer (then ``tp % num_kv_heads == 0``): each GPU holds ``max(1, num_kv_heads / tp)`` KV heads.
MLA latent KV is replicated on every rank. Norms and routers are replicated.
"""

from __future__ import annotations

from kvopt.catalog.model_spec import ModelSpec
from kvopt.errors import InputError


def check_tp(model: ModelSpec, tp: int) -> None:
    """Raise :class:`InputError` naming the divisibility rule when ``tp`` cannot shard."""
    if tp < 1:
        raise InputError("tp", tp, "must be >= 1")
    if model.num_heads % tp:
        options = [t for t in (1, 2, 4, 8, 16) if model.num_heads % t == 0]
        raise InputError(
            "tp", tp, f"{model.name} has {model.num_heads} attention heads and tensor "
            f"parallelism needs num_attention_heads % tp == 0",
            f"use one of: {', '.join(map(str, options))}")
    kv = model.num_kv_heads
    if model.mla is None and ((kv >= tp and kv % tp) or (kv < tp and tp % kv)):
        raise InputError(
            "tp", tp, f"{model.name} has {kv} KV heads: tp must divide them, or be a multiple "
            "of them (heads replicated)")


def kv_heads_per_gpu(model: ModelSpec, tp: int) -> int:
    """KV heads stored per GPU: split when there are at least ``tp``, else replicated."""
    return max(1, model.num_kv_heads // tp)
