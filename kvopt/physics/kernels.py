"""Kernel time forms: what one engine kernel takes, fitted on measured kernel tables.

Every form prices the work kvopt counts (:mod:`kvopt.physics.ops`) with fractions of the GPU
card's own dense peak ``P`` and spec bandwidth ``BW``; the fractions, floors and paddings are
fitted per GPU x engine x dtype on aiconfigurator's CUDA-graph kernel timings
(``benchmarks/fit_efficiency.py`` -> ``models/efficiency.yaml``):

* GEMM, per launch: ``t = t0 + smoothmax(F / (P ec), B / (BW em); p) + q m k / BW``. ``t0`` is
  the kernel's minimum duration (CUDA graphs remove launch gaps, not this); ``q`` bytes per
  activation element is the separate activation-quantization pass of fp8/fp4 W8A8/W4A4 paths.
* Attention, per layer launch: ``t = t0 + smoothmax(F' / (P ec), B' / (BW em); p)`` on padded
  work: a decode sequence reads ``T`` virtual keys beyond its context (a fixed cost per
  sequence), a prefill chunk's queries are padded by ``T`` (query tiles).
* MoE, per layer: ``t = t0 + smoothmax(2 E_t max(T_e, T_m) n_mat h max(w, W_p) / (P ec),
  B / (BW em); p) + g (T k) h 2 / BW``: each touched expert runs at least a ``T_m``-row tile,
  narrow experts pad to ``W_p`` columns, ``g`` is the routing (permute, finalize) traffic.
* All-reduce of ``B`` bytes over ``n`` GPUs: ``t = lat + min(f B / bw_1, s + f B / bw_2)``,
  ``f = 2 (n - 1) / n`` (one-shot below the switch point, two-shot/ring above).

``smoothmax(a, b; p) = (a^p + b^p)^(1/p)`` is homogeneous of degree one, so a term summed over
``count`` identical launches is the same form of the summed work.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]


def smoothmax(a: Any, b: Any, p: float | Array) -> Array:
    """``(a^p + b^p)^(1/p)``: the maximum, softened near the ridge point (p fitted)."""
    hi = np.maximum(a, b)
    lo = np.minimum(a, b)
    # hi x (1 + (lo/hi)^p)^(1/p): the same value with two powers instead of three
    r = lo / np.where(hi > 0, hi, 1.0)
    return np.asarray(hi * (1.0 + r**p) ** (1.0 / p))


@dataclass(frozen=True, kw_only=True)
class GemmCurve:
    """One GEMM kernel path (GPU x engine x dtype); see the module docstring."""

    compute: float  # ec: fraction of the dtype's dense peak
    memory: float  # em: fraction of spec bandwidth
    smoothmax_p: float
    floor_s: float  # t0 per launch
    quant_bytes: float = 0.0  # q: bytes per activation element of the quantization pass
    fitted_on: str = ""  # "<gpu>/<engine>/<dtype>" of the fit this is (after transfer rules)

    def time_s(self, *, flops: Any, nbytes: Any, launches: Any, quant_elems: Any,
               peak_flop_s: float, bandwidth_bytes_s: float) -> Array:
        """Seconds for ``launches`` launches moving ``nbytes`` and doing ``flops`` in total,
        ``quant_elems`` activation elements entering quantized GEMMs."""
        tc = np.asarray(flops, dtype=np.float64) / (peak_flop_s * self.compute)
        tm = np.asarray(nbytes, dtype=np.float64) / (bandwidth_bytes_s * self.memory)
        return np.asarray(np.asarray(launches) * self.floor_s + smoothmax(tc, tm, self.smoothmax_p)
                          + self.quant_bytes * np.asarray(quant_elems) / bandwidth_bytes_s)


@dataclass(frozen=True, kw_only=True)
class AttentionCurve:
    """Attention kernels of one phase (context or generation) for a GPU x engine."""

    compute: float  # fraction of the half-precision dense peak
    memory: float
    smoothmax_p: float
    floor_s: float  # t0 per layer launch
    pad_tokens: float  # T: virtual keys per decode sequence / query padding per prefill chunk
    fitted_on: str = ""

    def time_s(self, *, flops: Any, nbytes: Any, launches: Any, peak_flop_s: float,
               bandwidth_bytes_s: float) -> Array:
        """Seconds for padded work (:func:`decode_work`, :func:`prefill_work`)."""
        tc = np.asarray(flops, dtype=np.float64) / (peak_flop_s * self.compute)
        tm = np.asarray(nbytes, dtype=np.float64) / (bandwidth_bytes_s * self.memory)
        return np.asarray(np.asarray(launches) * self.floor_s
                          + smoothmax(tc, tm, self.smoothmax_p))


def causal_pairs(new: Any, past: Any, window: float | None) -> Array:
    """Causal (query, key) pairs for ``new`` queries after ``past`` cached tokens, each query
    seeing at most ``window`` keys (None or inf: no window)."""
    new = np.asarray(new, dtype=np.float64)
    past = np.asarray(past, dtype=np.float64)
    total = new * past + new * (new + 1) / 2
    if window is None or not np.isfinite(window):
        return np.asarray(total)
    # query i (0-based) sees min(past + i + 1, window) keys
    full = np.maximum(0.0, np.minimum(new, window - past))  # queries still below the window
    below = full * past + full * (full + 1) / 2
    return np.asarray(np.minimum(total, below + (new - full) * window))


def decode_work(*, keys: Any, seqs: Any, pad_tokens: float, flops_per_pair: float,
                kv_bytes_per_key: float, qo_bytes: float) -> tuple[Array, Array]:
    """(FLOPs, bytes) of one layer's decode attention: ``seqs`` sequences whose query sees
    ``keys`` keys in total (summed over the sequences), each padded by ``pad_tokens`` virtual
    keys; bytes read the keys, write one new key and move the query and output."""
    k = np.asarray(keys, dtype=np.float64) + np.asarray(seqs, dtype=np.float64) * pad_tokens
    s = np.asarray(seqs, dtype=np.float64)
    return (np.asarray(flops_per_pair * k),
            np.asarray(k * kv_bytes_per_key + s * (kv_bytes_per_key + qo_bytes)))


def prefill_work(*, new: Any, past: Any, window: float | None, pad_tokens: float,
                 flops_per_pair: float, kv_bytes_per_key: float, qo_bytes: float
                 ) -> tuple[Array, Array]:
    """(FLOPs, bytes) of one layer's attention over prefill chunks of ``new`` tokens after
    ``past`` cached ones (arrays, one entry a chunk): causal pairs with the queries padded by
    ``pad_tokens``; bytes read the held keys, write the new ones and move queries and outputs."""
    n = np.asarray(new, dtype=np.float64)
    s = np.asarray(past, dtype=np.float64)
    pairs = np.where(n > 0, causal_pairs(n + pad_tokens, s, window), 0.0)
    w = np.inf if window is None else window
    held = np.minimum(s + n, w)
    return (np.asarray(flops_per_pair * pairs),
            np.asarray(np.where(n > 0, (held + n) * kv_bytes_per_key + n * qo_bytes, 0.0)))


@dataclass(frozen=True)
class MoeWork:
    """One MoE layer's expert work on one GPU (arrays broadcast), summed over ``layers``."""

    touched: Any  # experts with at least one routed token (local)
    pairs: Any  # routed (token, expert) pairs (local)
    hidden: Any  # (arrays in the fitter)
    width: Any  # expert intermediate width on this GPU
    matrices: float  # 3 gated (gate, up, down), 2 non-gated
    nbytes: Any  # expert weights of the touched experts + activations of the pairs
    route_pairs: Any  # all routed pairs (the permute/finalize pass sees every one)
    layers: float = 1.0


@dataclass(frozen=True, kw_only=True)
class MoeCurve:
    """A fused MoE kernel path (GPU x engine x dtype); see the module docstring."""

    compute: float
    memory: float
    smoothmax_p: float
    floor_s: float  # t0 per MoE layer
    row_tile: float  # T_m
    width_tile: float  # W_p
    route_bytes: float  # g: bytes per routed pair per hidden element (x 2 B bf16 activations)
    fitted_on: str = ""

    def time_s(self, work: MoeWork, *, peak_flop_s: float, bandwidth_bytes_s: float) -> Array:
        touched = np.asarray(work.touched, dtype=np.float64)
        per_expert = np.asarray(work.pairs, dtype=np.float64) / np.maximum(touched, 1e-12)
        flops = (2.0 * touched * np.maximum(per_expert, self.row_tile) * work.matrices
                 * work.hidden * np.maximum(work.width, self.width_tile)) * work.layers
        tc = np.where(touched > 0, flops, 0.0) / (peak_flop_s * self.compute)
        tm = np.asarray(work.nbytes, dtype=np.float64) / (bandwidth_bytes_s * self.memory)
        route = (self.route_bytes * np.asarray(work.route_pairs) * work.hidden * 2.0
                 * work.layers / bandwidth_bytes_s)
        return np.asarray(work.layers * self.floor_s + smoothmax(tc, tm, self.smoothmax_p) + route)


@dataclass(frozen=True, kw_only=True)
class AllReduceCurve:
    """``t = lat + min(f B / bw_1, s + f B / bw_2)``, ``f = 2 (n - 1) / n``, for ``n`` GPUs
    (bandwidths are nccl-tests "bus bandwidths", bytes/s)."""

    gpus: int
    latency_s: float
    oneshot_bus_bytes_s: float
    ring_bus_bytes_s: float
    switch_s: float
    fitted_on: str = ""

    def time_s(self, n_bytes: Any) -> Array:
        b = np.asarray(n_bytes, dtype=np.float64)
        if self.gpus <= 1:
            return np.asarray(0.0 * b)
        f = 2.0 * (self.gpus - 1) / self.gpus * b
        return np.asarray(self.latency_s + np.minimum(
            f / self.oneshot_bus_bytes_s, self.switch_s + f / self.ring_bus_bytes_s))
