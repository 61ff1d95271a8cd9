"""Multimodal requests: image tokens by each model's own rule, the vision encoder's work,
and the encoder in memory and TTFT (hand-computed; arithmetic in the test)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvopt import api, load_model
from kvopt.errors import InputError
from kvopt.physics.vision import canvas_tiles, image_work, vision_params
from kvopt.serving.replica import build_replica


def test_qwen25_vl_smart_resize_1024x768() -> None:
    m = load_model("Qwen/Qwen2.5-VL-7B-Instruct")
    w = image_work(m, 1024, 768)
    # factor 28 (14 px patches, 2x2 merge): round(1024/28) = 37 -> 1036, round(768/28) = 27
    # -> 756; 1036 x 756 lies within [3136, 12845056] pixels
    patches = (1036 // 14) * (756 // 14)
    assert w.encoder_tokens == patches == 74 * 54
    assert w.prompt_tokens == patches // 4 + 2 == 1001  # + vision start/end tokens


def test_qwen25_vl_min_and_max_pixels() -> None:
    m = load_model("Qwen2.5-VL-7B")
    # 10 x 10: 28 x 28 = 784 < 3136 -> beta = sqrt(3136 / 100) = 5.6, each side
    # ceil(10 x 5.6 / 28) x 28 = 56: 4 x 4 patches, 4 tokens
    assert image_work(m, 10, 10).prompt_tokens == 4 + 2
    # 8000 x 6000: 8008 x 5992 > 12845056 -> beta = sqrt(48e6 / 12845056), sides
    # floor(8000 / beta / 28) x 28 = 4116 and floor(6000 / beta / 28) x 28 = 3080
    beta = math.sqrt(8000 * 6000 / 12845056)
    w_bar = math.floor(8000 / beta / 28) * 28
    h_bar = math.floor(6000 / beta / 28) * 28
    assert (w_bar, h_bar) == (4116, 3080)
    assert image_work(m, 8000, 6000).prompt_tokens == (w_bar // 28) * (h_bar // 28) + 2


def test_qwen3_vl_16_px_patches() -> None:
    m = load_model("Qwen/Qwen3-VL-8B-Instruct")
    # factor 32: 1024 x 768 stays; (1024 / 32) x (768 / 32) = 768 tokens + 2
    assert image_work(m, 1024, 768).prompt_tokens == 32 * 24 + 2


def test_fixed_resolution_encoders() -> None:
    llava = image_work(load_model("llava-hf/llava-1.5-7b-hf"), 1920, 1080)
    assert llava.prompt_tokens == (336 // 14) ** 2 == 576  # any size: resized to 336 px
    assert llava.encoder_tokens == 577  # + the CLS token
    gemma = image_work(load_model("google/gemma-3-27b-it"), 640, 480)
    assert gemma.prompt_tokens == 256 + 2  # 4096 patches pooled 4x4, + begin/end of image
    assert gemma.encoder_tokens == (896 // 14) ** 2


def test_llava_encoder_flops_by_hand() -> None:
    w = image_work(load_model("LLaVA-1.5-7B"), 336, 336)
    n, h, inter, layers = 577, 1024, 4096, 23  # features of the penultimate layer
    patch = 2 * n * (3 * 14 * 14) * h
    blocks = layers * 2 * n * (4 * h * h + 2 * h * inter)
    projector = 576 * 2 * (1024 * 4096 + 4096 * 4096)
    assert w.linear_flops == patch + blocks + projector
    assert w.attention_flops == 4 * h * layers * n * n


def test_llama32_vision_tiles_and_cross_attention_keys() -> None:
    m = load_model("meta-llama/Llama-3.2-11B-Vision-Instruct")
    v = m.vision
    assert v is not None
    # 1120 x 560 fits 2 x 1 tiles of 560 px exactly (scale 1: no upscaling or downscaling)
    assert canvas_tiles(v, 1120, 560) == 2
    assert canvas_tiles(v, 560, 560) == 1
    assert canvas_tiles(v, 4000, 4000) == 4  # downscaled onto the largest 2 x 2 canvas
    w = image_work(m, 1120, 560)
    assert w.prompt_tokens == 1  # one <|image|> token
    assert w.cross_tokens == 2 * (40 * 40 + 1) == 3202
    rep = build_replica(model=m, gpu="H100-SXM", tp=1, images=api_images(m.name, 1120, 560))
    # the 8 cross-attention layers keep 3202 image keys: 8 x 2 x 8 KV heads x 128 x 2 B each
    assert rep.cross_tokens == 3202
    assert rep.seq_state_bytes == 3202 * 8 * 2 * 8 * 128 * 2 == 104_923_136
    assert rep.image_prompt_tokens == 1


def api_images(model: str, w: int, h: int, n: int = 1) -> object:
    from kvopt import build

    return build.images(model, n, f"{w}x{h}")


def test_vision_params_count_the_blocks() -> None:
    v = load_model("LLaVA-1.5-7B").vision
    assert v is not None
    h, inter = 1024, 4096
    block = 4 * h * h + 4 * h + 2 * h * inter + inter + h + 4 * h
    embeddings = 3 * 14 * 14 * h + h + 577 * h + 4 * h
    projector = h * 4096 + 4096 + 4096 * 4096 + 4096
    assert vision_params(v) == 24 * block + embeddings + projector


def test_text_only_models_refuse_images() -> None:
    with pytest.raises(InputError, match="text-only"):
        api.estimate(model="Llama-3.1-8B", gpu="H100-SXM", input_len=100, output_len=10,
                     rps=1, images_per_request=1, image_size="64x64")
    with pytest.raises(InputError, match="text-only"):  # Llama-4's card leaves out its encoder
        api.estimate(model="Llama-4-Scout", gpu="H100-SXM", tp=4, input_len=100,
                     output_len=10, rps=1, images_per_request=1, image_size="64x64")


def test_images_grow_the_prompt_and_the_prefill_runs_the_encoder() -> None:
    kw = dict(model="Qwen/Qwen2.5-VL-7B-Instruct", gpu="H100-SXM", input_len=200,
              output_len=100, batch=1)
    text = api.estimate(**kw)  # type: ignore[arg-type]
    img = api.estimate(**kw, images_per_request=2, image_size="1024x768")  # type: ignore[arg-type]
    # the same prompt with 2 x 1001 image tokens as text, no encoder
    text_long = api.estimate(**{**kw, "input_len": 200 + 2 * 1001})  # type: ignore[arg-type]
    rep = build_replica(model="Qwen2.5-VL-7B", gpu="H100-SXM",
                        images=api_images("Qwen2.5-VL-7B", 1024, 768, 2))  # type: ignore[arg-type]
    assert rep.encoder_s > 0
    assert img.latency.prefill_ms == pytest.approx(text_long.latency.prefill_ms
                                                   + rep.encoder_s * 1e3, rel=1e-6)
    assert img.latency.ttft_ms > text_long.latency.ttft_ms > text.latency.ttft_ms
    assert img.memory.activations_gib >= text.memory.activations_gib


def test_images_under_load_and_in_plans() -> None:
    e = api.estimate(model="Qwen2.5-VL-7B", gpu="H100-SXM", input_len=200, output_len=100,
                     rps=2, images_per_request=1, image_size="640x480")
    assert math.isfinite(e.latency.ttft_p99_ms) and e.throughput.requests_s > 0
    plan = api.plan(model="Qwen2.5-VL-7B", rps=4, input_len=200, output_len=100,
                    images_per_request=1, image_size="640x480", gpus=("H100-SXM",),
                    tp_options=(1,), precisions="bf16/bf16", batches=(32,),
                    explain=False, capacity="screen")
    d = plan.to_dict()
    wl = d["inputs"]["workloads"][0]
    assert d["fleet"] and wl["images"] == {"per_request": 1, "width": 640, "height": 480}
    assert wl["input_len"] == "200+393 image tokens"  # (644/28) x (476/28) = 23 x 17 + 2
    from kvopt.export import load_plan  # noqa: F401  (the export reads the label back)
    from kvopt.export.plans import max_lengths

    assert max_lengths(wl) == (593, 693)


@settings(max_examples=25, deadline=None)
@given(w=st.integers(16, 6000), h=st.integers(16, 6000), grow=st.integers(1, 4))
def test_more_pixels_never_fewer_tokens(w: int, h: int, grow: int) -> None:
    """Qwen2.5-VL: growing an image of at least min_pixels (56 x 56) never lowers the tokens
    (up to max_pixels), which never exceed max_pixels / 28^2 (+2). Below min_pixels the
    processor scales up and rounds each side up to 28, which is not monotone, and kvopt
    follows it: 16 x 17 px -> 84 x 56 = 6 tokens + 2, 48 x 51 px -> 56 x 56 = 4 + 2."""
    m = load_model("Qwen2.5-VL-7B")
    if max(w, h) / min(w, h) > 100:
        return
    big = image_work(m, w * grow, h * grow).prompt_tokens
    assert big <= 12845056 // (28 * 28) + 2
    if w * h >= 56 * 56:
        assert big >= image_work(m, w, h).prompt_tokens  # monotone
    assert image_work(m, 16, 17).prompt_tokens == 8 > image_work(m, 48, 51).prompt_tokens == 6
