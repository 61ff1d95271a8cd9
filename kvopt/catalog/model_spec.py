"""`ModelSpec`: the architecture facts the physics needs, independent of the config format."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, kw_only=True)
class MlaSpec:
    """Multi-head latent attention (DeepSeek-V2/V3) dimensions."""

    q_lora_rank: int  # 0 = queries projected directly from the hidden state
    kv_lora_rank: int
    qk_nope_head_dim: int
    qk_rope_head_dim: int
    v_head_dim: int


@dataclass(frozen=True, kw_only=True)
class MoeSpec:
    """Mixture-of-experts layout. ``moe_layers[i]`` tells whether layer i is sparse."""

    num_experts: int
    experts_per_token: int
    expert_intermediate_size: int
    shared_intermediate_size: int  # total width of always-on shared experts (0 = none)
    shared_expert_gate: bool  # Qwen2-MoE has a sigmoid gate h->1 on the shared expert
    router_bias: bool  # DeepSeek-V3 e_score_correction_bias
    moe_layers: tuple[bool, ...]


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """An LLM architecture. Sizes are counts (not bytes); see :mod:`kvopt.physics.params`."""

    name: str
    model_type: str
    source: str
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int  # dense MLP width (dense layers of MoE models too)
    vocab_size: int
    max_context: int
    tie_embeddings: bool
    gated_mlp: bool
    mlp_bias: bool
    qkv_bias: bool
    o_bias: bool
    lm_head_bias: bool
    qk_norm: bool  # Qwen3 per-head RMSNorm on q and k
    norms_per_layer: int
    norm_has_bias: bool  # LayerNorm (GPT-J) vs RMSNorm
    sliding_windows: tuple[int | None, ...]  # per layer; None = full attention
    mla: MlaSpec | None = None
    moe: MoeSpec | None = None
    params_published: float | None = None
    active_params_published: float | None = None
    hf_id: str = ""
    aliases: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        for name in ("hidden_size", "num_layers", "num_heads", "num_kv_heads", "head_dim",
                     "vocab_size", "max_context"):
            if getattr(self, name) <= 0:
                raise ValueError(f"ModelSpec.{name} must be positive, got {getattr(self, name)}")
        if len(self.sliding_windows) != self.num_layers:
            raise ValueError("ModelSpec.sliding_windows needs one entry per layer")
        if self.moe is not None and len(self.moe.moe_layers) != self.num_layers:
            raise ValueError("MoeSpec.moe_layers needs one entry per layer")

    @property
    def is_moe(self) -> bool:
        return self.moe is not None

    @property
    def attention_kind(self) -> str:
        """``mla``, ``mha``, ``mqa`` or ``gqa``."""
        if self.mla is not None:
            return "mla"
        if self.num_kv_heads == self.num_heads:
            return "mha"
        if self.num_kv_heads == 1:
            return "mqa"
        return "gqa"
