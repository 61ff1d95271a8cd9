"""How FP8 activations are scaled picks the GEMM kernels: static per-tensor scales (TensorRT
Model Optimizer checkpoints, TensorRT-LLM's recipe) skip the dynamic scale computation the
measured fp8 tables include, block-scaled checkpoints (DeepSeek, Qwen3 FP8) run the block
kernels, and static FP8 on an engine without an FP8 weight-only GEMM (TensorRT-LLM) gets no
weight-only path: the same op with 16-bit weights bounds it, never slower."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvopt import load_gpu, load_model
from kvopt.catalog.engines import _sourced_flag, load_engine
from kvopt.catalog.hf_config import spec_from_hf_config
from kvopt.errors import CatalogError, InputError
from kvopt.physics.efficiency import gemm_curve
from kvopt.physics.ops import gemm_curve_key, step_ops
from kvopt.physics.precision import resolve_precision
from kvopt.physics.roofline import op_time, step_time
from kvopt.serving.replica import build_replica

H100 = load_gpu("H100-SXM")
L70 = load_model("Llama-3.1-70B")


def test_scaling_follows_the_checkpoint_then_the_engine() -> None:
    """Llama-3.1-70B has no publisher FP8 checkpoint: TensorRT-LLM's ModelOpt recipe is
    static, vLLM's online FP8 dynamic; DeepSeek-V3 and Qwen3-32B publish block-FP8 weights
    (the cards say so), MiniMax-M2's config is one; bf16 and weight-only FP8 have none."""
    assert build_replica(model=L70, gpu="H100-SXM", tp=4, weights="fp8",
                         engine="trtllm").precision.fp8_scaling == "static"
    assert build_replica(model=L70, gpu="H100-SXM", tp=4, weights="fp8",
                         engine="vllm").precision.fp8_scaling == "dynamic"
    for name in ("DeepSeek-V3", "Qwen3-32B", "MiniMax-M2"):
        assert load_model(name).fp8_scaling == "block"
    rep = build_replica(model="Qwen3-32B", gpu="H100-SXM", tp=2, weights="fp8",
                        engine="trtllm")
    assert rep.precision.fp8_scaling == "block" and rep.precision.weight_only_alt
    assert build_replica(model=L70, gpu="H100-SXM", tp=4, weights="bf16",
                         engine="trtllm").precision.fp8_scaling == ""
    a100 = build_replica(model="Llama-3.1-8B", gpu="A100-SXM-80GB", tp=1, weights="fp8",
                         engine="trtllm").precision
    assert a100.mode == "weight_only" and a100.fp8_scaling == "" and a100.weight_only_alt


def test_curve_of_each_scaling() -> None:
    def key(scaling: str) -> tuple[str, bool]:
        return gemm_curve_key(resolve_precision(gpu=H100, weights="fp8", kv_dtype=None,
                                                engine="trtllm", hidden_size=8192,
                                                fp8_scaling=scaling))

    assert key("dynamic") == ("fp8", True)
    assert key("static") == ("fp8_static", True)
    assert key("block") == ("fp8_block", True)
    with pytest.raises(InputError, match="fp8_scaling"):
        key("per-token")


def test_static_curve_drops_the_scale_computation() -> None:
    """TensorRT-LLM on Hopper: its dynamic fp8 GEMM rows include a ~7.3 us scale computation
    (quantize/computescale_perf at up to 64 tokens), so the static curve fitted on the rows
    less that table starts ~7 us lower; vLLM's computation is under 1 us."""
    dyn, static = gemm_curve(H100, "fp8", "trtllm"), gemm_curve(H100, "fp8_static", "trtllm")
    assert 6.0e-6 < dyn.floor_s - static.floor_s < 8.5e-6
    vdyn, vstatic = gemm_curve(H100, "fp8", "vllm"), gemm_curve(H100, "fp8_static", "vllm")
    assert 0.0 < vdyn.floor_s - vstatic.floor_s < 1.5e-6
    # SGLang's table times no scale computation: no curve of its own, its fp8 one stands in
    assert gemm_curve(H100, "fp8_static", "sglang") == gemm_curve(H100, "fp8", "sglang")


def _gemm(model: str, engine: str, weights: str, tp: int, seqs: float):  # type: ignore[no-untyped-def]
    rep = build_replica(model=model, gpu="H100-SXM", tp=tp, weights=weights, engine=engine)
    ops = step_ops(rep.model, tp=tp, precision=rep.precision, seqs=seqs, new=1.0, past=1024.0)
    return next(o for o in ops if o.name == "qkv_proj")


def test_trtllm_static_gemm_by_hand() -> None:
    """Llama-3.1-70B qkv_proj at TP 8, 64 sequences decoding, static FP8 on TensorRT-LLM:
    k = 8192, n = (64 + 2 x 8) x 128 / 8 = 1280 per GPU, 80 launches; weights 8192 x 1280 x
    (8 + 32 / 8192) / 8 bytes each. Priced on the static curve alone, unless the same op with
    16-bit weights is faster (no weight-only path: the engine has no FP8 weight-only GEMM)."""
    op = _gemm("Llama-3.1-70B", "trtllm", "fp8", 8, 64.0)
    assert op.curve == "fp8_static" and op.quantized and not op.weight_only_alt
    w = 8192 * 1280 * (8 + 32 / 8192) / 8
    assert op.count == 80 and op.weight_matrix_bytes == pytest.approx(w)
    assert float(op.bytes) == pytest.approx(80 * (w + 64 * (8192 + 1280) * 2))
    c = gemm_curve(H100, "fp8_static", "trtllm")
    native = c.time_s(flops=op.flops, nbytes=op.bytes, launches=80.0, quant_elems=op.quant_elems,
                      peak_flop_s=H100.peak_flop_s("fp8"),
                      bandwidth_bytes_s=H100.bandwidth_bytes_s)
    half = gemm_curve(H100, "bf16", "trtllm").time_s(
        flops=op.flops, nbytes=80 * (8192 * 1280 * 2 + 64 * (8192 + 1280) * 2), launches=80.0,
        quant_elems=0.0, peak_flop_s=H100.peak_flop_s("bf16"),
        bandwidth_bytes_s=H100.bandwidth_bytes_s)
    t, _, _ = op_time(op, H100, "trtllm")
    assert float(t) == pytest.approx(min(float(native), float(half)), rel=1e-9)
    assert float(native) < float(half)  # 64 sequences: fp8 bytes pay for the longer floor
    # vLLM keeps its weight-only alternative (FP8 Marlin): fp8 bytes through the bf16 curve
    v = _gemm("Llama-3.1-70B", "vllm", "fp8", 8, 64.0)
    assert v.curve == "fp8" and v.weight_only_alt
    wo = gemm_curve(H100, "bf16", "vllm").time_s(
        flops=v.flops, nbytes=v.bytes, launches=80.0, quant_elems=0.0,
        peak_flop_s=H100.peak_flop_s("bf16"), bandwidth_bytes_s=H100.bandwidth_bytes_s)
    assert float(op_time(v, H100, "vllm")[0]) <= float(wo) * (1 + 1e-12)


@settings(max_examples=60, deadline=None)
@given(gpu=st.sampled_from(("H100-SXM", "H200", "B200", "L40S")),
       model=st.sampled_from(("Llama-3.1-8B", "Qwen3-32B", "Qwen3-30B-A3B", "Llama-3.1-70B")),
       engine=st.sampled_from(("trtllm", "vllm", "sglang")), tp=st.sampled_from((1, 2, 4, 8)),
       seqs=st.integers(1, 256), new=st.sampled_from((1, 1, 128, 4096)))
def test_native_fp8_never_slower_than_bf16_with_each_engines_recipe(
        gpu: str, model: str, engine: str, tp: int, seqs: int, new: int) -> None:
    """Through each engine profile's own recipe (TensorRT-LLM: static or block scales, no
    weight-only path), a step with native FP8 weights is never slower than with bf16."""
    g, m = load_gpu(gpu), load_model(model)
    eng = load_engine(engine, g)
    if m.num_kv_heads % tp or m.num_heads % tp:
        return

    def t(w: str) -> float:
        p = resolve_precision(gpu=g, weights=w, kv_dtype="bf16", engine=engine,
                              hidden_size=m.hidden_size,
                              fp8_scaling=m.fp8_scaling or eng.fp8_scaling,
                              fp8_weight_only=eng.fp8_weight_only)
        return float(step_time(m, g, tp=tp, precision=p, seqs=float(seqs), new=float(new),
                               past=1024.0, engine=eng).total_s)

    assert t("fp8") <= t("bf16") * (1 + 1e-12)


def test_card_and_config_scaling_and_bad_values(tmp_path: Path) -> None:
    card = json.loads((Path(__file__).parents[2] / "models" / "llm" /
                       "meta-llama--Llama-3.1-8B.json").read_text())
    meta = card.pop("kvopt")
    assert spec_from_hf_config(card, origin="t", name="x", meta=meta).fp8_scaling == ""
    static = {**card, "quantization_config": {"quant_method": "fp8",
                                              "activation_scheme": "static"}}
    m = spec_from_hf_config(static, origin="t", name="x", meta=meta)
    assert m.default_weights == "fp8" and m.fp8_scaling == "static"
    hinted = spec_from_hf_config(card, origin="t", name="x", meta={
        **meta, "fp8_checkpoint": {"scaling": "block", "source": "a config"}})
    assert hinted.fp8_scaling == "block" and hinted.default_weights == "bf16"
    for bad in ({"scaling": "rowwise", "source": "s"}, {"scaling": "block"}):
        with pytest.raises(CatalogError, match="fp8_checkpoint"):
            spec_from_hf_config(card, origin="t", name="x", meta={**meta, "fp8_checkpoint": bad})


def test_engine_fields_need_a_source_and_a_known_value() -> None:
    srcs: dict[str, str] = {}
    assert _sourced_flag({"fp8_weight_only": {"value": False, "source": "docs"}},
                         "fp8_weight_only", True, "e.yaml", srcs) is False
    assert srcs == {"fp8_weight_only": "docs"}
    assert _sourced_flag({}, "fp8_weight_only", True, "e.yaml", {}) is True
    with pytest.raises(CatalogError, match="true or false"):
        _sourced_flag({"fp8_weight_only": {"value": "maybe", "source": "s"}},
                      "fp8_weight_only", True, "e.yaml", {})
    with pytest.raises(CatalogError, match="source"):
        _sourced_flag({"fp8_weight_only": {"value": True}}, "fp8_weight_only", True,
                      "e.yaml", {})
    trt = load_engine("trtllm")
    assert (trt.fp8_scaling, trt.fp8_weight_only) == ("static", False)
    assert dict(trt.sources)["fp8_weight_only"].startswith("TensorRT-LLM")
    with pytest.raises(ValueError, match="fp8_scaling"):
        __import__("dataclasses").replace(trt, fp8_scaling="rowwise")


def test_engine_arg_overrides_the_checkpoint_and_the_recipe() -> None:
    """``--engine-arg fp8_scaling=...``: the checkpoint the user serves; it wins over the
    publisher's (DeepSeek-V3: block) and the engine's recipe, and the note says so."""
    from kvopt.catalog.engine_args import with_args

    trt = load_engine("trtllm", H100)
    dyn = with_args(trt, {"fp8_scaling": "dynamic"})
    assert dyn.fp8_scaling_set and not trt.fp8_scaling_set
    for model, want in (("DeepSeek-V3", "dynamic"), ("Llama-3.1-70B", "dynamic")):
        p = build_replica(model=model, gpu="H100-SXM", tp=8, weights="fp8",
                          engine=dyn).precision
        assert p.fp8_scaling == want
        assert any("--engine-arg fp8_scaling" in n for n in p.notes)
    # the note names where the default came from
    notes = build_replica(model="DeepSeek-V3", gpu="H200", tp=8, weights="fp8",
                          engine="trtllm").precision.notes
    assert any("publisher's FP8 checkpoint" in n and "block scales" in n for n in notes)
    with pytest.raises(InputError, match="fp8_scaling=rowwise"):
        with_args(trt, {"fp8_scaling": "rowwise"})


def test_show_model_names_the_fp8_checkpoint() -> None:
    from kvopt.cli.render import model_row

    row = model_row(load_model("Qwen3-32B"))
    assert (row["fp8_checkpoint"], row["fp8_checkpoint_scaling"]) == ("Qwen/Qwen3-32B-FP8",
                                                                      "block")
    assert model_row(load_model("MiniMax-M2"))["fp8_checkpoint"] == "MiniMaxAI/MiniMax-M2"
    assert model_row(load_model("Llama-3.1-8B"))["fp8_checkpoint"] is None
