"""The element-wise kernel curve of ``fit_efficiency.py`` (section ``elementwise``, name
``pointwise``): one memory-bound launch, ``t = t0 + B / (BW em)``.

Data: aiconfigurator's ``quantize/<engine>/<version>/scale_matrix_perf.parquet`` tables, the
engines' static per-tensor fp8 quantization kernel (TensorRT-LLM's torch op, vLLM's
``static_scaled_fp8_quant``) timed over ``m`` tokens x ``k`` columns: it reads ``m k`` bf16
values and writes ``m k`` fp8 ones (``3 m k`` bytes), the traffic and launch of a norm,
activation or RoPE kernel (rows between 1 and 256 MB are left out: see ``LARGE_BYTES``).
SGLang's table is not fitted: its kernel takes 7-8 us at one
token and streams 0.3-0.4 TB/s at 400 MB on H100/H200 (a multi-launch path, not the
sgl-kernel norms and activations its decode step runs), so SGLang takes the first engine of
``engine_fallback`` that has the curve.
"""

from __future__ import annotations

from dataclasses import dataclass

import aic_tables as aic
import numpy as np
import pandas as pd
from fit_forms import Fit, Predictor, Problem, family_tables, fit_parts

from kvopt.physics.efficiency import gemm_curve_from

TABLE = ("quantize", "scale_matrix_perf.parquet")
NOT_FITTED = {"sglang"}  # see the module docstring
# rows fitted: launch-bound (at most 1 MB) or streaming beyond every card's L2 cache (at least
# 256 MB; B200 has 126 MB): between, the benchmark's repeated calls on the same buffers hit
# L2 (L40S: 100 MB in 64 us, 1.6 TB/s on an 864 GB/s card), which a step's activations do not
SMALL_BYTES, LARGE_BYTES = 1e6, 256e6


@dataclass(frozen=True)
class PointwiseRows:
    nbytes: np.ndarray
    bw: np.ndarray
    t: np.ndarray


def _bytes(frame: pd.DataFrame) -> np.ndarray:
    """``3 m k`` bytes a row moves: ``m k`` bf16 values read, ``m k`` fp8 ones written."""
    return 3.0 * frame["m"].to_numpy(np.float64) * frame["k"].to_numpy(np.float64)


def pointwise_rows(frame: pd.DataFrame) -> PointwiseRows:
    """Bytes of each row, its card's bandwidth, seconds."""
    _, bw = aic.card_arrays(frame, "bf16")
    return PointwiseRows(_bytes(frame), bw, frame["latency"].to_numpy(np.float64) * 1e-3)


def _kept(frame: pd.DataFrame) -> pd.DataFrame:
    nbytes = _bytes(frame)
    keep = (frame.latency > 0) & ((nbytes <= SMALL_BYTES) | (nbytes >= LARGE_BYTES))
    return frame[keep].reset_index(drop=True)


def pointwise_problem() -> Problem:
    def predictor(r: PointwiseRows) -> Predictor:
        return lambda p: gemm_curve_from({**p, "compute": 1.0, "smoothmax_p": 1.0}).time_s(
            flops=0.0, nbytes=r.nbytes, launches=1.0, quant_elems=0.0, peak_flop_s=1.0,
            bandwidth_bytes_s=r.bw)

    return Problem(("memory", "floor_us"), (0.05, 0.0), (1.0, 50.0),
                   ((0.8, 2.0), (0.5, 5.0)), predictor)


def fit_elementwise(family: str, engine: str, members: tuple[str, ...] | None = None
                    ) -> list[Fit]:
    if engine in NOT_FITTED:
        return []
    parts = [(t, _kept(t.frame))
             for t in family_tables(family, TABLE[0], engine, TABLE[1],
                                    ["m", "k", "latency"], members)]
    parts = [(t, f) for t, f in parts if len(f) >= 50]
    if not parts:
        return []
    return [fit_parts((family, engine, "elementwise", "pointwise"), pointwise_problem(),
                      parts, pointwise_rows, "elementwise")]
