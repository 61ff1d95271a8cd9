"""The configuration table of a Pareto search: every (GPU, TP, weights/KV, max batch) of the
space, evaluated once with the serving model, as numpy arrays.

For a feasible configuration the table holds its price, capacity (saturation rate per
replica) and its TTFT/TPOT p99 on a grid of load fractions of that capacity. A point with
``n`` replicas serves ``rate / n`` per replica; its p99s are interpolated on the grid (exact
at grid points), so objectives for any number of points are vectorized numpy.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from kvopt.catalog.prices import price_for
from kvopt.errors import KvoptError
from kvopt.physics.quality import quality_loss_pct
from kvopt.serving.disagg import kv_transfer_s
from kvopt.serving.lengths import fixed
from kvopt.serving.replica import build_replica
from kvopt.serving.serve import steady_model, step_cost_for
from kvopt.serving.steady import SteadyModel
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

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.gpus), len(self.tps), len(self.precisions), len(self.batches))


def build_table(workload: Workload, space: Space, role: str = "colocated") -> ConfigTable:
    """Evaluate every configuration of ``space`` for ``workload`` (SLOs are not applied:
    they are constraints of the search). ``role``: ``prefill`` pools serve requests of one
    output token; ``decode`` pools receive prompts with their KV already cached."""
    if role not in ("colocated", "prefill", "decode"):
        raise ValueError(f"unknown role {role!r}")
    shape = (len(space.gpus), len(space.tps), len(space.precisions), len(space.batches))
    valid = np.zeros(shape, dtype=bool)
    cost = np.full(shape, np.nan)
    gpus_r = np.zeros(shape)
    cap = np.zeros(shape)
    quality = np.zeros(shape)
    xfer = np.full(shape, np.inf)
    ttft = np.full((*shape, FRACTIONS.size), np.inf)
    tpot = np.full((*shape, FRACTIONS.size), np.inf)
    reason: dict[tuple[int, int, int, int], str] = {}
    overrides = dict(space.prices_usd_h)
    for (gi, g), (ti, tp), (pi, (w, kv)) in itertools.product(
            enumerate(space.gpus), enumerate(space.tps), enumerate(space.precisions)):
        try:
            hw_gpu, hw_engine = space.hardware(g)
            rep = build_replica(model=workload.model, gpu=hw_gpu, tp=tp, weights=w,
                                kv_dtype=kv, engine=hw_engine)
        except KvoptError as exc:
            for bi in range(len(space.batches)):
                reason[(gi, ti, pi, bi)] = str(exc).split(";")[0][:100]
            continue
        price = overrides.get(rep.gpu.id)
        if price is None:
            p = price_for(rep.gpu.id)
            price = p.usd_per_gpu_hour if p else None
        for bi, b in enumerate(space.batches):
            key = (gi, ti, pi, bi)
            if price is None:
                reason[key] = f"no price for {rep.gpu.id}"
                continue
            if not rep.fits:
                reason[key] = "weights do not fit"
                continue
            if role == "colocated":
                model = steady_model(rep, workload.input_dist, workload.output_dist,
                                     max_num_seqs=b)
            else:
                model = SteadyModel(step_cost_for(rep), workload.input_dist,
                                    fixed(1) if role == "prefill" else workload.output_dist,
                                    prompt_cached=role == "decode", max_num_seqs=b)
                if role == "prefill":
                    xfer[key] = kv_transfer_s(rep, rep, workload.input_dist.mean,
                                              same_node=False) * 1e3
            c, _ = model.capacity()
            if c <= 0:
                reason[key] = "no sustainable rate"
                continue
            valid[key] = True
            cost[key] = price * tp
            gpus_r[key] = tp
            cap[key] = c
            quality[key] = quality_loss_pct(w, rep.precision.kv_dtype)
            ttft[key], tpot[key] = model.poisson_p99_ms(c * FRACTIONS)
    return ConfigTable(
        gpus=tuple(space.gpus), tps=tuple(space.tps), precisions=tuple(space.precisions),
        batches=tuple(space.batches), valid=valid, reason=reason, usd_per_hour=cost,
        gpus_per_replica=gpus_r, capacity_rps=cap, quality_loss_pct=quality, ttft_p99_ms=ttft,
        tpot_p99_ms=tpot, output_len_mean=workload.output_dist.mean, engine=space.engine,
        role=role, kv_transfer_ms=xfer if role == "prefill" else None)


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
