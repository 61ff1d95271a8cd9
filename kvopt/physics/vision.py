"""Vision encoders: how many tokens an image becomes, and the encoder's weights, FLOPs,
bytes and activation memory (pure functions; the time is priced in
:mod:`kvopt.physics.encoder`).

Image-token rules, each the model's own processor:

* ``qwen_vl`` (Qwen2.5-VL, Qwen3-VL, Qwen3.5): the image is resized to multiples of
  ``f = patch x merge`` px keeping its aspect ratio, within ``[min_pixels, max_pixels]``
  (``smart_resize`` of the Qwen2-VL image processor: round each side to ``f``; if the area is
  above the maximum scale by ``beta = sqrt(H W / max)`` and floor, below the minimum by
  ``beta = sqrt(min / (H W))`` and ceil); the encoder sees ``(H'/p)(W'/p)`` patches, the LLM
  ``(H'/f)(W'/f)`` merged tokens between a vision-start and a vision-end token.
* ``fixed`` (LLaVA-1.5: CLIP at 336 px, 576 tokens; Gemma-3: SigLIP at 896 px pooled to 256
  tokens): every image is resized to one square; a constant number of tokens.
* ``tiles`` (Llama-3.2-Vision): the image is fitted to the canvas of at most ``max_tiles``
  tiles of 560 px that needs the least upscaling (else the least downscaling; ties: the
  smallest canvas, as ``get_optimal_tiled_canvas`` of the Mllama image processor); each tile
  is 1600 patches + 1 class token = 1601 tokens, which the cross-attention layers read; the
  prompt holds one ``<|image|>`` token.

Encoder work per image: the patch embedding ``2 n (C t p^2) h``; per block the projections
``2 n 4 h^2`` and MLP ``2 n (2|3) h I`` FLOPs, attention ``4 h`` per (query, key) pair over
the whole image (``n^2``; Qwen2.5-VL's windowed blocks ``n w`` with ``w`` = 64 patches per
window); the projector per LLM token; all split over TP (vLLM shards the encoder's weights
like the LLM's).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from kvopt.catalog.model_spec import ModelSpec, VisionSpec
from kvopt.errors import InputError

# Qwen2-VL image processor: an image's long side may be at most 200x its short side
MAX_ASPECT = 200


@dataclass(frozen=True)
class ImageWork:
    """One image through the encoder (whole model, before any TP split)."""

    prompt_tokens: int  # tokens it adds to the LLM prompt (image and special tokens)
    cross_tokens: int  # keys the cross-attention layers read (Llama-3.2-Vision), else 0
    encoder_tokens: int  # patches (and class tokens) the encoder runs
    linear_flops: float  # projections, MLPs, patch embedding and projector
    attention_flops: float
    weight_bytes: float  # the encoder's weights, read once per encoder pass
    activation_bytes: float  # activation traffic between the encoder's kernels
    peak_bytes: float  # the largest activation working set (one block)


def vision_params(v: VisionSpec) -> int:
    """Encoder blocks (projections with biases, MLP, two norms) + embeddings + projector."""
    h, inter = v.hidden_size, v.intermediate_size
    attn = 4 * h * h + 4 * h
    mlp = 3 * h * inter + 2 * inter + h if v.gated_mlp else 2 * h * inter + inter + h
    return v.num_layers * (attn + mlp + 4 * h) + v.extra_params + v.projector_params


def _smart_resize(v: VisionSpec, width: int, height: int) -> tuple[int, int]:
    f = v.patch_size * v.merge
    if max(width, height) / min(width, height) > MAX_ASPECT:
        raise InputError("image_size", f"{width}x{height}", f"the image processor of this "
                         f"model refuses aspect ratios beyond {MAX_ASPECT}:1")
    h_bar = max(f, round(height / f) * f)
    w_bar = max(f, round(width / f) * f)
    if h_bar * w_bar > v.max_pixels:
        beta = math.sqrt(height * width / v.max_pixels)
        h_bar = max(f, math.floor(height / beta / f) * f)
        w_bar = max(f, math.floor(width / beta / f) * f)
    elif h_bar * w_bar < v.min_pixels:
        beta = math.sqrt(v.min_pixels / (height * width))
        h_bar = math.ceil(height * beta / f) * f
        w_bar = math.ceil(width * beta / f) * f
    return w_bar, h_bar


def canvas_tiles(v: VisionSpec, width: int, height: int) -> int:
    """Tiles of the Llama-3.2-Vision canvas an image is fitted to (see the module docstring)."""
    size = v.image_size
    options = [(a, b) for a in range(1, v.max_tiles + 1) for b in range(1, v.max_tiles + 1)
               if a * b <= v.max_tiles]
    scales = {(a, b): min(a * size / width, b * size / height) for a, b in options}
    up = [s for s in scales.values() if s >= 1.0]
    pick = min(up) if up else max(scales.values())
    return min(a * b for (a, b), s in scales.items() if s == pick)


def image_work(model: ModelSpec, width: int, height: int) -> ImageWork:
    """Tokens and encoder work of one ``width x height`` image for ``model``."""
    v = model.vision
    if v is None:
        raise InputError("images_per_request", 1, f"{model.name} takes no images in kvopt "
                         "(a text-only model, or one whose vision encoder its card leaves "
                         "out)", "drop --images-per-request, or pick a vision-language model "
                         "(kvopt list-models)")
    seqs = 1
    if v.kind == "qwen_vl":
        w_bar, h_bar = _smart_resize(v, width, height)
        patches = (w_bar // v.patch_size) * (h_bar // v.patch_size)
        llm = patches // (v.merge * v.merge)
        prompt, cross, n = llm + v.extra_tokens_per_image, 0, patches
        pixels_in = v.temporal_patch * v.patch_size**2 * 3
    elif v.kind == "fixed":
        grid = (v.image_size // v.patch_size) ** 2
        llm = v.tokens_per_image
        prompt, cross, n = llm + v.extra_tokens_per_image, 0, grid + int(v.class_token)
        pixels_in = v.patch_size**2 * 3
    else:  # tiles
        seqs = canvas_tiles(v, width, height)
        llm = seqs * v.tokens_per_image
        prompt, cross, n = v.extra_tokens_per_image, llm, llm
        pixels_in = v.patch_size**2 * 3
    h, inter = v.hidden_size, v.intermediate_size
    layers = v.used_layers or v.num_layers
    per_seq = n / seqs
    mlp_mats = 3 if v.gated_mlp else 2
    linear = (2.0 * n * pixels_in * h + layers * 2.0 * n * (4 * h * h + mlp_mats * h * inter)
              + v.projector_flops_per_token * llm)
    if "cross" in model.kinds:  # the image keys and values of every cross-attention layer
        kv_dim = model.num_kv_heads * model.head_dim
        linear += model.kinds.count("cross") * 2.0 * cross * model.hidden_size * 2 * kv_dim
    if v.window_patches:
        full = v.full_attention_layers
        pairs = float(full * n * n + (layers - full) * n * min(n, v.window_patches))
    else:
        pairs = layers * seqs * per_seq * per_seq
    act_per_token = (7 * h + (mlp_mats + 1) * inter) * 2.0  # bf16 in and out of each kernel
    peak = n * (3 * h + (mlp_mats + 1) * inter) * 2.0
    return ImageWork(prompt_tokens=prompt, cross_tokens=cross, encoder_tokens=n,
                     linear_flops=linear, attention_flops=4.0 * h * pairs,
                     weight_bytes=2.0 * vision_params(v),
                     activation_bytes=layers * n * act_per_token, peak_bytes=peak)


def image_prompt_tokens(model: ModelSpec, images: int, width: int, height: int) -> int:
    """Tokens ``images`` images of ``width x height`` add to each prompt of ``model``."""
    if images == 0:
        return 0
    return images * image_work(model, width, height).prompt_tokens


@dataclass(frozen=True)
class ImageInput:
    """The images of every request: ``count`` images of ``width`` x ``height`` pixels."""

    count: int
    width: int
    height: int

    @property
    def label(self) -> str:
        return f"{self.count}x {self.width}x{self.height} px"
