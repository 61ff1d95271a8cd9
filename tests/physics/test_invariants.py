"""Physical invariants of the fitted step model, over the catalog's GPUs and models
(hypothesis): more bandwidth never slows a memory-bound step, fp8 weights are never slower
than bf16 ones where fp8 is native, and another GPU of tensor parallelism never slows a step
beyond its all-reduce."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvopt.catalog.engines import load_engine
from kvopt.catalog.gpus import GpuSpec, list_gpus
from kvopt.catalog.models import list_models
from kvopt.errors import KvoptError
from kvopt.physics.efficiency import kernel_family
from kvopt.physics.precision import resolve_precision, support_mode
from kvopt.physics.roofline import StepTime, step_time
from kvopt.physics.tp import check_tp

GPUS = {g.id: g for g in list_gpus()}
MODELS = {m.name: m for m in list_models()}
ENGINES = ("vllm", "sglang", "trtllm", "trtllm-triton", "llamacpp")
DTYPES = ("bf16", "fp16", "fp8", "fp4")


def _at_least(hi: GpuSpec, lo: GpuSpec) -> bool:
    """``hi`` has at least ``lo``'s bandwidth and every tensor peak ``lo`` has (as used:
    laptop sustained factors included)."""
    return hi.bandwidth_bytes_s >= lo.bandwidth_bytes_s and all(
        hi.has_tensor(d) and hi.peak_flop_s(d) >= lo.peak_flop_s(d)
        for d in DTYPES if lo.has_tensor(d))


# same architecture, strictly more bandwidth, no less compute: H100 SXM -> H200, B200 ->
# GB200, A100 40GB -> 80GB, H100 PCIe -> H100 SXM, L4 -> L40S, MI300X -> MI325X, ...
# "Same architecture" is the same kernel family (compute capability): NVIDIA brands both
# GB100 (sm_100: B200, GB200) and GB202/GB203 (sm_120: RTX PRO 6000, RTX 50xx) Blackwell,
# but they run different kernels (sm_120 has no tcgen05/TMEM), so a B200 is not an RTX PRO
# 6000 with more bandwidth.
MORE_BANDWIDTH = [(lo, hi) for lo, hi in itertools.permutations(GPUS, 2)
                  if GPUS[lo].architecture == GPUS[hi].architecture
                  and kernel_family(GPUS[lo]) == kernel_family(GPUS[hi])
                  and GPUS[hi].bandwidth_bytes_s > GPUS[lo].bandwidth_bytes_s
                  and _at_least(GPUS[hi], GPUS[lo])]
FP8_NATIVE = [g for g, spec in GPUS.items() if support_mode(spec, "fp8") == "native"]


def _step(model: str, gpu: GpuSpec, *, weights: str, engine: str, seqs: int, new: int,
          past: int, tp: int = 1) -> StepTime:
    m = MODELS[model]
    eng = load_engine(engine, gpu)
    prec = resolve_precision(gpu=gpu, weights=weights, kv_dtype="bf16" if gpu.has_tensor(
        "bf16") else "fp16", engine=eng.name, hidden_size=m.hidden_size)
    return step_time(m, gpu, tp=tp, precision=prec, seqs=float(seqs), new=float(new),
                     past=float(past), engine=eng)


def test_the_pairs_cover_the_examples() -> None:
    for pair in (("H100-SXM", "H200"), ("B200", "GB200"), ("A100-SXM-40GB", "A100-SXM-80GB"),
                 ("H100-PCIe", "H100-SXM"), ("MI300X", "MI325X")):
        assert pair in MORE_BANDWIDTH
    # B300's card has B200's bandwidth and peaks (fp4 more): one family, one price
    b200, b300 = GPUS["B200"], GPUS["B300"]
    for w in ("bf16", "fp8"):
        kw = dict(weights=w, engine="trtllm", seqs=8, new=1, past=2048)
        assert float(_step("Llama-3.1-8B", b300, **kw).total_s) == pytest.approx(
            float(_step("Llama-3.1-8B", b200, **kw).total_s), rel=1e-12)


@settings(max_examples=150, deadline=None)
@given(pair=st.sampled_from(MORE_BANDWIDTH), model=st.sampled_from(sorted(MODELS)),
       engine=st.sampled_from(ENGINES), weights=st.sampled_from(("bf16", "fp8", "int4")),
       seqs=st.integers(1, 16), past=st.integers(0, 16384))
def test_more_bandwidth_never_slows_a_memory_bound_step(pair: tuple[str, str], model: str,
                                                        engine: str, weights: str, seqs: int,
                                                        past: int) -> None:
    """A decode step at small batch on a GPU of the same architecture with more bandwidth
    and no less compute (H200 vs H100, GB200 vs B200, ...) is not slower: the GPUs of one
    kernel family share their fitted fractions, floors and paddings, and parts without
    tables take their family's (transfer rules)."""
    lo, hi = (GPUS[g] for g in pair)
    try:
        t_lo = _step(model, lo, weights=weights, engine=engine, seqs=seqs, new=1, past=past)
        t_hi = _step(model, hi, weights=weights, engine=engine, seqs=seqs, new=1, past=past)
    except KvoptError:  # a precision one of them does not run
        return
    assert float(t_hi.total_s) <= float(t_lo.total_s) * (1 + 1e-12)


@settings(max_examples=150, deadline=None)
@given(gpu=st.sampled_from(FP8_NATIVE), model=st.sampled_from(sorted(MODELS)),
       engine=st.sampled_from(ENGINES), seqs=st.integers(1, 512),
       new=st.sampled_from((1, 1, 16, 512, 4096)), past=st.integers(0, 16384))
def test_fp8_weights_are_never_slower_than_bf16(gpu: str, model: str, engine: str, seqs: int,
                                                new: int, past: int) -> None:
    """Where fp8 is native (Ada, Hopper, Blackwell, MI300), fp8 weights (same bf16 KV
    cache) never make a step slower, decode or prefill: each quantized GEMM and MoE layer is
    priced as the faster of its W8A8 kernels and the weight-only path (the fp8 weight bytes
    through the bf16 kernels), so TensorRT-LLM's per-tensor fp8 floor at small batch (its
    dynamic activation quantization) does not make fp8 slower than bf16."""
    g = GPUS[gpu]
    kw = dict(engine=engine, seqs=seqs, new=new, past=past)
    t8 = _step(model, g, weights="fp8", **kw)
    t16 = _step(model, g, weights="bf16", **kw)
    assert float(t8.total_s) <= float(t16.total_s) * (1 + 1e-12)


TP_GPUS = [g for g, spec in GPUS.items() if spec.max_gpus_per_node >= 2]


@settings(max_examples=150, deadline=None)
@given(gpu=st.sampled_from(TP_GPUS), model=st.sampled_from(sorted(MODELS)),
       engine=st.sampled_from(ENGINES), weights=st.sampled_from(("bf16", "fp8")),
       tp=st.sampled_from((1, 2, 4)), seqs=st.integers(1, 32), past=st.integers(0, 16384))
def test_another_tp_gpu_never_slows_a_step_beyond_its_allreduce(
        gpu: str, model: str, engine: str, weights: str, tp: int, seqs: int,
        past: int) -> None:
    """Doubling the tensor-parallel group never slows a memory-bound (decode) step by more
    than the all-reduces it adds: everything else each GPU does shrinks or stays (weights
    and heads split, replicated KV heads and latents stay, kernel floors stay)."""
    g, m = GPUS[gpu], MODELS[model]
    if 2 * tp > g.max_gpus_per_node:
        return
    try:
        check_tp(m, 2 * tp)
        one = _step(model, g, weights=weights, engine=engine, seqs=seqs, new=1, past=past,
                    tp=tp)
        two = _step(model, g, weights=weights, engine=engine, seqs=seqs, new=1, past=past,
                    tp=2 * tp)
    except KvoptError:
        return
    assert float(two.total_s - two.comm_s) <= float(one.total_s - one.comm_s) * (1 + 1e-12)
    assert float(two.total_s) <= float(one.total_s) + float(two.comm_s) * (1 + 1e-12)
