"""Token mixers of one step, grouped by layer type: softmax attention (full, sliding,
chunked; MLA; DeepSeek sparse attention), Gated DeltaNet linear attention and cross-attention
to the request's image tokens. Per GPU; arrays broadcast.

A group's work in one step (``L`` layers alike; per sequence ``c`` cached keys):

* softmax attention: a decode query reads ``min(c + 1, w)`` keys (``w``: the window; DeepSeek
  sparse attention reads its top-k ``w = k`` of them) at ``2 n_h D`` FLOPs each (MLA decode
  absorbed ``D = 2 r_kv + d_rope``, else ``2 d``), and writes its own key; a prefill chunk
  of ``n`` tokens after ``s`` has the causal pairs ``n s + n (n + 1) / 2`` (windowed) and
  reads the held keys. The sparse-attention indexer scores every held key of every query
  (``2 H_i d_i`` FLOPs and its ``IndexerSpec.key_bytes`` key per pair), whatever the top-k.
* linear (Gated DeltaNet): no keys; every sequence reads and writes its recurrent state
  once a step (``2 S`` bytes, :func:`kvopt.physics.memory.linear_state_bytes` per layer);
  FLOPs per token and value head ``7 d_k d_v`` in the recurrent decode form (decay,
  ``S^T k``, the delta-rule update, ``S^T q``) and ``4 d_k d_v + 2 C (2 d_k + d_v)`` in the
  chunkwise prefill form with chunks of ``C`` = 64 tokens (Yang, Kautz, Hatamizadeh, "Gated
  Delta Networks", ICLR 2025, Sec. 3.3; flash-linear-attention's kernels use 64-token
  chunks); plus the short convolution ``2 (2K + V) c`` per token.
* cross-attention (Llama-3.2-Vision): a query reads the request's image keys (fixed: they
  are written once, when the image is encoded) and writes none.

The kernels that run them are priced by fitted curves (generation for decode, context for
prefill) in :mod:`kvopt.physics.roofline` and :mod:`kvopt.serving.stepcost`: softmax
attention by the attention tables' curves; Gated DeltaNet by its own (the ``gdn`` tables:
short convolution plus the chunked or recurrent delta rule) where the GPU's family and engine
have them, else by the attention curves; cross-attention by the attention curves (an
assumption: its kernels stream a fixed key set much as decode attention streams a KV cache).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from kvopt.catalog.model_spec import LinearAttnSpec, ModelSpec
from kvopt.physics.kernels import causal_pairs
from kvopt.physics.memory import HALF_BYTES, KV_KINDS, kv_bytes_per_token_layer
from kvopt.physics.tp import kv_heads_per_gpu

Array = npt.NDArray[np.float64]
GDN_CHUNK = 64  # tokens per chunk of the chunkwise Gated DeltaNet form


@dataclass(frozen=True)
class MixerGroup:
    """``layers`` layers of one token mixer on one GPU (see the module docstring)."""

    kind: str  # attention | linear | cross
    layers: int
    window: float  # keys a query reads at most (np.inf: all)
    kv_bytes_per_key: float  # bytes of one key read (and written) per layer
    flops_per_pair_decode: float
    flops_per_pair_prefill: float
    qo_bytes_decode: float  # query in + output out per query token
    qo_bytes_prefill: float
    mla: bool = False
    writes_keys: bool = True  # cross-attention keys are written by the encoder, not here
    fixed_keys: float = 0.0  # cross: image keys per sequence
    index_flops_per_pair: float = 0.0  # sparse attention's indexer
    index_bytes_per_key: float = 0.0
    state_bytes: float = 0.0  # linear: recurrent + convolution state of one sequence, bytes
    flops_per_token_decode: float = 0.0
    flops_per_token_prefill: float = 0.0

    def keys(self, held: Any) -> Array:
        """Keys one query reads with ``held`` tokens cached (this one included)."""
        if self.kind == "linear":
            return np.zeros_like(np.asarray(held, dtype=np.float64))
        if self.kind == "cross":
            return np.full_like(np.asarray(held, dtype=np.float64), self.fixed_keys)
        return np.asarray(np.minimum(held, self.window))

    def decode_work(self, *, keys: Any, held: Any, seqs: Any, pad_tokens: float
                    ) -> tuple[Array, Array]:
        """(FLOPs, bytes) of one layer's decode for ``seqs`` sequences whose queries read
        ``keys`` keys in all (:meth:`keys` summed) with ``held`` tokens cached in all, each
        sequence padded by ``pad_tokens`` virtual keys (the kernels' fixed cost)."""
        s = np.asarray(seqs, dtype=np.float64)
        h = np.asarray(held, dtype=np.float64)
        if self.kind == "linear":
            return (np.asarray(s * self.flops_per_token_decode),
                    np.asarray(s * (2.0 * self.state_bytes + self.qo_bytes_decode)))
        k = np.asarray(keys, dtype=np.float64) + s * pad_tokens
        write = self.kv_bytes_per_key if self.writes_keys else 0.0
        flops = self.flops_per_pair_decode * k + self.index_flops_per_pair * h
        nbytes = (k * self.kv_bytes_per_key + s * (write + self.qo_bytes_decode)
                  + self.index_bytes_per_key * (h + s))
        return np.asarray(flops), np.asarray(nbytes)

    def prefill_work(self, *, new: Any, past: Any, pad_tokens: float) -> tuple[Array, Array]:
        """(FLOPs, bytes) of one layer's attention over prefill chunks of ``new`` tokens after
        ``past`` cached ones (one entry a chunk), the queries padded by ``pad_tokens``."""
        n = np.asarray(new, dtype=np.float64)
        s = np.asarray(past, dtype=np.float64)
        on = n > 0
        if self.kind == "linear":
            return (np.asarray(np.where(on, n * self.flops_per_token_prefill, 0.0)),
                    np.asarray(np.where(on, 2.0 * self.state_bytes + n * self.qo_bytes_prefill,
                                        0.0)))
        if self.kind == "cross":
            pairs = (n + pad_tokens) * self.fixed_keys
            return (np.asarray(np.where(on, self.flops_per_pair_prefill * pairs, 0.0)),
                    np.asarray(np.where(on, self.fixed_keys * self.kv_bytes_per_key
                                        + n * self.qo_bytes_prefill, 0.0)))
        pairs = np.where(on, causal_pairs(n + pad_tokens, s, self.window), 0.0)
        held = np.minimum(s + n, self.window)
        flops = self.flops_per_pair_prefill * pairs
        nbytes = (held + n) * self.kv_bytes_per_key + n * self.qo_bytes_prefill
        if self.index_flops_per_pair:
            flops = flops + self.index_flops_per_pair * np.where(on, causal_pairs(n, s, None),
                                                                 0.0)
            nbytes = nbytes + self.index_bytes_per_key * (s + 2 * n)
        return np.asarray(flops), np.asarray(np.where(on, nbytes, 0.0))


def linear_group(a: LinearAttnSpec, *, tp: float, layers: int, act_bytes: float
                 ) -> MixerGroup:
    """``layers`` Gated DeltaNet layers of ``a`` on one GPU of a TP group of ``tp`` (heads
    split ``tp`` ways; see the module docstring for the work)."""
    hv = a.num_value_heads / tp
    conv = 2.0 * a.conv_dim / tp * a.conv_kernel
    state = (a.conv_dim / tp * (a.conv_kernel - 1) * HALF_BYTES
             + hv * a.value_head_dim * a.key_head_dim * a.state_value_bytes)
    dkdv = a.key_head_dim * a.value_head_dim
    io = (a.conv_dim + 2 * a.num_value_heads + a.value_dim) / tp * act_bytes
    return MixerGroup(
        kind="linear", layers=layers, window=0.0, kv_bytes_per_key=0.0,
        flops_per_pair_decode=0.0, flops_per_pair_prefill=0.0, qo_bytes_decode=io,
        qo_bytes_prefill=io, state_bytes=state,
        flops_per_token_decode=hv * 7.0 * dkdv + conv,
        flops_per_token_prefill=hv * (4.0 * dkdv + 2.0 * GDN_CHUNK * (
            2 * a.key_head_dim + a.value_head_dim)) + conv)


def mixer_groups(model: ModelSpec, *, tp: int, kv_bytes: float, act_bytes: float,
                 cross_keys: float = 0.0) -> list[MixerGroup]:
    """The token-mixer groups of ``model`` on one GPU of a TP group of ``tp``; ``kv_bytes``
    per cached value, ``cross_keys`` image keys per sequence for cross-attention layers."""
    heads = model.num_heads / tp
    if model.mla is not None:
        m = model.mla
        dec_dims = float(2 * m.kv_lora_rank + m.qk_rope_head_dim)  # absorbed
        pre_dims = float(m.qk_nope_head_dim + m.qk_rope_head_dim + m.v_head_dim)
    else:
        dec_dims = pre_dims = 2.0 * model.head_dim
    kv_key = kv_bytes_per_token_layer(model, tp, kv_bytes)
    ix = model.indexer
    index_bytes = ix.key_bytes if ix is not None else 0.0
    groups: list[MixerGroup] = []
    counts = Counter((k, w) for k, w in zip(model.kinds, model.sliding_windows, strict=True)
                     if k in KV_KINDS)
    for (kind, window), layers in counts.items():
        w = np.inf if kind == "full" or window is None else float(window)
        if ix is not None:
            w = min(w, float(ix.topk))
        groups.append(MixerGroup(
            kind="attention", layers=layers, window=w, kv_bytes_per_key=kv_key - index_bytes,
            flops_per_pair_decode=2 * heads * dec_dims, flops_per_pair_prefill=2 * heads * pre_dims,
            qo_bytes_decode=heads * dec_dims * act_bytes,
            qo_bytes_prefill=heads * pre_dims * act_bytes, mla=model.mla is not None,
            index_flops_per_pair=2.0 * ix.heads * ix.head_dim if ix is not None else 0.0,
            index_bytes_per_key=index_bytes))
    n_linear = model.kinds.count("linear")
    if n_linear and model.linear is not None:
        groups.append(linear_group(model.linear, tp=tp, layers=n_linear, act_bytes=act_bytes))
    n_cross = model.kinds.count("cross")
    if n_cross:
        kv_cross = 2.0 * kv_heads_per_gpu(model, tp) * model.head_dim * kv_bytes
        dims = 2.0 * model.head_dim
        groups.append(MixerGroup(
            kind="cross", layers=n_cross, window=np.inf, kv_bytes_per_key=kv_cross,
            flops_per_pair_decode=2 * heads * dims, flops_per_pair_prefill=2 * heads * dims,
            qo_bytes_decode=heads * dims * act_bytes, qo_bytes_prefill=heads * dims * act_bytes,
            writes_keys=False, fixed_keys=float(cross_keys)))
    return groups
