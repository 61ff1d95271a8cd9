"""The configuration table of a Pareto search: every (GPU, TP, weights/KV, max batch) of the
space, evaluated once with the serving model, as numpy arrays.

For a feasible configuration the table holds its price, capacity (saturation rate per
replica) and its TTFT/TPOT p99 on a grid of load fractions of that capacity. A point with
``n`` replicas serves ``rate / n`` per replica; its p99s are interpolated on the grid (exact
at grid points), so objectives for any number of points are vectorized numpy.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from kvopt.catalog.prices import price_for
from kvopt.errors import KvoptError
from kvopt.physics.parallel import Parallel
from kvopt.physics.quality import quality_loss_pct
from kvopt.serving.disagg import kv_transfer_s
from kvopt.serving.lengths import fixed
from kvopt.serving.replica import Replica, build_replica
from kvopt.serving.serve import steady_model, step_cost_for
from kvopt.serving.steady import SteadyModel, capacities, p99_curves
from kvopt.space import Space, Workload

Array = npt.NDArray[np.float64]
FRACTIONS = np.concatenate([np.linspace(0.01, 0.9, 18), np.linspace(0.92, 0.995, 6)])


@dataclass(frozen=True)
class ConfigTable:
    gpus: tuple[str, ...]
    tps: tuple[int, ...]
    precisions: tuple[tuple[str, str], ...]
    batches: tuple[int, ...]
    valid: npt.NDArray[np.bool_]  # shape (G, T, P, B): the config can run at all
    reason: dict[tuple[int, int, int, int], str]
    usd_per_hour: Array  # per replica
    gpus_per_replica: Array
    capacity_rps: Array  # saturation rate per replica
    quality_loss_pct: Array
    ttft_p99_ms: Array  # shape (G, T, P, B, F) on FRACTIONS of capacity
    tpot_p99_ms: Array
    output_len_mean: float
    engine: str
    role: str = "colocated"  # colocated | prefill | decode (disaggregated pools)
    kv_transfer_ms: Array | None = None  # prefill tables: one prompt's KV to a decode pool
    layouts: tuple[Parallel, ...] = ()  # the T axis when beyond TP (tps: their tp)

    def layout(self, t: int) -> Parallel:
        """The replica layout of index ``t`` of the T axis."""
        return self.layouts[t] if self.layouts else Parallel(tp=self.tps[t])

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.gpus), len(self.tps), len(self.precisions), len(self.batches))


@dataclass(frozen=True)
class CostBound:
    """The front's cost bound, known while the table is built: at most ``multiple`` x the
    cheapest feasible one-configuration fleet (of at most ``max_replicas`` replicas, within
    ``budget_usd_h``), and at most the budget. A configuration whose single replica already
    costs more cannot be on the front, so :func:`build_table` leaves its curves out."""

    multiple: float | None
    max_replicas: int
    budget_usd_h: float | None
    # fleets of one configuration only (not mixed): a level also needs the replicas that
    # carry the whole rate below its capacity, so it is left out when they cost too much
    whole_rate: bool = True


def build_table(workload: Workload, space: Space, role: str = "colocated", *,
                bound: CostBound | None = None) -> ConfigTable:
    """Evaluate every configuration of ``space`` for ``workload`` (SLOs are not applied:
    they are constraints of the search). ``role``: ``prefill`` pools serve requests of one
    output token; ``decode`` pools receive prompts with their KV already cached. With
    ``bound``, replicas are evaluated cheapest first, and one whose single replica costs
    more than the bound reached so far is not evaluated (invalid, with the reason): the
    front within the bound is the same, found sooner."""
    if role not in ("colocated", "prefill", "decode"):
        raise ValueError(f"unknown role {role!r}")
    lays = space.parallel_layouts
    shape = (len(space.gpus), len(lays), len(space.precisions), len(space.batches))
    t = _Arrays(shape)
    overrides = dict(space.prices_usd_h)
    todo: list[tuple[float, int, int, int, Replica, str]] = []
    for (gi, g), (ti, lay), (pi, (w, kv)) in itertools.product(
            enumerate(space.gpus), enumerate(lays), enumerate(space.precisions)):
        try:
            hw_gpu, hw_engine = space.hardware(g)
            rep = build_replica(model=workload.model, gpu=hw_gpu, tp=lay.tp, weights=w,
                                kv_dtype=kv, engine=hw_engine, ep=lay.ep, dp=lay.dp,
                                pp=lay.pp, images=workload.images)
        except KvoptError as exc:
            t.refuse(gi, ti, pi, len(space.batches), str(exc).split(";")[0][:100])
            continue
        price = overrides.get(rep.gpu.id)
        if price is None:
            p = price_for(rep.gpu.id)
            price = p.usd_per_gpu_hour if p else None
        if price is None or not rep.fits:
            t.refuse(gi, ti, pi, len(space.batches), f"no price for {rep.gpu.id}"
                     if price is None else "weights do not fit")
            continue
        todo.append((price * rep.n_gpus, gi, ti, pi, rep, w))
    limit = float("inf")  # set once a feasible fleet exists: an empty front keeps its table
    for usd, gi, ti, pi, rep, w in sorted(todo, key=lambda x: x[:4]):
        if bound is not None and usd > limit:
            t.refuse(gi, ti, pi, len(space.batches), f"one replica (${usd:.2f}/h) costs more "
                     f"than the front's bound (${limit:.2f}/h)")
            continue
        models = _models(rep, workload, space, role)
        need = _needed(models, workload.rate_rps, usd, limit, bound, role)
        curves = dict(zip(need, p99_curves([models[i] for i in need], FRACTIONS),
                          strict=True)) if need else {}
        for bi in range(len(models)):
            key = (gi, ti, pi, bi)
            if bi not in curves:
                t.reason[key] = (f"the replicas that carry the rate cost more than the "
                                 f"front's bound (${limit:.2f}/h)")
                continue
            c, ttft_ms, tpot_ms = curves[bi]
            if role == "prefill":
                t.xfer[key] = kv_transfer_s(rep, rep, workload.input_dist.mean,
                                            same_node=False) * 1e3
            if c <= 0:
                t.reason[key] = "no sustainable rate"
                continue
            t.valid[key] = True
            t.cost[key] = usd
            t.gpus_r[key] = rep.n_gpus
            t.cap[key] = c
            t.quality[key] = quality_loss_pct(w, rep.precision.kv_dtype,
                                              rep.model.default_weights)
            t.ttft[key], t.tpot[key] = ttft_ms, tpot_ms
        if bound is not None and (bound.multiple is not None or bound.budget_usd_h is not None):
            cheapest = _cheapest(t.table(workload, space, role), workload, bound)
            if np.isfinite(cheapest):
                limit = min(limit, bound.budget_usd_h or float("inf"),
                            (bound.multiple or float("inf")) * cheapest)
    return t.table(workload, space, role)


def _needed(models: list[SteadyModel], rate_rps: float, usd: float, limit: float,
            bound: CostBound | None, role: str) -> list[int]:
    """The max-batch levels whose curves the front can use: with a bound on one-configuration
    fleets, those whose fewest replicas below saturation (``rate / capacity``, at least
    one) cost no more than ``limit``; else all."""
    if bound is None or not bound.whole_rate or role != "colocated" or not np.isfinite(limit):
        return list(range(len(models)))
    caps = capacities(models)  # cached on the models: p99_curves reuses them
    return [i for i, (c, _) in enumerate(caps)
            if c <= 0 or max(1.0, math.ceil(rate_rps / c - 1e-9)) * usd <= limit]


def _cheapest(table: ConfigTable, workload: Workload, bound: CostBound) -> float:
    from kvopt.pareto.exact import cheapest_feasible

    best = cheapest_feasible(table, workload, bound.max_replicas, bound.budget_usd_h)
    return float("inf") if best is None else best


class _Arrays:
    """The arrays of a table being built."""

    def __init__(self, shape: tuple[int, int, int, int]) -> None:
        self.valid = np.zeros(shape, dtype=bool)
        self.cost = np.full(shape, np.nan)
        self.gpus_r = np.zeros(shape)
        self.cap = np.zeros(shape)
        self.quality = np.zeros(shape)
        self.xfer = np.full(shape, np.inf)
        self.ttft = np.full((*shape, FRACTIONS.size), np.inf)
        self.tpot = np.full((*shape, FRACTIONS.size), np.inf)
        self.reason: dict[tuple[int, int, int, int], str] = {}

    def refuse(self, gi: int, ti: int, pi: int, n_batches: int, why: str) -> None:
        for bi in range(n_batches):
            self.reason[(gi, ti, pi, bi)] = why

    def table(self, workload: Workload, space: Space, role: str) -> ConfigTable:
        lays = space.parallel_layouts
        return ConfigTable(
            gpus=tuple(space.gpus), tps=tuple(x.tp for x in lays),
            layouts=lays if space.layouts else (), precisions=tuple(space.precisions),
            batches=tuple(space.batches), valid=self.valid, reason=self.reason,
            usd_per_hour=self.cost, gpus_per_replica=self.gpus_r, capacity_rps=self.cap,
            quality_loss_pct=self.quality, ttft_p99_ms=self.ttft, tpot_p99_ms=self.tpot,
            output_len_mean=workload.output_dist.mean, engine=space.engine, role=role,
            kv_transfer_ms=self.xfer if role == "prefill" else None)


def _models(rep: Replica, workload: Workload, space: Space, role: str) -> list[SteadyModel]:
    """The steady models of one replica's max-batch levels in a pool of ``role``."""
    if role == "colocated":
        return [steady_model(rep, workload.input_dist, workload.output_dist, max_num_seqs=b)
                for b in space.batches]
    out = fixed(1) if role == "prefill" else workload.output_dist
    return [SteadyModel(step_cost_for(rep), workload.input_dist, out,
                        prompt_cached=role == "decode", max_num_seqs=b)
            for b in space.batches]


def interp_p99(curves: Array, frac: Array) -> Array:
    """Interpolate per-point curves (N, F) at load fractions ``frac`` (N,) on FRACTIONS;
    fractions beyond the last grid point are saturated (inf)."""
    idx = np.clip(np.searchsorted(FRACTIONS, frac) - 1, 0, FRACTIONS.size - 2)
    x0, x1 = FRACTIONS[idx], FRACTIONS[idx + 1]
    rows = np.arange(frac.size)
    y0, y1 = curves[rows, idx], curves[rows, idx + 1]
    w = np.clip((frac - x0) / (x1 - x0), 0.0, 1.0)
    with np.errstate(invalid="ignore"):
        out = np.where(np.isfinite(y1), y0 + w * (y1 - y0), np.where(w <= 0, y0, np.inf))
    return np.where(frac < FRACTIONS[-1], out, np.inf)
