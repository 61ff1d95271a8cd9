"""``fleet.yaml``: many workloads and constraints in one file (every key in
``kvopt/schemas/fleet.schema.json``, ``kvopt schema fleet``).

Validation (the schema, then the semantic checks) reports ``FILE:LINE: path: problem (fix)``
using the YAML node positions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from kvopt import build, limits
from kvopt.bench.calibrate import load_profile
from kvopt.catalog.gpus import gpu_group
from kvopt.choices import DEFAULT_CAPACITY, DEFAULT_ENGINE, TP_OPTIONS
from kvopt.choices import PLAN_BATCHES as DEFAULT_BATCHES
from kvopt.choices import PRECISIONS as DEFAULT_PRECISIONS
from kvopt.errors import InputError
from kvopt.fileio import LineError, read_yaml_mapping
from kvopt.fleet.horizonfile import TIME_KEYS, horizon_from
from kvopt.fleet.problem import FleetProblem
from kvopt.physics.precision import parse_precision_pair
from kvopt.space import Region, Space


class FleetFileError(LineError):
    """A fleet-file error at a line."""


def _lines(node: yaml.Node) -> dict[str, Any]:
    """Map of key -> (value node) for a mapping node."""
    return {k.value: v for k, v in node.value} if isinstance(node, yaml.MappingNode) else {}


def load_fleet_file(path: str | Path) -> FleetProblem:
    """A :class:`FleetProblem` from a fleet file, checked against the ``fleet`` schema
    (``kvopt schema fleet``) and then semantically (GPU groups, precisions, length
    distributions, profiles); every error names its line."""
    from kvopt.schemas import validate

    p = Path(path)
    origin = str(p)
    root, data = read_yaml_mapping(p, "fleet file", FleetFileError,
                                   "expected a mapping with 'workloads'")
    validate("fleet", data, source=origin, nodes=root, error=FleetFileError)
    nodes = _lines(root)

    def fail(key: str, problem: str, node: yaml.Node | None = None) -> FleetFileError:
        n = node if node is not None else nodes.get(key, root)
        return FleetFileError(origin, n.start_mark.line + 1, key, problem)

    def num(key: str, value: Any, node: yaml.Node, rng: limits.Range) -> float:
        # the schema checked the type and sign; NaN and inf pass any JSON Schema bound
        try:
            return float(rng.check(key, value))
        except InputError as exc:
            raise FleetFileError(origin, node.start_mark.line + 1, key,
                                 f"{value!r}: {exc.rule}") from None

    def gpu(key: str, name: Any, node: yaml.Node) -> str:
        try:
            return build.gpu_id(str(name), key)
        except InputError as exc:
            raise FleetFileError(origin, node.start_mark.line + 1, key,
                                 f"{name!r}: {exc.rule} ({exc.fix})") from None

    objective = data.get("objective", "cost")
    if isinstance(data["gpus"], str):
        group = gpu_group(data["gpus"])
        if group is None:
            raise fail("gpus", f"{data['gpus']!r} is not a GPU group; list the candidate "
                       "GPUs (e.g. [H100-SXM, A100-SXM-80GB]) or name a group (all, nvidia, "
                       "amd, datacenter, desktop, laptop)")
        gpus = tuple(group)
    else:
        gpus = tuple(dict.fromkeys(gpu(f"gpus[{i}]", x, nodes["gpus"])
                                   for i, x in enumerate(data["gpus"])))
    precisions = DEFAULT_PRECISIONS
    if "precisions" in data:
        try:
            precisions = tuple(parse_precision_pair(str(s)) for s in data["precisions"])
        except InputError as exc:
            raise fail("precisions", f"{exc.value!r}: {exc.rule}") from None
    try:
        tps = build.ints(data["tps"], "tps", limits.TP) if "tps" in data else TP_OPTIONS
        batches = (build.ints(data["batches"], "batches", limits.SEQS) if "batches" in data
                   else DEFAULT_BATCHES)
        layouts = build.layouts(tps, data.get("eps", (1,)), data.get("dps", (1,)),
                                data.get("pps", (1,)), data.get("parallel"))
    except InputError as exc:
        key = {"ep_options": "eps", "dp_options": "dps", "pp_options": "pps"}.get(
            exc.field, exc.field)
        raise fail(key if key in nodes else "parallel" if "parallel" in nodes else "tps",
                   f"{exc.value!r}: {exc.rule}") from None
    avail = [(gpu(f"availability.{g}", g, nodes["availability"]),
              int(num(f"availability.{g}", n, nodes["availability"], limits.GPU_COUNT)))
             for g, n in (data.get("availability") or {}).items()]
    prices = tuple((gpu(f"prices_usd_h.{g}", g, nodes["prices_usd_h"]),
                    num(f"prices_usd_h.{g}", v, nodes["prices_usd_h"], limits.PRICE_USD_H))
                   for g, v in (data.get("prices_usd_h") or {}).items())
    regions = []
    rnodes = _lines(nodes["regions"]) if "regions" in nodes else {}
    for rname, rd in (data.get("regions") or {}).items():
        rn = rnodes[str(rname)]
        regions.append(Region(
            name=str(rname),
            prices_usd_h=tuple((gpu(f"regions.{rname}.prices_usd_h.{g}", g, rn),
                                num(f"regions.{rname}.prices_usd_h.{g}", v, rn,
                                    limits.PRICE_USD_H))
                               for g, v in (rd.get("prices_usd_h") or {}).items()),
            availability=tuple((gpu(f"regions.{rname}.availability.{g}", g, rn),
                                int(num(f"regions.{rname}.availability.{g}", v, rn,
                                        limits.GPU_COUNT)))
                               for g, v in (rd.get("availability") or {}).items())))
    wl_nodes = nodes["workloads"].value
    workloads = []
    for i, (wd, wn) in enumerate(zip(data["workloads"], wl_nodes, strict=True)):
        where = f"workloads[{i}]"
        wnodes = _lines(wn)
        rate = num(f"{where}.rate_rps", wd["rate_rps"], wnodes["rate_rps"], limits.RPS)

        lens: dict[str, Any] = {}
        for key in ("input_len", "output_len", "input_len_dist", "output_len_dist",
                    "images_per_request", "image_size"):
            if key in wd:
                lens[key] = (wd[key] if key == "images_per_request" else int(wd[key])
                             if key.endswith("_len") else str(wd[key]))
        slo_d: dict[str, Any] = {f"slo_{k}": num(f"{where}.slo.{k}", v, wnodes["slo"],
                                                 limits.SLO_MS)
                                 for k, v in (wd.get("slo") or {}).items()}
        q = wd.get("max_quality_loss_pct")
        try:
            workloads.append(build.workload(
                name=str(wd["name"]), model=str(wd["model"]), rps=rate, **lens,
                **slo_d,
                redundancy=int(wd.get("redundancy", 0)),
                regions=tuple(str(r) for r in wd.get("regions") or ()),
                max_quality_loss_pct=None if q is None else num(
                    f"{where}.max_quality_loss_pct", q, wnodes["max_quality_loss_pct"],
                    limits.QUALITY_PCT)))
        except InputError as exc:
            key = {"rps": "rate_rps"}.get(exc.field.split(".")[-1], exc.field.split(".")[-1])
            raise FleetFileError(origin, wnodes.get(key, wn).start_mark.line + 1,
                                 f"{where}.{key}", exc.rule) from None
    # calibrated GPU x engine profiles (kvopt calibrate --out), relative to the fleet file
    cals = []
    for prof in data.get("profiles") or ():
        try:
            cals.append(load_profile(p.parent / str(prof)))
        except InputError as exc:
            raise fail("profiles", f"{prof}: {exc.rule}") from None
    capacity = data.get("capacity", DEFAULT_CAPACITY)
    version = data.get("engine_version")
    try:
        space = Space(gpus=gpus, tps=tps, precisions=precisions, batches=batches,
                      engine=str(data.get("engine", DEFAULT_ENGINE)), prices_usd_h=prices,
                      regions=tuple(regions), calibrations=tuple(cals), capacity=capacity,
                      layouts=layouts, engine_version=None if version is None else str(version),
                      engine_args=tuple(sorted((str(k), v) for k, v in (
                          data.get("engine_args") or {}).items())))
    except InputError as exc:
        # only the profile, engine-version and engine-arg checks name these fields
        bad = {"profile": "profiles", "--engine-version": "engine_version",
               "--engine-arg": "engine_args"}.get(exc.field)
        if bad is None:
            raise
        fix = (exc.fix.replace("--engine-version", "engine_version")  # the file's keys
               .replace("--engine-arg", "engine_args").replace("--batches", "batches"))
        raise fail(bad, f"{exc.value}: {exc.rule}; {fix}") from None
    try:
        horizon = horizon_from(data, p.parent, tuple(w.name for w in workloads))
    except InputError as exc:
        head = str(exc.field).split(".")[0].split(" ")[0]
        key = head if head in TIME_KEYS and head in data else next(
            (k for k in TIME_KEYS if k in data), "demand")
        raise fail(key, f"{exc.value!r}: {exc.rule}" + (f" ({exc.fix})" if exc.fix else "")
                   ) from None
    return FleetProblem(
        horizon=horizon,
        workloads=tuple(workloads),
        space=space,
        availability=tuple(avail),
        budget_usd_h=None if data.get("budget_usd_h") is None else num(
            "budget_usd_h", data["budget_usd_h"], nodes["budget_usd_h"], limits.BUDGET_USD_H),
        power_cap_kw=None if data.get("power_cap_kw") is None else num(
            "power_cap_kw", data["power_cap_kw"], nodes["power_cap_kw"], limits.POWER_KW),
        objective=str(objective), allow_mixing=bool(data.get("allow_mixing", False)))
