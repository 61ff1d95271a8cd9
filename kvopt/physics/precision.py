"""Number formats and the per-architecture precision support matrix (``models/precision.yaml``).

A weight format runs ``native`` (tensor cores compute in it), ``weight_only`` (dequantized to
fp16/bf16 before the math: memory savings, no compute speed-up) or is ``unsupported``
(kvopt raises :class:`UnsupportedError` rather than guess).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from kvopt.catalog.gpus import GpuSpec
from kvopt.catalog.model_spec import FP8_SCALINGS
from kvopt.catalog.paths import models_dir
from kvopt.catalog.yamlio import read_yaml, sourced
from kvopt.errors import CatalogError, InputError, UnsupportedError

WEIGHT_DTYPES = ("bf16", "fp16", "fp8", "int8", "int4", "fp4", "mxfp4")
KV_DTYPES = ("bf16", "fp16", "fp8")


def default_kv_dtype(weights: str) -> str:
    """The KV dtype when none is given: bf16, or fp16 with fp16 weights."""
    return "fp16" if weights == "fp16" else "bf16"


def parse_precision_pair(text: str, field: str = "precisions") -> tuple[str, str]:
    """``"weights/kv"`` or bare ``"weights"`` (KV by :func:`default_kv_dtype`), both names
    checked; the one parser of the CLI's ``--precisions``, fleet files and study files."""
    parts = text.strip().split("/")
    if len(parts) > 2 or not parts[0]:
        raise InputError(field, text, "use weights/kv (e.g. fp8/fp8) or a weight dtype alone")
    w = parts[0]
    kv = parts[1] if len(parts) == 2 and parts[1] else default_kv_dtype(w)
    if w not in WEIGHT_DTYPES:
        raise InputError(field, text, f"weight dtype '{w}' unknown; allowed: "
                         f"{', '.join(WEIGHT_DTYPES)}")
    if kv not in KV_DTYPES:
        raise InputError(field, text, f"KV dtype '{kv}' unknown; allowed: {', '.join(KV_DTYPES)}")
    return w, kv


@dataclass(frozen=True, kw_only=True)
class Precision:
    """How a replica stores and computes: resolved for one GPU and engine."""

    weights: str
    kv_dtype: str
    mode: str  # native | weight_only
    compute_dtype: str  # dtype of the tensor-core math for GEMMs
    activation_bytes: float  # bytes per activation value moved between kernels
    quantized_bits_per_weight: float  # includes group scales/zero points
    unquantized: tuple[str, ...]  # components kept in 16 bit
    kv_bytes_per_value: float
    format_name: str
    notes: tuple[str, ...] = ()
    fp8_scaling: str = ""  # native fp8 weights: one of FP8_SCALINGS ("" otherwise)
    # whether a native quantized GEMM may take the weight-only path (the same weight bytes
    # through the 16-bit kernels; see kvopt.physics.roofline)
    weight_only_alt: bool = True


@cache
def _data() -> dict[str, Any]:
    path = models_dir() / "precision.yaml"
    data = read_yaml(path)
    if not isinstance(data, dict) or "formats" not in data or "support" not in data:
        raise CatalogError(f"{path}: needs 'formats' and 'support'")
    return data


def _format(weights: str, engine: str) -> dict[str, Any]:
    data = _data()
    override = (data.get("engine_formats") or {}).get(engine, {}).get(weights)
    fmt = override or data["formats"].get(weights)
    if fmt is None:
        raise InputError("weights", weights, f"allowed: {', '.join(WEIGHT_DTYPES)}")
    return dict(fmt)


def _bits(fmt: dict[str, Any], origin: str, hidden_size: int) -> float:
    bits, _ = sourced(fmt["bits_per_weight"], "bits_per_weight", origin)
    total = float(bits or 0.0)
    if "group_size" in fmt:
        group, _ = sourced(fmt["group_size"], "group_size", origin)
        extra, _ = sourced(fmt["group_overhead_bits"], "group_overhead_bits", origin)
        total += float(extra or 0.0) / float(group or 1.0)
    if "scale_bits_per_output_channel" in fmt:
        scale, _ = sourced(fmt["scale_bits_per_output_channel"], "scale_bits", origin)
        total += float(scale or 0.0) / hidden_size  # one scale per row of K=hidden inputs
    return total


def support_mode(gpu: GpuSpec, weights: str) -> str:
    """``native``, ``weight_only`` or ``unsupported`` for ``weights`` on ``gpu``."""
    table = _data()["support"].get(gpu.architecture)
    if table is None:
        raise UnsupportedError(
            f"{gpu.id}: architecture '{gpu.architecture}' has no entry in the precision "
            "support matrix (models/precision.yaml); kvopt cannot model it")
    return str(table.get(weights, "unsupported"))


def resolve_precision(*, gpu: GpuSpec, weights: str, kv_dtype: str | None, engine: str,
                      hidden_size: int, keep_16bit: tuple[str, ...] = (),
                      bits_per_weight: float = 0.0, fp8_scaling: str = "dynamic",
                      fp8_weight_only: bool = True, fp8_from: str = "") -> Precision:
    """Resolve the storage and compute formats of a replica, or raise UnsupportedError.
    ``keep_16bit``: components the checkpoint keeps in 16 bit beyond the format's own (e.g.
    gpt-oss's attention beside its MXFP4 experts); ``bits_per_weight`` > 0: the checkpoint's
    own bits per quantized weight (its group size) instead of the format's;
    ``fp8_scaling``: how native FP8 weights scale their activations (FP8_SCALINGS);
    ``fp8_weight_only``: whether the engine has an FP8 weight-only GEMM (without one, static
    FP8 gets no weight-only alternative: ``Precision.weight_only_alt``); ``fp8_from``: where
    the scaling comes from, for the note that states it."""
    if fp8_scaling not in FP8_SCALINGS:
        raise InputError("fp8_scaling", fp8_scaling, f"allowed: {', '.join(FP8_SCALINGS)}")
    if weights not in WEIGHT_DTYPES:
        raise InputError("weights", weights, f"allowed: {', '.join(WEIGHT_DTYPES)}")
    kv = kv_dtype or default_kv_dtype(weights)
    if kv not in KV_DTYPES:
        raise InputError("kv_dtype", kv, f"allowed: {', '.join(KV_DTYPES)}")
    origin = "models/precision.yaml"
    fmt = _format(weights, engine)
    mode = support_mode(gpu, weights)
    notes: list[str] = []
    if mode == "unsupported":
        raise UnsupportedError(
            f"{weights} weights are not supported on {gpu.id} ({gpu.architecture}); "
            f"{_alternatives(gpu)}")
    if fmt.get("always_weight_only") and mode == "native":
        mode = "weight_only"
    half = "bf16" if gpu.has_tensor("bf16") and support_mode(gpu, "bf16") == "native" else "fp16"
    compute = str(fmt["compute_dtype"]) if mode == "native" else half
    if compute in ("bf16", "fp16") and weights in ("bf16", "fp16"):
        compute = weights
    if not gpu.has_tensor(compute):
        raise UnsupportedError(
            f"{gpu.id} lists no {compute} tensor-core throughput, needed for {weights} "
            f"weights; {_alternatives(gpu)}")
    if mode == "weight_only" and weights in ("fp8", "fp4", "mxfp4"):
        notes.append(f"{weights} weights run weight-only on {gpu.id} ({gpu.architecture} has no "
                     f"{weights} tensor cores): memory savings, no {weights} compute speed-up")
    elif mode == "weight_only":
        notes.append(f"{weights} ({fmt.get('name', weights)}) is weight-only: dequantized to "
                     f"{half}, math at {half} rate")
    kv_ok = _data().get("kv_support", {}).get(gpu.architecture, list(KV_DTYPES))
    if kv not in kv_ok:
        raise UnsupportedError(f"KV cache dtype {kv} is not supported on {gpu.id} "
                               f"({gpu.architecture}); allowed: {', '.join(kv_ok)}")
    kv_bytes, _ = sourced(_data()["kv_bytes_per_value"][kv], f"kv_bytes_per_value.{kv}", origin)
    native_fp8 = weights == "fp8" and mode == "native"
    if native_fp8 and fp8_from:
        notes.append(f"fp8 weights with {_SCALING_TEXT[fp8_scaling]} ({fp8_from})")
    return Precision(
        weights=weights, kv_dtype=kv, mode=mode, compute_dtype=compute,
        activation_bytes=2.0,
        quantized_bits_per_weight=bits_per_weight or _bits(fmt, origin, hidden_size),
        unquantized=tuple(dict.fromkeys([*(fmt.get("unquantized") or ()), *keep_16bit])),
        kv_bytes_per_value=float(kv_bytes or 2),
        format_name=str(fmt.get("name", weights)), notes=tuple(notes),
        fp8_scaling=fp8_scaling if native_fp8 else "",
        # static scales: the measured kernel less its scale computation is the served one,
        # so only an engine's own weight-only FP8 GEMM is an alternative (see roofline)
        weight_only_alt=fp8_weight_only or not native_fp8 or fp8_scaling != "static",
    )


_SCALING_TEXT = {"static": "static (calibrated) activation scales",
                 "dynamic": "dynamic activation scales",
                 "block": "block scales, activations quantized per group at run time"}


def _alternatives(gpu: GpuSpec) -> str:
    table = _data()["support"].get(gpu.architecture, {})
    ok = [w for w in WEIGHT_DTYPES if table.get(w) in ("native", "weight_only")
          and (w not in ("bf16", "fp16") or gpu.has_tensor(w))]
    return f"supported on {gpu.id}: {', '.join(ok)}"
