"""Parameter counts from the architecture.

Per decoder layer (h = hidden, n_h = heads, n_kv = KV heads, d = head_dim, I = MLP width):

* GQA/MHA/MQA attention: ``h*n_h*d (q) + 2*h*n_kv*d (k, v) + n_h*d*h (o)`` (+ biases)
* MLA (DeepSeek): ``h*r_q + r_q + r_q*n_h*(d_nope+d_rope)`` (or ``h*n_h*(d_nope+d_rope)``
  without a query LoRA) ``+ h*(r_kv+d_rope) + r_kv + r_kv*n_h*(d_nope+d_v) + n_h*d_v*h``
* gated attention (Qwen3-Next): q_proj also writes a gate, ``+ h*n_h*d``; attention sinks
  (gpt-oss): ``+ n_h``; DeepSeek sparse attention's indexer: ``r_q*H_i*d_i + h*d_i + 2*d_i +
  h*H_i`` (query up-projection, key projection, key LayerNorm, head weights)
* Gated DeltaNet (linear layers): ``h*(2*K + 2*V)`` (q, k, v, z) ``+ h*2*H_v`` (beta, decay)
  ``+ (2K + V)*c`` (short convolution) ``+ 2*H_v`` (decay bias, A) ``+ d_v`` (gated norm)
  ``+ V*h`` (out), with ``K = H_k d_k`` and ``V = H_v d_v``
* cross-attention layers (Llama-3.2-Vision): GQA projections + q/k norms + 2 gates
* gated MLP: ``3*h*I``; plain MLP (GPT-J): ``2*h*I + I + h``
* MoE layer: ``E*3*h*I_e`` experts (gpt-oss: ``+ 2*I_e + h`` biases each) + ``h*E`` router
  + shared experts ``3*h*I_s``
* norms: ``h`` each (RMSNorm) or ``2h`` (LayerNorm with bias)

plus the embedding ``V*h``, the LM head ``V*h`` unless tied, the final norm, and a vision
encoder with its projector (:mod:`kvopt.physics.vision`).
Published checks: Llama-3.1-8B 8.03e9, Llama-3.1-70B 70.6e9 (Meta model cards).
"""

from __future__ import annotations

from dataclasses import dataclass

from kvopt.catalog.model_spec import ModelSpec


@dataclass(frozen=True, kw_only=True)
class ParamCounts:
    """Parameter counts by component (counts, not bytes)."""

    embedding: int
    lm_head: int  # 0 when tied to the embedding
    attention: int  # all layers, including attention-side norms in MLA
    dense_mlp: int  # dense MLP layers and shared experts
    experts: int  # routed experts, all of them
    expert_each: int  # one routed expert
    router: int
    norms: int
    moe_layer_count: int
    experts_per_token: int
    vision: int = 0  # vision encoder + projector (multimodal models)
    shared_mlp: int = 0  # the shared experts' part of dense_mlp
    replicated_attention: int = 0  # attention weights every TP rank holds whole

    @property
    def total(self) -> int:
        return (self.embedding + self.lm_head + self.attention + self.dense_mlp + self.experts
                + self.router + self.norms + self.vision)

    @property
    def active(self) -> int:
        """Parameters touched by one generated token: routed experts counted k per MoE layer;
        the vision encoder left out (it runs once per image, not per token)."""
        routed_active = self.moe_layer_count * self.experts_per_token * self.expert_each
        return self.total - self.experts + routed_active - self.vision

    @property
    def matmul_active(self) -> int:
        """Active parameters that take part in matmuls per token, excluding the embedding
        lookup (a gather) and the norms."""
        return self.active - self.embedding - self.norms


def linear_attention_params(m: ModelSpec) -> int:
    """One Gated DeltaNet layer (see the module docstring)."""
    a, h = m.linear, m.hidden_size
    if a is None:
        return 0
    k, v = a.key_dim, a.value_dim
    return (h * (2 * k + 2 * v) + h * 2 * a.num_value_heads + a.conv_dim * a.conv_kernel
            + 2 * a.num_value_heads + a.value_head_dim + v * h)


def indexer_params(m: ModelSpec) -> int:
    """DeepSeek sparse attention's indexer of one layer (0 without one)."""
    ix, h = m.indexer, m.hidden_size
    if ix is None:
        return 0
    rank = m.mla.q_lora_rank if m.mla is not None and m.mla.q_lora_rank else h
    return rank * ix.heads * ix.head_dim + h * ix.head_dim + 2 * ix.head_dim + h * ix.heads


def attention_params_per_layer(m: ModelSpec, kind: str = "full") -> int:
    """Attention weights of one layer of type ``kind`` (projections, biases, q/k norms, MLA
    latent norms, sinks, indexer; a linear layer's Gated DeltaNet)."""
    h = m.hidden_size
    if kind == "linear":
        return linear_attention_params(m)
    if m.mla is not None:
        a = m.mla
        qk = a.qk_nope_head_dim + a.qk_rope_head_dim
        if a.q_lora_rank:
            q = h * a.q_lora_rank + a.q_lora_rank + a.q_lora_rank * m.num_heads * qk
        else:
            q = h * m.num_heads * qk
        kv = (h * (a.kv_lora_rank + a.qk_rope_head_dim) + a.kv_lora_rank
              + a.kv_lora_rank * m.num_heads * (a.qk_nope_head_dim + a.v_head_dim))
        o = m.num_heads * a.v_head_dim * h
        return q + kv + o + indexer_params(m)
    q_out = m.num_heads * m.head_dim
    kv_out = m.num_kv_heads * m.head_dim
    n = h * q_out + 2 * h * kv_out + q_out * h
    if m.attn_output_gate:
        n += h * q_out
    if m.qkv_bias:
        n += q_out + 2 * kv_out
    if m.o_bias:
        n += h
    if m.qk_norm or kind == "cross":
        n += m.qk_norm_width or 2 * m.head_dim
    if m.attention_sinks:
        n += m.num_heads
    if kind == "cross":
        n += 2  # the attention and MLP gates
    return n


def mlp_params(h: int, width: int, *, gated: bool, bias: bool) -> int:
    """One MLP block: gated ``3*h*I`` or plain ``2*h*I``, plus biases."""
    n = (3 if gated else 2) * h * width
    if bias:
        n += (2 * width if gated else width) + h
    return n


def param_counts(m: ModelSpec) -> ParamCounts:
    """Count parameters by component for model ``m``."""
    from kvopt.physics.vision import vision_params

    h, v = m.hidden_size, m.vocab_size
    attention = sum(attention_params_per_layer(m, kind) for kind in m.kinds)
    norm_size = 2 * h if m.norm_has_bias else h
    norms = (m.num_layers * m.norms_per_layer + 1) * norm_size
    dense_mlp = experts = expert_each = router = moe_layers = k = shared = 0
    for i in range(m.num_layers):
        if m.moe is not None and m.moe.moe_layers[i]:
            e = m.moe
            moe_layers += 1
            k = e.experts_per_token
            expert_each = mlp_params(h, e.expert_intermediate_size, gated=True,
                                     bias=e.expert_bias)
            experts += e.num_experts * expert_each
            router += h * e.num_experts + (e.num_experts if e.router_bias else 0)
            if e.shared_intermediate_size:
                shared += mlp_params(h, e.shared_intermediate_size, gated=True, bias=False)
                if e.shared_expert_gate:
                    router += h
        else:
            dense_mlp += mlp_params(h, m.intermediate_size, gated=m.gated_mlp, bias=m.mlp_bias)
    lm_head = 0 if m.tie_embeddings else v * h + (v if m.lm_head_bias else 0)
    # Llama-3.2-Vision's embedding holds 8 image tokens beyond the LM head's vocabulary
    extra_rows = 8 if "cross" in m.kinds else 0
    return ParamCounts(
        embedding=(v + extra_rows) * h, lm_head=lm_head, attention=attention,
        dense_mlp=dense_mlp + shared, shared_mlp=shared, experts=experts,
        expert_each=expert_each, router=router,
        norms=norms, moe_layer_count=moe_layers, experts_per_token=k,
        vision=vision_params(m.vision) if m.vision is not None else 0,
        replicated_attention=sum(replicated_attention_params(m, kind) for kind in m.kinds),
    )


def replicated_attention_params(m: ModelSpec, kind: str = "full") -> int:
    """Attention weights of one layer every TP rank holds whole: MLA's down-projections
    (q_a, kv_a) and their norms, and the sparse-attention indexer (vLLM builds it from
    replicated linear layers)."""
    if m.mla is None or kind == "linear":
        return 0
    a, h = m.mla, m.hidden_size
    q = h * a.q_lora_rank + a.q_lora_rank if a.q_lora_rank else 0
    return q + h * (a.kv_lora_rank + a.qk_rope_head_dim) + a.kv_lora_rank + indexer_params(m)
