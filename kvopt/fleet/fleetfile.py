"""``fleet.yaml``: many workloads and constraints in one file (README.md, "Fleet sizing").

Validation reports ``FILE:LINE: path: problem (fix)`` using the YAML node positions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from kvopt.bench.calibrate import load_profile
from kvopt.catalog.gpus import gpu_group
from kvopt.errors import InputError
from kvopt.fileio import LineError, read_yaml_mapping
from kvopt.fleet.problem import OBJECTIVES, FleetProblem
from kvopt.physics.precision import parse_precision_pair
from kvopt.serving.capacity import Slo
from kvopt.serving.lengths import LengthDist, fixed, parse_dist
from kvopt.space import (
    CAPACITY_METHODS,
    DEFAULT_BATCHES,
    DEFAULT_PRECISIONS,
    Region,
    Space,
    Workload,
)

TOP_KEYS = {"objective", "budget_usd_h", "power_cap_kw", "allow_mixing", "engine", "gpus",
            "tps", "precisions", "batches", "availability", "prices_usd_h", "regions",
            "profiles", "workloads", "capacity"}
WL_KEYS = {"name", "model", "rate_rps", "input_len", "output_len", "input_len_dist",
           "output_len_dist", "slo", "redundancy", "max_quality_loss_pct"}


class FleetFileError(LineError):
    """A fleet-file error at a line."""


def _lines(node: yaml.Node) -> dict[str, Any]:
    """Map of key -> (value node) for a mapping node."""
    return {k.value: v for k, v in node.value} if isinstance(node, yaml.MappingNode) else {}


def load_fleet_file(path: str | Path) -> FleetProblem:
    p = Path(path)
    origin = str(p)
    root, data = read_yaml_mapping(p, "fleet file", FleetFileError,
                                   "expected a mapping with 'workloads'")
    nodes = _lines(root)

    def fail(key: str, problem: str, node: yaml.Node | None = None) -> FleetFileError:
        n = node if node is not None else nodes.get(key, root)
        return FleetFileError(origin, n.start_mark.line + 1, key, problem)

    for key in data:
        if key not in TOP_KEYS:
            raise fail(str(key), f"unknown key; allowed: {', '.join(sorted(TOP_KEYS))}",
                       next(k for k, _ in root.value if k.value == key))
    if "workloads" not in data or not isinstance(data["workloads"], list) or \
            not data["workloads"]:
        raise fail("workloads", "a non-empty list of workloads is required")
    objective = data.get("objective", "cost")
    if objective not in OBJECTIVES:
        raise fail("objective", f"{objective!r}; allowed: {', '.join(OBJECTIVES)}")

    def num(key: str, value: Any, node: yaml.Node, positive: bool = True) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or (
                positive and not value > 0):
            raise FleetFileError(origin, node.start_mark.line + 1, key,
                                 f"{value!r} must be a {'positive ' if positive else ''}number")
        return float(value)

    def str_list(key: str) -> tuple[str, ...] | None:
        if key not in data:
            return None
        v = data[key]
        if not isinstance(v, list) or not all(isinstance(x, str | int) for x in v):
            raise fail(key, "must be a list")
        return tuple(str(x) for x in v)

    group = gpu_group(data["gpus"]) if isinstance(data.get("gpus"), str) else None
    gpus = tuple(group) if group is not None else str_list("gpus")
    if not gpus:
        raise fail("gpus", "list the candidate GPUs (e.g. [H100-SXM, A100-SXM-80GB]) or name "
                   "a group (all, nvidia, amd, datacenter, desktop, laptop)")
    precisions = DEFAULT_PRECISIONS
    if "precisions" in data:
        try:
            precisions = tuple(parse_precision_pair(s) for s in str_list("precisions") or ())
        except InputError as exc:
            raise fail("precisions", f"{exc.value!r}: {exc.rule}") from None
    tps = tuple(int(x) for x in (str_list("tps") or ("1", "2", "4", "8")))
    batches = tuple(int(x) for x in (str_list("batches") or map(str, DEFAULT_BATCHES)))
    avail: list[tuple[str, int]] = []
    for key in ("availability", "prices_usd_h"):
        if key in data and not isinstance(data[key], dict):
            raise fail(key, "must map GPU id -> number")
    for g, n in (data.get("availability") or {}).items():
        avail.append((str(g), int(num(f"availability.{g}", n, nodes["availability"],
                                      positive=False))))
    prices = tuple((str(g), num(f"prices_usd_h.{g}", v, nodes["prices_usd_h"]))
                   for g, v in (data.get("prices_usd_h") or {}).items())
    regions = []
    if "regions" in data:
        if not isinstance(data["regions"], dict):
            raise fail("regions", "must map region -> {prices_usd_h, availability}")
        rnodes = _lines(nodes["regions"])
        for rname, rd in data["regions"].items():
            rn = rnodes[rname]
            if not isinstance(rd, dict) or set(rd) - {"prices_usd_h", "availability"}:
                raise FleetFileError(origin, rn.start_mark.line + 1, f"regions.{rname}",
                                     "allowed keys: prices_usd_h, availability")
            regions.append(Region(
                name=str(rname),
                prices_usd_h=tuple((str(g), num(f"regions.{rname}.prices_usd_h.{g}", v, rn))
                                   for g, v in (rd.get("prices_usd_h") or {}).items()),
                availability=tuple((str(g), int(num(f"regions.{rname}.availability.{g}", v,
                                                    rn, positive=False)))
                                   for g, v in (rd.get("availability") or {}).items())))
    wl_nodes = nodes["workloads"].value
    workloads = []
    for i, (wd, wn) in enumerate(zip(data["workloads"], wl_nodes, strict=True)):
        where = f"workloads[{i}]"
        if not isinstance(wd, dict):
            raise FleetFileError(origin, wn.start_mark.line + 1, where, "must be a mapping")
        wnodes = _lines(wn)
        for key in wd:
            if key not in WL_KEYS:
                raise FleetFileError(origin, wnodes[key].start_mark.line + 1,
                                     f"{where}.{key}", "unknown key; allowed: "
                                     + ", ".join(sorted(WL_KEYS)))
        for key in ("name", "model", "rate_rps"):
            if key not in wd:
                raise FleetFileError(origin, wn.start_mark.line + 1, f"{where}.{key}",
                                     "is required")
        rate = num(f"{where}.rate_rps", wd["rate_rps"], wnodes["rate_rps"])

        def dist(kind: str, wd: dict[str, Any] = wd, wnodes: dict[str, Any] = wnodes,
                 where: str = where, wn: yaml.Node = wn) -> LengthDist:
            fixed_key, dist_key = f"{kind}_len", f"{kind}_len_dist"
            if (fixed_key in wd) == (dist_key in wd):
                raise FleetFileError(origin, wn.start_mark.line + 1, f"{where}.{fixed_key}",
                                     f"give exactly one of {fixed_key} and {dist_key}")
            try:
                if fixed_key in wd:
                    return fixed(int(num(f"{where}.{fixed_key}", wd[fixed_key],
                                         wnodes[fixed_key])))
                return parse_dist(str(wd[dist_key]), field=f"{where}.{dist_key}")
            except InputError as exc:
                key = fixed_key if fixed_key in wd else dist_key
                raise FleetFileError(origin, wnodes[key].start_mark.line + 1,
                                     f"{where}.{key}", exc.rule) from None

        slo_d = wd.get("slo") or {}
        if not isinstance(slo_d, dict) or set(slo_d) - {"ttft_p99_ms", "tpot_p99_ms",
                                                         "e2e_p99_ms"}:
            raise FleetFileError(origin, wnodes["slo"].start_mark.line + 1, f"{where}.slo",
                                 "allowed keys: ttft_p99_ms, tpot_p99_ms, e2e_p99_ms")
        slo = Slo(**{k: num(f"{where}.slo.{k}", v, wnodes["slo"]) for k, v in slo_d.items()})
        q = wd.get("max_quality_loss_pct")
        workloads.append(Workload(
            name=str(wd["name"]), model=str(wd["model"]), rate_rps=rate,
            input_dist=dist("input"), output_dist=dist("output"), slo=slo,
            redundancy=int(wd.get("redundancy", 0)),
            max_quality_loss_pct=None if q is None else num(f"{where}.max_quality_loss_pct",
                                                            q, wnodes["max_quality_loss_pct"],
                                                            positive=False)))
    # calibrated GPU x engine profiles (kvopt calibrate --out), relative to the fleet file
    cals = []
    for prof in str_list("profiles") or ():
        try:
            cals.append(load_profile(p.parent / prof))
        except InputError as exc:
            raise fail("profiles", f"{prof}: {exc.rule}") from None
    capacity = data.get("capacity", "confirm")
    if capacity not in CAPACITY_METHODS:
        raise fail("capacity", f"{capacity!r}; allowed: {', '.join(CAPACITY_METHODS)}")
    try:
        space = Space(gpus=gpus, tps=tps, precisions=precisions, batches=batches,
                      engine=str(data.get("engine", "vllm")), prices_usd_h=prices,
                      regions=tuple(regions), calibrations=tuple(cals), capacity=capacity)
    except InputError as exc:
        if exc.field != "profile":  # only a profile check names this field
            raise
        raise fail("profiles", f"{exc.value}: {exc.rule}; {exc.fix}") from None
    return FleetProblem(
        workloads=tuple(workloads),
        space=space,
        availability=tuple(avail),
        budget_usd_h=None if data.get("budget_usd_h") is None else num(
            "budget_usd_h", data["budget_usd_h"], nodes["budget_usd_h"]),
        power_cap_kw=None if data.get("power_cap_kw") is None else num(
            "power_cap_kw", data["power_cap_kw"], nodes["power_cap_kw"]),
        objective=str(objective), allow_mixing=bool(data.get("allow_mixing", False)))
