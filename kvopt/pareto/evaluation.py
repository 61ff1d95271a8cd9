"""The Pareto problem's model: a decision vector -> objectives and normalized constraints,
vectorized over N points (no pymoo here; :mod:`kvopt.pareto.problem` wraps it for pymoo).

A decision is one configuration group ``(gpu, tp, precision, batch, replicas)`` — the first
four are indices into a :class:`~kvopt.pareto.table.ConfigTable`'s axes, ``replicas`` is the
count ``n`` — or two such groups (a heterogeneous fleet, or prefill and decode pools).
For one group with per-replica saturation rate ``mu``, price ``c`` ($/h per replica), ``tp``
GPUs per replica and planned rate ``lambda``, the load fraction is ``rho = lambda / (n mu)``
and the objectives (all minimized) are::

    cost       = n c                      gpus       = n tp
    ttft_p99   = TTFT_p99(rho)            tpot_p99   = TPOT_p99(rho)   (interpolated on the
    quality    = accuracy loss (pp)                                     table's grid of rho)
    throughput = -(n mu) * mean output length   (tokens/s, negated to be minimized)

A non-finite objective (a configuration that cannot run) becomes ``BIG``. The constraints
are normalized so that a point is feasible where every ``g <= 0``::

    g_run    = -1 if the configuration runs (memory, precision support, TP) else 1
    g_sat    = rho - 0.995                       (below saturation; BIG where rho is inf)
    g_ttft   = min(TTFT_p99 / SLO_ttft - 1, BIG)  (if a TTFT SLO is set)
    g_tpot   = min(TPOT_p99 / SLO_tpot - 1, BIG)  (if a TPOT SLO is set)
    g_budget = min(cost / budget - 1, BIG)        (if a budget is set)

:func:`constraint_names` names the columns in that order. :func:`evaluate_mixed` and
:func:`evaluate_disagg` combine two groups into the same objectives and constraints.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from kvopt.choices import PARETO_OBJECTIVES
from kvopt.errors import InputError
from kvopt.pareto.table import ConfigTable, interp_p99
from kvopt.space import Workload

Array = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
OBJECTIVES = PARETO_OBJECTIVES
BIG = 1e9


def check_objectives(names: tuple[str, ...]) -> None:
    if len(names) < 2:
        raise InputError("--objectives", ",".join(names), "a front needs at least two",
                         f"choose from: {', '.join(OBJECTIVES)}")
    for n in names:
        if n not in OBJECTIVES:
            raise InputError("--objectives", n, "unknown objective",
                             f"valid: {', '.join(OBJECTIVES)}")
    if len(set(names)) != len(names):
        raise InputError("--objectives", ",".join(names), "objectives repeat")


@dataclass(frozen=True)
class Evaluation:
    F: Array  # (N, k) objectives, all minimized
    G: Array  # (N, m) constraints, feasible where <= 0
    metrics: dict[str, Array]  # derived per point


def _assemble(w: Workload, objectives: tuple[str, ...], budget_usd_h: float | None, *,
              valid: npt.NDArray[np.bool_], load_frac: Array, ttft: Array, tpot: Array,
              cost: Array, gpus: Array, quality: Array, cap_rps: Array,
              output_len_mean: float, extra: dict[str, Array] | None = None) -> Evaluation:
    """Objectives, normalized constraints (valid, below saturation, SLOs, budget) and the
    derived metrics, shared by single, mixed and disaggregated fleets."""
    cap_tok = np.where(valid, cap_rps * output_len_mean, 0.0)
    values = {"cost": cost, "ttft_p99": ttft, "tpot_p99": tpot, "quality": quality,
              "throughput": -cap_tok, "gpus": gpus}
    F = np.stack([np.where(np.isfinite(values[o]), values[o], BIG) for o in objectives], 1)
    cons = [np.where(valid, -1.0, 1.0),
            np.where(np.isfinite(load_frac), load_frac - 0.995, BIG)]
    if w.slo.ttft_p99_ms is not None:
        cons.append(np.minimum(ttft / w.slo.ttft_p99_ms - 1.0, BIG))
    if w.slo.tpot_p99_ms is not None:
        cons.append(np.minimum(tpot / w.slo.tpot_p99_ms - 1.0, BIG))
    if budget_usd_h is not None:
        cons.append(np.minimum(cost / budget_usd_h - 1.0, BIG))
    out_tok_s = w.rate_rps * output_len_mean
    metrics = {"usd_per_hour": cost, "gpus": gpus, "ttft_p99_ms": ttft, "tpot_p99_ms": tpot,
               "quality_loss_pct": quality, "capacity_rps": cap_rps,
               "output_capacity_tok_s": cap_tok,
               "usd_per_million_output_tokens": cost / (out_tok_s * 3600) * 1e6,
               **(extra or {})}
    return Evaluation(F, np.stack(cons, 1), metrics)


def evaluate(table: ConfigTable, w: Workload, idx: IntArray, objectives: tuple[str, ...],
             budget_usd_h: float | None) -> Evaluation:
    """``idx`` columns: gpu, tp, precision, batch, replicas (N, 5)."""
    gi, ti, pi, bi, n = (idx[:, k] for k in range(5))
    key = (gi, ti, pi, bi)
    valid = table.valid[key]
    n_f = n.astype(np.float64)
    cap = np.where(valid, table.capacity_rps[key], 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(valid, w.rate_rps / (n_f * cap), np.inf)
    ttft = np.where(valid, interp_p99(table.ttft_p99_ms[key], np.nan_to_num(frac, posinf=9)),
                    np.inf)
    tpot = np.where(valid, interp_p99(table.tpot_p99_ms[key], np.nan_to_num(frac, posinf=9)),
                    np.inf)
    cost = np.where(valid, table.usd_per_hour[key] * n_f, np.inf)
    gpus = np.where(valid, table.gpus_per_replica[key] * n_f, np.inf)
    quality = np.where(valid, table.quality_loss_pct[key], np.inf)
    return _assemble(w, objectives, budget_usd_h, valid=valid, load_frac=frac, ttft=ttft,
                     tpot=tpot, cost=cost, gpus=gpus, quality=quality, cap_rps=cap * n_f,
                     output_len_mean=table.output_len_mean,
                     extra={"rate_per_replica_rps": w.rate_rps / n_f})


def evaluate_mixed(table: ConfigTable, w: Workload, idx: IntArray,
                   objectives: tuple[str, ...], budget_usd_h: float | None) -> Evaluation:
    """Heterogeneous fleets: ``idx`` columns are two (gpu, tp, precision, batch, replicas)
    groups; the second may have 0 replicas. Traffic splits in proportion to capacity, so
    both groups run at the same load fraction; p99s and quality are the worse group's
    (a conservative fleet-level figure), cost/GPUs/capacity add up."""
    a = evaluate(table, w, idx[:, :5], objectives, budget_usd_h)
    n_b = idx[:, 9]
    b_idx = idx[:, 5:10].copy()
    b_idx[:, 4] = np.maximum(n_b, 1)
    b = evaluate(table, w, b_idx, objectives, budget_usd_h)
    use_b = n_b > 0
    key_a = tuple(idx[:, k] for k in range(4))
    key_b = tuple(idx[:, 5 + k] for k in range(4))
    valid = table.valid[key_a] & (~use_b | table.valid[key_b])
    cap_a = np.where(table.valid[key_a], table.capacity_rps[key_a], 0.0) * idx[:, 4]
    cap_b = np.where(use_b & table.valid[key_b], table.capacity_rps[key_b], 0.0) * n_b
    total = cap_a + cap_b
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(valid & (total > 0), w.rate_rps / total, np.inf)
    safe = np.nan_to_num(frac, posinf=9)

    def p99(curves: Array, key: tuple[IntArray, ...], on: npt.NDArray[np.bool_]) -> Array:
        return np.where(on, interp_p99(curves[key], safe), 0.0)

    ttft = np.where(valid, np.maximum(p99(table.ttft_p99_ms, key_a, table.valid[key_a]),
                                      p99(table.ttft_p99_ms, key_b, use_b
                                          & table.valid[key_b])), np.inf)
    tpot = np.where(valid, np.maximum(p99(table.tpot_p99_ms, key_a, table.valid[key_a]),
                                      p99(table.tpot_p99_ms, key_b, use_b
                                          & table.valid[key_b])), np.inf)
    cost = np.where(valid, a.metrics["usd_per_hour"]
                    + np.where(use_b, b.metrics["usd_per_hour"], 0.0), np.inf)
    gpus = np.where(valid, a.metrics["gpus"] + np.where(use_b, b.metrics["gpus"], 0.0), np.inf)
    quality = np.where(valid, np.maximum(a.metrics["quality_loss_pct"], np.where(
        use_b, b.metrics["quality_loss_pct"], 0.0)), np.inf)
    return _assemble(w, objectives, budget_usd_h, valid=valid, load_frac=frac, ttft=ttft,
                     tpot=tpot, cost=cost, gpus=gpus, quality=quality,
                     cap_rps=np.asarray(total, dtype=np.float64),
                     output_len_mean=table.output_len_mean)


def evaluate_disagg(pre: ConfigTable, dec: ConfigTable, w: Workload, idx: IntArray,
                    objectives: tuple[str, ...], budget_usd_h: float | None) -> Evaluation:
    """Disaggregated pools: ``idx`` = prefill (gpu, tp, precision, batch, replicas) then
    decode (same). TTFT = prefill-pool TTFT + KV transfer (inter-node RDMA) + the decode
    pool's first step; TPOT from the decode pool; the fleet's capacity is the smaller
    pool's; p99s add (an upper bound)."""
    kp = tuple(idx[:, k] for k in range(4))
    kd = tuple(idx[:, 5 + k] for k in range(4))
    n_p, n_d = idx[:, 4].astype(np.float64), idx[:, 9].astype(np.float64)
    valid = pre.valid[kp] & dec.valid[kd]
    cap_p = np.where(valid, pre.capacity_rps[kp], 0.0) * n_p
    cap_d = np.where(valid, dec.capacity_rps[kd], 0.0) * n_d
    with np.errstate(divide="ignore", invalid="ignore"):
        f_p = np.where(valid, w.rate_rps / cap_p, np.inf)
        f_d = np.where(valid, w.rate_rps / cap_d, np.inf)
    sp, sd = np.nan_to_num(f_p, posinf=9), np.nan_to_num(f_d, posinf=9)
    xfer = pre.kv_transfer_ms[kp] if pre.kv_transfer_ms is not None else 0.0
    ttft = np.where(valid, interp_p99(pre.ttft_p99_ms[kp], sp) + xfer
                    + interp_p99(dec.ttft_p99_ms[kd], sd), np.inf)
    tpot = np.where(valid, interp_p99(dec.tpot_p99_ms[kd], sd), np.inf)
    cost = np.where(valid, pre.usd_per_hour[kp] * n_p + dec.usd_per_hour[kd] * n_d, np.inf)
    gpus = np.where(valid, pre.gpus_per_replica[kp] * n_p + dec.gpus_per_replica[kd] * n_d,
                    np.inf)
    quality = np.where(valid, np.maximum(pre.quality_loss_pct[kp], dec.quality_loss_pct[kd]),
                       np.inf)
    return _assemble(w, objectives, budget_usd_h, valid=valid,
                     load_frac=np.maximum(f_p, f_d), ttft=ttft, tpot=tpot, cost=cost, gpus=gpus,
                     quality=quality, cap_rps=np.minimum(cap_p, cap_d),
                     output_len_mean=dec.output_len_mean,
                     extra={"kv_transfer_ms": np.where(valid, xfer, np.inf)})


def constraint_names(w: Workload, budget_usd_h: float | None) -> list[str]:
    """Names of the constraint columns of :func:`evaluate`, in order."""
    names = ["runs at all (memory, precision, TP)", "below saturation"]
    if w.slo.ttft_p99_ms is not None:
        names.append(f"TTFT p99 SLO {w.slo.ttft_p99_ms:g} ms")
    if w.slo.tpot_p99_ms is not None:
        names.append(f"TPOT p99 SLO {w.slo.tpot_p99_ms:g} ms")
    if budget_usd_h is not None:
        names.append(f"budget ${budget_usd_h:g}/h")
    return names
