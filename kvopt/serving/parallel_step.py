"""Step time of a replica with expert, attention-data or pipeline parallelism: the same
step as :class:`kvopt.serving.stepcost.StepCost`, composed from a rank's work and the
expert group's.

**Attention DP** (``dp`` ranks in lock step; a step lasts as long as its busiest rank plus
the shared MoE layers). With ``n`` decoding sequences and ``p`` prompt tokens in the whole
replica, the busiest rank decodes ``n / dp`` sequences (the engine spreads requests over the
ranks) and prefills ``p_r = max(p / dp, min(p, c))`` tokens, ``c`` the mean prompt chunk (a
prompt is prefilled on one rank, so below one chunk per step one rank takes it all), and
decodes ``n_r = max(n / dp, min(n, 1))``::

    t = rank(n_r + p_r) + head(rows_r) + attention(n_r, p_r) + group(n + p) + overhead

``rank``: the dense ops and the tensor-parallel all-reduces of one rank's tokens;
``group``: the routed experts of the busiest expert-parallel rank for every rank's tokens
plus the MoE dispatch and combine (:mod:`kvopt.physics.parallel_ops`).

**Pipeline** (``pp`` stages; the engine keeps up to ``pp`` micro-batches in flight, the
in-flight batches). A batch whose busiest rank holds ``s`` sequences runs as
``m = min(pp, max(1, s))`` micro-batches of ``1/m`` of the work; one micro-batch crosses all
stages, ``t_mb`` (the step above at ``1/m`` of the work: the stages together do the whole
model's layers once) plus ``pp - 1`` hand-offs; a stage serves the ``m`` micro-batches one
after another. Every sequence advances one token per cycle::

    cycle = max(t_mb + (pp - 1) x handoff,  m x t_mb x ceil(L/pp) / L) + overhead

With fewer sequences than stages (``m < pp``) the stages idle for a fraction ``1 - m / pp``
of the cycle (the bubble); with ``m = pp`` the cycle is set by the dependency chain, or by
the largest stage when the layers do not split evenly. Each micro-batch reads its stage's
weights again, so a decode cycle at batch ``B`` costs about what a tensor-parallel step at
``B / pp`` costs, with ``1/pp`` of the weights per GPU.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from kvopt.physics.parallel import micro_batches, pipeline_cycle_s, stage_layers
from kvopt.physics.parallel_ops import expert_op, moe_comm_s, pp_transfer_s, rank_ops
from kvopt.physics.roofline import op_time, tp_comm_s
from kvopt.serving.parallel_engine import dispatch
from kvopt.serving.stepcost import StepCost

Array = npt.NDArray[np.float64]


class ParallelStepCost(StepCost):
    """:class:`StepCost` of a replica whose layout is not tensor parallelism alone."""

    def _tables(self) -> tuple[Array, Array]:
        rep = self.replica
        m, g, prec, eng = rep.model, rep.gpu, rep.precision, rep.engine
        par = rep.parallel
        grid = self.grid
        rank = np.zeros_like(grid)
        head = np.zeros_like(grid)
        for op in rank_ops(m, par, prec, seqs=grid, new=1.0, past=0.0):
            if op.kind == "attention":
                continue
            t, _, _ = op_time(op, g, eng.name, eng.fused_elementwise)
            if op.name == "lm_head":
                head = head + t
            else:
                rank = rank + t
        self.rank_s = rank + tp_comm_s(m, g, tp=par.tp, precision=prec, tokens=grid,
                                       engine=eng)
        group = np.zeros_like(grid)
        experts = expert_op(m, par, prec, grid)
        if experts is not None:
            group = group + op_time(experts, g, eng.name, eng.fused_elementwise)[0]
        a = prec.activation_bytes
        group = group + moe_comm_s(m, par, g, tokens=grid, act_bytes=a,
                                   dispatch=dispatch(eng.name, par, m, g), engine=eng)
        self.group_s = group
        self.handoff_s = pp_transfer_s(m, par, g, tokens=grid, act_bytes=a)  # a rank's
        self.stage_share = stage_layers(m, par.pp) / m.num_layers
        return self.rank_s + group, head

    # -- pieces on the grid ----------------------------------------------------------------
    def _at(self, table: Array, tokens: Any) -> Array:
        return np.asarray(np.interp(np.asarray(tokens, dtype=np.float64), self.grid, table,
                                    left=0.0))

    def rank_linear(self, tokens: Any) -> Array:
        """One rank's dense ops and all-reduces for its ``tokens`` tokens."""
        return self._at(self.rank_s, tokens)

    def group_linear(self, tokens: Any) -> Array:
        """The routed experts and their dispatch for ``tokens`` tokens of all ranks."""
        return self._at(self.group_s, tokens)

    def linear(self, tokens: Array | float) -> Array:
        """Token-parallel work of a step of ``tokens`` tokens spread evenly over the ranks."""
        t = np.asarray(tokens, dtype=np.float64)
        return np.asarray(self.rank_linear(t / self.replica.dp) + self.group_linear(t))

    def head(self, rows: Array | float) -> Array:
        return np.asarray(super().head(np.asarray(rows, dtype=np.float64) / self.replica.dp))

    def _pipeline(self, t_mb: Array, m: Array, rank_tokens: Array) -> Array:
        """The cycle of ``m`` micro-batches of ``t_mb`` each (see the module docstring)."""
        if self.replica.pp <= 1:
            return t_mb
        return pipeline_cycle_s(micro_s=t_mb, micro=m, handoff_s=self._at(
            self.handoff_s, rank_tokens), stage_share=self.stage_share)

    def _micro(self, rows_r: Array) -> Array:
        return micro_batches(rows_r, self.replica.pp)

    # -- whole steps -----------------------------------------------------------------------
    def _micro_s(self, *, n: Array, p: Array, dt: Array, group: Array, units: tuple[
            float, float, float, float, float]) -> Array:
        """One micro-batch of one rank: ``n`` decoding sequences (``dt`` tokens), ``p``
        prompt tokens, ``group`` tokens of every rank in the MoE layers."""
        df1, db1, pf_tok, pb_tok, new_mean = units
        att = self.attention(dec_flops=dt * df1, dec_bytes=n * db1, pre_flops=p * pf_tok,
                             pre_bytes=p * pb_tok, dec_on=np.minimum(n, 1.0),
                             pre_on=(p > 0).astype(np.float64))
        return np.asarray(self.rank_linear(dt + p) + self.group_linear(group)
                          + self._at(self.head_s, dt + p / max(new_mean, 1.0)) + att)

    def mean_step_s(self, *, n_decode: Array | float, mean_context: float,
                    prefill_tokens: Array | float, prompt_len: float,
                    decode_tokens: float = 1.0,
                    prompt_mix: tuple[tuple[float, float, float], ...] | None = None) -> Array:
        dp = float(self.replica.dp)
        n = np.asarray(n_decode, dtype=np.float64)
        p = np.asarray(prefill_tokens, dtype=np.float64)
        units = self.attention_units(mean_context, prompt_len, prompt_mix)
        chunk = max(units[4], 1.0)
        # the busiest rank: its share of the decodes (at least one while any decodes) and at
        # least one whole prompt chunk
        n_r = np.maximum(n / dp, np.minimum(n, 1.0))
        p_r = np.maximum(p / dp, np.minimum(p, chunk))
        m = self._micro(n_r + p_r / chunk)
        group = (n * decode_tokens + p) / m
        even = self._micro_s(n=n_r / m, p=p_r / m, dt=n_r / m * decode_tokens, group=group,
                             units=units)
        if self.replica.pp > 1:  # a prompt chunk rides in one micro-batch
            big = self._micro_s(n=n_r / m, p=np.maximum(p_r / m, np.minimum(p_r, chunk)),
                                dt=n_r / m * decode_tokens, group=group, units=units)
            cycle = pipeline_cycle_s(micro_s=big, micro=m, handoff_s=self._at(
                self.handoff_s, (n_r * decode_tokens + p_r) / m), stage_share=self.stage_share)
            cycle = np.maximum(cycle, m * even * self.stage_share)
        else:
            cycle = even
        return np.asarray(np.where((n + p) > 0, cycle + self.overhead_s, 0.0))

    def step_s(self, *, decode_contexts: Array, prefill_new: Array, prefill_past: Array,
               prefill_rows: int, decode_tokens: int = 1, prefill_starts: int = 0) -> float:
        """One step of the simulator: decodes spread round-robin over the ranks, each prompt
        chunk on the rank with the fewest tokens; the busiest rank sets the time. Under
        pipelining a rank's sequences form ``min(pp, sequences)`` micro-batches of even shares
        of its decodes, a prompt chunk riding whole in one of them."""
        ctx = np.asarray(decode_contexts, dtype=np.float64)
        new = np.asarray(prefill_new, dtype=np.float64)
        past = np.asarray(prefill_past, dtype=np.float64)
        if ctx.size == 0 and float(new.sum()) == 0:
            return 0.0
        dp = self.replica.dp
        load = np.array([ctx[r::dp].size * decode_tokens for r in range(dp)], dtype=np.float64)
        owner = np.zeros(new.size, dtype=np.intp)
        for i in np.argsort(-new, kind="stable"):
            owner[i] = int(np.argmin(load))
            load[owner[i]] += new[i]
        group_tokens = ctx.size * decode_tokens + float(new.sum())
        rows = (ctx.size * decode_tokens + prefill_rows) / dp
        worst = 0.0
        for r in range(dp):
            mine = owner == r
            c, nw, ps = ctx[r::dp], new[mine], past[mine]
            m = float(self._micro(np.asarray(c.size + mine.sum(), dtype=np.float64)))
            df, db = self.decode_attention_work(c) if c.size else (0.0, 0.0)

            def one(share: float, nw: Array = nw, ps: Array = ps, c: Array = c,
                    df: float = df, db: float = db, m: float = m) -> float:
                pf, pb = self.prefill_attention_work(nw, ps) if nw.size else (0.0, 0.0)
                tok = c.size * decode_tokens / m + float(nw.sum()) * share
                return float(self.rank_linear(tok) + self._at(self.head_s, rows / m)
                             + self.group_linear(group_tokens / m)
                             + self.attention(dec_flops=df * decode_tokens / m, dec_bytes=db / m,
                                              pre_flops=pf * share, pre_bytes=pb * share,
                                              dec_on=float(c.size > 0), pre_on=float(nw.size > 0)))

            even = one(1.0 / m)
            t = even
            if self.replica.pp > 1:
                biggest = float(nw.max()) if nw.size else 0.0
                share = max(1.0 / m, biggest / max(float(nw.sum()), 1.0))
                tok = (c.size * decode_tokens + float(nw.sum())) / m
                cycle = float(pipeline_cycle_s(micro_s=one(share), micro=m, handoff_s=self._at(
                    self.handoff_s, tok), stage_share=self.stage_share))
                t = max(cycle, m * even * self.stage_share)
            worst = max(worst, t)
        return worst + self.overhead_s + prefill_starts * self.encoder_s
