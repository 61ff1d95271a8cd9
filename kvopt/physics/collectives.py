"""Collectives of expert, data and pipeline parallelism over GPUs that may span NVLink
domains: all-gather, reduce-scatter, all-to-all (MoE dispatch and combine) and the
point-to-point hand-off between pipeline stages.

A group of ``n`` GPUs fills NVLink domains of ``D = gpu.max_gpus_per_node`` GPUs (8 on an
HGX board, 72 on GB200/GB300 NVL72; kvopt's "node" is the NVLink domain): ``d = min(n, D)``
of them per domain over ``ceil(n / d)`` domains, joined by one RDMA NIC per GPU
(``models/interconnect.yaml`` ``inter_node``). Each collective is priced by its most loaded
link of each kind, the kinds running concurrently::

    t = max(lat + min(L / e1, s + L / e2),   lat_net + L_net / e_net)

``L`` is the busiest GPU link's load in seconds at line rate (bytes / per-direction link
bandwidth), ``L_net`` the busiest NIC's; the efficiencies, switch point and latencies are
fitted on aiconfigurator 0.12.0's measured collectives (``benchmarks/fit_collectives.py``).
Loads, for ``B`` bytes gathered (all-gather: every GPU ends with all ``B``, ``B / n`` from
each; reduce-scatter the reverse), and a hierarchical algorithm across domains (each remote
share enters a domain once)::

    L = (n - 1) / n  B / link          L_net = (n - d) / (n d)  B / nic

An all-to-all in which every GPU sends ``S`` bytes spread evenly over the other GPUs of its
domain and ``R`` bytes out of it (the caller counts both from the routing: an MoE dispatch
sends a token once to each rank, and once to each remote domain, that holds one of its
experts) loads its link on the domain's networkx topology
(:func:`kvopt.physics.comm.node_topology`: NVSwitch, PCIe switch or an xGMI mesh) and its
NIC::

    L = phase(d) d S / (d - 1)         L_net = R / nic

``phase(d)`` is the busiest edge's seconds per byte when each of ``d`` GPUs sends ``1/d`` of
a buffer to every other (``(d - 1) / d / link`` on a switch).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import numpy.typing as npt

from kvopt.catalog.gpus import GpuSpec
from kvopt.catalog.yamlio import sourced
from kvopt.errors import CatalogError
from kvopt.physics.comm import interconnect_data, link_bytes_s, link_kind
from kvopt.units import GB, US_PER_S

Array = npt.NDArray[np.float64]
OPS = ("all_gather", "reduce_scatter", "all_to_all")
_ORIGIN = "models/interconnect.yaml"


@dataclass(frozen=True)
class Span:
    """How a group of ``gpus`` GPUs lies over NVLink domains: ``per_node`` in each of
    ``nodes``."""

    gpus: int
    per_node: int
    nodes: int


def span(gpu: GpuSpec, n: int) -> Span:
    """``n`` GPUs of ``gpu`` packed into its NVLink domains (``max_gpus_per_node``)."""
    d = max(1, min(n, gpu.max_gpus_per_node))
    return Span(gpus=n, per_node=d, nodes=math.ceil(n / d))


@dataclass(frozen=True, kw_only=True)
class Curve:
    """``t = lat + min(L / e1, s + L / e2)`` on a link load ``L`` (seconds at line rate)."""

    latency_s: float
    oneshot_eff: float
    switch_s: float
    ring_eff: float

    def time_s(self, load_s: Any) -> Array:
        x = np.asarray(load_s, dtype=np.float64)
        return np.asarray(self.latency_s + np.minimum(
            x / self.oneshot_eff, self.switch_s + x / self.ring_eff))


def _num(node: Any, key: str, origin: str) -> float:
    value, _ = sourced(node.get(key) if isinstance(node, dict) else None, key, origin)
    return float(value or 0.0)


@cache
def collective_curve(kind: str, op: str) -> Curve:
    """The fitted curve of ``op`` inside a domain of link ``kind``: the ``collectives``
    section of interconnect.yaml; link kinds without one take their all-reduce constants
    (latency and one efficiency: a ring all-gather is half a ring all-reduce)."""
    if op not in OPS:
        raise CatalogError(f"unknown collective {op!r}; one of {', '.join(OPS)}")
    data = interconnect_data()
    node = ((data.get("collectives") or {}).get(kind) or {}).get(op)
    origin = f"{_ORIGIN} collectives.{kind}.{op}"
    if node is not None:
        return Curve(latency_s=_num(node, "latency_us", origin) / US_PER_S,
                     oneshot_eff=_num(node, "oneshot_efficiency", origin),
                     switch_s=_num(node, "switch_us", origin) / US_PER_S,
                     ring_eff=_num(node, "ring_efficiency", origin))
    ar = (data.get("allreduce") or {}).get(kind)
    if ar is None:
        raise CatalogError(f"{_ORIGIN}: no collective constants for link kind '{kind}'")
    origin = f"{_ORIGIN} allreduce.{kind}"
    eff = _num(ar, "bandwidth_efficiency", origin)
    return Curve(latency_s=_num(ar, "latency_us", origin) / US_PER_S, oneshot_eff=eff,
                 switch_s=0.0, ring_eff=eff)


@cache
def moe_all_to_all_curve(kind: str) -> Curve:
    """Engines' MoE dispatch/combine kernels (TensorRT-LLM's NVLink all-to-all, DeepEP)
    inside a domain of link ``kind`` (``moe_all_to_all`` of interconnect.yaml; else NCCL's
    all-to-all)."""
    node = (interconnect_data().get("moe_all_to_all") or {}).get(kind)
    if node is None:
        return collective_curve(kind, "all_to_all")
    origin = f"{_ORIGIN} moe_all_to_all.{kind}"
    eff = _num(node, "efficiency", origin)
    return Curve(latency_s=_num(node, "latency_us", origin) / US_PER_S, oneshot_eff=eff,
                 switch_s=0.0, ring_eff=eff)


@dataclass(frozen=True)
class Network:
    """RDMA between NVLink domains: one NIC per GPU."""

    nic_bytes_s: float
    efficiency: float
    latency_s: float

    def time_s(self, load_s: Any) -> Array:
        return np.asarray(self.latency_s + np.asarray(load_s, dtype=np.float64)
                          / self.efficiency)


@cache
def network() -> Network:
    """``inter_node`` of interconnect.yaml (NIC bandwidth per GPU, efficiency, latency)."""
    node = interconnect_data().get("inter_node")
    if not isinstance(node, dict):
        raise CatalogError(f"{_ORIGIN}: needs an 'inter_node' section")
    origin = f"{_ORIGIN} inter_node"
    return Network(nic_bytes_s=_num(node, "bandwidth_gb_s_per_gpu", origin) * GB,
                   efficiency=_num(node, "efficiency", origin),
                   latency_s=_num(node, "latency_us", origin) / US_PER_S)


def _combine(intra: Array, inter: Array | None) -> Array:
    return intra if inter is None else np.asarray(np.maximum(intra, inter))


def gather_time_s(gpu: GpuSpec, n: int, n_bytes: Any, op: str = "all_gather", *,
                  per_node: int | None = None) -> Array:
    """An all-gather (or reduce-scatter: ``op``) of ``n_bytes`` in all over ``n`` GPUs
    (``per_node``: members of the group in one NVLink domain when they are not packed, e.g.
    one GPU of each tensor-parallel group)."""
    b = np.asarray(n_bytes, dtype=np.float64)
    if n <= 1:
        return np.asarray(0.0 * b)
    sp = span(gpu, n)
    if per_node is not None:
        sp = Span(gpus=n, per_node=max(1, min(n, per_node)),
                  nodes=math.ceil(n / max(1, min(n, per_node))))
    load = (n - 1) / n * b / link_bytes_s(gpu)
    intra = collective_curve(link_kind(gpu), op).time_s(load)
    inter = None
    if sp.nodes > 1:
        net = network()
        inter = net.time_s((n - sp.per_node) / (n * sp.per_node) * b / net.nic_bytes_s)
    return np.asarray(np.where(b > 0, _combine(intra, inter), 0.0))


@cache
def _phase_per_byte(gpu: GpuSpec, d: int) -> float:
    """Seconds per byte of the busiest edge when each of ``d`` GPUs of one domain sends
    ``1/d`` of a buffer to every other (the networkx topology of the domain)."""
    from kvopt.physics.comm import _phase_seconds_per_byte, node_topology

    return _phase_seconds_per_byte(node_topology(gpu, d), d)


def all_to_all_time_s(gpu: GpuSpec, n: int, intra_bytes: Any, inter_bytes: Any = 0.0, *,
                      moe: bool = True) -> Array:
    """An all-to-all over ``n`` GPUs in which each GPU sends ``intra_bytes`` spread evenly
    over the other GPUs of its NVLink domain and ``inter_bytes`` out of it through its NIC
    (``moe``: the engines' dispatch/combine kernels, else NCCL's all-to-all)."""
    s = np.asarray(intra_bytes, dtype=np.float64)
    r = np.asarray(inter_bytes, dtype=np.float64)
    if n <= 1:
        return np.asarray(0.0 * (s + r))
    d = span(gpu, n).per_node
    kind = link_kind(gpu)
    curve = moe_all_to_all_curve(kind) if moe else collective_curve(kind, "all_to_all")
    intra = (curve.time_s(_phase_per_byte(gpu, d) * d * s / (d - 1)) if d > 1
             else np.zeros_like(s))
    inter = network().time_s(r / network().nic_bytes_s) if span(gpu, n).nodes > 1 else None
    return np.asarray(np.where(s + r > 0, _combine(np.asarray(intra), inter), 0.0))


def p2p_time_s(gpu: GpuSpec, n_bytes: Any, *, across_nodes: bool) -> Array:
    """One hand-off of ``n_bytes`` from a GPU to the next pipeline stage's: over the GPU's
    link inside a domain (NCCL send/recv, the all-to-all curve's efficiency), else over its
    NIC."""
    b = np.asarray(n_bytes, dtype=np.float64)
    if across_nodes:
        net = network()
        t = net.time_s(b / net.nic_bytes_s)
    else:
        t = collective_curve(link_kind(gpu), "all_to_all").time_s(b / link_bytes_s(gpu))
    return np.asarray(np.where(b > 0, t, 0.0))
