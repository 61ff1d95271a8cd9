"""`ModelSpec`: the architecture facts the physics needs, independent of the config format.

Layers are typed (``layer_types``): ``full`` (causal softmax attention over the whole
context), ``sliding`` (a window of the last ``sliding_windows[i]`` tokens), ``chunked``
(Llama-4 local attention inside chunks of ``sliding_windows[i]`` tokens), ``linear`` (Gated
DeltaNet: a fixed recurrent state per sequence, no KV cache) and ``cross`` (Llama-3.2-Vision:
attention over the image tokens of the request, no self-attention KV)."""

from __future__ import annotations

from dataclasses import dataclass, field

LAYER_TYPES = ("full", "sliding", "chunked", "linear", "cross")


# how FP8 activations are scaled (a checkpoint's or an engine's quantization recipe):
# "static" (per-tensor scales calibrated offline: TensorRT Model Optimizer's FP8), "dynamic"
# (computed per tensor or token at run time: vLLM's online FP8, llm-compressor FP8_DYNAMIC),
# "block" (DeepSeek-style 128x128 weight blocks, 1x128 activation groups quantized at run time)
FP8_SCALINGS = ("static", "dynamic", "block")


@dataclass(frozen=True, kw_only=True)
class MlaSpec:
    """Multi-head latent attention (DeepSeek-V2/V3) dimensions."""

    q_lora_rank: int  # 0 = queries projected directly from the hidden state
    kv_lora_rank: int
    qk_nope_head_dim: int
    qk_rope_head_dim: int
    v_head_dim: int


@dataclass(frozen=True, kw_only=True)
class LinearAttnSpec:
    """Gated DeltaNet linear attention (Qwen3-Next, Qwen3.5): per layer a recurrent state of
    ``num_value_heads x value_head_dim x key_head_dim`` values and a short-convolution state of
    ``conv_kernel - 1`` steps over the q, k, v channels, instead of a growing KV cache."""

    num_key_heads: int
    num_value_heads: int
    key_head_dim: int
    value_head_dim: int
    conv_kernel: int
    state_value_bytes: float  # bytes per recurrent-state value (fp32 4, bf16 2)
    separate_projections: bool = False  # Qwen3.5: in_proj_qkv/z/b/a (same sizes)

    @property
    def key_dim(self) -> int:
        return self.num_key_heads * self.key_head_dim

    @property
    def value_dim(self) -> int:
        return self.num_value_heads * self.value_head_dim

    @property
    def conv_dim(self) -> int:
        """Channels of the short convolution: q and k (``key_dim`` each) and v."""
        return 2 * self.key_dim + self.value_dim


@dataclass(frozen=True, kw_only=True)
class IndexerSpec:
    """DeepSeek sparse attention's lightning indexer (DeepSeek-V3.2, GLM-5): ``heads`` small
    query heads score every cached token with one ``head_dim`` key per token (its own FP8
    cache), and the attention reads only the ``topk`` best keys per query."""

    heads: int
    head_dim: int
    topk: int
    key_bytes: float  # cache bytes per token per layer (FP8 key + its fp32 scale)


@dataclass(frozen=True, kw_only=True)
class CheckpointQuant:
    """A quantized checkpoint's own format (its ``quantization_config``): the default weight
    precision, and the components it keeps in 16 bit."""

    method: str  # the config's quant_method (mxfp4, fp8, compressed-tensors, ...)
    weights: str  # the kvopt weight precision it is (mxfp4, fp8, int4)
    keep_16bit: tuple[str, ...] = ()  # attention, shared_experts, dense_mlp (beyond the
    # precision's own embedding/lm_head/norms)
    bits_per_weight: float = 0.0  # the checkpoint's own bits (scales included); 0: the format's
    fp8_scaling: str = ""  # an fp8 checkpoint's activation scaling (FP8_SCALINGS; "": unknown)


@dataclass(frozen=True, kw_only=True)
class VisionSpec:
    """A vision encoder and its projector, and how an image becomes LLM tokens.

    ``kind`` picks the image-token rule (:mod:`kvopt.physics.vision`): ``qwen_vl`` (native
    resolution: ``patch_size`` patches, ``merge x merge`` merged into one token, the image
    resized within ``[min_pixels, max_pixels]``), ``fixed`` (resized to ``image_size``
    square: ``tokens_per_image`` tokens), ``tiles`` (Llama-3.2-Vision: up to ``max_tiles``
    tiles of ``image_size`` px, each ``(image_size / patch_size)^2 + 1`` tokens, attended by
    the cross-attention layers)."""

    kind: str
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    gated_mlp: bool
    patch_size: int
    image_size: int  # fixed/tiles: the side an image (tile) is resized to
    out_hidden_size: int  # the LLM hidden size the projector writes
    projector_params: int
    projector_flops_per_token: float  # FLOPs of the projector per LLM image token
    temporal_patch: int = 1  # qwen_vl: frames per patch (an image is repeated)
    merge: int = 1  # qwen_vl: spatial merge; fixed: pooling of the patch grid
    tokens_per_image: int = 0  # fixed: LLM tokens per image
    extra_tokens_per_image: int = 0  # special tokens around each image in the prompt
    min_pixels: int = 0
    max_pixels: int = 0
    max_tiles: int = 1
    class_token: bool = False
    window_patches: int = 0  # qwen2.5-vl: patches per attention window (0: global)
    full_attention_layers: int = 0  # qwen2.5-vl: layers attending globally
    extra_params: int = 0  # embeddings and extra layers beyond the blocks
    used_layers: int = 0  # layers run to get the features (llava: penultimate); 0 = all
    source: str = ""


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
    expert_bias: bool = False  # gpt-oss: biases on each expert's gate/up and down


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
    layer_types: tuple[str, ...] = ()  # per layer (see the module docstring); () = from
    # sliding_windows (sliding where a window is set, else full)
    attention_sinks: bool = False  # gpt-oss: a learned sink logit per head
    attn_output_gate: bool = False  # Qwen3-Next/3.5: q_proj also writes a sigmoid gate
    qk_norm_width: int = 0  # MiniMax-M2: q/k norms over all heads (0: per head_dim)
    linear: LinearAttnSpec | None = None
    indexer: IndexerSpec | None = None
    checkpoint: CheckpointQuant | None = None
    # the activation scaling of the FP8 checkpoint the model's publisher ships (its own
    # quantization_config, or the card's kvopt.fp8_checkpoint); "": none published
    fp8_scaling: str = ""
    fp8_checkpoint: str = ""  # that checkpoint's Hub id, when it is not this config's own
    vision: VisionSpec | None = None
    params_published: float | None = None
    active_params_published: float | None = None
    hf_id: str = ""
    aliases: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        for name in ("hidden_size", "num_layers", "num_heads", "num_kv_heads", "head_dim",
                     "vocab_size", "max_context"):
            if getattr(self, name) <= 0:
                raise ValueError(f"ModelSpec.{name} must be positive, got {getattr(self, name)}")
        if self.fp8_scaling and self.fp8_scaling not in FP8_SCALINGS:
            raise ValueError(f"fp8 scaling {self.fp8_scaling!r} must be one of "
                             f"{', '.join(FP8_SCALINGS)}")
        if len(self.sliding_windows) != self.num_layers:
            raise ValueError("ModelSpec.sliding_windows needs one entry per layer")
        if self.moe is not None and len(self.moe.moe_layers) != self.num_layers:
            raise ValueError("MoeSpec.moe_layers needs one entry per layer")
        if self.layer_types:
            if len(self.layer_types) != self.num_layers:
                raise ValueError("ModelSpec.layer_types needs one entry per layer")
            bad = sorted(set(self.layer_types) - set(LAYER_TYPES))
            if bad:
                raise ValueError(f"layer types {', '.join(bad)} are not modeled; kvopt "
                                 f"models {', '.join(LAYER_TYPES)}")
            if "linear" in self.layer_types and self.linear is None:
                raise ValueError("linear-attention layers need their LinearAttnSpec")
            if all(t in ("linear", "cross") for t in self.layer_types):
                raise ValueError("a model needs at least one self-attention layer")

    @property
    def kinds(self) -> tuple[str, ...]:
        """The type of each layer: ``full``, ``sliding``, ``chunked``, ``linear``, ``cross``."""
        if self.layer_types:
            return self.layer_types
        return tuple("full" if w is None else "sliding" for w in self.sliding_windows)

    @property
    def default_weights(self) -> str:
        """The weight precision the checkpoint ships in (its quantization_config), else bf16."""
        return self.checkpoint.weights if self.checkpoint is not None else "bf16"

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
