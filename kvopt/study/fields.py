"""The scenario schema: every key a solve kind takes, its type, default and meaning.

The study file's JSON Schema (``kvopt schema study``, kvopt/schemas/study.schema.json) documents
the same table and the output columns: ``tests/test_schemas.py`` checks it has every key with
its default and ``tests/study/test_study.py`` that every output column is described there and
that no key collides with an output column.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kvopt import choices, limits
from kvopt.choices import GOALS, PARETO_GPUS, PLAN_GPUS
from kvopt.errors import InputError

SOLVES = ("plan", "size", "pareto", "estimate", "capacity")
PRECISIONS = tuple(f"{w}/{kv}" for w, kv in choices.PRECISIONS)
FLEET_OUTPUTS = ("usd_per_hour", "total_gpus", "power_kw", "replicas", "gpu", "tp", "precision",
                 "max_batch", "ttft_p99_ms", "tpot_p99_ms", "usd_per_million_output_tokens",
                 "solver_status", "mip_gap", "solve_s")
# output columns per solve kind (always all stored; the study's `outputs` picks the table's)
OUTPUTS: dict[str, tuple[str, ...]] = {
    "plan": FLEET_OUTPUTS,
    "size": (*FLEET_OUTPUTS, "workloads"),
    "pareto": ("front_points", "min_usd_per_hour", "knee_usd_per_hour", "knee_gpu", "knee_tp",
               "knee_precision", "knee_max_batch", "knee_replicas", "hv_ratio_to_exact",
               "evaluations"),
    "estimate": ("fits", "ttft_ms", "tpot_ms", "ttft_p99_ms", "tpot_p99_ms", "e2e_ms",
                 "output_tok_s", "requests_s", "memory_total_gib", "bottleneck", "saturated",
                 "usd_per_hour", "usd_per_million_output_tokens"),
    "capacity": ("goodput_rps", "saturation_rps", "steady_state_batch", "ttft_p99_ms",
                 "tpot_p99_ms", "e2e_p99_ms", "output_tok_s", "binding", "feasible",
                 "usd_per_hour"),
}


@dataclass(frozen=True, kw_only=True)
class Field:
    """One scenario key: ``kind`` names its check (see :func:`check_value`)."""

    name: str
    kind: str
    solves: tuple[str, ...]
    default: Any = None
    required: bool = False
    choices: tuple[str, ...] = ()
    help: str = ""


W = ("plan", "pareto", "estimate", "capacity")  # solves with one workload
REPLICA = ("estimate", "capacity")
PLANS = ("plan", "size")
FIELDS: tuple[Field, ...] = (
    Field(name="model", kind="str", solves=W, required=True, help="catalog name or config.json"),
    Field(name="input_len", kind="int+", solves=W, help="prompt tokens"),
    Field(name="output_len", kind="int+", solves=W, help="output tokens"),
    Field(name="input_len_dist", kind="dist", solves=W, help="e.g. lognormal:mean=1000,sigma=0.6"),
    Field(name="output_len_dist", kind="dist", solves=W, help="e.g. uniform:low=50,high=400"),
    Field(name="images_per_request", kind="int0", solves=W,
          help="vision-language models: images per request"),
    Field(name="image_size", kind="str", solves=W, help="WxH pixels, e.g. 1024x768"),
    Field(name="rps", kind="float+", solves=("plan", "pareto"), required=True,
          help="request rate to serve"),
    Field(name="rps", kind="float+", solves=("estimate",), help="Poisson load"),
    Field(name="slo_ttft_p99_ms", kind="float+", solves=("plan", "pareto", "capacity")),
    Field(name="slo_tpot_p99_ms", kind="float+", solves=("plan", "pareto", "capacity")),
    Field(name="slo_e2e_p99_ms", kind="float+", solves=("plan", "capacity")),
    Field(name="redundancy", kind="int0", solves=("plan",), default=0, help="N+k"),
    Field(name="max_quality_loss_pct", kind="float0", solves=("plan",)),
    Field(name="gpus", kind="gpus", solves=("plan",), default=list(PLAN_GPUS),
          help="list, or all / nvidia / amd / datacenter / desktop / laptop"),
    Field(name="gpus", kind="gpus", solves=("pareto",), default=list(PARETO_GPUS)),
    Field(name="gpus", kind="gpus", solves=("size",), help="replaces the fleet file's"),
    Field(name="tp_options", kind="ints", solves=("plan", "pareto"),
          default=list(choices.TP_OPTIONS)),
    Field(name="ep_options", kind="ints", solves=("plan", "pareto"), default=[1],
          help="expert-parallel sizes (MoE), crossed with tp, dp and pp options"),
    Field(name="dp_options", kind="ints", solves=("plan", "pareto"), default=[1],
          help="attention data-parallel ranks (MoE)"),
    Field(name="pp_options", kind="ints", solves=("plan", "pareto"), default=[1],
          help="pipeline stages"),
    Field(name="parallel", kind="str", solves=("plan", "pareto"),
          help="layouts instead of the option cross product, e.g. tp8,tp4ep8dp2"),
    Field(name="precisions", kind="precisions", solves=("plan", "pareto"),
          default=list(PRECISIONS), help="weights/kv pairs"),
    Field(name="batches", kind="ints", solves=("plan",),
          default=list(choices.PLAN_BATCHES), help="max-batch levels"),
    Field(name="batches", kind="ints", solves=("pareto",),
          default=list(choices.PARETO_BATCHES)),
    Field(name="engine", kind="engine", solves=("plan", "pareto", *REPLICA),
          default=choices.DEFAULT_ENGINE),
    Field(name="engine_version", kind="str", solves=("plan", "pareto", *REPLICA),
          help="engine release whose fitted overheads apply (null: the profile's)"),
    Field(name="engine_args", kind="flags", solves=("plan", "pareto", *REPLICA),
          help="engine flags as --engine-arg takes them (plan/pareto: every candidate)"),
    Field(name="prices", kind="prices", solves=("plan", "size", "pareto"), default={},
          help="GPU -> $/GPU-hour overrides, or a price-book file"),
    Field(name="budget_usd_h", kind="float+", solves=(*PLANS, "pareto")),
    Field(name="power_cap_kw", kind="float+", solves=PLANS),
    Field(name="availability", kind="counts", solves=("plan",), default={},
          help="GPU -> most GPUs of that type"),
    Field(name="allow_mixing", kind="bool", solves=("plan",), default=False),
    Field(name="goal", kind="choice", solves=("plan",), default="cost", choices=GOALS),
    Field(name="capacity", kind="choice", solves=("plan",), default=choices.DEFAULT_CAPACITY,
          choices=choices.CAPACITY_METHODS,
          help="how candidates' goodput is found (as kvopt plan --capacity)"),
    Field(name="goal", kind="choice", solves=("size",), choices=GOALS,
          help="replaces the fleet file's objective"),
    Field(name="solver", kind="str", solves=PLANS, default="highs"),
    Field(name="time_limit_s", kind="float+", solves=PLANS),
    Field(name="gap", kind="float0", solves=PLANS, help="relative MIP gap"),
    Field(name="explain", kind="bool", solves=PLANS, default=False,
          help="SLO sensitivity re-solves (slower)"),
    Field(name="fleet_file", kind="path", solves=("size",), required=True,
          help="a fleet.yaml (kvopt size), relative to the study file"),
    Field(name="rate_scale", kind="float+", solves=("size",), default=1.0,
          help="multiplies every workload's rate (a traffic forecast)"),
    Field(name="objectives", kind="objectives", solves=("pareto",),
          default=list(choices.DEFAULT_PARETO_OBJECTIVES),
          choices=tuple(choices.PARETO_OBJECTIVES)),
    Field(name="max_replicas", kind="int+", solves=("pareto",), default=16),
    Field(name="pop", kind="int+", solves=("pareto",), default=100),
    Field(name="gens", kind="int+", solves=("pareto",), default=100),
    Field(name="seed", kind="int0", solves=("pareto",), default=0),
    Field(name="method", kind="choice", solves=("pareto",), default="nsga2",
          choices=choices.PARETO_METHODS),
    Field(name="fleet", kind="choice", solves=("pareto",), default="single",
          choices=choices.PARETO_FLEETS),
    Field(name="gpu", kind="str", solves=REPLICA, required=True),
    Field(name="tp", kind="int+", solves=REPLICA, default=1),
    Field(name="ep", kind="int+", solves=REPLICA, default=1),
    Field(name="dp", kind="int+", solves=REPLICA, default=1),
    Field(name="pp", kind="int+", solves=REPLICA, default=1),
    Field(name="weights", kind="str", solves=REPLICA,
          help="default: the checkpoint's own format"),
    Field(name="kv_dtype", kind="str", solves=REPLICA),
    Field(name="batch", kind="int+", solves=("estimate",), help="static batch"),
    Field(name="concurrency", kind="int+", solves=("estimate",), help="closed-loop clients"),
    Field(name="price_usd_h", kind="float+", solves=REPLICA, help="$/GPU-hour override"),
    Field(name="labels", kind="labels", solves=SOLVES, default={},
          help="free-form columns (group axes and price books set them)"),
)


# the range of each numeric key (of each item, for lists and mappings): kvopt.limits, the
# table the CLI and the front door check against too
RANGES: dict[str, limits.Range] = {
    "input_len": limits.TOKENS, "output_len": limits.TOKENS, "rps": limits.RPS,
    "images_per_request": limits.IMAGES,
    "slo_ttft_p99_ms": limits.SLO_MS, "slo_tpot_p99_ms": limits.SLO_MS,
    "slo_e2e_p99_ms": limits.SLO_MS, "redundancy": limits.REDUNDANCY,
    "max_quality_loss_pct": limits.QUALITY_PCT, "tp_options": limits.TP,
    "batches": limits.SEQS, "prices": limits.PRICE_USD_H, "budget_usd_h": limits.BUDGET_USD_H,
    "power_cap_kw": limits.POWER_KW, "availability": limits.GPU_COUNT,
    "time_limit_s": limits.TIME_LIMIT_S, "gap": limits.GAP,
    "rate_scale": limits.Range(0, 1e4, "a traffic multiplier", lo_open=True),
    "max_replicas": limits.PARETO_REPLICAS, "pop": limits.POP, "gens": limits.GENS,
    "seed": limits.SEED, "tp": limits.TP, "batch": limits.SEQS, "ep": limits.EP,
    "dp": limits.DP, "pp": limits.PP, "ep_options": limits.EP, "dp_options": limits.DP,
    "pp_options": limits.PP,
    "concurrency": limits.CLIENTS, "price_usd_h": limits.PRICE_USD_H,
}


def _bad(f: Field, value: Any, rule: str, fix: str = "") -> InputError:
    return InputError(f.name, value, rule, fix)


def _number(f: Field, value: Any, *, positive: bool, integer: bool) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float) or (
            integer and not float(value).is_integer()) or value != value:
        raise _bad(f, value, f"must be {'an integer' if integer else 'a number'}"
                   + (" > 0" if positive else " >= 0"))
    if (positive and not value > 0) or value < 0:
        raise _bad(f, value, "must be > 0" if positive else "must be >= 0")
    rng = RANGES.get(f.name)
    if rng is not None:
        checked: int | float = rng.check(f.name, value)
        return checked
    return int(value) if integer else float(value)


def _items(f: Field, value: Any) -> list[Any]:
    if isinstance(value, str):
        return [x.strip() for x in value.split(",") if x.strip()]
    if isinstance(value, list | tuple) and value:
        return list(value)
    raise _bad(f, value, "must be a non-empty list")


def check_value(f: Field, value: Any, base_dir: Path) -> Any:
    """``value`` checked against ``f`` and normalized (paths resolved against ``base_dir``)."""
    if value is None:
        if f.required:
            raise _bad(f, value, "is required")
        return f.default
    k = f.kind
    if k in ("int+", "int0", "float+", "float0"):
        return _number(f, value, positive=k.endswith("+"), integer=k.startswith("int"))
    if k == "bool":
        if not isinstance(value, bool):
            raise _bad(f, value, "must be true or false")
        return value
    if k in ("str", "choice", "engine", "dist", "path"):
        if not isinstance(value, str) or not value.strip():
            raise _bad(f, value, "must be a non-empty string")
        return _string(f, value.strip(), base_dir)
    if k == "ints":
        items = _items(f, value)
        limits.check_list(f.name, tuple(items))
        return [_number(f, x, positive=True, integer=True) for x in items]
    if k == "gpus":
        return _gpus(f, value)
    if k in ("precisions", "objectives"):
        from kvopt.physics.precision import parse_precision_pair

        out = []
        for x in _items(f, value):
            if not isinstance(x, str):
                raise _bad(f, x, "must be a string")
            if k == "objectives" and x not in f.choices:
                raise _bad(f, x, "unknown objective", f"valid: {', '.join(f.choices)}")
            out.append(x if k == "objectives" else "/".join(parse_precision_pair(x, f.name)))
        return out
    if k in ("prices", "counts", "labels", "flags"):
        return _mapping(f, value, base_dir)
    raise AssertionError(k)  # pragma: no cover


def _string(f: Field, value: str, base_dir: Path) -> str:
    if f.kind == "choice" and value not in f.choices:
        raise _bad(f, value, f"allowed: {', '.join(f.choices)}")
    if f.kind == "engine":
        from kvopt.catalog.engines import engine_names

        if value not in engine_names():
            raise _bad(f, value, f"allowed: {', '.join(engine_names())}")
    if f.kind == "dist":
        from kvopt.serving.lengths import parse_dist

        parse_dist(value, field=f.name)
    if f.kind == "path":
        p = (base_dir / value).resolve()
        if not p.is_file():
            raise _bad(f, value, f"no such file ({p})")
        return str(p)
    return value


def _gpus(f: Field, value: Any) -> list[str]:
    from kvopt.catalog.gpus import gpu_group

    if isinstance(value, str) and (group := gpu_group(value)) is not None:
        return group
    items = _items(f, value)
    for x in items:
        if not isinstance(x, str):
            raise _bad(f, x, "must be a GPU id")
    from kvopt.build import gpu_list

    return list(gpu_list([str(x) for x in items], field=f.name))


def _mapping(f: Field, value: Any, base_dir: Path) -> dict[str, Any]:
    if f.kind == "prices" and isinstance(value, str):
        return load_price_book(base_dir / value)
    if not isinstance(value, Mapping):
        raise _bad(f, value, "must map names to values"
                   + (" (or name a price-book file)" if f.kind == "prices" else ""))
    out: dict[str, Any] = {}
    for name, v in value.items():
        if f.kind in ("labels", "flags"):
            if isinstance(v, list | dict) or v is None:
                raise _bad(f, {name: v}, f"{'label' if f.kind == 'labels' else 'flag'} "
                           "values must be strings, numbers or true/false")
            out[str(name)] = v
        else:
            from kvopt.build import gpu_id

            out[gpu_id(str(name), f"{f.name}.{name}")] = _number(
                f, v, positive=f.kind == "prices", integer=f.kind == "counts")
    return dict(sorted(out.items()))


def load_price_book(path: Path) -> dict[str, float]:
    """A price book: a YAML (or JSON) mapping GPU id -> $/GPU-hour. Errors name the line."""
    import yaml

    from kvopt.fileio import read_text_input

    text = read_text_input(path, "prices")
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        raise InputError("prices", str(path), f"not valid YAML: {exc}") from None
    if not isinstance(root, yaml.MappingNode):
        raise InputError("prices", str(path), "a price book maps GPU id -> $/GPU-hour")
    out = {}
    for k, v in root.value:
        try:
            num = yaml.safe_load(yaml.serialize(v))
        except yaml.YAMLError:  # pragma: no cover
            num = None
        where = f"{path}:{v.start_mark.line + 1}"
        if isinstance(num, bool) or not isinstance(num, int | float) or not num > 0:
            raise InputError("prices", where,
                             f"{k.value}: {num!r} must be a positive $/GPU-hour")
        try:
            from kvopt.build import gpu_id

            out[gpu_id(str(k.value), "prices")] = limits.PRICE_USD_H.check(str(k.value), num)
        except InputError as exc:
            raise InputError("prices", where, f"{exc.field}: {exc.rule}", exc.fix) from None
    return dict(sorted(out.items()))
