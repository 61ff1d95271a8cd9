"""The value objects of candidate evaluation (part of :mod:`kvopt.space`, which re-exports
them): a :class:`Workload` to serve, a :class:`Region` with its own prices and caps, the
:class:`Space` of replica configurations to consider, one evaluated :class:`Candidate`, and
a :class:`CandidateSet` (the candidates and the configurations dropped on the way, by
reason). They check their own ranges (:mod:`kvopt.limits`), also when built by hand.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kvopt.catalog.gpus import load_gpu
from kvopt.choices import (
    CAPACITY_METHODS,
    DEFAULT_CAPACITY,
    DEFAULT_ENGINE,
    PLAN_BATCHES,
    PRECISIONS,
    TP_OPTIONS,
)
from kvopt.errors import InputError
from kvopt.limits import PRICE_USD_H, REDUNDANCY, RPS, SEQS, TP
from kvopt.physics.parallel import Parallel
from kvopt.serving.lengths import LengthDist
from kvopt.serving.results import Slo

if TYPE_CHECKING:
    from kvopt.bench.calibrate import Calibration
    from kvopt.catalog.engines import EngineProfile
    from kvopt.catalog.gpus import GpuSpec
    from kvopt.physics.vision import ImageInput

DEFAULT_PRECISIONS = PRECISIONS
DEFAULT_BATCHES = PLAN_BATCHES


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
    regions: tuple[str, ...] = ()  # the regions it may be served from (empty: any)
    images: ImageInput | None = None  # every request's images (input_dist counts them)

    def __post_init__(self) -> None:
        # the front door's ranges (kvopt.limits), also for a Workload built by hand
        RPS.check(f"workload {self.name}: rate_rps", self.rate_rps,
                  "give the request rate in requests per second")
        REDUNDANCY.check(f"workload {self.name}: redundancy", self.redundancy)


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
    tps: tuple[int, ...] = TP_OPTIONS
    precisions: tuple[tuple[str, str], ...] = DEFAULT_PRECISIONS
    batches: tuple[int, ...] = DEFAULT_BATCHES
    engine: str = DEFAULT_ENGINE
    prices_usd_h: tuple[tuple[str, float], ...] = ()  # per-GPU-hour overrides
    regions: tuple[Region, ...] = ()  # when given, candidates are offered per region
    # fitted GPU x engine profiles (kvopt calibrate); a GPU with one is evaluated with it
    calibrations: tuple[Calibration, ...] = ()
    # how candidates' goodput is found (CAPACITY_METHODS): "exact", the analytic model's
    # search per replica; "screen" (kvopt.serving.screen), every replica at once, its own
    # approximation; "confirm", the planner screens, then runs the exact search only where
    # it can change the plan (evaluate_pruned; evaluate() treats it as "exact")
    capacity: str = DEFAULT_CAPACITY
    # GiB of host memory per replica for a CPU tier of the KV cache (LMCache or vLLM's
    # offloading connector): passed through to the plan's entries and the engine/k8s
    # exports (kvopt.export.offload); the serving model accounts for offload on its own
    kv_offload_gib: float = 0.0
    # layouts with expert, attention-data or pipeline parallelism; empty: tensor
    # parallelism over ``tps`` only (see :attr:`parallel_layouts`)
    layouts: tuple[Parallel, ...] = ()
    # the engine release whose fitted overheads the candidates run with
    # (models/engine_overheads.yaml: the greatest fitted release at or below it); None: the
    # engine profile's own figures. A GPU with a calibrated profile keeps the profile's
    engine_version: str | None = None
    # engine flags every candidate runs with (kvopt.catalog.engine_args.ENGINE_ARGS, sorted
    # (key, value) pairs; not max_num_seqs, which is the candidates' own max batch)
    engine_args: tuple[tuple[str, Any], ...] = ()
    # GPU id -> its calibrated (GPU, engine), applied once here rather than per replica
    _calibrated: dict[str, tuple[GpuSpec, EngineProfile]] = field(
        init=False, repr=False, compare=False, default_factory=dict)

    def __post_init__(self) -> None:
        if not self.gpus:
            raise InputError("gpus", self.gpus, "the candidate set is empty",
                             "list at least one GPU")
        for b in self.batches:
            SEQS.check("batch levels", b)
        for t in self.tps:
            TP.check("tp", t)
        for g, usd in self.prices_usd_h:
            PRICE_USD_H.check(f"prices.{g}", usd)
        if isinstance(self.kv_offload_gib, bool) or not self.kv_offload_gib >= 0:
            raise InputError("kv_offload_gib", self.kv_offload_gib,
                             "must be a number of GiB >= 0", "e.g. --kv-offload-gib 64")
        if self.capacity not in CAPACITY_METHODS:
            raise InputError("capacity", self.capacity, f"one of: {', '.join(CAPACITY_METHODS)}")
        if self.engine_version is not None:  # a release kvopt has no fit for: refused
            from kvopt.catalog.engine_versions import overrides

            overrides(self.engine, self.engine_version)
        if self.engine_args:
            self._check_engine_args()
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

    def _check_engine_args(self) -> None:
        """Refuse engine flags the engine does not take (one line naming the flag) before
        any candidate is built; the max batch is the plan's own choice."""
        from kvopt.catalog.engine_args import apply_args, typed_args

        keys = [k for k, _ in self.engine_args]
        if "max_num_seqs" in keys:
            value = dict(self.engine_args)["max_num_seqs"]
            raise InputError("--engine-arg", f"max_num_seqs={value}", "the plan chooses each "
                             "candidate's max batch", "give the levels with --batches")
        if len(set(keys)) < len(keys):
            raise InputError("--engine-arg", ",".join(keys), "a flag is given twice",
                             "give each flag once")
        apply_args(self.gpus[0], self.engine, dict(self.engine_args))
        typed = typed_args(dict(self.engine_args))  # "20" from the command line -> 20
        object.__setattr__(self, "engine_args", tuple(sorted(typed.items())))

    @property
    def parallel_layouts(self) -> tuple[Parallel, ...]:
        """The replica layouts to consider: ``layouts``, else TP over ``tps``."""
        return self.layouts or tuple(Parallel(tp=t) for t in self.tps)

    def hardware(self, gpu: str) -> tuple[GpuSpec | str, EngineProfile | str]:
        """(GPU, engine) to build ``gpu``'s replicas with: the calibrated pair when a
        profile covers it, else the catalog's (with the overheads fitted for
        :attr:`engine_version` when one is given); :attr:`engine_args` set on top."""
        hw: tuple[GpuSpec | str, EngineProfile | str] = (gpu, self.engine)
        cal = self._calibrated.get(load_gpu(gpu).id) if self._calibrated else None
        if cal is not None:
            hw = cal
        elif self.engine_version is not None:  # the release's fitted overheads
            from kvopt.catalog.engines import load_engine

            g = load_gpu(gpu)
            hw = g, load_engine(self.engine, g, self.engine_version)
        if self.engine_args:  # the user's flags on top
            from kvopt.catalog.engine_args import apply_args

            hw = apply_args(*hw, dict(self.engine_args))
        return hw


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
    ep: int = 1  # expert-parallel ranks, attention-DP ranks, pipeline stages (gpus = tp dp pp)
    dp: int = 1
    pp: int = 1

    @property
    def layout(self) -> str:
        """``tp4``, ``tp1ep8dp8``: :attr:`kvopt.physics.parallel.Parallel.label`."""
        return Parallel(tp=self.tp, ep=self.ep, dp=self.dp, pp=self.pp).label

    @property
    def label(self) -> str:
        where = f" @{self.region}" if self.region else ""
        return (f"{self.gpu} {self.layout} {self.weights}/{self.kv_dtype} "
                f"batch<={self.max_batch}{where}")

    @property
    def inventory_key(self) -> str:
        return f"{self.region}:{self.gpu}" if self.region else self.gpu


@dataclass(frozen=True)
class CandidateSet:
    candidates: list[Candidate]
    excluded: Counter[str]  # reason -> number of configurations dropped for it
