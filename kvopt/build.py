"""Builders from plain parameters: the value objects of kvopt (lengths, loads, replicas,
workloads, search spaces, fleet problems) from the plain keywords that the CLI, the study
worker, fleet files and Python users all pass. One place turns ``input_len=1024`` or
``precisions="fp8/fp8,bf16/bf16"`` into objects, with one set of checks and messages.

Lists may be given as Python sequences or as the CLI's comma-separated text. This is the one
input layer: every number is checked against its range in :mod:`kvopt.limits` (finite, within
bounds from physics, engine limits or bounded work), every name against the catalog (a GPU
list never drops an unknown name: it is an error with close matches), and a list is never
empty. Parts of it live in their own modules and are re-exported here: names
(:mod:`kvopt.catalog.names`), parallel layouts (:mod:`kvopt.layouts`), images
(:mod:`kvopt.multimodal`), and lengths, loads, serving features, SLOs and simulation sizes
(:mod:`kvopt.traffic`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from kvopt import choices, limits
from kvopt.catalog.names import engine_name as engine_name  # the input layer's names
from kvopt.catalog.names import gpu_id as gpu_id
from kvopt.catalog.names import gpu_list as gpu_list
from kvopt.catalog.names import gpu_prices as gpu_prices
from kvopt.errors import InputError
from kvopt.layouts import layouts as layouts  # the input layer's parallel layouts
from kvopt.layouts import parallel as parallel
from kvopt.multimodal import images as images  # the input layer's image parameters
from kvopt.multimodal import prompt_with_images as prompt_with_images
from kvopt.multimodal import refuse_images as refuse_images
from kvopt.multimodal import with_images as with_images
from kvopt.traffic import features as features  # the input layer's traffic
from kvopt.traffic import lengths as lengths
from kvopt.traffic import load as load
from kvopt.traffic import sim_size as sim_size
from kvopt.traffic import slo as slo

if TYPE_CHECKING:
    from kvopt.bench.calibrate import Calibration
    from kvopt.catalog.engines import EngineProfile
    from kvopt.catalog.gpus import GpuSpec
    from kvopt.fleet.problem import FleetProblem
    from kvopt.physics.vision import ImageInput
    from kvopt.serving.lengths import LengthDist
    from kvopt.serving.replica import Replica
    from kvopt.space import Region, Space, Workload

TextOr = str | Iterable[Any]


def items(value: TextOr | None, field: str, kind: type = str) -> tuple[Any, ...]:
    """A list given as a sequence or comma-separated text, each item converted by ``kind``
    (an input error naming ``field`` when one is not)."""
    if value is None:
        return ()
    raw = [x.strip() for x in value.split(",")] if isinstance(value, str) else list(value)
    out = []
    for x in raw:
        if isinstance(x, str) and not x:
            continue
        if kind is int and (isinstance(x, bool) or (isinstance(x, float)
                                                     and not x.is_integer())):
            raise InputError(field, x, "not an integer", "give a list of whole numbers")
        try:
            out.append(kind(x))
        except (TypeError, ValueError):
            what = "an integer" if kind is int else f"a {kind.__name__}"
            raise InputError(field, x, f"not {what}",
                             "give a comma-separated list, e.g. 1,2,4") from None
    return tuple(out)


def hardware(gpu: str | GpuSpec, engine: str | EngineProfile = choices.DEFAULT_ENGINE,
             profile: str | None = None, engine_args: dict[str, Any] | None = None,
             engine_version: str | None = None) -> tuple[Any, Any]:
    """(GPU, engine) as given, or their calibrated versions from a profile file
    (``kvopt calibrate --out``), which must be for that GPU and engine; ``engine_version``
    picks the engine's overheads fitted for that version; ``engine_args`` sets engine flags
    on top (:data:`kvopt.catalog.engine_args.ENGINE_ARGS`)."""
    g: Any = gpu
    eng: Any = engine
    if engine_version is not None and profile:
        raise InputError("--engine-version", engine_version, "a calibrated profile carries "
                         "its own overheads", "drop --engine-version or --profile")
    if engine_version is not None and isinstance(engine, str):
        from kvopt.catalog.engines import load_engine
        from kvopt.catalog.gpus import load_gpu

        g = load_gpu(gpu) if isinstance(gpu, str) else gpu
        eng = load_engine(engine, g, engine_version)
    if profile:
        from kvopt.bench.calibrate import load_profile
        from kvopt.catalog.gpus import load_gpu

        cal = load_profile(profile)
        gpu_id = gpu.id if not isinstance(gpu, str) else load_gpu(gpu).id
        name = engine if isinstance(engine, str) else engine.name
        if gpu_id != cal.gpu or name != cal.engine:
            raise InputError("--profile", profile, f"calibrated for {cal.gpu} / {cal.engine}, "
                             f"not {gpu_id} / {name}", "use the matching --gpu and --engine")
        g, eng = cal.apply()
    if engine_args:
        from kvopt.catalog.engine_args import apply_args

        g, eng = apply_args(g, eng, dict(engine_args))
    return g, eng


def engine_args(pairs: TextOr | dict[str, Any] | None) -> dict[str, Any]:
    """``{"max_num_batched_tokens": 4096}`` or ``["max_num_batched_tokens=4096", ...]``
    (the CLI's ``--engine-arg KEY=VALUE``); values are checked when applied."""
    if not pairs:
        return {}
    if isinstance(pairs, dict):
        return dict(pairs)
    out: dict[str, Any] = {}
    for item in items(pairs, "--engine-arg"):
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip():
            raise InputError("--engine-arg", item, "use KEY=VALUE",
                             "e.g. --engine-arg max_num_batched_tokens=4096")
        out[key.strip()] = value.strip()
    return out


_engine_args = engine_args  # for space(), whose keyword has the same name


def replica(*, model: str, gpu: str | GpuSpec, tp: int = 1, weights: str | None = None,
            kv_dtype: str | None = None, engine: str | EngineProfile = choices.DEFAULT_ENGINE,
            profile: str | None = None, engine_args: dict[str, Any] | None = None,
            engine_version: str | None = None, ep: int = 1, dp: int = 1,
            pp: int = 1, images: ImageInput | None = None) -> Replica:
    """One replica (a TP group, or ``tp x dp x pp`` GPUs with ``ep`` expert-parallel ranks)
    of ``model`` on ``gpu`` under ``engine`` (calibrated with ``profile`` when given, with
    ``engine_args`` flags set); ``weights`` None: the checkpoint's own format; ``images``:
    every request's images (:func:`images`)."""
    from kvopt.serving.replica import build_replica

    tp, ep, dp, pp = parallel(tp=tp, ep=ep, dp=dp, pp=pp)
    g, eng = hardware(gpu, engine, profile, engine_args, engine_version)
    return build_replica(model=model, gpu=g, tp=tp, weights=weights, kv_dtype=kv_dtype,
                         engine=eng, ep=ep, dp=dp, pp=pp, images=images)


def workload(*, model: str, rps: float, input_len: int | None = None,
             output_len: int | None = None, input_len_dist: LengthDist | str | None = None,
             output_len_dist: LengthDist | str | None = None,
             slo_ttft_p99_ms: float | None = None, slo_tpot_p99_ms: float | None = None,
             slo_e2e_p99_ms: float | None = None, redundancy: int = 0,
             max_quality_loss_pct: float | None = None, name: str | None = None,
             regions: Iterable[str] = (), images_per_request: int | None = None,
             image_size: str | Sequence[int] | None = None) -> Workload:
    """One traffic class: a model at ``rps`` requests/s with its lengths and SLOs; with
    images, the prompt lengths are the text's plus the images' tokens."""
    from kvopt.space import Workload

    inp, out = lengths(input_len=input_len, output_len=output_len,
                       input_len_dist=input_len_dist, output_len_dist=output_len_dist)
    rps = limits.RPS.check("rps", rps)
    redundancy = limits.REDUNDANCY.check("redundancy", redundancy)
    if max_quality_loss_pct is not None:
        max_quality_loss_pct = limits.QUALITY_PCT.check("max_quality_loss_pct",
                                                        max_quality_loss_pct)
    if not isinstance(model, str) or not model.strip():
        raise InputError("model", model, "must be a catalog name or a config.json path")
    from kvopt.catalog.models import load_model

    load_model(model)  # unknown or malformed: an error now, not "no candidate fits"
    imgs = images(model, images_per_request, image_size)
    return Workload(name=name or model, model=model, rate_rps=rps,
                    input_dist=with_images(model, inp, imgs),
                    output_dist=out, slo=slo(ttft_p99_ms=slo_ttft_p99_ms,
                                             tpot_p99_ms=slo_tpot_p99_ms,
                                             e2e_p99_ms=slo_e2e_p99_ms),
                    redundancy=redundancy, max_quality_loss_pct=max_quality_loss_pct,
                    regions=tuple(regions), images=imgs)


def precision_pairs(precisions: TextOr, field: str = "--precisions"
                    ) -> tuple[tuple[str, str], ...]:
    """``"fp8/fp8,bf16/bf16"`` or ``[("fp8", "fp8"), "bf16/bf16"]`` -> (weights, kv) pairs."""
    from kvopt.physics.precision import parse_precision_pair

    raw = [p.strip() for p in precisions.split(",") if p.strip()] if isinstance(
        precisions, str) else list(precisions)
    limits.check_list(field, tuple(raw), "e.g. fp8/fp8,bf16/bf16")
    pairs = tuple(parse_precision_pair("/".join(p), field) if isinstance(p, tuple)
                  else parse_precision_pair(str(p), field) for p in raw)
    return tuple(dict.fromkeys(pairs))


def calibrations(profiles: Sequence[str]) -> tuple[Calibration, ...]:
    """The calibrated profiles at these paths (kvopt calibrate --out), loaded and checked."""
    if not profiles:
        return ()
    from kvopt.bench.calibrate import load_profile

    return tuple(load_profile(p) for p in profiles)


def space(*, gpus: TextOr = choices.PLAN_GPUS, tp_options: TextOr = choices.TP_OPTIONS,
          precisions: TextOr = choices.PRECISIONS, batches: TextOr = choices.PLAN_BATCHES,
          engine: str = choices.DEFAULT_ENGINE, prices: dict[str, float] | None = None,
          profiles: Sequence[str] = (), capacity: str = choices.DEFAULT_CAPACITY,
          regions: tuple[Region, ...] = (), kv_offload_gib: float = 0.0,
          ep_options: TextOr = (1,), dp_options: TextOr = (1,), pp_options: TextOr = (1,),
          parallel: TextOr | None = None, engine_version: str | None = None,
          engine_args: TextOr | dict[str, Any] | None = None) -> Space:
    """What to consider: GPUs (ids or a group word), TP degrees, (weights, KV) precision
    pairs, max-batch levels, engine, $/GPU-hour overrides, calibration profiles and how
    goodputs are found (:data:`kvopt.choices.CAPACITY_METHODS`); ``kv_offload_gib``: a CPU
    tier for the KV cache per replica, passed through to the plan and its exports. Layouts
    beyond TP: the cross product of ``tp_options`` with ``ep_options``, ``dp_options`` and
    ``pp_options`` (those whose EP divides tp x dp), or the ``parallel`` list itself
    (``"tp8,tp4ep8dp2"``); ``engine_version``: the release whose fitted overheads the
    candidates run with; ``engine_args``: engine flags every candidate runs with
    (:func:`engine_args`; the max batch stays the plan's choice)."""
    from kvopt.space import Space

    tps = ints(tp_options, "tp_options", limits.TP)
    return Space(gpus=gpu_list(gpus), tps=tps, precisions=precision_pairs(precisions),
                 batches=ints(batches, "batches", limits.SEQS), engine=engine_name(engine),
                 prices_usd_h=gpu_prices(prices), calibrations=calibrations(profiles),
                 capacity=choice("capacity", capacity, choices.CAPACITY_METHODS),
                 regions=regions, kv_offload_gib=kv_offload_gib,
                 layouts=layouts(tps, ep_options, dp_options, pp_options, parallel),
                 engine_version=None if engine_version is None else str(engine_version),
                 engine_args=tuple(sorted(_engine_args(engine_args).items())))


def ints(values: TextOr, field: str, rng: limits.Range) -> tuple[int, ...]:
    """A list of integers in ``rng`` (not empty, at most ``limits.LIST_ITEMS``), each
    once, in order."""
    got = items(values, field, int)
    limits.check_list(field, got, "e.g. 1,2,4")
    return tuple(dict.fromkeys(int(rng.check(field, v)) for v in got))


def choice(field: str, value: str, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise InputError(field, value, f"allowed: {', '.join(allowed)}")
    return value


def availability(value: TextOr | dict[str, int] | None) -> tuple[tuple[str, int], ...]:
    """GPU inventory caps: ``{"H100-SXM": 16}`` or ``"H100-SXM=16,L40S=8"``."""
    if not value:
        return ()
    pairs: list[tuple[str, Any]] = []
    if isinstance(value, dict):
        pairs = [(str(g), n) for g, n in value.items()]
    else:
        for item in items(value, "availability"):
            g, sep, n = str(item).partition("=")
            if not sep or not n.strip().isdigit():
                raise InputError("availability", item, "use GPU=COUNT", "e.g. H100-SXM=16")
            pairs.append((g.strip(), int(n)))
    out: dict[str, int] = {}
    for g, n in pairs:
        key = gpu_id(g, "availability")
        out[key] = int(limits.GPU_COUNT.check(f"availability.{g}", n))
    return tuple(out.items())


def problem(*, workloads: Sequence[Workload], space: Space,
            availability: TextOr | dict[str, int] | None = None,
            budget_usd_h: float | None = None, power_cap_kw: float | None = None,
            goal: str = "cost", allow_mixing: bool = False) -> FleetProblem:
    """A fleet-sizing problem: workloads to serve from a space under budget, power and
    inventory caps, optimizing ``goal`` (:data:`kvopt.choices.GOALS`)."""
    from kvopt.fleet.problem import FleetProblem

    avail = globals()["availability"](availability)
    if budget_usd_h is not None:
        budget_usd_h = limits.BUDGET_USD_H.check("budget_usd_h", budget_usd_h)
    if power_cap_kw is not None:
        power_cap_kw = limits.POWER_KW.check("power_cap_kw", power_cap_kw)
    choice("goal", goal, choices.GOALS)
    return FleetProblem(workloads=tuple(workloads), space=space, availability=avail,
                        budget_usd_h=budget_usd_h, power_cap_kw=power_cap_kw, objective=goal,
                        allow_mixing=allow_mixing)


def solve_settings(*, solver: str = "highs", time_limit_s: float | None = None,
                   gap: float | None = None) -> None:
    """Check the MILP settings before any candidate is evaluated: a solver profile that
    exists (``solvers/``), a time limit and a relative gap in range."""
    from kvopt.fleet.solve import load_profile

    load_profile(solver)
    if time_limit_s is not None:
        limits.TIME_LIMIT_S.check("time_limit_s", time_limit_s)
    if gap is not None:
        limits.GAP.check("gap", gap)


def price(usd_h: float | None, field: str = "price_usd_h") -> float | None:
    """A $/GPU-hour override (None: the price book's)."""
    return None if usd_h is None else limits.PRICE_USD_H.check(field, usd_h)
