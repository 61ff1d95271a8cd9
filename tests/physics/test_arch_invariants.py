"""Invariants of the 2025 architectures (hypothesis): native MXFP4/FP4 weights never slower
than bf16, a sequence's KV footprint never above a full-attention one's and growing with its
tokens, and the linear-attention state independent of the context."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from kvopt.catalog.gpus import load_gpu
from kvopt.catalog.models import list_models, load_model
from kvopt.errors import KvoptError
from kvopt.physics.memory import linear_state_bytes
from kvopt.physics.precision import resolve_precision, support_mode
from kvopt.physics.roofline import step_time
from kvopt.serving.replica import build_replica

BLACKWELL = [g for g in ("B200", "GB200", "B300", "GB300", "RTX-PRO-6000-Server", "RTX-5090")
             if support_mode(load_gpu(g), "mxfp4") == "native"]
TYPED = sorted(m.name for m in list_models() if set(m.kinds) != {"full"})


@settings(max_examples=80, deadline=None)
@given(gpu=st.sampled_from(BLACKWELL), model=st.sampled_from(("gpt-oss-20b", "gpt-oss-120b",
                                                               "Qwen3-Next-80B-A3B")),
       weights=st.sampled_from(("mxfp4", "fp4", "fp8")),
       engine=st.sampled_from(("vllm", "sglang", "trtllm")), seqs=st.integers(1, 256),
       new=st.sampled_from((1, 1, 64, 2048)), past=st.integers(0, 32768))
def test_native_low_precision_never_slower_than_bf16(gpu: str, model: str, weights: str,
                                                     engine: str, seqs: int, new: int,
                                                     past: int) -> None:
    """Where MXFP4/FP4/FP8 are native (Blackwell), every quantized GEMM and MoE layer is the
    faster of its native kernels and the weight-only path through the bf16 kernels (its
    fewer weight bytes), so a step is never slower than with bf16 weights."""
    g, m = load_gpu(gpu), load_model(model)

    def t(w: str) -> float:
        p = resolve_precision(gpu=g, weights=w, kv_dtype="bf16", engine=engine,
                              hidden_size=m.hidden_size)
        return float(step_time(m, g, tp=1, precision=p, seqs=float(seqs), new=float(new),
                               past=float(past)).total_s)

    assert t(weights) <= t("bf16") * (1 + 1e-12)


@settings(max_examples=60, deadline=None)
@given(model=st.sampled_from(TYPED), tokens=st.integers(1, 200_000),
       more=st.integers(1, 50_000))
def test_footprint_never_above_full_attention_and_grows(model: str, tokens: int,
                                                        more: int) -> None:
    """Windowed (sliding, chunked) layers hold at most their window: a sequence's blocks
    never exceed those of a model whose every KV layer keeps every token, plus its fixed
    state; and more tokens never take fewer blocks."""
    m = load_model(model)
    try:
        rep = build_replica(model=m, gpu="GB300", tp=8 if m.num_heads % 8 == 0 else 1)
    except KvoptError:  # a TP the model cannot split: nothing to check
        return
    bs = rep.engine.block_size
    state = rep.seq_state_bytes / (rep.kv_bytes_per_token * bs)
    assert rep.seq_blocks(tokens) <= tokens / bs + state + 1e-9
    assert rep.seq_blocks(tokens + more) >= rep.seq_blocks(tokens)


def test_linear_state_does_not_grow_with_the_context() -> None:
    rep = build_replica(model="Qwen3-Next-80B-A3B", gpu="H200", tp=2)
    short, long = rep.seq_bytes(1_024), rep.seq_bytes(100_000)  # whole blocks of 16
    state = linear_state_bytes(rep.model, tp=2)
    # the growth is the 12 full-attention layers' KV alone
    assert long - short == (100_000 - 1_024) * rep.kv_bytes_per_token
    assert rep.seq_state_bytes == state
