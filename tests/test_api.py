"""Public API surface and estimate arithmetic that must hold by construction."""

from __future__ import annotations

import pytest

import kvopt
from kvopt import InputError, estimate, load_engine, load_gpu
from kvopt.serving.replica import kv_pool_bytes
from kvopt.units import GIB


def test_all_is_explicit_and_importable() -> None:
    assert sorted(kvopt.__all__) == sorted(set(kvopt.__all__))
    for name in kvopt.__all__:
        assert hasattr(kvopt, name), name


def test_kv_pool_rules_per_engine() -> None:
    gpu = 80 * GIB
    vllm = load_engine("vllm", load_gpu("H100-SXM"))
    # vLLM: 0.9 x 80 GiB - 16 - 1 GiB; the 1.5 GiB runtime fits in the 8 GiB headroom
    assert kv_pool_bytes(vllm, gpu_bytes=gpu, weights_bytes=16 * GIB,
                         activation_bytes=1 * GIB) == pytest.approx((72 - 17) * GIB)
    trt = load_engine("trtllm")
    # TensorRT-LLM: 0.9 x (80 - 16 - 1 - 1.5) GiB of free memory
    assert kv_pool_bytes(trt, gpu_bytes=gpu, weights_bytes=16 * GIB,
                         activation_bytes=1 * GIB) == pytest.approx(0.9 * 61.5 * GIB)
    cpp = load_engine("llamacpp")
    # llama.cpp uses all memory: the runtime overhead comes out of the pool
    assert kv_pool_bytes(cpp, gpu_bytes=gpu, weights_bytes=16 * GIB,
                         activation_bytes=1 * GIB) == pytest.approx(
        (80 - 17 - cpp.runtime_overhead_gib) * GIB)


def test_throughput_and_cost_identities() -> None:
    e = estimate(model="Llama-3.1-8B", gpu="H100-SXM", input_len=512, output_len=128, batch=16)
    lat, thr = e.latency, e.throughput
    assert lat.e2e_ms == pytest.approx(lat.ttft_ms + 127 * lat.tpot_ms)
    assert thr.output_tok_s == pytest.approx(16 * 128 / (lat.e2e_ms / 1000))
    assert thr.requests_s == pytest.approx(16 / (lat.e2e_ms / 1000))
    assert e.cost.usd_per_hour is not None
    assert e.cost.usd_per_million_output_tokens == pytest.approx(
        e.cost.usd_per_hour / (thr.output_tok_s * 3600) * 1e6)
    assert 0 < e.utilization.mfu < 1 and 0 < e.utilization.mbu < 1
    assert e.memory.total_gib == pytest.approx(
        e.memory.weights_gib + e.memory.kv_cache_gib + e.memory.activations_gib
        + e.memory.overhead_gib)


def test_decode_is_memory_bound_at_batch_one() -> None:
    e = estimate(model="Llama-3.1-8B", gpu="H100-SXM", input_len=16, output_len=512, batch=1)
    assert e.utilization.bottleneck == "memory"
    assert e.utilization.arithmetic_intensity < 5


def test_tp_cost_scales_with_gpus() -> None:
    kw = dict(model="Llama-3.1-70B", gpu="H100-SXM", input_len=512, output_len=64, batch=8)
    one, four = estimate(tp=1, weights="fp8", **kw), estimate(tp=4, weights="fp8", **kw)
    assert four.cost.usd_per_hour == pytest.approx(4 * one.cost.usd_per_hour)


def test_laptop_sustained_factors_slow_things_down() -> None:
    lap = load_gpu("RTX-4090-Laptop")
    assert lap.laptop is not None
    assert lap.bandwidth_bytes_s <= lap.memory_bandwidth_gb_s * 1e9


def test_missing_price_is_reported_not_guessed() -> None:
    e = estimate(model="Llama-3.2-1B", gpu="RTX-4090-Laptop", input_len=128, output_len=32,
                 batch=1)
    assert e.cost.usd_per_hour is None
    assert any("no price" in n for n in e.notes)
    e2 = estimate(model="Llama-3.2-1B", gpu="RTX-4090-Laptop", input_len=128, output_len=32,
                  batch=1, price_usd_h=0.5)
    assert e2.cost.usd_per_hour == 0.5


def test_context_longer_than_model_is_an_input_error() -> None:
    with pytest.raises(InputError, match="context"):
        estimate(model="Llama-2-7B", gpu="H100-SXM", input_len=4000, output_len=200, batch=1)


def test_api_rejects_non_positive_lengths() -> None:
    with pytest.raises(InputError, match="input_len=0"):
        estimate(model="Llama-3.1-8B", gpu="H100-SXM", input_len=0, output_len=1, batch=1)


def test_load_curve_api() -> None:
    """`kvopt.curve`: `points` rates up to capacity plus one above by default, the given
    rates sorted and deduplicated otherwise; bad values are InputErrors naming the field."""
    import kvopt

    kw = dict(model="Llama-3.1-8B", gpu="H100-SXM", input_len=512, output_len=128)
    d = kvopt.curve(points=3, **kw)
    cap = d["capacity_rps"]
    assert [p["value"] for p in d["points"]] == pytest.approx([0.05 * cap, 0.5 * cap,
                                                               0.95 * cap, 1.1 * cap])
    assert [p["value"] for p in kvopt.curve(rps=[4, 2, 4], **kw)["points"]] == [2.0, 4.0]
    for bad, field in ((dict(rps=[0]), "rps"), (dict(rps=[]), "rps"),
                       (dict(concurrency=[2.5]), "concurrency"), (dict(points=1), "points"),
                       (dict(rps=[1], concurrency=[1]), "load")):
        with pytest.raises(kvopt.InputError, match=field):
            kvopt.curve(**bad, **kw)
