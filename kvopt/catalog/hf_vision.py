"""Vision encoders of multimodal ``config.json`` files (``vision_config``), read as data.

Each outer ``model_type`` names one encoder family, its projector and its image-token rule
(:class:`kvopt.catalog.model_spec.VisionSpec`); sizes a config omits take the defaults of the
matching ``transformers`` vision configuration class (named per family). The image
processor's pixel limits are not in ``config.json`` (they are in
``preprocessor_config.json``): a catalog card gives them in its ``kvopt.image_processor``
block, with a source.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kvopt.catalog.model_spec import VisionSpec

Config = Mapping[str, Any]

# transformers CLIPVisionConfig defaults (llava-hf checkpoints name only a few fields)
_CLIP = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
         "num_attention_heads": 12, "image_size": 224, "patch_size": 32}
# transformers SiglipVisionConfig defaults (Gemma-3's vision tower)
_SIGLIP = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
           "num_attention_heads": 12, "image_size": 224, "patch_size": 16}
_FAMILIES = ("qwen2_5_vl", "qwen3_vl", "qwen3_5", "qwen3_5_moe", "llava", "gemma3", "mllama")


def _int(cfg: Config, key: str, bad: list[str], default: int | None = None) -> int:
    value = cfg.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= 1_048_576:
        bad.append(f"vision_config.{key}={value!r} (expected a positive integer)")
        return 1
    return value


def _processor(meta: Mapping[str, Any], bad: list[str]) -> tuple[int, int, str]:
    proc = meta.get("image_processor")
    if not isinstance(proc, Mapping):
        bad.append("kvopt.image_processor (min_pixels, max_pixels, source) is needed for a "
                   "native-resolution vision encoder")
        return 1, 1, ""
    lo, hi = proc.get("min_pixels"), proc.get("max_pixels")
    if not (isinstance(lo, int) and isinstance(hi, int) and 0 < lo <= hi):
        bad.append(f"kvopt.image_processor min_pixels={lo!r}, max_pixels={hi!r} "
                   "(expected integers with 0 < min <= max)")
        return 1, 1, ""
    return lo, hi, str(proc.get("source", ""))


def _qwen_dims(v: Config, bad: list[str], text_hidden: int, meta: Mapping[str, Any]
               ) -> tuple[int, int, int, int, int, int, int, int, str]:
    """A Qwen-VL encoder's hidden and MLP widths, patch, merge and temporal patch sizes,
    output width, and its image processor's pixel range and source."""
    h, inter = _int(v, "hidden_size", bad), _int(v, "intermediate_size", bad)
    patch, merge = _int(v, "patch_size", bad), _int(v, "spatial_merge_size", bad)
    t = _int(v, "temporal_patch_size", bad, 2)
    out = _int(v, "out_hidden_size", bad, text_hidden)
    lo, hi, src = _processor(meta, bad)
    return h, inter, patch, merge, t, out, lo, hi, src


def vision_spec(v: Config, *, outer: str, top: Config, text_hidden: int,
                meta: Mapping[str, Any], reader_bad: list[str]) -> VisionSpec | None:
    """The vision encoder of a ``outer`` checkpoint (None for families whose encoder kvopt
    does not model: their cards are text-only, and images are refused)."""
    bad = reader_bad
    if outer not in _FAMILIES:
        return None
    if outer == "qwen2_5_vl":
        # Qwen2.5-VL: 32 blocks (windowed attention over 112 px windows but for the
        # fullatt_block_indexes), gated MLP, 2x2 patch merger (MLP 4h -> 4h -> text hidden)
        h, inter, patch, merge, t, out, lo, hi, src = _qwen_dims(v, bad, text_hidden, meta)
        m = h * merge * merge
        return VisionSpec(
            kind="qwen_vl", hidden_size=h, num_layers=_int(v, "depth", bad),
            num_heads=_int(v, "num_heads", bad), intermediate_size=inter, gated_mlp=True,
            patch_size=patch, image_size=0, out_hidden_size=out,
            projector_params=h + m * m + m + m * out + out,
            projector_flops_per_token=2.0 * (m * m + m * out), temporal_patch=t, merge=merge,
            extra_tokens_per_image=2, min_pixels=lo, max_pixels=hi,
            window_patches=(_int(v, "window_size", bad, 112) // patch) ** 2,
            full_attention_layers=len(v.get("fullatt_block_indexes") or ()),
            extra_params=3 * t * patch * patch * h, source=src)
    if outer in ("qwen3_vl", "qwen3_5", "qwen3_5_moe"):
        # Qwen3-VL / Qwen3.5: 27 blocks of global attention, GELU MLP, learned position
        # embeddings, a 2x2 merger plus one per deepstack layer (LayerNorm over 4h)
        h, inter, patch, merge, t, out, lo, hi, src = _qwen_dims(v, bad, text_hidden, meta)
        m = h * merge * merge
        mergers = 1 + len(v.get("deepstack_visual_indexes") or ())
        one = 2 * m + m * m + m + m * out + out
        return VisionSpec(
            kind="qwen_vl", hidden_size=h, num_layers=_int(v, "depth", bad),
            num_heads=_int(v, "num_heads", bad), intermediate_size=inter, gated_mlp=False,
            patch_size=patch, image_size=0, out_hidden_size=out,
            projector_params=mergers * one,
            projector_flops_per_token=2.0 * mergers * (m * m + m * out), temporal_patch=t,
            merge=merge, extra_tokens_per_image=2, min_pixels=lo, max_pixels=hi,
            extra_params=3 * t * patch * patch * h + h
            + _int(v, "num_position_embeddings", bad, 2304) * h, source=src)
    if outer == "llava":
        # LLaVA-1.5: CLIP ViT-L/14-336, features of the penultimate layer
        # (vision_feature_layer -2) without the CLS token, a 2-layer GELU projector
        c = {**_CLIP, **v}
        h, patch, size = (_int(c, "hidden_size", bad), _int(c, "patch_size", bad),
                          _int(c, "image_size", bad))
        layers = _int(c, "num_hidden_layers", bad)
        feature = top.get("vision_feature_layer", -2)
        used = layers + int(feature) + 1 if isinstance(feature, int) and feature < 0 else (
            int(feature) + 1 if isinstance(feature, int) else layers)
        grid = (size // patch) ** 2
        return VisionSpec(
            kind="fixed", hidden_size=h, num_layers=layers,
            num_heads=_int(c, "num_attention_heads", bad),
            intermediate_size=_int(c, "intermediate_size", bad), gated_mlp=False,
            patch_size=patch, image_size=size, out_hidden_size=text_hidden,
            projector_params=h * text_hidden + text_hidden + text_hidden * text_hidden
            + text_hidden, projector_flops_per_token=2.0 * (h * text_hidden
                                                          + text_hidden * text_hidden),
            tokens_per_image=grid, class_token=True, used_layers=used,
            extra_params=3 * patch * patch * h + h + (grid + 1) * h + 4 * h,
            source="vision_config (transformers CLIPVisionConfig defaults for omitted fields)")
    if outer == "gemma3":
        # Gemma-3: SigLIP-400M at 896 px (no CLS token), the 64x64 patch grid average-pooled
        # to mm_tokens_per_image (256) tokens, RMSNorm and a projection to the text width
        c = {**_SIGLIP, **v}
        h, patch, size = (_int(c, "hidden_size", bad), _int(c, "patch_size", bad),
                          _int(c, "image_size", bad))
        tokens = _int(top, "mm_tokens_per_image", bad, 256)
        grid = (size // patch) ** 2
        return VisionSpec(
            kind="fixed", hidden_size=h, num_layers=_int(c, "num_hidden_layers", bad),
            num_heads=_int(c, "num_attention_heads", bad),
            intermediate_size=_int(c, "intermediate_size", bad), gated_mlp=False,
            patch_size=patch, image_size=size, out_hidden_size=text_hidden,
            projector_params=h + h * text_hidden,
            projector_flops_per_token=2.0 * h * text_hidden,
            tokens_per_image=tokens, extra_tokens_per_image=2,
            merge=round((grid / tokens) ** 0.5),
            extra_params=3 * patch * patch * h + h + grid * h + 2 * h,
            source="vision_config (transformers SiglipVisionConfig defaults for omitted "
                   "fields); mm_tokens_per_image")
    # mllama: Llama-3.2-Vision, tiles of image_size px, 32 local + 8 gated global layers,
    # features of 5 layers concatenated (vision_output_dim) into a projector to the text
    # width, read by the cross-attention layers (1 <|image|> token in the prompt)
    h, patch, size = (_int(v, "hidden_size", bad), _int(v, "patch_size", bad),
                      _int(v, "image_size", bad))
    tiles = _int(v, "max_num_tiles", bad, 4)
    out_dim = _int(v, "vision_output_dim", bad)
    per_tile = (size // patch) ** 2 + 1
    ratios = len(v.get("supported_aspect_ratios") or ()) or 8
    positional = per_tile * h + (ratios + 1) * tiles * per_tile * h + 2 * (ratios + 1) * tiles * h
    return VisionSpec(
        kind="tiles", hidden_size=h,
        num_layers=_int(v, "num_hidden_layers", bad) + _int(v, "num_global_layers", bad, 8),
        num_heads=_int(v, "attention_heads", bad, 16),
        intermediate_size=_int(v, "intermediate_size", bad), gated_mlp=False,
        patch_size=patch, image_size=size, out_hidden_size=text_hidden,
        projector_params=out_dim * text_hidden + text_hidden,
        projector_flops_per_token=2.0 * out_dim * text_hidden, tokens_per_image=per_tile,
        extra_tokens_per_image=1, max_tiles=tiles, class_token=True,
        extra_params=3 * patch * patch * h + h + positional + 4 * h,
        source="vision_config")
