"""The 2025 architecture families of a Hugging Face ``config.json``: layer types (sliding,
chunked, linear), linear attention, DeepSeek sparse attention, attention sinks, gated
attention, the checkpoint's own quantization, and multimodal wrappers.

Each function reads plain dict fields (never code) through :class:`kvopt.catalog.hf_config`'s
reader, with the defaults of the matching ``transformers`` configuration class where a config
omits a field (named per use below).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from kvopt.catalog.model_spec import CheckpointQuant, IndexerSpec, LinearAttnSpec

if TYPE_CHECKING:
    from kvopt.catalog.hf_config import _Reader

Config = Mapping[str, Any]

# multimodal wrappers: the outer model_type -> the text model's family when text_config
# carries no model_type of its own (transformers' sub-config classes)
WRAPPERS = {
    "qwen2_5_vl": "qwen2", "qwen3_vl": "qwen3", "qwen3_5": "qwen3_5_text",
    "qwen3_5_moe": "qwen3_5_moe_text", "llama4": "llama4_text", "gemma3": "gemma3_text",
    "mllama": "mllama_text_model", "llava": "llama", "kimi_k25": "kimi_k2",
}
# text model_types that are spelled differently but are one of kvopt's families
ALIASES = {
    "kimi_k2": "deepseek_v3", "qwen3_vl_text": "qwen3", "qwen2_5_vl_text": "qwen2",
    "qwen3_5_text": "qwen3_next", "qwen3_5_moe_text": "qwen3_next",
    "glm_moe_dsa": "deepseek_v32",
}
# fields a text config may omit, and the transformers defaults that fill them
DEFAULTS: dict[str, dict[str, Any]] = {
    # transformers LlamaConfig (the text model of llava-hf checkpoints names few fields)
    "llama": {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
              "num_attention_heads": 32, "vocab_size": 32000,
              "max_position_embeddings": 2048},
    # transformers Gemma3TextConfig
    "gemma3_text": {"vocab_size": 262_208, "max_position_embeddings": 131_072,
                    "sliding_window_pattern": 6, "sliding_window": 4096},
}
# kvopt names of quantized formats a checkpoint may ship in (its quantization_config)
_QUANT = {"mxfp4": "mxfp4", "fp8": "fp8"}


def unwrap(cfg: Config) -> tuple[dict[str, Any], Config | None, str]:
    """(text config, vision config or None, outer model_type). A multimodal checkpoint keeps
    its language model in ``text_config`` (Qwen2.5-VL's older configs keep it at the top
    level); the outer ``tie_word_embeddings`` and ``quantization_config`` apply to it when it
    names none itself."""
    outer = str(cfg.get("model_type"))
    vision = cfg.get("vision_config") if isinstance(cfg.get("vision_config"), Mapping) else None
    inner = cfg.get("text_config")
    if outer not in WRAPPERS or not isinstance(inner, Mapping):
        text = dict(cfg)
        if outer in WRAPPERS:
            text["model_type"] = WRAPPERS[outer]
            for key, value in DEFAULTS.get(WRAPPERS[outer], {}).items():
                text.setdefault(key, value)
        return text, vision, outer
    text = dict(inner)
    text.setdefault("model_type", WRAPPERS[outer])
    for key in ("tie_word_embeddings", "quantization_config"):
        if key not in text and key in cfg:
            text[key] = cfg[key]
    for key, value in DEFAULTS.get(str(text["model_type"]), {}).items():
        text.setdefault(key, value)
    return text, vision, outer


def family(model_type: str) -> str:
    return ALIASES.get(model_type, model_type)


def layer_types(r: _Reader, n_layers: int, fam: str, model_type: str
                ) -> tuple[tuple[str, ...], tuple[int | None, ...]]:
    """(type of each layer, window of each layer) of the 2025 families."""
    cfg = r.cfg
    window = r.opt_int("sliding_window")
    if fam == "llama4_text":
        # transformers Llama4TextConfig: a NoPE full-attention layer every
        # no_rope_layer_interval (4) layers; the RoPE layers attend in chunks
        chunk = r.int_("attention_chunk_size", 8192)
        interval = r.opt_int("no_rope_layer_interval") or 4
        rope = cfg.get("no_rope_layers") or [int((i + 1) % interval != 0)
                                             for i in range(n_layers)]
        kinds = tuple("chunked" if use else "full" for use in rope)
        return _sized(r, kinds, n_layers), tuple(chunk if k == "chunked" else None
                                                 for k in kinds)
    if fam == "mllama_text_model":
        cross = set(cfg.get("cross_attention_layers") or [])
        kinds = tuple("cross" if i in cross else "full" for i in range(n_layers))
        return kinds, (None,) * n_layers
    names = cfg.get("layer_types")
    if fam == "qwen3_next" and not names:
        # transformers Qwen3NextConfig: full attention every full_attention_interval layers
        interval = r.opt_int("full_attention_interval") or 4
        names = ["full_attention" if (i + 1) % interval == 0 else "linear_attention"
                 for i in range(n_layers)]
    if fam == "gemma3_text" and not names:
        # transformers Gemma3TextConfig: every sliding_window_pattern-th layer is global
        pattern = r.opt_int("sliding_window_pattern") or 6
        names = ["full_attention" if (i + 1) % pattern == 0 else "sliding_attention"
                 for i in range(n_layers)]
    if not names:
        return ("full",) * n_layers, (None,) * n_layers
    table = {"full_attention": "full", "sliding_attention": "sliding",
             "linear_attention": "linear", "chunked_attention": "chunked"}
    bad = sorted({str(n) for n in names} - set(table))
    if bad:
        r.bad.append(f"layer_types {', '.join(bad)} (kvopt models full_attention, "
                     "sliding_attention, chunked_attention and linear_attention)")
        return ("full",) * n_layers, (None,) * n_layers
    kinds = tuple(table[str(n)] for n in names)
    return _sized(r, kinds, n_layers), tuple(window if k == "sliding" else None
                                             for k in kinds)


def _sized(r: _Reader, kinds: tuple[str, ...], n_layers: int) -> tuple[str, ...]:
    if len(kinds) != n_layers:
        r.bad.append(f"layer_types has {len(kinds)} entries for {n_layers} layers")
        return ("full",) * n_layers
    return kinds


def linear_spec(r: _Reader, fam: str) -> LinearAttnSpec | None:
    """Gated DeltaNet dimensions. The recurrent state is stored in ``mamba_ssm_dtype`` where
    the config names it (Qwen3.5: float32), else in the model dtype, as vLLM keeps it
    (``MambaStateDtypeCalculator.gated_delta_net_state_dtype``: ``auto`` = model dtype)."""
    if fam != "qwen3_next":
        return None
    ssm = r.cfg.get("mamba_ssm_dtype")
    state = 4.0 if ssm in ("float32", "fp32") else 2.0
    return LinearAttnSpec(
        num_key_heads=r.int_("linear_num_key_heads"),
        num_value_heads=r.int_("linear_num_value_heads"),
        key_head_dim=r.int_("linear_key_head_dim"),
        value_head_dim=r.int_("linear_value_head_dim"),
        conv_kernel=r.int_("linear_conv_kernel_dim"), state_value_bytes=state,
        separate_projections=str(r.cfg.get("model_type", "")).startswith("qwen3_5"))


def indexer_spec(r: _Reader, fam: str) -> IndexerSpec | None:
    """DeepSeek sparse attention's indexer: its key cache holds one FP8 ``index_head_dim``
    key per token and layer plus one fp32 scale per 128 values (vLLM
    ``DeepseekV32IndexerCache``: ``head_dim + head_dim // 128 * 4`` bytes)."""
    if fam != "deepseek_v32":
        return None
    d = r.int_("index_head_dim")
    return IndexerSpec(heads=r.int_("index_n_heads"), head_dim=d, topk=r.int_("index_topk"),
                       key_bytes=float(d + d // 128 * 4))


def checkpoint_quant(r: _Reader) -> CheckpointQuant | None:
    """The checkpoint's own weight format from ``quantization_config`` (None: bf16/fp16).

    gpt-oss (``quant_method: mxfp4``) quantizes the experts only: its
    ``modules_to_not_convert`` keeps attention, router, embedding and LM head in bf16.
    Block-FP8 checkpoints (DeepSeek, Kimi, MiniMax) quantize every linear layer but the
    embedding, LM head and router. A method kvopt does not know is an error (fail rather
    than guess the memory)."""
    q = r.cfg.get("quantization_config")
    if not isinstance(q, Mapping):
        return None
    method = str(q.get("quant_method", ""))
    if method == "compressed-tensors":
        return _compressed_tensors(r, q)
    if method not in _QUANT:
        r.bad.append(f"quantization_config.quant_method={method!r} (kvopt reads mxfp4 and "
                     "fp8 checkpoints; give a bf16 config.json and --weights instead)")
        return None
    keep: list[str] = []
    skipped = " ".join(str(m) for m in q.get("modules_to_not_convert") or ())
    if "self_attn" in skipped:
        keep.append("attention")
    scaling = ""
    if method == "fp8":  # block-scaled weights quantize activation groups at run time
        scheme = str(q.get("activation_scheme", ""))
        scaling = ("block" if q.get("weight_block_size") else
                   scheme if scheme in ("static", "dynamic") else "")
    return CheckpointQuant(method=method, weights=_QUANT[method], keep_16bit=tuple(keep),
                           fp8_scaling=scaling)


def _compressed_tensors(r: _Reader, q: Mapping[str, Any]) -> CheckpointQuant | None:
    """An llm-compressor checkpoint of integer weight-only groups (Kimi-K2.5: INT4, groups
    of 32, symmetric: 4 bits + one bf16 scale per group; ``ignore`` keeps attention, shared
    experts and dense MLPs in bf16). Other schemes are an error."""
    groups = q.get("config_groups") or {}
    weights = [g.get("weights") for g in groups.values() if isinstance(g, Mapping)]
    w = weights[0] if len(weights) == 1 and isinstance(weights[0], Mapping) else {}
    if (w.get("type") != "int" or w.get("num_bits") != 4 or q.get("format") != "pack-quantized"
            or not isinstance(w.get("group_size"), int) or w["group_size"] < 1):
        r.bad.append("quantization_config (compressed-tensors: kvopt reads INT4 weight-only "
                     "groups only; give a bf16 config.json and --weights instead)")
        return None
    group = int(w["group_size"])
    bits = 4.0 + 16.0 / group + (0.0 if w.get("symmetric", True) else 4.0 / group)
    ignored = " ".join(str(x) for x in q.get("ignore") or ())
    keep = [name for name, pattern in (("attention", "self_attn"),
                                       ("shared_experts", "shared_experts"),
                                       ("dense_mlp", "mlp\\.")) if pattern in ignored]
    return CheckpointQuant(method="compressed-tensors", weights="int4",
                           keep_16bit=tuple(keep), bits_per_weight=bits)
