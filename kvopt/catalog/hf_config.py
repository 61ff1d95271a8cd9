"""Turn a Hugging Face ``config.json`` (a plain dict; never executed) into a `ModelSpec`.

Each supported ``model_type`` maps the config's field names onto the same facts. Defaults
are those of the matching ``transformers`` configuration class when the config omits a
field (e.g. Gemma-2 ties embeddings by default).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from kvopt.catalog.model_spec import MlaSpec, ModelSpec, MoeSpec
from kvopt.errors import CatalogError

Config = Mapping[str, Any]

# model_type -> (family handled, transformers default for tie_word_embeddings)
_TIE_DEFAULT = {
    "llama": False, "mistral": False, "mixtral": False, "qwen2": False, "qwen3": False,
    "qwen2_moe": False, "qwen3_moe": False, "gemma2": True, "phi3": False, "gptj": False,
    "deepseek_v2": False, "deepseek_v3": False,
}
SUPPORTED_MODEL_TYPES = tuple(sorted(_TIE_DEFAULT))


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
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            self.bad.append(f"{key}={value!r} (expected a positive integer)")
            return 1
        return value

    def opt_int(self, key: str) -> int | None:
        value = self.cfg.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            self.bad.append(f"{key}={value!r} (expected a non-negative integer or null)")
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


def _windows(r: _Reader, n_layers: int, model_type: str) -> tuple[int | None, ...]:
    cfg = r.cfg
    window = r.opt_int("sliding_window")
    if model_type in ("qwen2", "qwen2_moe", "qwen3", "qwen3_moe"):
        if not r.bool_("use_sliding_window", False):
            return (None,) * n_layers
        first_full = r.opt_int("max_window_layers") or n_layers
        return tuple(window if i >= first_full else None for i in range(n_layers))
    if model_type == "gemma2":
        # transformers Gemma2DecoderLayer: is_sliding = not bool(layer_idx % 2)
        return tuple(window if i % 2 == 0 else None for i in range(n_layers))
    if cfg.get("layer_types"):
        types = cfg["layer_types"]
        return tuple(window if t == "sliding_attention" else None for t in types)
    return (window,) * n_layers


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
    h = r.int_("hidden_size")
    n_layers = r.int_("num_hidden_layers")
    heads = r.int_("num_attention_heads")
    kv_heads = r.int_("num_key_value_heads", heads)
    head_dim = r.cfg.get("head_dim") or (h // heads if heads else 1)
    if model_type.startswith("deepseek"):  # MLA: the per-head query/key width
        head_dim = (r.cfg.get("qk_nope_head_dim") or 0) + (r.cfg.get("qk_rope_head_dim") or 0)
    qkv_bias = model_type in ("qwen2", "qwen2_moe") or r.bool_("attention_bias", False)
    return dict(
        hidden_size=h, num_layers=n_layers, num_heads=heads, num_kv_heads=kv_heads,
        head_dim=head_dim, intermediate_size=r.int_("intermediate_size"),
        vocab_size=r.int_("vocab_size"), max_context=r.int_("max_position_embeddings"),
        gated_mlp=True, mlp_bias=r.bool_("mlp_bias", False), qkv_bias=qkv_bias,
        o_bias=model_type not in ("qwen2", "qwen2_moe") and r.bool_("attention_bias", False),
        lm_head_bias=False, qk_norm=model_type in ("qwen3", "qwen3_moe"),
        norms_per_layer=4 if model_type == "gemma2" else 2, norm_has_bias=False,
        sliding_windows=_windows(r, n_layers, model_type),
    )


def _sparse_layers(r: _Reader, n_layers: int) -> tuple[bool, ...]:
    step = r.opt_int("decoder_sparse_step") or 1
    dense = set(r.cfg.get("mlp_only_layers") or [])
    return tuple(i not in dense and (i + 1) % step == 0 for i in range(n_layers))


def _moe(r: _Reader, model_type: str, n_layers: int) -> MoeSpec | None:
    if model_type == "mixtral":
        return MoeSpec(
            num_experts=r.int_("num_local_experts"),
            experts_per_token=r.int_("num_experts_per_tok"),
            expert_intermediate_size=r.int_("intermediate_size"), shared_intermediate_size=0,
            shared_expert_gate=False, router_bias=False, moe_layers=(True,) * n_layers)
    if model_type in ("qwen2_moe", "qwen3_moe"):
        return MoeSpec(
            num_experts=r.int_("num_experts"), experts_per_token=r.int_("num_experts_per_tok"),
            expert_intermediate_size=r.int_("moe_intermediate_size"),
            shared_intermediate_size=r.opt_int("shared_expert_intermediate_size") or 0,
            shared_expert_gate=model_type == "qwen2_moe", router_bias=False,
            moe_layers=_sparse_layers(r, n_layers))
    if model_type in ("deepseek_v2", "deepseek_v3"):
        first_dense = r.opt_int("first_k_dense_replace") or 0
        freq = r.opt_int("moe_layer_freq") or 1
        expert = r.int_("moe_intermediate_size")
        return MoeSpec(
            num_experts=r.int_("n_routed_experts"), experts_per_token=r.int_("num_experts_per_tok"),
            expert_intermediate_size=expert,
            shared_intermediate_size=(r.opt_int("n_shared_experts") or 0) * expert,
            shared_expert_gate=False, router_bias=model_type == "deepseek_v3",
            moe_layers=tuple(i >= first_dense and i % freq == 0 for i in range(n_layers)))
    return None


def _mla(r: _Reader) -> MlaSpec:
    return MlaSpec(
        q_lora_rank=r.opt_int("q_lora_rank") or 0, kv_lora_rank=r.int_("kv_lora_rank"),
        qk_nope_head_dim=r.int_("qk_nope_head_dim"), qk_rope_head_dim=r.int_("qk_rope_head_dim"),
        v_head_dim=r.int_("v_head_dim"))


_FAMILY: dict[str, Callable[[_Reader, str], dict[str, Any]]] = {"gptj": _gptj}


def spec_from_hf_config(cfg: Config, *, origin: str, name: str | None = None,
                        meta: Mapping[str, Any] | None = None) -> ModelSpec:
    """Build a `ModelSpec` from a config.json dict. ``origin`` names the file in errors."""
    if not isinstance(cfg, Mapping):
        raise CatalogError(f"{origin}: a config.json must be a JSON object")
    model_type = cfg.get("model_type")
    if model_type not in _TIE_DEFAULT:
        raise CatalogError(
            f"{origin}: model_type={model_type!r} is not modeled by kvopt; supported: "
            + ", ".join(SUPPORTED_MODEL_TYPES))
    r = _Reader(cfg, origin)
    fields = _FAMILY.get(model_type, _decoder)(r, model_type)
    n_layers = fields["num_layers"]
    moe = _moe(r, model_type, n_layers)
    mla = _mla(r) if model_type.startswith("deepseek") else None
    tie = r.bool_("tie_word_embeddings", _TIE_DEFAULT[model_type])
    r.check()
    meta = meta or {}
    spec_name = name or str(meta.get("name") or cfg.get("_name_or_path") or origin)
    try:
        return ModelSpec(
            name=spec_name, model_type=model_type, source=str(meta.get("source", origin)),
            tie_embeddings=tie, mla=mla, moe=moe,
            params_published=_opt_float(meta.get("params_published")),
            active_params_published=_opt_float(meta.get("active_params_published")),
            hf_id=str(meta.get("hf_id", "")),
            aliases=tuple(str(a) for a in meta.get("aliases", ()) or ()),
            **fields,
        )
    except ValueError as exc:
        raise CatalogError(f"{origin}: {exc}") from None


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)
