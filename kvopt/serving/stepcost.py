"""Fast step-time model of one replica for continuous-batching steps.

An engine step runs ``n`` decode tokens and ``p`` prefill tokens together. Its time is

    t = linear(n + p) + head(rows) + attention(decode contexts, prefill chunks) + overhead

* ``linear(T)``: every token-parallel op of :func:`kvopt.physics.ops.step_ops` (projections,
  MLP or the experts a batch of T tokens touches, element-wise traffic) plus the TP
  all-reduces, each priced by the roofline of :mod:`kvopt.physics.roofline`, tabulated over a
  geometric grid of T and interpolated (exact at grid points).
* ``head(rows)``: the LM head on one row per sequence that samples a token.
* attention: the decode sequences and the prefill chunks each through their own fitted
  kernel curve (:func:`kvopt.physics.efficiency.attention_curve`, generation and context):
  a floor per layer launch when the step has such work, plus a smooth maximum of the padded
  FLOPs and bytes summed over the layer groups (same window). Gated DeltaNet layers run
  their own kernels (:func:`kvopt.physics.efficiency.linear_curve` where measured): their
  floors, and their work scaled so that it takes their curve's compute and memory time. A
  decode sequence reads its whole (windowed) context plus ``T`` virtual keys; a prefill
  chunk of ``c`` tokens after ``s`` cached ones has the causal pairs of ``c + T`` queries
  (windowed).

The analytic steady state and the discrete-event simulator both price steps with this class,
so they model the same engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import numpy.typing as npt

from kvopt.caching import Memo
from kvopt.catalog.model_spec import ModelSpec
from kvopt.physics.efficiency import attention_curve
from kvopt.physics.kernels import AttentionCurve, smoothmax
from kvopt.physics.mixers import mixer_groups
from kvopt.physics.ops import Op, step_ops
from kvopt.physics.precision import Precision
from kvopt.physics.roofline import half_dtype, mixer_curves, op_time, tp_comm_s
from kvopt.serving.replica import Replica

Array = npt.NDArray[np.float64]


_OPS: Memo[tuple[object, ...], list[Op]] = Memo("token ops", 1024)


def _token_ops(model: ModelSpec, tp: int, precision: Precision, grid: Array) -> list[Op]:
    """:func:`step_ops` of one decode token per sequence over the token grid (they do not
    depend on the GPU: replicas on different GPUs share them; cached)."""
    key = (model, tp, precision, grid.tobytes())
    if key not in _OPS:
        _OPS.put(key, step_ops(model, tp=tp, precision=precision, seqs=grid, new=1.0,
                               past=0.0))
    return _OPS[key]


@dataclass(frozen=True)
class AttentionPricing:
    """A replica's attention kernels, decode (generation) and prefill (context) apart:
    ``t = on_d x floor_d + smoothmax(F_d / peak_d, B_d / bw_d; p_d) + (the same for
    prefill)``, ``on`` 1 when the step has that work (a probability in mean steps). Fields
    are floats for one replica, arrays for stacked replicas (:meth:`stack`, :meth:`take`)."""

    dec_peak: Any  # FLOP/s: half-precision peak x the curve's compute fraction
    dec_bw: Any  # bytes/s
    dec_p: Any
    dec_floor_s: Any  # one launch per layer
    pre_peak: Any
    pre_bw: Any
    pre_p: Any
    pre_floor_s: Any

    @classmethod
    def of(cls, gen: AttentionCurve, ctx: AttentionCurve, *, peak: float, bw: float,
           layers: int, own_floors: tuple[float, float] = (0.0, 0.0)) -> AttentionPricing:
        """``layers`` layers launch these kernels; ``own_floors``: (decode, prefill) floors
        of the layers that launch others instead (Gated DeltaNet's), already summed."""
        return cls(dec_peak=peak * gen.compute, dec_bw=bw * gen.memory, dec_p=gen.smoothmax_p,
                   dec_floor_s=layers * gen.floor_s + own_floors[0],
                   pre_peak=peak * ctx.compute, pre_bw=bw * ctx.memory, pre_p=ctx.smoothmax_p,
                   pre_floor_s=layers * ctx.floor_s + own_floors[1])

    @classmethod
    def stack(cls, items: list[AttentionPricing]) -> AttentionPricing:
        return cls(**{f.name: np.array([getattr(i, f.name) for i in items])
                      for f in fields(cls)})

    def take(self, r: Any) -> AttentionPricing:
        return AttentionPricing(**{f.name: getattr(self, f.name)[r] for f in fields(self)})

    def time_s(self, *, dec_flops: Any, dec_bytes: Any, pre_flops: Any, pre_bytes: Any,
               dec_on: Any, pre_on: Any) -> Array:
        dec = smoothmax(np.asarray(dec_flops) / self.dec_peak, np.asarray(dec_bytes)
                        / self.dec_bw, self.dec_p)
        pre = smoothmax(np.asarray(pre_flops) / self.pre_peak, np.asarray(pre_bytes)
                        / self.pre_bw, self.pre_p)
        return np.asarray(dec_on * self.dec_floor_s + dec + pre_on * self.pre_floor_s + pre)


@dataclass
class StepCost:
    """Step-time model of one replica (see module docstring)."""

    replica: Replica
    max_tokens: int
    grid: Array = field(init=False)
    linear_s: Array = field(init=False)
    head_s: Array = field(init=False)
    pricing: AttentionPricing = field(init=False)

    def __post_init__(self) -> None:
        rep = self.replica
        m, g, tp, prec = rep.model, rep.gpu, rep.tp, rep.precision
        engine = rep.engine.name
        top = max(2, self.max_tokens)
        self.grid = np.unique(np.round(np.geomspace(1, top, 48))).astype(np.float64)
        self.linear_s, self.head_s = self._tables()
        self.overhead_s = rep.step_overhead_s
        # attention: the fitted kernels of each phase for this cache format
        half = half_dtype(g)
        kv = "fp8" if prec.kv_bytes_per_value < 2 else "bf16"
        mla = m.mla is not None
        self._gen = attention_curve(g, "generation", engine, mla=mla, kv=kv)
        self._ctx = attention_curve(g, "context", engine, mla=mla, kv=kv)
        self.groups = mixer_groups(m, tp=tp, kv_bytes=prec.kv_bytes_per_value,
                                   act_bytes=prec.activation_bytes,
                                   cross_keys=float(rep.cross_tokens))
        # Gated DeltaNet layers run their own kernels: their work enters the one smooth
        # maximum scaled to the attention curves' fractions (the same compute and memory
        # terms as their own curve gives), and they pay their own floors
        lin_gen, lin_ctx = mixer_curves(g, engine, "linear", mla=mla, kv=kv)
        n_lin = sum(grp.layers for grp in self.groups if grp.kind == "linear")
        self._linear_scale = {
            "generation": (self._gen.compute / lin_gen.compute,
                           self._gen.memory / lin_gen.memory),
            "context": (self._ctx.compute / lin_ctx.compute, self._ctx.memory / lin_ctx.memory)}
        self.pricing = AttentionPricing.of(
            self._gen, self._ctx, peak=g.peak_flop_s(half), bw=g.bandwidth_bytes_s,
            layers=m.num_layers - n_lin,
            own_floors=(n_lin * lin_gen.floor_s, n_lin * lin_ctx.floor_s))
        self.encoder_s = rep.encoder_s
        self._unit_cache: dict[tuple[object, ...], tuple[float, float, float, float,
                                                          float]] = {}

    def _tables(self) -> tuple[Array, Array]:
        """(token-parallel ops + all-reduces, LM head) on the token grid."""
        rep = self.replica
        m, g, tp, prec = rep.model, rep.gpu, rep.tp, rep.precision
        linear = np.zeros_like(self.grid)
        head = np.zeros_like(self.grid)
        for op in _token_ops(m, tp, prec, self.grid):
            if op.kind == "attention":
                continue
            t, _, _ = op_time(op, g, rep.engine.name, rep.engine.fused_elementwise)
            if op.name == "lm_head":
                head = head + t
            else:
                linear = linear + t
        return linear + tp_comm_s(m, g, tp=tp, precision=prec, tokens=self.grid,
                                  engine=rep.engine), head

    # -- pieces ---------------------------------------------------------------------------
    def linear(self, tokens: Array | float) -> Array:
        """Token-parallel ops + all-reduces for ``tokens`` tokens (interpolated)."""
        return np.asarray(np.interp(np.asarray(tokens, dtype=np.float64), self.grid,
                                    self.linear_s, left=0.0))

    def head(self, rows: Array | float) -> Array:
        return np.asarray(np.interp(np.asarray(rows, dtype=np.float64), self.grid, self.head_s,
                                    left=0.0))

    def attention(self, *, dec_flops: Array | float, dec_bytes: Array | float,
                  pre_flops: Array | float, pre_bytes: Array | float,
                  dec_on: Array | float = 1.0, pre_on: Array | float = 1.0) -> Array:
        """Attention time of a step's (padded) decode and prefill work (see
        :class:`AttentionPricing`)."""
        return self.pricing.time_s(dec_flops=dec_flops, dec_bytes=dec_bytes,
                                   pre_flops=pre_flops, pre_bytes=pre_bytes, dec_on=dec_on,
                                   pre_on=pre_on)

    def decode_attention_work(self, contexts: Array) -> tuple[float, float]:
        """(FLOPs, bytes) of attention for decode sequences with these cached contexts, each
        padded by the generation kernels' virtual keys."""
        ctx = np.asarray(contexts, dtype=np.float64) + 1.0
        flops = 0.0
        nbytes = 0.0
        for grp in self.groups:
            f, b = grp.decode_work(keys=float(grp.keys(ctx).sum()), held=float(ctx.sum()),
                                   seqs=ctx.size, pad_tokens=self._gen.pad_tokens)
            cf, cb = self._linear_scale["generation"] if grp.kind == "linear" else (1.0, 1.0)
            flops += grp.layers * float(f) * cf
            nbytes += grp.layers * float(b) * cb
        return flops, nbytes

    def prefill_attention_work(self, new: Array, past: Array) -> tuple[float, float]:
        """(FLOPs, bytes) of attention for prefill chunks of ``new`` tokens after ``past``,
        the queries padded by the context kernels' tile padding."""
        n = np.asarray(new, dtype=np.float64)
        s = np.asarray(past, dtype=np.float64)
        flops = 0.0
        nbytes = 0.0
        for grp in self.groups:
            f, b = grp.prefill_work(new=n, past=s, pad_tokens=self._ctx.pad_tokens)
            cf, cb = self._linear_scale["context"] if grp.kind == "linear" else (1.0, 1.0)
            flops += grp.layers * float(np.sum(f)) * cf
            nbytes += grp.layers * float(np.sum(b)) * cb
        return flops, nbytes

    # -- whole steps ---------------------------------------------------------------------------
    def step_s(self, *, decode_contexts: Array, prefill_new: Array, prefill_past: Array,
               prefill_rows: int, decode_tokens: int = 1, prefill_starts: int = 0) -> float:
        """Time of one step: decodes at ``decode_contexts`` (each verifying ``decode_tokens``
        tokens) plus prefill chunks; ``prefill_rows`` chunks finish their prompt this step and
        sample a token; ``prefill_starts`` prompts start this step (their images are encoded
        in it: the replica's ``encoder_s`` each)."""
        n = int(np.size(decode_contexts))
        p = float(np.sum(prefill_new))
        if n == 0 and p == 0:
            return 0.0
        df, db = self.decode_attention_work(decode_contexts) if n else (0.0, 0.0)
        pf, pb = self.prefill_attention_work(prefill_new, prefill_past) if p else (0.0, 0.0)
        dt = n * decode_tokens
        t = (float(self.linear(dt + p)) + float(self.head(dt + prefill_rows))
             + float(self.attention(dec_flops=df * decode_tokens, dec_bytes=db, pre_flops=pf,
                                    pre_bytes=pb, dec_on=float(n > 0), pre_on=float(p > 0))))
        return t + self.overhead_s + prefill_starts * self.encoder_s

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
        # a step holds decode work with probability ~ min(1, n) and a prompt chunk with
        # probability ~ min(1, p / mean prompt): each pays its kernels' floors that often
        att = self.attention(dec_flops=dt * df1, dec_bytes=n * db1, pre_flops=p * pf_tok,
                             pre_bytes=p * pb_tok, dec_on=np.minimum(n, 1.0),
                             pre_on=(p > 0).astype(np.float64))
        busy = (n + p) > 0
        # prompts start at the rate their tokens are prefilled; each encodes its images
        encode = p / max(new_mean, 1.0) * self.encoder_s
        return np.asarray(np.where(busy, self.linear(dt + p) + self.head(rows) + att
                                   + self.overhead_s + encode, 0.0))
