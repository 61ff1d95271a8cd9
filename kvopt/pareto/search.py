"""The Pareto problem: decisions -> objectives and normalized constraints (vectorized), the
exact front by enumeration, NSGA-II with pymoo's mixed-variable GA, hypervolume and knee."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from kvopt.errors import InputError
from kvopt.pareto.table import ConfigTable, interp_p99
from kvopt.space import Workload

Array = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
OBJECTIVES = {
    "cost": "$/h of the fleet",
    "ttft_p99": "TTFT p99 in ms at the planned rate",
    "tpot_p99": "TPOT p99 in ms at the planned rate",
    "quality": "accuracy loss vs BF16 in percentage points",
    "throughput": "minus the fleet's output capacity in tokens/s (minimized)",
    "gpus": "GPUs in the fleet",
}
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


def emptying_constraints(table: ConfigTable, w: Workload, objectives: tuple[str, ...],
                         max_replicas: int, budget_usd_h: float | None) -> list[str]:
    """Which constraints empty the space: each that, dropped alone, would leave feasible
    points (or all that fail together)."""
    g, t, p, b = np.nonzero(table.valid)
    if g.size == 0:
        return ["runs at all (memory, precision, TP)"]
    reps = np.arange(1, max_replicas + 1)
    idx = np.column_stack([np.repeat(g, reps.size), np.repeat(t, reps.size),
                           np.repeat(p, reps.size), np.repeat(b, reps.size),
                           np.tile(reps, g.size)]).astype(np.int64)
    G = evaluate(table, w, idx, objectives, budget_usd_h).G
    names = constraint_names(w, budget_usd_h)
    alone = [names[c] for c in range(G.shape[1])
             if np.any(np.all(np.delete(G, c, axis=1) <= 0, axis=1))]
    return alone or [n for c, n in enumerate(names) if not np.any(G[:, c] <= 0)] or names


def non_dominated(F: Array) -> IntArray:
    """Indices of the non-dominated rows of F (duplicates kept once)."""
    from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

    if F.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    _, first = np.unique(F, axis=0, return_index=True)
    first = np.sort(first)
    front = NonDominatedSorting().do(F[first], only_non_dominated_front=True)
    return np.asarray(first[np.asarray(front, dtype=np.int64)], dtype=np.int64)


@dataclass
class Front:
    """A front: decision indices, objectives, metrics, and how it was found."""

    idx: IntArray
    F: Array
    metrics: dict[str, Array]
    method: str
    evaluations: int
    seconds: float
    generations: list[Array] = field(default_factory=list)  # feasible F of each generation


def enumerate_all(table: ConfigTable, w: Workload, objectives: tuple[str, ...],
                  max_replicas: int, budget_usd_h: float | None) -> Front:
    """Exact front: every configuration x replica count, evaluated vectorized."""
    t0 = time.perf_counter()
    g, t, p, b = np.nonzero(table.valid)
    n_cfg = g.size
    reps = np.arange(1, max_replicas + 1)
    idx = np.column_stack([np.repeat(g, reps.size), np.repeat(t, reps.size),
                           np.repeat(p, reps.size), np.repeat(b, reps.size),
                           np.tile(reps, n_cfg)]).astype(np.int64)
    ev = evaluate(table, w, idx, objectives, budget_usd_h)
    feas = np.all(ev.G <= 0, axis=1)
    keep = np.nonzero(feas)[0]
    nd = keep[non_dominated(ev.F[keep])]
    return Front(idx[nd], ev.F[nd], {k: v[nd] for k, v in ev.metrics.items()}, "exact",
                 idx.shape[0], time.perf_counter() - t0)


def run_nsga2(table: ConfigTable, w: Workload, objectives: tuple[str, ...], *,
              max_replicas: int, budget_usd_h: float | None, pop: int, gens: int, seed: int,
              progress: Callable[[int, int], None] | None = None,
              mixed: bool = False, decode_table: ConfigTable | None = None) -> Front:
    """NSGA-II (pymoo MixedVariableGA with rank-and-crowding survival), seeded. ``mixed``
    searches heterogeneous fleets of two configuration groups; ``decode_table`` makes
    ``table`` the prefill pool and searches disaggregated prefill/decode pools."""
    from pymoo.algorithms.moo.nsga2 import RankAndCrowding
    from pymoo.core.callback import Callback
    from pymoo.core.duplicate import HashDuplicateElimination
    from pymoo.core.mixed import MixedVariableGA, MixedVariableMating
    from pymoo.core.problem import Problem as PymooProblem
    from pymoo.core.variable import Choice, Integer
    from pymoo.optimize import minimize

    if pop < 2:
        raise InputError("--pop", pop, "needs at least 2 individuals")
    if gens < 1:
        raise InputError("--gens", gens, "needs at least 1 generation")
    probe = np.array([[0, 0, 0, 0, 1]], dtype=np.int64)
    n_con = evaluate(table, w, probe, objectives, budget_usd_h).G.shape[1]
    G_, T_, P_, B_ = table.shape
    names = ["gpu", "tp", "precision", "batch", "replicas"]
    two = mixed or decode_table is not None
    if two:
        names += ["gpu_b", "tp_b", "precision_b", "batch_b", "replicas_b"]
    evaluator: Callable[..., Evaluation] = evaluate_mixed if mixed else evaluate
    if decode_table is not None:
        dt = decode_table

        def evaluator(table: ConfigTable, w: Workload, idx: IntArray,
                      objectives: tuple[str, ...], budget: float | None) -> Evaluation:
            return evaluate_disagg(table, dt, w, idx, objectives, budget)

    def variables() -> dict[str, Any]:
        out: dict[str, Any] = {}
        for suffix in ("", "_b") if two else ("",):
            out["gpu" + suffix] = Choice(options=list(range(G_)))
            out["tp" + suffix] = Choice(options=list(range(T_)))
            out["precision" + suffix] = Choice(options=list(range(P_)))
            out["batch" + suffix] = Choice(options=list(range(B_)))
            low = 0 if (suffix and mixed) else 1  # a decode pool needs a replica
            out["replicas" + suffix] = Integer(bounds=(low, max_replicas))
        return out

    class Problem(PymooProblem):  # type: ignore[misc]
        """Vectorized: a whole population of mixed-variable dicts per call."""

        def __init__(self) -> None:
            super().__init__(vars=variables(), n_obj=len(objectives), n_ieq_constr=n_con,
                             elementwise=False)

        def _evaluate(self, X: Any, out: dict[str, Any], *a: Any, **k: Any) -> None:
            rows = np.array([[x[n] for n in names] for x in X], dtype=np.int64)
            ev = evaluator(table, w, rows, objectives, budget_usd_h)
            out["F"] = ev.F
            out["G"] = ev.G
            archive.append(rows[np.all(ev.G <= 0, axis=1)])

    history: list[Array] = []
    archive: list[IntArray] = []  # every feasible point evaluated (an external archive)

    class Record(Callback):  # type: ignore[misc]
        def notify(self, algorithm: Any) -> None:
            opt = algorithm.opt
            feas = (np.asarray(opt.get("CV"), dtype=np.float64).ravel() <= 0)
            history.append(np.asarray(opt.get("F")[feas], dtype=np.float64))
            if progress is not None:
                progress(algorithm.n_gen, gens)

    t0 = time.perf_counter()
    def key(ind: Any) -> Any:  # exact duplicates by their decisions, hashed (O(n))
        return ind if isinstance(ind, tuple) else tuple(ind.X[n] for n in names)

    dedupe = HashDuplicateElimination(func=key)
    algo = MixedVariableGA(pop_size=pop, survival=RankAndCrowding(),
                           mating=MixedVariableMating(eliminate_duplicates=dedupe),
                           eliminate_duplicates=dedupe)
    res = minimize(Problem(), algo, ("n_gen", gens), seed=seed, callback=Record(),
                   verbose=False)
    # the front: non-dominated points of every feasible evaluation (the archive keeps the
    # good points the last population's crowding discarded; no extra evaluations)
    idx = np.unique(np.vstack(archive), axis=0) if archive else np.zeros((0, len(names)),
                                                                           dtype=np.int64)
    ev = evaluator(table, w, idx, objectives, budget_usd_h)
    feas = np.nonzero(np.all(ev.G <= 0, axis=1))[0]
    nd = feas[non_dominated(ev.F[feas])]
    front = Front(idx[nd], ev.F[nd], {k: v[nd] for k, v in ev.metrics.items()},
                  "nsga2-mixed" if mixed else "nsga2-disagg" if two else "nsga2",
                  int(res.algorithm.evaluator.n_eval), time.perf_counter() - t0)
    front.generations = history
    return front


@dataclass(frozen=True)
class Normalizer:
    """Maps objectives to [0, 1] with the ideal and nadir of a reference set; the
    hypervolume reference point is 1.1 in every objective."""

    ideal: Array
    nadir: Array

    @classmethod
    def of(cls, *fronts: Array) -> Normalizer:
        allf = np.vstack([f for f in fronts if f.size])
        ideal, nadir = allf.min(axis=0), allf.max(axis=0)
        return cls(ideal, np.where(nadir > ideal, nadir, ideal + 1.0))

    def __call__(self, F: Array) -> Array:
        return np.asarray((F - self.ideal) / (self.nadir - self.ideal), dtype=np.float64)


def hypervolume(F: Array, norm: Normalizer) -> float:
    """Hypervolume of F (normalized) w.r.t. the reference point 1.1 (pymoo's HV)."""
    from pymoo.indicators.hv import HV

    if F.size == 0:
        return 0.0
    k = F.shape[1]
    Fn = np.minimum(norm(F), 1.1)
    return float(HV(ref_point=np.full(k, 1.1))(Fn))


def knee(F: Array, norm: Normalizer) -> int:
    """The balanced pick: the front point with the least sum of its objectives, each scaled
    to [0, 1] by its range over the front (the L1 distance to the ideal point). ``plan
    --goal balanced`` picks by the same rule on the (cost, worst p99/SLO ratio) front."""
    local = Normalizer.of(F)
    return int(np.argmin(local(F).sum(axis=1)))
