"""Collective communication time over an interconnect topology (networkx).

A node's GPUs and switches form a directed graph whose edge capacities are per-direction
link bandwidths (bytes/s). An all-reduce of ``B`` bytes over ``n`` GPUs is a reduce-scatter
plus an all-gather; in each phase every GPU sends ``B/n`` to each of the others along the
shortest path. The phase time is the most loaded edge's ``load / capacity``, so

    t = latency + 2 * max_edge(load / capacity) / efficiency

which gives the ring result ``2 (n-1)/n B / link`` on a switch (NVSwitch, PCIe root) and
``2 B / n / link`` per pair on a full mesh (AMD xGMI). Latency and efficiency per link kind
come from ``models/interconnect.yaml`` (sourced). GPUs whose all-reduces aiconfigurator
measured (``models/efficiency.yaml``) use the fitted curves instead: CUDA-graph latency plus a
one-shot/two-shot bandwidth form, per implementation (each engine's custom kernels, NCCL) and
GPU count (:func:`engine_allreduce_s`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from itertools import pairwise, permutations
from typing import TYPE_CHECKING, Any

import numpy as np

from kvopt.catalog.engines import EngineProfile
from kvopt.catalog.gpus import GpuSpec, load_gpu
from kvopt.catalog.paths import models_dir
from kvopt.catalog.yamlio import read_yaml, sourced
from kvopt.errors import CatalogError, InputError, KvoptError
from kvopt.physics.efficiency import allreduce_curve, allreduce_impl
from kvopt.physics.kernels import AllReduceCurve
from kvopt.units import GB, US_PER_S

if TYPE_CHECKING:
    import networkx as nx


@dataclass(frozen=True, kw_only=True)
class AllReduceModel:
    """``t(bytes) = latency_s + bytes * seconds_per_byte`` for one TP group."""

    latency_s: float
    seconds_per_byte: float
    link_kind: str
    tp: int

    def time_s(self, n_bytes: Any) -> Any:
        if self.tp <= 1:
            return 0.0 * n_bytes
        return self.latency_s + n_bytes * self.seconds_per_byte


@cache
def interconnect_data() -> dict[str, Any]:
    path = models_dir() / "interconnect.yaml"
    data = read_yaml(path)
    if not isinstance(data, dict) or "allreduce" not in data:
        raise CatalogError(f"{path}: needs an 'allreduce' section")
    return data


def link_kind(gpu: GpuSpec) -> str:
    """Key into interconnect.yaml: nvlink, xgmi, pcie_p2p or pcie_host."""
    if gpu.interconnect_kind == "pcie":
        return "pcie_p2p" if gpu.p2p else "pcie_host"
    return gpu.interconnect_kind


def _pcie_bytes_s(gen: int) -> float:
    table = interconnect_data().get("pcie_x16_gb_s_per_direction") or {}
    node = table.get(gen) or table.get(str(gen))
    if node is None:
        raise CatalogError(f"models/interconnect.yaml: no PCIe Gen{gen} bandwidth")
    value, _ = sourced(node, f"pcie_x16_gb_s_per_direction.{gen}", "models/interconnect.yaml")
    return float(value or 0.0) * GB


def link_bytes_s(gpu: GpuSpec) -> float:
    """One GPU's link bandwidth per direction (bytes/s): NVLink/xGMI aggregate / 2, PCIe
    x16 of its generation."""
    if gpu.interconnect_kind == "pcie":
        return _pcie_bytes_s(gpu.pcie_gen)
    return gpu.interconnect_bandwidth_gb_s * GB / 2


def node_topology(gpu: GpuSpec, n: int) -> nx.DiGraph:
    """Directed graph of ``n`` GPUs of one node with per-direction capacities (bytes/s)."""
    import networkx as nx  # lazy: keeps CLI start-up fast

    g = nx.DiGraph()
    gpus = [f"gpu{i}" for i in range(n)]
    g.add_nodes_from(gpus)
    kind = gpu.interconnect_kind
    if kind == "xgmi":  # full mesh: the aggregate is split over links to the other GPUs
        per_pair = gpu.interconnect_bandwidth_gb_s * GB / 2 / max(1, gpu.max_gpus_per_node - 1)
        for a, b in permutations(gpus, 2):
            g.add_edge(a, b, capacity=per_pair)
        return g
    if kind == "nvlink":
        hub, link = "nvswitch", gpu.interconnect_bandwidth_gb_s * GB / 2
    else:
        hub, link = "pcie_root", _pcie_bytes_s(gpu.pcie_gen)
    for a in gpus:
        g.add_edge(a, hub, capacity=link)
        g.add_edge(hub, a, capacity=link)
    return g


def _phase_seconds_per_byte(g: nx.DiGraph, n: int) -> float:
    """Seconds per all-reduced byte for one phase (each GPU sends 1/n to every other)."""
    import networkx as nx

    load: dict[tuple[str, str], float] = {}
    gpus = [f"gpu{i}" for i in range(n)]
    for a, b in permutations(gpus, 2):
        path = nx.shortest_path(g, a, b)
        for edge in pairwise(path):
            load[edge] = load.get(edge, 0.0) + 1.0 / n
    return max(share / float(g.edges[e]["capacity"]) for e, share in load.items())


_MODELS: dict[tuple[object, ...], AllReduceModel] = {}


def allreduce_model(gpu: GpuSpec, tp: int, *, plain_nccl: bool = False) -> AllReduceModel:
    """All-reduce cost model for a TP group of ``tp`` GPUs of type ``gpu`` in one node.

    ``plain_nccl``: NCCL on buffers not registered with it (an engine's fallback path;
    ``allreduce_plain_nccl`` in interconnect.yaml, else the same constants)."""
    key = (gpu.interconnect_kind, gpu.interconnect_bandwidth_gb_s, gpu.pcie_gen, gpu.p2p,
           gpu.max_gpus_per_node, tp, plain_nccl)
    if key not in _MODELS:
        _MODELS[key] = _build_allreduce(gpu, tp, plain_nccl)
    return _MODELS[key]


def measured_allreduce(gpu: GpuSpec, tp: int, impl: str) -> AllReduceCurve | None:
    """The fitted all-reduce of ``impl`` (an engine's CUDA-graph custom kernels, or nccl)
    over ``tp`` GPUs where ``gpu`` itself was measured (``models/efficiency.yaml``) with the
    interconnect of its catalog card (a card edited to another link is not that system)."""
    if tp <= 1 or not _catalog_link(gpu):
        return None
    return allreduce_curve(gpu, impl, tp)


def _catalog_link(gpu: GpuSpec) -> bool:
    """Whether ``gpu`` has the interconnect of the catalog card of its id."""
    try:
        card = load_gpu(gpu.id)
    except KvoptError:
        return False
    return (card.interconnect_kind, card.interconnect_bandwidth_gb_s, card.pcie_gen,
            card.p2p, card.max_gpus_per_node) == (
        gpu.interconnect_kind, gpu.interconnect_bandwidth_gb_s, gpu.pcie_gen, gpu.p2p,
        gpu.max_gpus_per_node)


def engine_allreduce_s(gpu: GpuSpec, tp: int, engine: EngineProfile | None, *, tokens: Any,
                       n_bytes: Any) -> Any:
    """One TP all-reduce of ``n_bytes`` (for ``tokens`` tokens) as ``engine`` runs it: its own
    kernels where :meth:`EngineProfile.allreduce_custom` says so, plain NCCL elsewhere. On a
    measured GPU both are the fitted curves of that engine (graph mode) and of NCCL; other
    GPUs take ``models/interconnect.yaml``'s constants (None: the default engine's)."""
    if tp <= 1:
        return 0.0 * np.asarray(n_bytes, dtype=np.float64)
    name = engine.name if engine is not None else None
    own: AllReduceCurve | AllReduceModel = (measured_allreduce(gpu, tp, allreduce_impl(name))
                                            or allreduce_model(gpu, tp))
    if engine is None:
        return own.time_s(n_bytes)
    custom = engine.allreduce_custom(tp, tokens, n_bytes)
    if bool(np.all(custom)):
        return own.time_s(n_bytes)
    plain: AllReduceCurve | AllReduceModel = (measured_allreduce(gpu, tp, "nccl")
                                              or allreduce_model(gpu, tp, plain_nccl=True))
    return np.where(custom, own.time_s(n_bytes), plain.time_s(n_bytes))


def check_allreduce(gpu: GpuSpec, tp: int, plain_nccl: bool = False
                    ) -> tuple[str, Any, Any]:
    """What :func:`allreduce_model` checks, without building the topology: TP within a node
    and the link's constants in ``models/interconnect.yaml`` (errors otherwise); returns
    (link kind, latency us, bandwidth efficiency). :func:`kvopt.serving.replica.build_replica`
    validates a replica with it: the model itself is built when a step is priced."""
    if tp > gpu.max_gpus_per_node:
        raise InputError("tp", tp, f"{gpu.id} nodes hold at most {gpu.max_gpus_per_node} GPUs; "
                         "kvopt models tensor parallelism within one node only",
                         f"use tp <= {gpu.max_gpus_per_node} and more replicas")
    kind = link_kind(gpu)
    section = "allreduce"
    if plain_nccl and kind in (interconnect_data().get("allreduce_plain_nccl") or {}):
        section = "allreduce_plain_nccl"
    node = (interconnect_data()[section] or {}).get(kind)
    if node is None:
        raise CatalogError(f"models/interconnect.yaml: no all-reduce constants for '{kind}'")
    origin = f"models/interconnect.yaml {section}.{kind}"
    lat, _ = sourced(node.get("latency_us"), "latency_us", origin)
    eff, _ = sourced(node.get("bandwidth_efficiency"), "bandwidth_efficiency", origin)
    if tp > 1 and gpu.interconnect_kind not in ("xgmi", "nvlink"):
        _pcie_bytes_s(gpu.pcie_gen)  # the links node_topology prices
    return kind, lat, eff


def _build_allreduce(gpu: GpuSpec, tp: int, plain_nccl: bool = False) -> AllReduceModel:
    kind, lat, eff = check_allreduce(gpu, tp, plain_nccl)
    if tp <= 1:
        return AllReduceModel(latency_s=0.0, seconds_per_byte=0.0, link_kind=kind, tp=tp)
    spb = 2 * _phase_seconds_per_byte(node_topology(gpu, tp), tp) / float(eff or 1.0)
    return AllReduceModel(latency_s=float(lat or 0.0) / US_PER_S, seconds_per_byte=spb,
                          link_kind=kind, tp=tp)
