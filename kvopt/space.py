"""Candidate replica configurations for a workload, evaluated with the serving model.

A candidate is (GPU, TP, weight precision, KV precision, max batch) under one engine, with
expert, attention-data and pipeline parallelism when the space lists layouts beyond TP
(:class:`kvopt.physics.parallel.Parallel`). For
each, the serving model gives its goodput — the highest Poisson request rate one replica
sustains with the workload's lengths while meeting its SLOs — and the p99 latencies at that
rate; the catalog gives its price, GPU count and power. Candidates that cannot serve the
workload (unsupported precision, TP that does not divide the heads, weights that do not fit,
an SLO no load can meet, too much quality loss) are dropped with the reason recorded, so an
empty set can say which constraint emptied it.

The value objects (:class:`Workload`, :class:`Region`, :class:`Space`, :class:`Candidate`,
:class:`CandidateSet`) are defined in :mod:`kvopt.space_types` and re-exported here.
"""

from __future__ import annotations

import itertools
from collections import Counter
from typing import TYPE_CHECKING, Any

import numpy as np

from kvopt.caching import Memo
from kvopt.catalog.engines import load_engine
from kvopt.catalog.gpus import load_gpu
from kvopt.catalog.models import load_model
from kvopt.catalog.prices import price_for
from kvopt.choices import PRUNE_GOALS
from kvopt.errors import InputError, KvoptError
from kvopt.physics.quality import quality_loss_pct
from kvopt.serving.capacity import capacity_levels
from kvopt.serving.replica import build_replica
from kvopt.serving.results import CapacityResult
from kvopt.serving.serve import step_cost_for
from kvopt.space_types import DEFAULT_BATCHES as DEFAULT_BATCHES  # the value objects
from kvopt.space_types import DEFAULT_PRECISIONS as DEFAULT_PRECISIONS
from kvopt.space_types import Candidate as Candidate
from kvopt.space_types import CandidateSet as CandidateSet
from kvopt.space_types import Region as Region
from kvopt.space_types import Space as Space
from kvopt.space_types import Workload as Workload
from kvopt.units import GIB

if TYPE_CHECKING:
    from kvopt.confirm import Bound

# evaluate_pruned's reason for the configurations it proved dominated (not evaluated)
DOMINATED = "dominated: a cheaper replica on the same GPU serves more"


def _price(gpu_id: str, overrides: dict[str, float]) -> float | None:
    if gpu_id in overrides:
        return overrides[gpu_id]
    p = price_for(gpu_id)
    return p.usd_per_gpu_hour if p else None


_Kept = tuple[int, str, Any, float, float]  # (tp, weights, replica, $/h per GPU, loss)


def evaluate(workload: Workload, space: Space, *, prune: str | None = None,
             bound: Bound | None = None) -> CandidateSet:
    """Every candidate of ``space`` that can serve ``workload``, with its figures.

    ``prune`` says the caller drops dominated candidates the way
    :func:`kvopt.fleet.options.undominated` does for one configuration per workload and a
    goal of cost (also gpus and power: ``"cost"``) or ``"quality"``; ``bound`` (with
    ``prune="cost"``) that it also drops the options that cannot match its cheapest fleet
    (:func:`kvopt.fleet.options.cheapest_only`). With ``space.capacity`` ``"confirm"`` the
    candidates it would drop are then proven dominated instead of searched
    (:func:`evaluate_pruned`); otherwise they change nothing."""
    if prune is not None and prune not in PRUNE_GOALS:
        raise InputError("prune", prune, f"one of: {', '.join(PRUNE_GOALS)}, or None")
    if prune is not None and space.capacity == "confirm":
        return evaluate_pruned(workload, space, by_quality=prune == "quality",
                               bound=bound if prune == "cost" else None)
    kept, excluded, fits = _replicas(workload, space)
    out: list[Candidate] = []
    for item, levels in zip(kept, _levels(workload, space, kept), strict=True):
        out += _candidates(workload, space, item, levels, excluded)
    return _finish(workload, space, out, excluded, fits)


def evaluate_pruned(workload: Workload, space: Space, *, by_quality: bool = False,
                    bound: Bound | None = None) -> CandidateSet:
    """The candidates a one-configuration fleet that minimizes cost, GPUs or power (or,
    with ``by_quality``, quality loss) can choose, found with the exact search where it
    matters: a plan over them is the plan over :func:`evaluate`'s (the proofs are in
    :mod:`kvopt.confirm`). ``bound``: the plan pays the cheapest fleet (cost or GPUs) and
    nothing limits it otherwise, so a replica that cannot match the cheapest found is
    dropped too (:func:`kvopt.confirm.prove_costlier`)."""
    from kvopt.confirm import COSTLIER, prove_costlier, prove_dominated

    kept, excluded, fits = _replicas(workload, space)

    def search(i: int) -> list[Candidate]:
        return _candidates(workload, space, kept[i], _exact(workload, space, kept[i][2]),
                           Counter())

    if bound is not None and not by_quality and not space.regions:
        proven = prove_costlier(workload, space,
                                [(_replica_usd(k), k[2].n_gpus, k[2]) for k in kept],
                                bound, search)
        reason = COSTLIER
    else:
        proven = prove_dominated(workload, space, [(k[2].n_gpus, k[2], k[4]) for k in kept],
                                 by_quality, search)
        reason = DOMINATED
    out: list[Candidate] = []
    for i, item in enumerate(kept):
        if i in proven:
            excluded[reason] += len(space.batches)
        else:  # searched by the proof already (capacity_levels caches it)
            out += _candidates(workload, space, item, _exact(workload, space, item[2]),
                               excluded)
    return _finish(workload, space, out, excluded, fits)


def _replica_usd(item: _Kept) -> float:
    """$/h of one replica: the GPU's price x the GPUs it spans."""
    _, _, rep, price, _ = item
    return float(price * rep.n_gpus)


def _exact(workload: Workload, space: Space, rep: Any) -> list[CapacityResult]:
    """The exact search at every batch level of one replica (cached by capacity_levels)."""
    return capacity_levels(rep, input_dist=workload.input_dist,
                           output_dist=workload.output_dist, slo=workload.slo,
                           batches=space.batches, rel_tol=0.01)


def _replicas(workload: Workload, space: Space
              ) -> tuple[list[_Kept], Counter[str], list[Any]]:
    """The replicas of ``space`` that can hold ``workload``'s model at a price within its
    quality floor; the configurations dropped on the way, by reason; and every replica that
    fits (their physical minimum TTFT / TPOT explains an empty set). Cached by model, quality
    floor and space: a plan evaluates the same replicas for each SLO it tries."""
    key = (workload.model, workload.max_quality_loss_pct, workload.images, space.gpus,
           space.parallel_layouts, space.precisions, space.batches, space.engine,
           space.engine_version, space.engine_args, space.prices_usd_h, space.calibrations)
    hit = _REPLICAS.get(key)
    if hit is None:
        hit = _REPLICAS.put(key, _build_replicas(workload, space))
    kept, excluded, fits = hit
    return list(kept), Counter(excluded), fits


_REPLICAS: Memo[tuple[object, ...], tuple[list[_Kept], Counter[str], list[Any]]] = Memo(
    "candidate replicas", 64)


def _build_replicas(workload: Workload, space: Space
                    ) -> tuple[list[_Kept], Counter[str], list[Any]]:
    overrides = dict(space.prices_usd_h)
    excluded: Counter[str] = Counter()
    fits: list[Any] = []
    kept: list[_Kept] = []
    for gpu_id in space.gpus:
        load_gpu(gpu_id)  # unknown GPU -> CatalogError naming close matches
    model = _resolved(lambda: load_model(workload.model), workload.model)
    hardware = {g: _hardware(space, g) for g in space.gpus}
    for gpu_id, lay, (w, kv) in itertools.product(space.gpus, space.parallel_layouts,
                                                  space.precisions):
        n = len(space.batches)
        tp = lay.tp
        try:
            hw_gpu, hw_engine = hardware[gpu_id]
            rep = build_replica(model=model, gpu=hw_gpu, tp=tp, weights=w,
                                kv_dtype=kv, engine=hw_engine, ep=lay.ep, dp=lay.dp,
                                pp=lay.pp, images=workload.images)
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
        fits.append(rep)
        loss = quality_loss_pct(w, rep.precision.kv_dtype, rep.model.default_weights)
        if workload.max_quality_loss_pct is not None and loss > workload.max_quality_loss_pct:
            excluded["quality floor"] += n
            continue
        kept.append((tp, w, rep, price, loss))
    return kept, excluded, fits


def _resolved(load: Any, name: Any) -> Any:
    """``load()``, or ``name`` itself where loading fails (build_replica then raises the
    same error at the same point for each configuration)."""
    try:
        return load()
    except KvoptError:
        return name


def _hardware(space: Space, gpu_id: str) -> tuple[Any, Any]:
    """(GPU, engine) of ``gpu_id``'s replicas, loaded once for all its configurations."""
    try:
        hw_gpu, hw_engine = space.hardware(gpu_id)
    except KvoptError:
        return gpu_id, space.engine
    gpu = _resolved(lambda: load_gpu(hw_gpu), hw_gpu) if isinstance(hw_gpu, str) else hw_gpu
    if isinstance(hw_engine, str) and not isinstance(gpu, str):
        hw_engine = _resolved(lambda: load_engine(hw_engine, gpu), hw_engine)
    return gpu, hw_engine


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
            goodput_rps=res.goodput_rps, usd_per_hour=price * rep.n_gpus, gpus=rep.n_gpus,
            power_kw=rep.gpu.tdp_w * rep.n_gpus / 1000.0,
            memory_per_gpu_gib=(rep.weights_bytes + rep.activation_bytes) / GIB
            + rep.engine.runtime_overhead_gib + rep.kv_bytes_per_token
            * res.steady_state_batch / rep.dp * (workload.input_dist.mean
                                                 + workload.output_dist.mean / 2) / GIB,
            gpu_memory_gib=rep.gpu.memory_gib,
            ttft_p99_ms=res.ttft_p99_ms or 0.0, tpot_p99_ms=res.tpot_p99_ms or 0.0,
            quality_loss_pct=loss, steady_state_batch=res.steady_state_batch,
            e2e_p99_ms=res.e2e_p99_ms or 0.0, ep=rep.ep, dp=rep.dp, pp=rep.pp))
    return out


def _finish(workload: Workload, space: Space, out: list[Candidate], excluded: Counter[str],
            fits: list[Any]) -> CandidateSet:
    if not out:
        fastest: dict[str, tuple[float, str]] = {}
        for rep in fits:
            _track_minimum(fastest, rep, workload)
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
            out.append(replace(c, region=region.name, usd_per_hour=price * c.gpus))
    return out


def _track_minimum(fastest: dict[str, tuple[float, str]], rep: Any, w: Workload) -> None:
    """Prefill of one mean prompt alone and one decode step at batch 1: no load can beat
    them on this replica."""
    sc = step_cost_for(rep)
    prefill = sc.step_s(decode_contexts=np.zeros(0), prefill_new=np.array([w.input_dist.mean]),
                        prefill_past=np.zeros(1), prefill_rows=1, prefill_starts=1) * 1e3
    decode = sc.step_s(decode_contexts=np.array([w.input_dist.mean]), prefill_new=np.zeros(0),
                       prefill_past=np.zeros(0), prefill_rows=0) * 1e3
    label = f"{rep.gpu.id} {rep.parallel.label} {rep.precision.weights}"
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
        key = (c.gpu, c.tp, c.ep, c.dp, c.pp, c.weights, c.kv_dtype, round(c.goodput_rps, 9))
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
    for words, reason in _PARALLEL_REASONS:
        if words in text:
            return reason
    return text.split(";")[0][:80]


# kvopt.physics.parallel and kvopt.serving.parallel_engine refusals, as exclusion reasons
_PARALLEL_REASONS = (
    ("needs a mixture-of-experts model", "EP/DP on a dense model"),
    ("expert parallelism must divide them", "EP does not divide the experts"),
    ("pipeline stages", "more pipeline stages than layers, or none in the engine"),
    ("every GPU of a stage or none", "EP other than 1 or tp x dp (the engine)"),
    ("one GPU per attention rank", "attention DP needs tp 1 (the engine)"),
    ("tensor parallelism only", "layout beyond TP unsupported by the engine"),
)
