"""The vision encoder's time per request on one replica, priced by the fitted kernels.

A request's images are encoded in one pass on every GPU of the TP group (vLLM shards the
encoder like the LLM): the encoder's linear work (patch embedding, block projections and
MLPs, projector, and Llama-3.2-Vision's cross-attention keys and values) through the
half-precision GEMM curve, one launch per matrix of each block, reading the encoder's
weights once; its attention (bidirectional over each image, or each window or tile) through
the context-attention curve, one launch per block (:mod:`kvopt.physics.kernels`). Encoders
run in 16 bit whatever the LLM's weight precision (vLLM does not quantize them).
"""

from __future__ import annotations

from kvopt.catalog.gpus import GpuSpec
from kvopt.catalog.model_spec import ModelSpec
from kvopt.physics.efficiency import attention_curve, gemm_curve
from kvopt.physics.roofline import half_dtype
from kvopt.physics.vision import ImageWork

GEMMS_PER_BLOCK = 4  # qkv, o, MLP up (gate+up), MLP down


def encoder_time_s(model: ModelSpec, gpu: GpuSpec, *, tp: int, work: ImageWork,
                   images: int, engine: str | None) -> float:
    """Seconds to encode ``images`` images of ``work`` on one GPU of a TP group of ``tp``."""
    if images <= 0:
        return 0.0
    v = model.vision
    assert v is not None
    layers = v.used_layers or v.num_layers
    half = half_dtype(gpu)
    peak = gpu.peak_flop_s(half)
    bw = gpu.bandwidth_bytes_s
    gemm = gemm_curve(gpu, half, engine)
    linear = gemm.time_s(flops=images * work.linear_flops / tp,
                         nbytes=(work.weight_bytes + images * work.activation_bytes) / tp,
                         launches=GEMMS_PER_BLOCK * layers + 2, quant_elems=0.0,
                         peak_flop_s=peak, bandwidth_bytes_s=bw)
    ctx = attention_curve(gpu, "context", engine)
    qkvo_bytes = 4.0 * work.encoder_tokens * v.hidden_size * 2.0 * layers
    attention = ctx.time_s(flops=images * work.attention_flops / tp,
                           nbytes=images * qkvo_bytes / tp, launches=layers, peak_flop_s=peak,
                           bandwidth_bytes_s=bw)
    return float(linear) + float(attention)
