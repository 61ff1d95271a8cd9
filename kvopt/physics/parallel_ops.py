"""Memory and step work of a replica laid out with expert, attention-data and pipeline
parallelism (:class:`kvopt.physics.parallel.Parallel`), per GPU.

**Weights per GPU** (the largest stage): the tensor-parallel split of
:func:`kvopt.physics.memory.weight_split` with the routed experts over all ``W = tp x dp``
GPUs of a stage instead of ``tp`` (``ep`` ranks of ``E / ep`` experts, each sliced ``moe_tp``
ways: ``experts / (ep x moe_tp) = experts / W``), the layer weights scaled to the stage's
``ceil(L / pp)`` layers, and one vocabulary matrix per end stage (the first holds the
embedding, the last the LM head; a tied LM head is a copy there)::

    W_gpu = ceil(L/pp)/L x (attention/tp + dense MLP/tp + experts/W + norms + router)
            + (embedding + LM head)/tp                       (pp = 1)
            + max(embedding, LM head or its copy)/tp          (pp > 1)

EP never holds more expert weights per GPU than TP alone over the same stage (``W >= tp``).

**Step work.** The dense ops (attention, projections, dense MLPs, shared experts, router,
element-wise, LM head) run on each attention rank's own batch (:func:`rank_ops`); the routed
experts of the busiest expert-parallel rank see every rank's tokens (:func:`expert_op`): of
``T`` tokens routed top-``k`` over ``E`` experts, that rank processes
``f(T) T k / ep`` pairs (``f``: :func:`kvopt.physics.expert_load.busiest_rank_factor`) over
its ``(E / ep)(1 - (1 - k/E)^T)`` touched experts of width ``I / moe_tp``. With ``ep = 1``
this is the tensor-parallel MoE op of :func:`kvopt.physics.ops.step_ops`. The fused-MoE
curves (``models/efficiency.yaml``) were fitted on aiconfigurator 0.12.0's MoE tables with
these same local counts, EP rows included (``benchmarks/fit_efficiency.py`` ``moe_rows``:
power-law routing of exponent 1.2, expert parallelism simulated on one rank), so they price
a rank's experts with the skew of popular experts; ``f`` adds the spread between ranks of a
uniform router on top (a lower bound: 1.6% at 8,192 tokens top-8 over 8 ranks, 18% at 64).

**Communication per MoE layer** with ``dp > 1`` (:func:`moe_comm_s`; with ``dp = 1`` every
GPU already holds every token and the tensor-parallel all-reduce over ``tp = W`` combines
the experts' partial sums), as the engine dispatches (:data:`DISPATCH`):

* ``allgather_reducescatter`` (vLLM's default ``--all2all-backend``, TensorRT-LLM without an
  all-to-all method): the ``dp`` ranks all-gather the step's ``T`` hidden states (``B = T h
  a`` bytes) before the experts and reduce-scatter them after;
* ``allgather_allreduce`` (SGLang's DP attention without DeepEP): an all-gather over the
  ``W`` GPUs before and an all-reduce over them after;
* ``all_to_all`` (TensorRT-LLM's NVLink all-to-all on multi-node NVLink domains, DeepEP):
  dispatch and combine send each token once to every other rank (and remote domain) holding
  one of its experts (:func:`kvopt.physics.expert_load.ranks_per_token`).

**Pipeline hand-off** (:func:`pp_transfer_s`): ``T h a`` bytes of hidden states from each
stage to the next, over the NVLink domain or, when a stage boundary is a domain boundary,
the NIC.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from kvopt.catalog.engines import EngineProfile
from kvopt.catalog.gpus import GpuSpec
from kvopt.catalog.model_spec import ModelSpec
from kvopt.physics.collectives import all_to_all_time_s, gather_time_s, p2p_time_s, span
from kvopt.physics.comm import engine_allreduce_s
from kvopt.physics.expert_load import busiest_rank_factor, ranks_per_token, touched_experts
from kvopt.physics.kernels import MoeWork
from kvopt.physics.memory import HALF_BYTES, weight_bytes_per_gpu, weight_split
from kvopt.physics.ops import Op, gemm_curve_key, step_ops
from kvopt.physics.parallel import Parallel, stage_layers
from kvopt.physics.params import param_counts
from kvopt.physics.precision import Precision

Array = npt.NDArray[np.float64]
DISPATCH = ("allgather_reducescatter", "allgather_allreduce", "all_to_all")


def weight_bytes(model: ModelSpec, par: Parallel, precision: Precision) -> float:
    """Weights on one GPU of the largest stage (see the module docstring)."""
    if par.plain:
        return weight_bytes_per_gpu(model, par.tp, precision)
    pc = param_counts(model)
    split = weight_split(model, par.tp, precision)
    q = split.quantized - pc.experts / par.tp + pc.experts / par.world
    u = split.unquantized
    if par.pp > 1:
        frac = stage_layers(model, par.pp) / model.num_layers
        ends = (pc.embedding + pc.lm_head) / par.tp
        end_stage = max(pc.embedding, pc.lm_head or pc.embedding) / par.tp
        if u > 0:  # the vocabulary matrices are among the 16-bit parts
            q, u = frac * q, frac * (u - ends) + end_stage
        else:
            q = frac * (q - ends) + end_stage
    if precision.weights in ("bf16", "fp16"):
        return (q + u) * HALF_BYTES
    return q * precision.quantized_bits_per_weight / 8 + u * HALF_BYTES


def gather_buffer_bytes(model: ModelSpec, par: Parallel, *, tokens: float,
                        act_bytes: float) -> float:
    """Extra activation memory of attention DP: the other ranks' hidden states gathered for
    the experts, in and out (``2 (dp - 1) T h a``)."""
    return 2.0 * (par.dp - 1) * tokens * model.hidden_size * act_bytes


def rank_ops(model: ModelSpec, par: Parallel, precision: Precision, *, seqs: Any, new: Any,
             past: Any) -> list[Op]:
    """The ops of one attention rank's batch on one of its GPUs, all layers, without the
    routed experts (:func:`expert_op` prices those)."""
    return [op for op in step_ops(model, tp=par.tp, precision=precision, seqs=seqs, new=new,
                                  past=past) if op.kind != "moe"]


def expert_op(model: ModelSpec, par: Parallel, precision: Precision, tokens: Any) -> Op | None:
    """The routed experts of the busiest expert-parallel rank for ``tokens`` tokens of the
    whole stage (all ranks), summed over the MoE layers; None for a dense model."""
    e = model.moe
    if e is None:
        return None
    t = np.asarray(tokens, dtype=np.float64)
    h = model.hidden_size
    a = precision.activation_bytes
    wq = 16.0 if precision.weights in ("bf16", "fp16") else precision.quantized_bits_per_weight
    cur = gemm_curve_key(precision)
    n_moe = float(sum(e.moe_layers))
    k, n_exp = e.experts_per_token, e.num_experts
    touched = touched_experts(t, experts=n_exp, k=k) / par.ep
    width = e.expert_intermediate_size / par.moe_tp
    one_expert_w = 3 * h * width * wq / 8
    pairs = t * k / par.ep * busiest_rank_factor(t, experts=n_exp, k=k, ep=par.ep)
    nbytes = touched * one_expert_w + pairs * (2 * h + 3 * width) * a
    work = MoeWork(touched=touched, pairs=pairs, hidden=float(h), width=width, matrices=3.0,
                   nbytes=n_moe * nbytes, route_pairs=t * k, layers=n_moe)
    return Op("experts", "moe", n_moe * 2 * pairs * 3 * h * width, n_moe * nbytes,
              one_expert_w, precision.compute_dtype, n_moe, curve=cur[0], quantized=cur[1],
              moe=work, weight_only_alt=precision.weight_only_alt, weight_bits=wq)


def moe_comm_s(model: ModelSpec, par: Parallel, gpu: GpuSpec, *, tokens: Any, act_bytes: float,
               dispatch: str, engine: EngineProfile | None = None) -> Array:
    """Dispatch and combine of the MoE layers of one stage for ``tokens`` tokens of all its
    ranks (0 with ``dp = 1``; see the module docstring)."""
    t = np.asarray(tokens, dtype=np.float64)
    if model.moe is None or par.dp <= 1:
        return np.asarray(0.0 * t)
    n_moe = float(sum(model.moe.moe_layers))
    b = t * model.hidden_size * act_bytes
    w = par.world
    if dispatch == "allgather_reducescatter":
        # one GPU of each tensor-parallel group: dp members, tp apart
        per = max(1, span(gpu, w).per_node // par.tp)
        one = (gather_time_s(gpu, par.dp, b, "all_gather", per_node=per)
               + gather_time_s(gpu, par.dp, b, "reduce_scatter", per_node=per))
    elif dispatch == "allgather_allreduce":
        if w <= gpu.max_gpus_per_node:
            reduce = engine_allreduce_s(gpu, w, engine, tokens=t, n_bytes=b)
        else:
            reduce = (gather_time_s(gpu, w, b, "reduce_scatter")
                      + gather_time_s(gpu, w, b, "all_gather"))
        one = gather_time_s(gpu, w, b, "all_gather") + reduce
    elif dispatch == "all_to_all":
        e = model.moe
        sp = span(gpu, w)
        per_gpu = b / w  # each GPU dispatches its share of the tokens
        ranks_dom = max(1, sp.per_node // par.moe_tp)  # expert ranks in one domain
        copies = ranks_per_token(experts=e.num_experts, k=e.experts_per_token, ep=par.ep)
        intra = per_gpu * copies * (ranks_dom - 1) / par.ep
        inter = 0.0 * per_gpu
        if sp.nodes > 1:
            domains = ranks_per_token(experts=e.num_experts, k=e.experts_per_token,
                                      ep=sp.nodes)
            inter = per_gpu * domains * (sp.nodes - 1) / sp.nodes
        one = 2.0 * all_to_all_time_s(gpu, w, intra, inter)
    else:
        raise ValueError(f"unknown MoE dispatch {dispatch!r}; one of {', '.join(DISPATCH)}")
    return np.asarray(n_moe * one)


def pp_transfer_s(model: ModelSpec, par: Parallel, gpu: GpuSpec, *, tokens: Any,
                  act_bytes: float) -> Array:
    """The ``pp - 1`` stage-to-stage hand-offs of ``tokens`` tokens' hidden states (each GPU
    of a rank sends its tensor-parallel share in parallel; a stage boundary that is an NVLink
    domain boundary goes over the NIC)."""
    t = np.asarray(tokens, dtype=np.float64)
    if par.pp <= 1:
        return np.asarray(0.0 * t)
    b = t * model.hidden_size * act_bytes / par.tp
    stage = par.world
    total = 0.0 * t
    for s in range(1, par.pp):
        first = s * stage  # index of the next stage's first GPU
        across = first // gpu.max_gpus_per_node != (first - 1) // gpu.max_gpus_per_node
        total = total + p2p_time_s(gpu, b, across_nodes=across)
    return np.asarray(total)
