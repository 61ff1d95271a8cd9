"""Achieved fractions of peak, fitted on measured kernels (``models/efficiency.yaml``).

``compute_efficiency``: large-GEMM TFLOP/s over the dense spec peak. ``memory_efficiency``:
asymptotic fraction of spec bandwidth a GEMM streams at (capped by the measured device-copy
fraction); a launch that moves fewer bytes ``B`` reaches ``em x B / (B + BW x tau)``. Ops combine
their compute and memory times with a smooth maximum of exponent ``p`` (fitted).
Fitted on H100-SXM and H200 (our measurements) and B200 (published kernel benchmarks, FP4
included); other GPUs use ``default`` (the H100/H200 mean), an assumption that a calibration
(``kvopt calibrate``) replaces with measurements.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

from kvopt.catalog.paths import models_dir
from kvopt.catalog.yamlio import read_yaml
from kvopt.errors import CatalogError

# dtypes without their own measured curve use the nearest measured one (fp4 has its own on
# GPUs with FP4 measurements, B200; elsewhere the fp8 curve at the fp4 peak)
_CURVE_FOR = {"bf16": "bf16", "fp16": "bf16", "fp8": "fp8", "int8": "fp8", "fp4": "fp8"}
_OWN_CURVE = ("fp4",)


@dataclass(frozen=True, kw_only=True)
class Efficiency:
    compute: float
    memory: float
    ramp_tau_s: float  # a GEMM launch moving B bytes reaches em/2 at B = bandwidth x tau
    smoothmax_p: float
    copy_fraction: float
    fitted_on: str  # which GPU's fit this is ("default" = mean of fitted GPUs)


@cache
def _data() -> dict[str, Any]:
    path = models_dir() / "efficiency.yaml"
    data = read_yaml(path)
    if not isinstance(data, dict) or "default" not in data or not data.get("source"):
        raise CatalogError(f"{path}: needs 'source' and 'default'")
    return data


@cache
def efficiency(gpu_id: str, dtype: str) -> Efficiency:
    """Efficiency curve for GEMMs in ``dtype`` on ``gpu_id``."""
    data = _data()
    key = _CURVE_FOR.get(dtype, "bf16")
    gpus = data.get("gpus") or {}
    node = gpus.get(gpu_id)
    fitted_on = gpu_id
    if isinstance(node, dict) and "same_as" in node:  # another part's fit (same die)
        fitted_on = str(node["same_as"])
        node = gpus.get(fitted_on)
    if dtype in _OWN_CURVE and node is not None and dtype in node:
        key = dtype
    if node is None or key not in node:
        node, fitted_on = data["default"], "default"
    curve = node[key]
    return Efficiency(
        compute=float(curve["compute_efficiency"]), memory=float(curve["memory_efficiency"]),
        ramp_tau_s=float(curve["ramp_tau_us"]) * 1e-6,
        smoothmax_p=float(curve["smoothmax_p"]),
        copy_fraction=float(node["copy_bandwidth_fraction"]), fitted_on=fitted_on)


@dataclass(frozen=True, kw_only=True)
class AttentionEfficiency:
    """Attention's compute term: ``compute`` x ``L / (L + ramp_tokens)`` of the dense peak
    for a prefill chunk whose queries see ``L`` keys; ``compute`` alone for decode."""

    compute: float
    ramp_tokens: float

    def ramp(self, keys: Any) -> Any:
        """``L / (L + ramp_tokens)``: the share of ``compute`` a causal prefill whose queries
        see ``keys`` keys reaches."""
        k = np.maximum(np.asarray(keys, dtype=np.float64), 1.0)
        return k / (k + self.ramp_tokens)

    def prefill_fraction(self, keys: Any) -> Any:
        """Fraction of the dense peak a causal prefill over ``keys`` keys reaches."""
        return self.compute * self.ramp(keys)


@cache
def attention_efficiency(gpu_id: str, dtype: str) -> AttentionEfficiency:
    """Attention kernels on ``gpu_id`` in ``dtype``: the GEMM compute fraction times the
    measured share (FlashAttention-3 on H100, ``attention`` in efficiency.yaml)."""
    node = _data().get("attention")
    if not isinstance(node, dict) or "fit" not in node or not node.get("source"):
        raise CatalogError("models/efficiency.yaml: needs an 'attention' section with "
                           "'source' and 'fit' (run benchmarks/fit_efficiency.py)")
    fit = node["fit"]
    return AttentionEfficiency(
        compute=efficiency(gpu_id, dtype).compute * float(fit["share_of_gemm_compute"]),
        ramp_tokens=float(fit["ramp_tokens"]))
