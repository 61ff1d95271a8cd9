"""KV cache offload to a CPU tier: what each engine is told, from a plan entry's
``kv_offload_gib`` (GiB of host memory per replica for the KV cache).

* vLLM with LMCache: ``--kv-transfer-config {"kv_connector": "LMCacheConnectorV1",
  "kv_role": "kv_both"}`` and an LMCache YAML named by ``LMCACHE_CONFIG_FILE``
  (``chunk_size`` tokens, ``local_cpu: true``, ``max_local_cpu_size`` in GB per worker
  process; LMCache docs "Configuring LMCache", examples/cache_with_configs/example.yaml).
* vLLM's own connector: ``--kv-transfer-config {"kv_connector": "OffloadingConnector",
  "kv_role": "kv_both", "kv_connector_extra_config": {"cpu_bytes_to_use": N}}`` (vLLM docs
  "KV offloading"; ``vllm/distributed/kv_transfer/kv_connector/v1/offloading_connector.py``).
* SGLang: the hierarchical cache, ``--enable-hierarchical-cache --hicache-size GB`` (host
  pool per rank; SGLang docs "HiCache").
* TensorRT-LLM: ``kv_cache_config.host_cache_size`` in bytes in the LLM API options
  (``tensorrt_llm.llmapi.KvCacheConfig``).

kvopt passes the size through: the serving model's account of offload (hits that survive
eviction, transfer time) is its own (:mod:`kvopt.serving`).
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from kvopt.errors import InputError
from kvopt.units import GIB

CONNECTORS = ("lmcache", "native")
DEFAULT_CONNECTOR = "lmcache"
LMCACHE_CHUNK_TOKENS = 256  # LMCache's default chunk_size (tokens per stored chunk)
LMCACHE_CONFIG_PATH = "/etc/lmcache/lmcache.yaml"  # where the k8s export mounts it


def check(gib: Any, field: str = "kv_offload_gib") -> float:
    """A non-negative number of GiB (0: no offload)."""
    if isinstance(gib, bool) or not isinstance(gib, int | float) or not gib >= 0:
        raise InputError(field, gib, "must be a number of GiB >= 0",
                         "e.g. --kv-offload-gib 64 (0 turns offload off)")
    return float(gib)


def lmcache_config(gib: float, *, tp: int, chunk_size: int = LMCACHE_CHUNK_TOKENS
                   ) -> dict[str, Any]:
    """LMCache's YAML for a replica of ``tp`` workers sharing ``gib`` of host memory (each
    worker process holds its own local CPU backend of ``gib / tp``)."""
    if chunk_size < 1:
        raise InputError("--lmcache-chunk-size", chunk_size, "must be >= 1 token")
    return {"chunk_size": chunk_size, "local_cpu": True,
            "max_local_cpu_size": round(gib * GIB / 1e9 / tp, 3)}


def lmcache_yaml(gib: float, *, tp: int, chunk_size: int = LMCACHE_CHUNK_TOKENS) -> str:
    return str(yaml.safe_dump(lmcache_config(gib, tp=tp, chunk_size=chunk_size),
                              sort_keys=False))


def transfer_config(gib: float, connector: str) -> dict[str, Any]:
    """vLLM's ``--kv-transfer-config`` for ``gib`` of CPU tier per replica."""
    if connector == "lmcache":
        return {"kv_connector": "LMCacheConnectorV1", "kv_role": "kv_both"}
    if connector == "native":
        return {"kv_connector": "OffloadingConnector", "kv_role": "kv_both",
                "kv_connector_extra_config": {"cpu_bytes_to_use": int(gib * GIB)}}
    raise InputError("--offload-connector", connector, f"one of: {', '.join(CONNECTORS)}")


def engine_flags(engine: str, gib: float, *, tp: int, connector: str = DEFAULT_CONNECTOR
                 ) -> tuple[list[str], dict[str, Any], dict[str, str], list[str]]:
    """(extra flags, extra TensorRT-LLM options, environment, notes) for ``gib`` of CPU
    tier per replica on ``engine``; nothing when ``gib`` is 0."""
    if gib <= 0:
        return [], {}, {}, []
    if engine == "vllm":
        env = {"LMCACHE_CONFIG_FILE": LMCACHE_CONFIG_PATH} if connector == "lmcache" else {}
        notes = ([f"LMCache (pip install lmcache) reads {LMCACHE_CONFIG_PATH}: "
                  "kvopt export --format lmcache writes it"] if connector == "lmcache" else [])
        return (["--kv-transfer-config", json.dumps(transfer_config(gib, connector),
                                                    separators=(",", ":"))], {}, env, notes)
    if engine == "sglang":
        return (["--enable-hierarchical-cache", "--hicache-size",
                 f"{max(1, round(gib * GIB / 1e9 / tp))}"], {}, {}, [])
    if engine == "trtllm":
        return [], {"host_cache_size": int(gib * GIB)}, {}, []
    raise InputError("engine", engine, "allowed: vllm, sglang, trtllm")
