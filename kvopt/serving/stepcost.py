"""Fast step-time model of one replica for continuous-batching steps.

An engine step runs ``n`` decode tokens and ``p`` prefill tokens together. Its time is

    t = linear(n + p) + head(rows) + attention(decode contexts, prefill chunks) + overhead

* ``linear(T)``: every token-parallel op of :func:`kvopt.physics.ops.step_ops` (projections,
  MLP or the experts a batch of T tokens touches, element-wise traffic) plus the TP
  all-reduces, each priced by the roofline of :mod:`kvopt.physics.roofline`, tabulated over a
  geometric grid of T and interpolated (exact at grid points).
* ``head(rows)``: the LM head on one row per sequence that samples a token.
* attention: per layer group (same window), causal (query, key) pairs and KV bytes read and
  written, one roofline op for the whole step. Decode sequences read their whole (windowed)
  context; a prefill chunk of ``c`` tokens after ``s`` cached ones has ``c s + c (c+1)/2``
  pairs (windowed).

The analytic steady state and the discrete-event simulator both price steps with this class,
so they model the same engine.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from kvopt.catalog.model_spec import ModelSpec
from kvopt.physics.efficiency import attention_efficiency, efficiency
from kvopt.physics.memory import kv_bytes_per_token_layer
from kvopt.physics.ops import Op, step_ops
from kvopt.physics.precision import Precision
from kvopt.physics.roofline import op_time, smoothmax, tp_comm_s
from kvopt.serving.replica import Replica

Array = npt.NDArray[np.float64]


_OPS: dict[tuple[object, ...], list[Op]] = {}


def _token_ops(model: ModelSpec, tp: int, precision: Precision, grid: Array) -> list[Op]:
    """:func:`step_ops` of one decode token per sequence over the token grid (they do not
    depend on the GPU: replicas on different GPUs share them; cached)."""
    key = (model, tp, precision, grid.tobytes())
    if key not in _OPS:
        if len(_OPS) > 1024:
            _OPS.clear()
        _OPS[key] = step_ops(model, tp=tp, precision=precision, seqs=grid, new=1.0, past=0.0)
    return _OPS[key]


@dataclass(frozen=True)
class _AttnGroup:
    window: float  # np.inf for full attention
    layers: int


@dataclass
class StepCost:
    """Step-time model of one replica (see module docstring)."""

    replica: Replica
    max_tokens: int
    grid: Array = field(init=False)
    linear_s: Array = field(init=False)
    head_s: Array = field(init=False)

    def __post_init__(self) -> None:
        rep = self.replica
        m, g, tp, prec = rep.model, rep.gpu, rep.tp, rep.precision
        top = max(2, self.max_tokens)
        self.grid = np.unique(np.round(np.geomspace(1, top, 48))).astype(np.float64)
        ops = _token_ops(m, tp, prec, self.grid)
        linear = np.zeros_like(self.grid)
        head = np.zeros_like(self.grid)
        for op in ops:
            if op.kind == "attention":
                continue
            t, _, _ = op_time(op, g)
            if op.name == "lm_head":
                head = head + t
            else:
                linear = linear + t
        self.linear_s = linear + tp_comm_s(m, g, tp=tp, precision=prec, tokens=self.grid,
                                           engine=rep.engine)
        self.head_s = head
        self.overhead_s = rep.step_overhead_s
        # attention constants
        half = "bf16" if prec.compute_dtype in ("bf16", "fp8", "fp4") else "fp16"
        eff = efficiency(g.id, half)
        self._attn = attention_efficiency(g.id, half)
        self._attn_peak = g.peak_flop_s(half) * self._attn.compute
        self._attn_bw = g.bandwidth_bytes_s * eff.memory
        self._p = eff.smoothmax_p
        heads = m.num_heads / tp
        if m.mla is not None:
            a = m.mla
            self._dec_dims = float(2 * a.kv_lora_rank + a.qk_rope_head_dim)
            self._pre_dims = float(a.qk_nope_head_dim + a.qk_rope_head_dim + a.v_head_dim)
        else:
            self._dec_dims = self._pre_dims = float(2 * m.head_dim)
        self._flop_per_pair_dec = 2 * heads * self._dec_dims
        self._flop_per_pair_pre = 2 * heads * self._pre_dims
        self._kv_layer = kv_bytes_per_token_layer(m, tp, prec.kv_bytes_per_value)
        self._qo_dec = heads * self._dec_dims * prec.activation_bytes
        self._qo_pre = heads * self._pre_dims * prec.activation_bytes
        self._unit_cache: dict[tuple[object, ...], tuple[float, float, float, float,
                                                          float]] = {}
        self.groups = tuple(_AttnGroup(np.inf if w is None else float(w), n)
                            for w, n in Counter(m.sliding_windows).items())

    # -- pieces ---------------------------------------------------------------------------
    def linear(self, tokens: Array | float) -> Array:
        """Token-parallel ops + all-reduces for ``tokens`` tokens (interpolated)."""
        return np.asarray(np.interp(np.asarray(tokens, dtype=np.float64), self.grid,
                                    self.linear_s, left=0.0))

    def head(self, rows: Array | float) -> Array:
        return np.asarray(np.interp(np.asarray(rows, dtype=np.float64), self.grid, self.head_s,
                                    left=0.0))

    def attention(self, *, dec_flops: Array | float, dec_bytes: Array | float,
                  pre_flops: Array | float, pre_bytes: Array | float) -> Array:
        tc = (np.asarray(dec_flops) + np.asarray(pre_flops)) / self._attn_peak
        tm = (np.asarray(dec_bytes) + np.asarray(pre_bytes)) / self._attn_bw
        return smoothmax(np.asarray(tc, dtype=np.float64), np.asarray(tm, dtype=np.float64),
                         self._p)

    def decode_attention_work(self, contexts: Array) -> tuple[float, float]:
        """(FLOPs, bytes) of attention for decode sequences with these cached contexts."""
        ctx = np.asarray(contexts, dtype=np.float64) + 1.0
        flops = 0.0
        nbytes = 0.0
        for grp in self.groups:
            held = float(np.minimum(ctx, grp.window).sum())
            flops += grp.layers * held * self._flop_per_pair_dec
            nbytes += grp.layers * (held + ctx.size) * self._kv_layer + grp.layers * (
                ctx.size * self._qo_dec)
        return flops, nbytes

    def prefill_attention_work(self, new: Array, past: Array) -> tuple[float, float]:
        """(FLOPs, bytes) of attention for prefill chunks of ``new`` tokens after ``past``.
        The FLOPs are priced ones: each chunk's over ``L / (L + ramp)``, ``L`` the keys its
        queries see (short causal prefills reach less of the attention kernels' peak)."""
        n = np.asarray(new, dtype=np.float64)
        s = np.asarray(past, dtype=np.float64)
        flops = 0.0
        nbytes = 0.0
        for grp in self.groups:
            w = grp.window
            total = n * s + n * (n + 1) / 2
            if np.isfinite(w):
                full = np.maximum(0.0, np.minimum(n, w - s))
                below = full * s + full * (full + 1) / 2
                total = np.minimum(total, below + (n - full) * w)
            held = np.minimum(s + n, w)
            flops += grp.layers * float((total / self._attn.ramp(held)).sum()) * (
                self._flop_per_pair_pre)
            nbytes += grp.layers * float((held + n).sum()) * self._kv_layer + grp.layers * float(
                n.sum()) * self._qo_pre
        return flops, nbytes

    # -- whole steps ---------------------------------------------------------------------------
    def step_s(self, *, decode_contexts: Array, prefill_new: Array, prefill_past: Array,
               prefill_rows: int, decode_tokens: int = 1) -> float:
        """Time of one step: decodes at ``decode_contexts`` (each verifying ``decode_tokens``
        tokens) plus prefill chunks; ``prefill_rows`` chunks finish their prompt this step and
        sample a token."""
        n = int(np.size(decode_contexts))
        p = float(np.sum(prefill_new))
        if n == 0 and p == 0:
            return 0.0
        df, db = self.decode_attention_work(decode_contexts) if n else (0.0, 0.0)
        pf, pb = self.prefill_attention_work(prefill_new, prefill_past) if p else (0.0, 0.0)
        dt = n * decode_tokens
        t = (float(self.linear(dt + p)) + float(self.head(dt + prefill_rows))
             + float(self.attention(dec_flops=df * decode_tokens, dec_bytes=db, pre_flops=pf,
                                    pre_bytes=pb)))
        return t + self.overhead_s

    def attention_units(self, mean_context: float, prompt_len: float,
                        prompt_mix: tuple[tuple[float, float, float], ...] | None = None
                        ) -> tuple[float, float, float, float, float]:
        """Attention work per unit (cached): (FLOPs, bytes) of one decode sequence at
        ``mean_context``, (FLOPs, bytes) per prefilled prompt token of the prompt mix (see
        :meth:`mean_step_s`), and the mean new tokens per prompt."""
        mix = prompt_mix or ((1.0, float(prompt_len), 0.0),)
        key = (float(mean_context), mix)
        if key not in self._unit_cache:
            df1, db1 = self.decode_attention_work(np.array([mean_context]))
            wsum = sum(w * new for w, new, _ in mix)
            pf = pb = 0.0
            for w, new, past in mix:
                if w > 0:
                    f, b = self.prefill_attention_work(np.array([new]), np.array([past]))
                    pf, pb = pf + w * f, pb + w * b
            new_mean = wsum / max(sum(w for w, _, _ in mix), 1e-12)
            self._unit_cache[key] = (df1, db1, pf / max(wsum, 1e-12), pb / max(wsum, 1e-12),
                                     new_mean)
        return self._unit_cache[key]

    def mean_step_s(self, *, n_decode: Array | float, mean_context: float,
                    prefill_tokens: Array | float, prompt_len: float,
                    decode_tokens: float = 1.0,
                    prompt_mix: tuple[tuple[float, float, float], ...] | None = None) -> Array:
        """Expected step time with ``n_decode`` sequences at ``mean_context`` and
        ``prefill_tokens`` new prompt tokens (vectorized).

        ``decode_tokens`` > 1 verifies that many tokens per sequence (speculative decoding):
        GEMMs and the LM head see all of them, attention reads the KV once. ``prompt_mix`` is
        ``((weight, new_tokens, cached_tokens), ...)``: prompts that start after a cached
        prefix attend over it (prefix caching). Attention work is linear in the sequences, so
        it is evaluated per sequence and scaled.
        """
        n = np.asarray(n_decode, dtype=np.float64)
        p = np.asarray(prefill_tokens, dtype=np.float64)
        df1, db1, pf_tok, pb_tok, new_mean = self.attention_units(mean_context, prompt_len,
                                                                  prompt_mix)
        dt = n * decode_tokens
        rows = dt + p / max(new_mean, 1.0)
        att = self.attention(dec_flops=dt * df1, dec_bytes=n * db1, pre_flops=p * pf_tok,
                             pre_bytes=p * pb_tok)
        busy = (n + p) > 0
        return np.asarray(np.where(busy, self.linear(dt + p) + self.head(rows) + att
                                   + self.overhead_s, 0.0))
