"""Turn a Hugging Face ``config.json`` (a plain dict; never executed) into a `ModelSpec`.

Each supported ``model_type`` maps the config's field names onto the same facts. Defaults
are those of the matching ``transformers`` configuration class when the config omits a
field (e.g. Gemma-2 ties embeddings by default). The 2025 families (layer types, linear and
sparse attention, multimodal wrappers) are read by :mod:`kvopt.catalog.hf_arch`, vision
encoders by :mod:`kvopt.catalog.hf_vision`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kvopt.catalog import hf_arch
from kvopt.catalog.hf_vision import vision_spec
from kvopt.catalog.model_spec import FP8_SCALINGS, CheckpointQuant, MlaSpec, ModelSpec, MoeSpec
from kvopt.errors import CatalogError

Config = Mapping[str, Any]

# model family -> transformers default for tie_word_embeddings
_TIE_DEFAULT = {
    "llama": False, "mistral": False, "mixtral": False, "qwen2": False, "qwen3": False,
    "qwen2_moe": False, "qwen3_moe": False, "gemma2": True, "phi3": False, "gptj": False,
    "deepseek_v2": False, "deepseek_v3": False, "deepseek_v32": False, "gpt_oss": False,
    "qwen3_next": False, "glm4_moe": False, "minimax_m2": False, "llama4_text": False,
    "gemma3_text": True, "mllama_text_model": False,
}
SUPPORTED_MODEL_TYPES = tuple(sorted(
    set(_TIE_DEFAULT) | set(hf_arch.ALIASES) | set(hf_arch.WRAPPERS)))
_MLA = ("deepseek_v2", "deepseek_v3", "deepseek_v32")
_QK_NORM = ("qwen3", "qwen3_moe", "qwen3_next", "gemma3_text")

# the largest value a size field may take: about 8x the largest in any published model
# (Llama-3.1-405B: 126 layers, hidden 16384, 128 heads, FFN 53248; 512 experts in
# Qwen3-Next; vocabularies up to 262k; contexts up to 10M) — a bigger one is a typo, and
# would make memory and step-time arrays the size of the typo
MAX_SIZE = {
    "num_hidden_layers": 1024, "n_layer": 1024, "hidden_size": 131_072, "n_embd": 131_072,
    "num_attention_heads": 1024, "n_head": 1024, "num_key_value_heads": 1024,
    "head_dim": 4096, "intermediate_size": 1_048_576, "moe_intermediate_size": 1_048_576,
    "vocab_size": 4_194_304, "max_position_embeddings": 134_217_728,
    "n_positions": 16_777_216, "num_local_experts": 4096, "num_experts": 4096,
    "n_routed_experts": 4096, "num_experts_per_tok": 4096, "kv_lora_rank": 65_536,
    "qk_nope_head_dim": 4096, "qk_rope_head_dim": 4096, "v_head_dim": 4096,
    "linear_num_key_heads": 1024, "linear_num_value_heads": 1024,
    "linear_key_head_dim": 4096, "linear_value_head_dim": 4096, "linear_conv_kernel_dim": 64,
    "index_n_heads": 1024, "index_head_dim": 4096, "index_topk": 1_048_576,
    "attention_chunk_size": 16_777_216,
}
_DEFAULT_MAX = 16_777_216


class _Reader:
    """Reads typed fields and collects every missing or malformed one before failing."""

    def __init__(self, cfg: Config, origin: str) -> None:
        self.cfg = cfg
        self.origin = origin
        self.missing: list[str] = []
        self.bad: list[str] = []

    def int_(self, key: str, default: int | None = None) -> int:
        value = self.cfg.get(key, default)
        if value is None:
            self.missing.append(key)
            return 1
        top = MAX_SIZE.get(key, _DEFAULT_MAX)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= top:
            self.bad.append(f"{key}={value!r} (expected an integer from 1 to {top})")
            return 1
        return value

    def opt_int(self, key: str) -> int | None:
        value = self.cfg.get(key)
        if value is None:
            return None
        top = MAX_SIZE.get(key, _DEFAULT_MAX)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= top:
            self.bad.append(f"{key}={value!r} (expected an integer from 0 to {top}, or null)")
            return None
        return value

    def bool_(self, key: str, default: bool) -> bool:
        value = self.cfg.get(key, default)
        if not isinstance(value, bool):
            self.bad.append(f"{key}={value!r} (expected true/false)")
            return default
        return value

    def check(self) -> None:
        parts = []
        if self.missing:
            parts.append("missing fields: " + ", ".join(sorted(set(self.missing))))
        if self.bad:
            parts.append("bad fields: " + "; ".join(self.bad))
        if parts:
            raise CatalogError(f"{self.origin}: " + "; ".join(parts))


def _windows(r: _Reader, n_layers: int, model_type: str
             ) -> tuple[tuple[str, ...], tuple[int | None, ...]]:
    cfg = r.cfg
    window = r.opt_int("sliding_window")
    if model_type in ("qwen2", "qwen2_moe", "qwen3", "qwen3_moe"):
        if not r.bool_("use_sliding_window", False):
            return ("full",) * n_layers, (None,) * n_layers
        first_full = r.opt_int("max_window_layers") or n_layers
        wins = tuple(window if i >= first_full else None for i in range(n_layers))
    elif model_type == "gemma2":
        # transformers Gemma2DecoderLayer: is_sliding = not bool(layer_idx % 2)
        wins = tuple(window if i % 2 == 0 else None for i in range(n_layers))
    elif model_type in ("gpt_oss", "qwen3_next", "llama4_text", "gemma3_text",
                        "mllama_text_model") or cfg.get("layer_types"):
        return hf_arch.layer_types(r, n_layers, model_type, str(cfg.get("model_type")))
    else:
        wins = (window,) * n_layers
    return tuple("full" if w is None else "sliding" for w in wins), wins


def _gptj(r: _Reader, name: str) -> dict[str, Any]:
    h = r.int_("n_embd")
    n_layers = r.int_("n_layer")
    heads = r.int_("n_head")
    inner = r.cfg.get("n_inner") or 4 * h
    return dict(
        hidden_size=h, num_layers=n_layers, num_heads=heads, num_kv_heads=heads,
        head_dim=h // heads, intermediate_size=inner, vocab_size=r.int_("vocab_size"),
        max_context=r.int_("n_positions"), gated_mlp=False, mlp_bias=True, qkv_bias=False,
        o_bias=False, lm_head_bias=True, qk_norm=False, norms_per_layer=1,
        norm_has_bias=True, sliding_windows=(None,) * n_layers,
    )


def _decoder(r: _Reader, model_type: str) -> dict[str, Any]:
    cfg = r.cfg
    h = r.int_("hidden_size")
    n_layers = r.int_("num_hidden_layers")
    heads = r.int_("num_attention_heads")
    kv_heads = r.int_("num_key_value_heads", heads)
    if kv_heads > heads or heads % kv_heads:
        r.bad.append(f"num_key_value_heads={kv_heads} (expected a divisor of "
                     f"num_attention_heads={heads}: each KV head serves a group of query heads)")
    head_dim = r.int_("head_dim") if cfg.get("head_dim") is not None else max(1, h // heads)
    if model_type in _MLA:  # MLA: the per-head query/key width
        head_dim = (cfg.get("qk_nope_head_dim") or 0) + (cfg.get("qk_rope_head_dim") or 0)
    bias = r.bool_("attention_bias", False)
    qkv_bias = model_type in ("qwen2", "qwen2_moe") or bias
    # Glm4MoeAttention: o_proj has no bias whatever attention_bias says
    o_bias = model_type not in ("qwen2", "qwen2_moe", "glm4_moe") and bias
    kinds, windows = _windows(r, n_layers, model_type)
    qk_norm = model_type in _QK_NORM or (
        model_type in ("glm4_moe", "minimax_m2") and r.bool_("use_qk_norm", False))
    inter_key = "intermediate_size_mlp" if model_type == "llama4_text" else "intermediate_size"
    return dict(
        hidden_size=h, num_layers=n_layers, num_heads=heads, num_kv_heads=kv_heads,
        # an all-MoE model may name no dense width (Qwen3.5-MoE): the experts' stands in
        head_dim=head_dim, intermediate_size=r.int_(inter_key, cfg.get("moe_intermediate_size")),
        vocab_size=r.int_("vocab_size"), max_context=r.int_("max_position_embeddings"),
        gated_mlp=True, mlp_bias=r.bool_("mlp_bias", False), qkv_bias=qkv_bias,
        o_bias=o_bias, lm_head_bias=False, qk_norm=qk_norm,
        norms_per_layer=4 if model_type in ("gemma2", "gemma3_text") else 2,
        norm_has_bias=False, sliding_windows=windows, layer_types=kinds,
        attention_sinks=model_type == "gpt_oss",
        attn_output_gate=model_type == "qwen3_next" and r.bool_("attn_output_gate", True),
        qk_norm_width=(heads + kv_heads) * head_dim if model_type == "minimax_m2"
        and cfg.get("qk_norm_type") == "per_layer" else 0,
    )


def _sparse_layers(r: _Reader, n_layers: int) -> tuple[bool, ...]:
    step = r.opt_int("decoder_sparse_step") or 1
    dense = set(r.cfg.get("mlp_only_layers") or [])
    return tuple(i not in dense and (i + 1) % step == 0 for i in range(n_layers))


def _moe(r: _Reader, model_type: str, n_layers: int) -> MoeSpec | None:
    cfg = r.cfg
    if model_type in ("mixtral", "gpt_oss", "minimax_m2"):
        expert = r.int_("intermediate_size")
        return MoeSpec(
            num_experts=r.int_("num_local_experts"),
            experts_per_token=r.int_("num_experts_per_tok"), expert_intermediate_size=expert,
            shared_intermediate_size=r.opt_int("shared_intermediate_size") or 0,
            shared_expert_gate=False,
            router_bias=model_type == "gpt_oss" or (model_type == "minimax_m2"
                                                    and r.bool_("use_routing_bias", False)),
            moe_layers=(True,) * n_layers, expert_bias=model_type == "gpt_oss")
    if model_type == "llama4_text":
        # transformers Llama4TextConfig: MoE every interleave_moe_layer_step layers (from
        # step - 1), one shared expert of the experts' width beside them
        step = r.opt_int("interleave_moe_layer_step") or 1
        moe = set(cfg.get("moe_layers") or range(step - 1, n_layers, step))
        expert = r.int_("intermediate_size")
        return MoeSpec(
            num_experts=r.int_("num_local_experts"),
            experts_per_token=r.int_("num_experts_per_tok"), expert_intermediate_size=expert,
            shared_intermediate_size=expert, shared_expert_gate=False, router_bias=False,
            moe_layers=tuple(i in moe for i in range(n_layers)))
    if model_type in ("qwen2_moe", "qwen3_moe", "qwen3_next"):
        if cfg.get("num_experts") is None and model_type == "qwen3_next":
            return None  # Qwen3.5 dense (27B): one MLP per layer
        return MoeSpec(
            num_experts=r.int_("num_experts"), experts_per_token=r.int_("num_experts_per_tok"),
            expert_intermediate_size=r.int_("moe_intermediate_size"),
            shared_intermediate_size=r.opt_int("shared_expert_intermediate_size") or 0,
            shared_expert_gate=model_type in ("qwen2_moe", "qwen3_next"), router_bias=False,
            moe_layers=_sparse_layers(r, n_layers))
    if model_type in (*_MLA, "glm4_moe"):
        first_dense = r.opt_int("first_k_dense_replace") or 0
        freq = r.opt_int("moe_layer_freq") or 1
        expert = r.int_("moe_intermediate_size")
        return MoeSpec(
            num_experts=r.int_("n_routed_experts"), experts_per_token=r.int_("num_experts_per_tok"),
            expert_intermediate_size=expert,
            shared_intermediate_size=(r.opt_int("n_shared_experts") or 0) * expert,
            shared_expert_gate=False, router_bias=model_type != "deepseek_v2",
            moe_layers=tuple(i >= first_dense and i % freq == 0 for i in range(n_layers)))
    return None


def _mla(r: _Reader) -> MlaSpec:
    return MlaSpec(
        q_lora_rank=r.opt_int("q_lora_rank") or 0, kv_lora_rank=r.int_("kv_lora_rank"),
        qk_nope_head_dim=r.int_("qk_nope_head_dim"), qk_rope_head_dim=r.int_("qk_rope_head_dim"),
        v_head_dim=r.int_("v_head_dim"))


def spec_from_hf_config(cfg: Config, *, origin: str, name: str | None = None,
                        meta: Mapping[str, Any] | None = None) -> ModelSpec:
    """Build a `ModelSpec` from a config.json dict. ``origin`` names the file in errors."""
    if not isinstance(cfg, Mapping):
        raise CatalogError(f"{origin}: a config.json must be a JSON object")
    if cfg.get("model_type") not in SUPPORTED_MODEL_TYPES:
        raise CatalogError(
            f"{origin}: model_type={cfg.get('model_type')!r} is not modeled by kvopt; "
            "supported: " + ", ".join(SUPPORTED_MODEL_TYPES))
    text, vision_cfg, outer = hf_arch.unwrap(cfg)
    model_type = hf_arch.family(str(text.get("model_type")))
    if model_type not in _TIE_DEFAULT:
        raise CatalogError(f"{origin}: the language model's model_type={text.get('model_type')!r}"
                           " is not modeled by kvopt")
    r = _Reader(text, origin)
    fields = _gptj(r, model_type) if model_type == "gptj" else _decoder(r, model_type)
    n_layers = fields["num_layers"]
    moe = _moe(r, model_type, n_layers)
    mla = _mla(r) if model_type in _MLA else None
    tie = r.bool_("tie_word_embeddings", _TIE_DEFAULT[model_type])
    linear = hf_arch.linear_spec(r, model_type)
    indexer = hf_arch.indexer_spec(r, model_type)
    quant = hf_arch.checkpoint_quant(r)
    meta = meta or {}
    vision = None
    if vision_cfg is not None:
        vision = vision_spec(vision_cfg, outer=outer, top=cfg, text_hidden=fields["hidden_size"],
                             meta=meta, reader_bad=r.bad)
    r.check()
    spec_name = name or str(meta.get("name") or cfg.get("_name_or_path") or origin)
    fp8_scaling, fp8_ckpt = _fp8_checkpoint(quant, meta, origin)
    try:
        return ModelSpec(
            name=spec_name, model_type=str(cfg.get("model_type")),
            source=str(meta.get("source", origin)), tie_embeddings=tie, mla=mla, moe=moe,
            linear=linear, indexer=indexer, checkpoint=quant, vision=vision,
            fp8_scaling=fp8_scaling, fp8_checkpoint=fp8_ckpt,
            params_published=_opt_float(meta.get("params_published")),
            active_params_published=_opt_float(meta.get("active_params_published")),
            hf_id=str(meta.get("hf_id", "")),
            aliases=tuple(str(a) for a in meta.get("aliases", ()) or ()),
            **fields,
        )
    except ValueError as exc:
        raise CatalogError(f"{origin}: {exc}") from None


def _fp8_checkpoint(quant: CheckpointQuant | None, meta: Mapping[str, Any], origin: str
                    ) -> tuple[str, str]:
    """(scaling, Hub id) of the publisher's FP8 checkpoint: the config's own
    ``quantization_config`` when it is that checkpoint (id ""), else the card's
    ``kvopt.fp8_checkpoint: {scaling, checkpoint, source}`` (a bf16 config whose publisher
    also ships FP8 weights); ("", "") when neither says."""
    if quant is not None and quant.weights == "fp8" and quant.fp8_scaling:
        return quant.fp8_scaling, ""
    node = meta.get("fp8_checkpoint")
    if node is None:
        return "", ""
    if (not isinstance(node, dict) or node.get("scaling") not in FP8_SCALINGS
            or not node.get("source") or not isinstance(node.get("checkpoint", ""), str)):
        raise CatalogError(f"{origin}: kvopt.fp8_checkpoint must be {{scaling: one of "
                           f"{', '.join(FP8_SCALINGS)}, checkpoint: its Hub id, source: where "
                           "the checkpoint says so}")
    return str(node["scaling"]), str(node.get("checkpoint", ""))


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)
