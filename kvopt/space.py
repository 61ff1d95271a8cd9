"""Candidate replica configurations for a workload, evaluated with the serving model.

A candidate is (GPU, TP, weight precision, KV precision, max batch) under one engine. For
each, the serving model gives its goodput — the highest Poisson request rate one replica
sustains with the workload's lengths while meeting its SLOs — and the p99 latencies at that
rate; the catalog gives its price, GPU count and power. Candidates that cannot serve the
workload (unsupported precision, TP that does not divide the heads, weights that do not fit,
an SLO no load can meet, too much quality loss) are dropped with the reason recorded, so an
empty set can say which constraint emptied it.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from kvopt.catalog.gpus import load_gpu
from kvopt.catalog.prices import price_for
from kvopt.errors import InputError, KvoptError
from kvopt.physics.quality import quality_loss_pct
from kvopt.serving.capacity import CapacityResult, Slo, capacity_levels
from kvopt.serving.lengths import LengthDist
from kvopt.serving.replica import build_replica
from kvopt.serving.serve import step_cost_for
from kvopt.units import GIB

if TYPE_CHECKING:
    from kvopt.bench.calibrate import Calibration
    from kvopt.catalog.engines import EngineProfile
    from kvopt.catalog.gpus import GpuSpec

DEFAULT_PRECISIONS: tuple[tuple[str, str], ...] = (
    ("bf16", "bf16"), ("fp8", "fp8"), ("fp8", "bf16"), ("int4", "bf16"))
DEFAULT_BATCHES: tuple[int, ...] = (8, 16, 32, 64, 128, 256, 512, 1024)
CAPACITY_METHODS = ("exact", "screen", "confirm")
# evaluate_pruned's reason for the configurations it proved dominated (not evaluated)
DOMINATED = "dominated: a cheaper replica on the same GPU serves more"


@dataclass(frozen=True, kw_only=True)
class Workload:
    """One traffic class to serve."""

    name: str
    model: str
    rate_rps: float
    input_dist: LengthDist
    output_dist: LengthDist
    slo: Slo = field(default_factory=Slo)
    redundancy: int = 0  # N + k: replicas beyond those the demand needs
    max_quality_loss_pct: float | None = None

    def __post_init__(self) -> None:
        if not self.rate_rps > 0:
            raise InputError(f"workload {self.name}: rate_rps", self.rate_rps, "must be > 0",
                             "give the request rate in requests per second")
        if self.redundancy < 0:
            raise InputError(f"workload {self.name}: redundancy", self.redundancy,
                             "must be >= 0")


@dataclass(frozen=True, kw_only=True)
class Region:
    """A region (or provider) with its own GPU prices and caps. Inventory keys become
    ``region:GPU``."""

    name: str
    prices_usd_h: tuple[tuple[str, float], ...] = ()
    availability: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, kw_only=True)
class Space:
    """What to consider: GPUs, TP degrees, (weights, KV) precisions, max batch levels."""

    gpus: tuple[str, ...]
    tps: tuple[int, ...] = (1, 2, 4, 8)
    precisions: tuple[tuple[str, str], ...] = DEFAULT_PRECISIONS
    batches: tuple[int, ...] = DEFAULT_BATCHES
    engine: str = "vllm"
    prices_usd_h: tuple[tuple[str, float], ...] = ()  # per-GPU-hour overrides
    regions: tuple[Region, ...] = ()  # when given, candidates are offered per region
    # fitted GPU x engine profiles (kvopt calibrate); a GPU with one is evaluated with it
    calibrations: tuple[Calibration, ...] = ()
    # how candidates' goodput is found (CAPACITY_METHODS): "exact", the analytic model's
    # search per replica; "screen" (kvopt.serving.screen), every replica at once, its own
    # approximation; "confirm", the planner screens, then runs the exact search only where
    # it can change the plan (evaluate_pruned; evaluate() treats it as "exact")
    capacity: str = "confirm"
    # GPU id -> its calibrated (GPU, engine), applied once here rather than per replica
    _calibrated: dict[str, tuple[GpuSpec, EngineProfile]] = field(
        init=False, repr=False, compare=False, default_factory=dict)

    def __post_init__(self) -> None:
        if not self.gpus:
            raise InputError("gpus", self.gpus, "the candidate set is empty",
                             "list at least one GPU")
        for b in self.batches:
            if b < 1:
                raise InputError("batch levels", b, "must be >= 1")
        if self.capacity not in CAPACITY_METHODS:
            raise InputError("capacity", self.capacity, f"one of: {', '.join(CAPACITY_METHODS)}")
        if self.calibrations:
            ids = {load_gpu(g).id for g in self.gpus}
            for c in self.calibrations:
                where = f"{c.gpu} / {c.engine}"
                if c.engine != self.engine:
                    raise InputError("profile", where, f"calibrated for engine {c.engine}, "
                                     f"the candidates run {self.engine}",
                                     f"use --engine {c.engine} or a profile fitted for "
                                     f"{self.engine}")
                if c.gpu not in ids:
                    raise InputError("profile", where, f"{c.gpu} is not a candidate GPU "
                                     f"({', '.join(sorted(ids))})",
                                     f"add {c.gpu} to the GPUs or drop the profile")
                if c.gpu in self._calibrated:
                    raise InputError("profile", where, "two profiles for the same GPU",
                                     "give one profile per GPU")
                self._calibrated[c.gpu] = c.apply()

    def hardware(self, gpu: str) -> tuple[GpuSpec | str, EngineProfile | str]:
        """(GPU, engine) to build ``gpu``'s replicas with: the calibrated pair when a
        profile covers it, else the catalog's."""
        if self._calibrated:
            hw = self._calibrated.get(load_gpu(gpu).id)
            if hw is not None:
                return hw
        return gpu, self.engine


@dataclass(frozen=True, kw_only=True)
class Candidate:
    """One replica configuration and its evaluated figures (per replica)."""

    workload: str
    gpu: str
    tp: int
    weights: str
    kv_dtype: str
    max_batch: int
    engine: str
    goodput_rps: float
    usd_per_hour: float
    gpus: int
    power_kw: float
    memory_per_gpu_gib: float
    gpu_memory_gib: float
    ttft_p99_ms: float
    tpot_p99_ms: float
    quality_loss_pct: float
    steady_state_batch: float
    region: str = ""
    e2e_p99_ms: float = 0.0

    @property
    def label(self) -> str:
        where = f" @{self.region}" if self.region else ""
        return (f"{self.gpu} tp{self.tp} {self.weights}/{self.kv_dtype} "
                f"batch<={self.max_batch}{where}")

    @property
    def inventory_key(self) -> str:
        return f"{self.region}:{self.gpu}" if self.region else self.gpu


@dataclass(frozen=True)
class CandidateSet:
    candidates: list[Candidate]
    excluded: Counter[str]  # reason -> number of configurations dropped for it


def _price(gpu_id: str, overrides: dict[str, float]) -> float | None:
    if gpu_id in overrides:
        return overrides[gpu_id]
    p = price_for(gpu_id)
    return p.usd_per_gpu_hour if p else None


_Kept = tuple[int, str, Any, float, float]  # (tp, weights, replica, $/h per GPU, loss)


PRUNE_GOALS = ("cost", "quality")


def evaluate(workload: Workload, space: Space, *, prune: str | None = None) -> CandidateSet:
    """Every candidate of ``space`` that can serve ``workload``, with its figures.

    ``prune`` says the caller drops dominated candidates the way
    :func:`kvopt.fleet.options.undominated` does for one configuration per workload and a
    goal of cost (also gpus and power: ``"cost"``) or ``"quality"``. With ``space.capacity``
    ``"confirm"`` the candidates it would drop are then proven dominated instead of
    searched (:func:`evaluate_pruned`); otherwise it changes nothing."""
    if prune is not None and prune not in PRUNE_GOALS:
        raise InputError("prune", prune, f"one of: {', '.join(PRUNE_GOALS)}, or None")
    if prune is not None and space.capacity == "confirm":
        return evaluate_pruned(workload, space, by_quality=prune == "quality")
    kept, excluded, fastest = _replicas(workload, space)
    out: list[Candidate] = []
    for item, levels in zip(kept, _levels(workload, space, kept), strict=True):
        out += _candidates(workload, space, item, levels, excluded)
    return _finish(workload, space, out, excluded, fastest)


def evaluate_pruned(workload: Workload, space: Space, *, by_quality: bool = False
                    ) -> CandidateSet:
    """The candidates a one-configuration fleet that minimizes cost, GPUs or power (or,
    with ``by_quality``, quality loss) can choose, found with the exact search where it
    matters: a plan over them is the plan over :func:`evaluate`'s.

    The screen ranks every replica; the exact search then runs on those no cheaper
    replica of the same GPU beats on the screen (same or lower TP, and with
    ``by_quality`` the same or lower quality loss). Each other replica is proven
    dominated by one exact check: at every batch level it misses the SLO at the best
    exact goodput ``g`` of a cheaper replica on its GPU that fits in memory. Its goodput
    is then below ``g`` (the p99s rise with the rate), so that replica serves more for no
    more dollars, GPUs, kW or quality loss, and :func:`kvopt.fleet.options.undominated`
    would drop it. A replica that passes the check gets the exact search too."""
    kept, excluded, fastest = _replicas(workload, space)
    key = (tuple(k[2] for k in kept), workload.input_dist.label, workload.output_dist.label,
           workload.slo, space.batches, by_quality)
    proven = _PROVEN.get(key)
    if proven is None:
        proven = _prove_dominated(workload, space, kept, by_quality)
        if len(_PROVEN) > 4096:
            _PROVEN.clear()
        _PROVEN[key] = proven
    out: list[Candidate] = []
    for i, item in enumerate(kept):
        if i in proven:
            excluded[DOMINATED] += len(space.batches)
        else:
            out += _candidates(workload, space, item, _exact(workload, space, item[2]),
                               excluded)
    return _finish(workload, space, out, excluded, fastest)


# what _prove_dominated found, by (replicas, lengths, SLO, batch levels, by_quality): the
# rest of a workload (its name, rate, prices, regions) does not change it
_PROVEN: dict[tuple[object, ...], frozenset[int]] = {}


def clear_caches() -> None:
    """Forget every memoized evaluation: step-cost tables and the GPU-independent ops they
    share, steady models, step-time curves, capacities and dominance proofs (benchmarks
    time cold evaluations after it; results do not change)."""
    from kvopt.serving import capacity, serve, steady, stepcost

    serve.step_cost_for.cache_clear()
    stepcost._OPS.clear()
    serve._MODELS.clear()
    steady._CURVES.clear()
    capacity._CACHE.clear()
    _PROVEN.clear()


def _prove_dominated(workload: Workload, space: Space, kept: list[_Kept], by_quality: bool
                     ) -> frozenset[int]:
    """The indices of the replicas of ``kept`` proven dominated (see
    :func:`evaluate_pruned`)."""
    from kvopt.serving.capacity import meets_at
    from kvopt.serving.screen import screen_levels

    screened = screen_levels([k[2] for k in kept], input_dist=workload.input_dist,
                             output_dist=workload.output_dist, slo=workload.slo,
                             batches=space.batches) if kept else []
    best = [max((r.goodput_rps for r in lv if r.feasible), default=0.0) for lv in screened]

    def cheaper(a: int, b: int) -> bool:  # a costs no more than b in every column
        (tp_a, _, rep_a, _, loss_a), (tp_b, _, rep_b, _, loss_b) = kept[a], kept[b]
        return (a != b and rep_a.gpu.id == rep_b.gpu.id and tp_a <= tp_b
                and (not by_quality or loss_a <= loss_b))

    ranked = [b for b in range(len(kept))
              if any(cheaper(a, b) and best[a] > best[b] for a in range(len(kept)))]
    # each candidate's exact goodput, for the replicas that fit in memory at it
    exact = {i: [c.goodput_rps for c in _candidates(workload, space, kept[i],
                                                    _exact(workload, space, kept[i][2]),
                                                    Counter())
                 if c.memory_per_gpu_gib <= c.gpu_memory_gib]
             for i in range(len(kept)) if i not in ranked}
    proven = set()
    for b in ranked:
        top = max((g for a, gs in exact.items() if cheaper(a, b) for g in gs), default=0.0)
        if top > 0 and not any(meets_at(
                kept[b][2], input_dist=workload.input_dist, output_dist=workload.output_dist,
                slo=workload.slo, batches=space.batches, rate_rps=top)):
            proven.add(b)
    return frozenset(proven)


def _exact(workload: Workload, space: Space, rep: Any) -> list[CapacityResult]:
    """The exact search at every batch level of one replica (cached by capacity_levels)."""
    return capacity_levels(rep, input_dist=workload.input_dist,
                           output_dist=workload.output_dist, slo=workload.slo,
                           batches=space.batches, rel_tol=0.01)


def _replicas(workload: Workload, space: Space
              ) -> tuple[list[_Kept], Counter[str], dict[str, tuple[float, str]]]:
    """The replicas of ``space`` that can hold ``workload``'s model at a price within its
    quality floor; the configurations dropped on the way, by reason; and the physical
    minimum TTFT / TPOT seen."""
    overrides = dict(space.prices_usd_h)
    excluded: Counter[str] = Counter()
    fastest: dict[str, tuple[float, str]] = {}
    kept: list[_Kept] = []
    for gpu_id in space.gpus:
        load_gpu(gpu_id)  # unknown GPU -> CatalogError naming close matches
    for gpu_id, tp, (w, kv) in itertools.product(space.gpus, space.tps, space.precisions):
        n = len(space.batches)
        try:
            hw_gpu, hw_engine = space.hardware(gpu_id)
            rep = build_replica(model=workload.model, gpu=hw_gpu, tp=tp, weights=w,
                                kv_dtype=kv, engine=hw_engine)
        except KvoptError as exc:
            excluded[_reason(exc)] += n
            continue
        price = _price(rep.gpu.id, overrides)
        if price is None:
            excluded[f"no price for {rep.gpu.id} (give one)"] += n
            continue
        if not rep.fits:
            excluded["memory: weights do not fit"] += n
            continue
        _track_minimum(fastest, rep, workload)
        loss = quality_loss_pct(w, rep.precision.kv_dtype)
        if workload.max_quality_loss_pct is not None and loss > workload.max_quality_loss_pct:
            excluded["quality floor"] += n
            continue
        kept.append((tp, w, rep, price, loss))
    return kept, excluded, fastest


def _candidates(workload: Workload, space: Space, item: _Kept, levels: list[CapacityResult],
                excluded: Counter[str]) -> list[Candidate]:
    """One replica's candidates: its batch levels that serve some load under the SLO."""
    tp, w, rep, price, loss = item
    out = []
    for b, res in zip(space.batches, levels, strict=True):
        if not res.feasible or res.goodput_rps <= 0:
            excluded[f"SLO: {res.binding}" if "SLO" in res.binding
                     else f"capacity: {res.binding}"] += 1
            continue
        out.append(Candidate(
            workload=workload.name, gpu=rep.gpu.id, tp=tp, weights=w,
            kv_dtype=rep.precision.kv_dtype, max_batch=b, engine=rep.engine.name,
            goodput_rps=res.goodput_rps, usd_per_hour=price * tp, gpus=tp,
            power_kw=rep.gpu.tdp_w * tp / 1000.0,
            memory_per_gpu_gib=(rep.weights_bytes + rep.activation_bytes) / GIB
            + rep.engine.runtime_overhead_gib + rep.kv_bytes_per_token
            * res.steady_state_batch * (workload.input_dist.mean
                                        + workload.output_dist.mean / 2) / GIB,
            gpu_memory_gib=rep.gpu.memory_gib,
            ttft_p99_ms=res.ttft_p99_ms or 0.0, tpot_p99_ms=res.tpot_p99_ms or 0.0,
            quality_loss_pct=loss, steady_state_batch=res.steady_state_batch,
            e2e_p99_ms=res.e2e_p99_ms or 0.0))
    return out


def _finish(workload: Workload, space: Space, out: list[Candidate], excluded: Counter[str],
            fastest: dict[str, tuple[float, str]]) -> CandidateSet:
    if not out:
        _check_physical_minimum(workload, fastest)
    out = _dedupe(out)
    if space.regions:
        out = _per_region(out, space)
    return CandidateSet(out, excluded)


def _levels(workload: Workload, space: Space, kept: list[_Kept]) -> list[list[CapacityResult]]:
    """The goodput of each kept replica at each batch level: the exact search one replica
    at a time (capacity "exact" or "confirm"), or the screen over all of them at once."""
    reps = [k[2] for k in kept]
    if space.capacity == "screen":
        from kvopt.serving.screen import screen_levels

        return screen_levels(reps, input_dist=workload.input_dist,
                             output_dist=workload.output_dist, slo=workload.slo,
                             batches=space.batches)
    return [_exact(workload, space, rep) for rep in reps]


def _per_region(cands: list[Candidate], space: Space) -> list[Candidate]:
    """Offer each candidate in every region that prices its GPU (region price, else the
    price book)."""
    from dataclasses import replace

    out = []
    for region in space.regions:
        prices = dict(region.prices_usd_h)
        for c in cands:
            price = prices.get(c.gpu)
            if price is None:
                p = price_for(c.gpu)
                price = p.usd_per_gpu_hour if p else None
            if price is None:
                continue
            out.append(replace(c, region=region.name, usd_per_hour=price * c.tp))
    return out


def _track_minimum(fastest: dict[str, tuple[float, str]], rep: Any, w: Workload) -> None:
    """Prefill of one mean prompt alone and one decode step at batch 1: no load can beat
    them on this replica."""
    sc = step_cost_for(rep)
    prefill = sc.step_s(decode_contexts=np.zeros(0), prefill_new=np.array([w.input_dist.mean]),
                        prefill_past=np.zeros(1), prefill_rows=1) * 1e3
    decode = sc.step_s(decode_contexts=np.array([w.input_dist.mean]), prefill_new=np.zeros(0),
                       prefill_past=np.zeros(0), prefill_rows=0) * 1e3
    label = f"{rep.gpu.id} tp{rep.tp} {rep.precision.weights}"
    for key, val in (("ttft", prefill), ("tpot", decode)):
        if key not in fastest or val < fastest[key][0]:
            fastest[key] = (val, label)


def _check_physical_minimum(w: Workload, fastest: dict[str, tuple[float, str]]) -> None:
    for key, slo, what in (("ttft", w.slo.ttft_p99_ms, f"prefilling one {w.input_dist.mean:.0f}"
                            "-token prompt"),
                           ("tpot", w.slo.tpot_p99_ms, "one decode step at batch 1")):
        if slo is not None and key in fastest and slo < fastest[key][0]:
            best, label = fastest[key]
            raise InputError(
                f"workload {w.name}: {key}_p99_ms", slo,
                f"below the physical minimum: {what} takes at least {best:.1f} ms on the "
                f"fastest candidate ({label})",
                f"raise the SLO above {best:.1f} ms, shorten the prompts or add faster GPUs")


def _dedupe(cands: list[Candidate]) -> list[Candidate]:
    """Batch levels above what a replica can use give the same replica: keep the smallest."""
    seen: dict[tuple[object, ...], Candidate] = {}
    for c in cands:
        key = (c.gpu, c.tp, c.weights, c.kv_dtype, round(c.goodput_rps, 9))
        if key not in seen or c.max_batch < seen[key].max_batch:
            seen[key] = c
    return list(seen.values())


def _reason(exc: KvoptError) -> str:
    text = str(exc)
    if "not supported" in text or "tensor-core" in text:
        return "precision unsupported on the GPU"
    if "divide" in text or "% tp" in text:
        return "TP does not divide the heads"
    if "nodes hold at most" in text:
        return "TP larger than a node"
    return text.split(";")[0][:80]
