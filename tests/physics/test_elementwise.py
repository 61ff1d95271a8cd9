"""Element-wise kernels (norms, activation, RoPE, q/k norms): one launch each with the
engine's measured minimum time plus their bytes, and no launch where the engine fuses them
into a neighbour kernel (TensorRT-LLM: norms into the TP all-reduce, RoPE into attention)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from kvopt import load_gpu, load_model
from kvopt.catalog.engines import _fusions, load_engine
from kvopt.errors import CatalogError
from kvopt.physics.comm import engine_allreduce_s
from kvopt.physics.efficiency import elementwise_curve
from kvopt.physics.ops import step_ops
from kvopt.physics.precision import resolve_precision
from kvopt.physics.roofline import op_time, qk_norm_allreduces, step_time, tp_comm_s

L8 = load_model("Llama-3.1-8B")
H100 = load_gpu("H100-SXM")


def _ops(engine: str, tp: int, model=L8):  # type: ignore[no-untyped-def]
    prec = resolve_precision(gpu=H100, weights="bf16", kv_dtype=None, engine=engine,
                             hidden_size=model.hidden_size)
    ops = step_ops(model, tp=tp, precision=prec, seqs=8.0, new=1.0, past=1024.0)
    return {o.name: o for o in ops if o.kind == "elementwise"}


def test_llama_decode_elementwise_by_hand_on_vllm() -> None:
    """Llama-3.1-8B (32 layers, hidden 4096, MLP 14336, 32 q / 8 kv heads of 128), 8
    sequences decoding one token each, bf16 on one H100 SXM with vLLM's curve:
    norms: 2 a layer, 64 launches; bytes 32 x 8 x (2 x 2 x 4096 + 6 x 4096) x 2 = 20,971,520;
    activation: 32 launches, 32 x 8 x 3 x 14336 x 2 = 22,020,096 bytes;
    RoPE: 32 launches, 32 x 8 x (32 + 8) x 128 x 2 x 2 = 5,242,880 bytes.
    Each: launches x t0 + bytes / (3.35 TB/s x em)."""
    c = elementwise_curve(H100, "vllm")
    # the fitted minimum is the measured small-batch time of vLLM's kernel (2.2-2.7 us)
    assert 2.0e-6 <= c.floor_s <= 2.8e-6 and 0.5 < c.memory <= 1.0
    ops = _ops("vllm", 1)
    assert set(ops) == {"norms", "activation", "rope"}  # Llama has no q/k norms
    for name, launches, nbytes in (("norms", 64, 20_971_520), ("activation", 32, 22_020_096),
                                   ("rope", 32, 5_242_880)):
        assert ops[name].count == launches and float(ops[name].bytes) == nbytes
        t, _, tm = op_time(ops[name], H100, "vllm")
        assert float(tm) == pytest.approx(nbytes / (3.35e12 * c.memory), rel=1e-9)
        assert float(t) == pytest.approx(launches * c.floor_s + float(tm), rel=1e-9)
    # decode is launch-bound: the 128 launches outweigh the 48 MB
    assert 128 * c.floor_s > 48e6 / (3.35e12 * c.memory)


def test_trtllm_fuses_norms_into_the_allreduce_and_rope_into_attention() -> None:
    """TensorRT-LLM at TP 2: the norms ride the all-reduce and RoPE the attention kernel, so
    they cost their bytes only; at TP 1 (no all-reduce) the norms launch on their own. vLLM
    fuses neither."""
    trt = load_engine("trtllm").fused_elementwise
    assert trt == ("allreduce", "attention")
    assert load_engine("vllm").fused_elementwise == ()
    c = elementwise_curve(H100, "trtllm")
    tp2, tp1 = _ops("trtllm", 2), _ops("trtllm", 1)
    for name in ("norms", "rope"):
        t, _, tm = op_time(tp2[name], H100, "trtllm", trt)
        assert float(t) == pytest.approx(float(tm), rel=1e-12)
    t, _, tm = op_time(tp1["norms"], H100, "trtllm", trt)
    assert float(t) == pytest.approx(64 * c.floor_s + float(tm), rel=1e-9)
    t, _, tm = op_time(tp2["activation"], H100, "trtllm", trt)
    assert float(t) == pytest.approx(32 * c.floor_s + float(tm), rel=1e-9)
    # vLLM's norms at TP 2 still launch
    t, _, tm = op_time(_ops("vllm", 2)["norms"], H100, "vllm")
    assert float(t) > float(tm) + 60 * elementwise_curve(H100, "vllm").floor_s
    # the profile's field is the one source: the same profile fusing nothing launches the
    # 64 norms and 32 RoPEs of a Llama-3.1-8B step again
    eng = load_engine("trtllm", H100)
    prec = resolve_precision(gpu=H100, weights="bf16", kv_dtype=None, engine="trtllm",
                             hidden_size=L8.hidden_size)

    def step(e):  # type: ignore[no-untyped-def]
        return float(step_time(L8, H100, tp=2, precision=prec, seqs=8.0, new=1.0, past=1024.0,
                               engine=e).total_s)

    assert step(replace(eng, fused_elementwise=())) - step(eng) == pytest.approx(
        96 * c.floor_s, rel=1e-6)


def test_qk_norms_and_moe_activations() -> None:
    """Qwen3 adds per-head q and k norms (two launches a layer); a MoE layer without shared
    experts runs its activation inside the fused MoE kernel (bytes, no launch)."""
    qwen = load_model("Qwen3-32B")
    ops = _ops("vllm", 1, qwen)
    assert ops["qk_norm"].count == 2 * qwen.num_layers
    moe = load_model("Qwen3-235B-A22B")
    assert moe.moe is not None and not moe.moe.shared_intermediate_size
    ops = _ops("vllm", 8, moe)
    assert ops["activation"].count == moe.num_layers - sum(moe.moe.moe_layers) == 0
    assert float(ops["activation"].bytes) > 0


def test_no_tokens_no_launches() -> None:
    prec = resolve_precision(gpu=H100, weights="bf16", kv_dtype=None, engine="vllm",
                             hidden_size=L8.hidden_size)
    op = next(o for o in step_ops(L8, tp=1, precision=prec, seqs=0.0, new=1.0, past=0.0)
              if o.name == "norms")
    assert float(op_time(op, H100, "vllm")[0]) == 0.0


def test_bad_fused_elementwise_is_a_catalog_error() -> None:
    with pytest.raises(CatalogError, match="'norms' is not one of allreduce, attention"):
        _fusions({"fused_elementwise": {"value": ["norms"], "source": "x"}}, "e.yaml", {})
    with pytest.raises(CatalogError, match="source"):
        _fusions({"fused_elementwise": {"value": ["rope"]}}, "e.yaml", {})
    assert _fusions({}, "e.yaml", {}) == ()


def test_minimax_qk_norm_all_reduces_its_sums_of_squares_under_tp() -> None:
    """MiniMax-M2's q/k RMSNorm spans all 48 + 8 heads (qk_norm_type per_layer), so under TP
    each of its 62 attention layers all-reduces every token's two fp32 partial sums of
    squares: 8 tokens x 2 x 4 = 64 bytes, 62 times a step, on top of the two hidden-state
    all-reduces a layer (8 x 3072 x 2 = 49,152 bytes each). Qwen3's per-head norms need none,
    nor does one GPU."""
    mm = load_model("MiniMax-M2")
    assert mm.qk_norm and mm.qk_norm_width == (48 + 8) * 128 and mm.num_layers == 62
    assert qk_norm_allreduces(mm, 4) == 62
    assert qk_norm_allreduces(mm, 1) == 0
    assert qk_norm_allreduces(load_model("Qwen3-32B"), 4) == 0
    b200 = load_gpu("B200")
    eng = load_engine("vllm", b200)
    prec = resolve_precision(gpu=b200, weights="fp8", kv_dtype=None, engine="vllm",
                             hidden_size=mm.hidden_size)
    tokens = np.array([8.0])
    hidden = float(np.squeeze(engine_allreduce_s(b200, 4, eng, tokens=tokens,
                                                 n_bytes=8 * 3072 * 2)))
    norm = float(np.squeeze(engine_allreduce_s(b200, 4, eng, tokens=tokens, n_bytes=8 * 2 * 4)))
    got = float(np.squeeze(tp_comm_s(mm, b200, tp=4, precision=prec, tokens=tokens, engine=eng)))
    assert got == pytest.approx(2 * 62 * hidden + 62 * norm, rel=1e-12)
    # a small all-reduce costs about its latency: a few microseconds each
    assert 2e-6 < norm < 40e-6
