"""One engine step of any replica as a :class:`kvopt.physics.roofline.StepTime` (time and the
work per GPU), for the static-batch estimate and the utilization of an estimate under load.

A tensor-parallel replica is :func:`kvopt.physics.roofline.step_time` itself. A layout with
expert, attention-data or pipeline parallelism composes the same step as
:class:`kvopt.serving.parallel_step.ParallelStepCost`: the busiest attention rank holds
``max(S / dp, min(S, 1))`` of the step's ``S`` sequences, split into ``m = min(pp, max(1,
that))`` micro-batches; one micro-batch costs the rank's dense ops, attention and all-reduces
plus the routed experts of the busiest expert rank and their dispatch for every rank's
tokens; the step is ``max(t_mb + hand-offs, m x t_mb x ceil(L/pp) / L)``. FLOPs and bytes are
one GPU's over the whole step (the ``m`` micro-batches of its stage).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kvopt.physics.parallel import micro_batches, pipeline_cycle_s, stage_layers
from kvopt.physics.parallel_ops import expert_op, moe_comm_s, pp_transfer_s, rank_ops
from kvopt.physics.roofline import StepTime, step_time, sum_ops, tp_comm_s
from kvopt.serving.parallel_engine import dispatch
from kvopt.serving.replica import Replica


def layout_step_time(rep: Replica, *, seqs: Any, new: Any, past: Any) -> StepTime:
    """One step of ``seqs`` sequences of the replica, each adding ``new`` tokens after
    ``past`` (arrays broadcast)."""
    m_, g, prec, eng = rep.model, rep.gpu, rep.precision, rep.engine
    if (rep.ep, rep.dp, rep.pp) == (1, 1, 1):
        return step_time(m_, g, tp=rep.tp, precision=prec, seqs=seqs, new=new, past=past,
                         engine=eng, cross_keys=float(rep.cross_tokens))
    par = rep.parallel
    s = np.asarray(seqs, dtype=np.float64)
    n_new = np.asarray(new, dtype=np.float64)
    rank = np.maximum(s / par.dp, np.minimum(s, 1.0))
    micro = micro_batches(rank, par.pp)
    s_mb = rank / micro
    shape = np.broadcast(s, n_new, np.asarray(past)).shape
    ops = rank_ops(m_, par, prec, seqs=s_mb, new=n_new, past=past)
    experts = expert_op(m_, par, prec, s * n_new / micro)
    k = sum_ops(ops + ([experts] if experts is not None else []), g, eng.name, shape,
                eng.fused_elementwise)
    total = k.total_s
    a = prec.activation_bytes
    comm = (tp_comm_s(m_, g, tp=par.tp, precision=prec, tokens=s_mb * n_new, engine=eng)
            + moe_comm_s(m_, par, g, tokens=s * n_new / micro, act_bytes=a,
                         dispatch=dispatch(eng.name, par, m_, g), engine=eng) + np.zeros(shape))
    t_mb = total + comm
    share = stage_layers(m_, par.pp) / m_.num_layers
    step = pipeline_cycle_s(micro_s=t_mb, micro=micro, handoff_s=pp_transfer_s(
        m_, par, g, tokens=s_mb * n_new, act_bytes=a), stage_share=share)
    per_gpu = micro * share  # a GPU runs its stage's layers for every micro-batch
    # communication: what the step takes beyond its kernels (collectives, hand-offs, bubble)
    return StepTime(step, k.compute_bound_s * per_gpu, k.memory_bound_s * per_gpu,
                    np.maximum(step - total, 0.0), k.flops * per_gpu, k.bytes * per_gpu,
                    k.compute_only_s * per_gpu, k.memory_only_s * per_gpu)
