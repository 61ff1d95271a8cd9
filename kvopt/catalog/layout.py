"""The per-layer layout of a model, for people: which token mixer each layer runs (full,
sliding-window, chunked, linear or cross attention; MLA, sparse-attention top-k, sinks,
gated output) and which MLP (dense or MoE), the layers of one combination in one row."""

from __future__ import annotations

from typing import Any

from kvopt.catalog.model_spec import ModelSpec


def _mixer(m: ModelSpec, i: int) -> str:
    kind = m.kinds[i]
    if kind == "linear" and m.linear is not None:
        a = m.linear
        return (f"linear (Gated DeltaNet, {a.num_value_heads} v / {a.num_key_heads} k heads "
                f"of {a.value_head_dim}/{a.key_head_dim}, conv {a.conv_kernel})")
    if kind == "cross":
        return f"cross-attention to image tokens ({m.num_heads} q / {m.num_kv_heads} kv heads)"
    window = m.sliding_windows[i]
    what = {"full": "full", "sliding": f"sliding window {window}",
            "chunked": f"chunked local {window}"}[kind]
    if m.mla is not None:
        heads = f"MLA {m.num_heads} heads, latent {m.mla.kv_lora_rank}+{m.mla.qk_rope_head_dim}"
    else:
        heads = f"{m.attention_kind} {m.num_heads} q / {m.num_kv_heads} kv heads of {m.head_dim}"
    extras = []
    if m.indexer is not None:
        extras.append(f"sparse top-{m.indexer.topk} (indexer {m.indexer.heads}x"
                      f"{m.indexer.head_dim})")
    if m.attention_sinks:
        extras.append("sinks")
    if m.attn_output_gate:
        extras.append("gated output")
    return f"{what} ({', '.join([heads, *extras])})"


def _mlp(m: ModelSpec, i: int) -> str:
    e = m.moe
    if e is not None and e.moe_layers[i]:
        shared = f" + shared {e.shared_intermediate_size}" if e.shared_intermediate_size else ""
        return (f"MoE {e.num_experts} x {e.expert_intermediate_size}, top-{e.experts_per_token}"
                f"{shared}")
    return f"dense {m.intermediate_size}"


def _ranges(idx: list[int]) -> str:
    parts, start = [], idx[0]
    for a, b in zip(idx, [*idx[1:], None], strict=True):
        if b != a + 1:
            parts.append(str(start) if start == a else f"{start}-{a}")
            start = b if b is not None else a
    return ", ".join(parts)


def _indices(idx: list[int]) -> str:
    """Layer indices compactly: ``0-35``, ``0-34 step 2``, ``0-46 with i % 4 in 0,1,2``."""
    lo, hi = idx[0], idx[-1]
    if len(idx) == hi - lo + 1:
        return str(lo) if lo == hi else f"{lo}-{hi}"
    for period in range(2, 9):
        residues = sorted({i % period for i in idx})
        if len(residues) < period and idx == [i for i in range(lo, hi + 1)
                                               if i % period in residues]:
            if len(residues) == 1:
                return f"{lo}-{hi} step {period}"
            return f"{lo}-{hi} with i % {period} in {','.join(map(str, residues))}"
    return _ranges(idx)


def layer_layout(m: ModelSpec) -> list[dict[str, Any]]:
    """Rows ``{"layers": "0-34 step 2", "count": 18, "attention": ..., "mlp": ...}``: the
    layers running one (mixer, MLP) combination, in order of their first layer."""
    groups: dict[tuple[str, str], list[int]] = {}
    for i in range(m.num_layers):
        groups.setdefault((_mixer(m, i), _mlp(m, i)), []).append(i)
    return [{"layers": _indices(idx), "count": len(idx), "attention": mixer, "mlp": mlp}
            for (mixer, mlp), idx in groups.items()]


def layout_summary(m: ModelSpec) -> dict[str, int]:
    """Layers of each type (full, sliding, chunked, linear, cross)."""
    out: dict[str, int] = {}
    for k in m.kinds:
        out[k] = out.get(k, 0) + 1
    return out
