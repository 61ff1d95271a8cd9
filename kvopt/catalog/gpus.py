"""The GPU catalog: ``models/gpu/<id>.yaml``, one card per GPU with a source per number."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from kvopt.catalog.paths import models_dir
from kvopt.catalog.resolve import NameIndex
from kvopt.catalog.yamlio import read_yaml, sourced
from kvopt.choices import GPU_FORM_FACTORS, GPU_VENDORS
from kvopt.errors import CatalogError, UnsupportedError
from kvopt.units import GB, GIB, TERA

DTYPES = ("fp16", "bf16", "fp8", "int8", "fp4")
FORM_FACTORS = GPU_FORM_FACTORS
INTERCONNECTS = ("nvlink", "xgmi", "pcie")
VENDORS = GPU_VENDORS


@dataclass(frozen=True, kw_only=True)
class LaptopProfile:
    """Sustained-versus-spec factors for a laptop design class (thermal and power limits)."""

    name: str
    compute_sustained_factor: float
    bandwidth_sustained_factor: float
    sources: tuple[str, ...]


@dataclass(frozen=True, kw_only=True, eq=False)
class GpuSpec:
    """One GPU model. Capacities in GiB, bandwidths in decimal GB/s, FLOP rates dense.

    Compared and hashed by identity (catalog cards are loaded once), so replicas that use
    it can be cache keys."""

    id: str
    name: str
    vendor: str
    architecture: str
    form_factor: str
    memory_gib: float
    memory_bandwidth_gb_s: float
    tensor_tflops: dict[str, float | None]
    interconnect_kind: str
    interconnect_bandwidth_gb_s: float
    pcie_gen: int
    p2p: bool
    max_gpus_per_node: int
    tdp_w: float
    laptop: LaptopProfile | None = None
    # (compute, memory) multipliers on the fitted efficiencies, from a calibration
    efficiency_scale: tuple[float, float] = (1.0, 1.0)
    aliases: tuple[str, ...] = ()
    sources: dict[str, str] = field(default_factory=dict)
    notes: str = ""

    def __post_init__(self) -> None:
        if self.form_factor not in FORM_FACTORS:
            raise ValueError(f"form_factor {self.form_factor!r} not in {FORM_FACTORS}")
        if self.memory_gib <= 0 or self.memory_bandwidth_gb_s <= 0:
            raise ValueError("memory_gib and memory_bandwidth_gb_s must be positive")

    @property
    def memory_bytes(self) -> float:
        return self.memory_gib * GIB

    @property
    def bandwidth_bytes_s(self) -> float:
        """Spec memory bandwidth, times the laptop sustained factor for laptop parts (and a
        calibration's memory-efficiency scale)."""
        factor = self.laptop.bandwidth_sustained_factor if self.laptop else 1.0
        return self.memory_bandwidth_gb_s * GB * factor * self.efficiency_scale[1]

    def has_tensor(self, dtype: str) -> bool:
        return self.tensor_tflops.get(dtype) is not None

    def peak_flop_s(self, dtype: str) -> float:
        """Dense tensor-core peak for ``dtype`` (laptop parts: times the sustained factor)."""
        tflops = self.tensor_tflops.get(dtype)
        if tflops is None:
            raise UnsupportedError(f"{self.id} has no {dtype} tensor-core throughput")
        factor = self.laptop.compute_sustained_factor if self.laptop else 1.0
        return tflops * TERA * factor * self.efficiency_scale[0]


def _gpu_from_yaml(data: Any, path: Path, profiles: dict[str, LaptopProfile]) -> GpuSpec:
    origin = str(path)
    if not isinstance(data, dict):
        raise CatalogError(f"{origin}: expected a mapping at the top level")
    required = ("id", "name", "vendor", "architecture", "form_factor", "memory_gib",
                "memory_bandwidth_gb_s", "tensor_tflops_dense", "interconnect", "tdp_w")
    missing = [k for k in required if k not in data]
    if missing:
        raise CatalogError(f"{origin}: missing fields: {', '.join(missing)}")
    for key, allowed in (("vendor", VENDORS), ("form_factor", FORM_FACTORS)):
        if data[key] not in allowed:
            raise CatalogError(f"{origin}: {key}={data[key]!r}; allowed: {', '.join(allowed)}")
    sources: dict[str, str] = {}

    def num(node: Any, key: str, nullable: bool = False) -> float | None:
        value, src = sourced(node, key, origin, nullable=nullable)
        sources[key] = src
        return value

    tensor_node = data["tensor_tflops_dense"]
    if not isinstance(tensor_node, dict):
        raise CatalogError(f"{origin}: tensor_tflops_dense must map dtype -> {{value, source}}")
    unknown = sorted(set(tensor_node) - set(DTYPES))
    if unknown:
        raise CatalogError(f"{origin}: unknown dtypes {unknown} in tensor_tflops_dense; "
                           f"allowed: {', '.join(DTYPES)}")
    tensor = {d: num(tensor_node.get(d, {"value": None, "source": "not listed"}),
                     f"tensor_tflops_dense.{d}", nullable=True) for d in DTYPES}
    ic = data["interconnect"]
    if not isinstance(ic, dict) or ic.get("kind") not in INTERCONNECTS:
        raise CatalogError(f"{origin}: interconnect.kind must be one of {', '.join(INTERCONNECTS)}")
    profile = None
    if data["form_factor"] == "laptop":
        pname = data.get("laptop_profile") or "__default__"
        if pname not in profiles:
            raise CatalogError(f"{origin}: laptop_profile={pname!r}; known: "
                               f"{', '.join(k for k in profiles if not k.startswith('__'))}")
        profile = profiles[str(pname)]
    try:
        return GpuSpec(
            id=str(data["id"]), name=str(data["name"]), vendor=str(data["vendor"]),
            architecture=str(data["architecture"]).lower(), form_factor=str(data["form_factor"]),
            memory_gib=num(data["memory_gib"], "memory_gib") or 0.0,
            memory_bandwidth_gb_s=num(data["memory_bandwidth_gb_s"],
                                      "memory_bandwidth_gb_s") or 0.0,
            tensor_tflops=tensor, interconnect_kind=str(ic["kind"]),
            interconnect_bandwidth_gb_s=num(ic.get("bandwidth_gb_s"), "interconnect.bandwidth_gb_s")
            or 0.0,
            pcie_gen=int(num(ic.get("pcie_gen"), "interconnect.pcie_gen") or 0),
            p2p=bool(ic.get("p2p", True)),
            max_gpus_per_node=int(num(ic.get("max_gpus_per_node"),
                                      "interconnect.max_gpus_per_node") or 1),
            tdp_w=num(data["tdp_w"], "tdp_w") or 0.0, laptop=profile,
            aliases=tuple(str(a) for a in data.get("aliases") or ()), sources=sources,
            notes=str(data.get("notes") or ""),
        )
    except CatalogError:
        raise
    except ValueError as exc:
        raise CatalogError(f"{origin}: {exc}") from None


@cache
def laptop_profiles() -> dict[str, LaptopProfile]:
    """Laptop adjustment profiles by name (plus ``__default__``)."""
    path = models_dir() / "gpu" / "laptop_profiles.yaml"
    data = read_yaml(path)
    if not isinstance(data, dict) or not isinstance(data.get("profiles"), dict):
        raise CatalogError(f"{path}: expected a 'profiles' mapping")
    out: dict[str, LaptopProfile] = {}
    for name, node in data["profiles"].items():
        origin = f"{path} profile {name}"
        c, cs = sourced(node.get("compute_sustained_factor"), "compute_sustained_factor", origin)
        b, bs = sourced(node.get("bandwidth_sustained_factor"), "bandwidth_sustained_factor",
                        origin)
        if not (c and b and 0 < c <= 1 and 0 < b <= 1):
            raise CatalogError(f"{origin}: sustained factors must lie in (0, 1]")
        out[str(name)] = LaptopProfile(name=str(name), compute_sustained_factor=c,
                                       bandwidth_sustained_factor=b, sources=(cs, bs))
    default = data.get("default_profile")
    if default is not None:
        if default not in out:
            raise CatalogError(f"{path}: default_profile={default!r} is not a profile")
        out["__default__"] = out[default]
    return out


@cache
def _catalog() -> dict[str, GpuSpec]:
    profiles = laptop_profiles()
    out: dict[str, GpuSpec] = {}
    for path in sorted((models_dir() / "gpu").glob("*.yaml")):
        if path.name == "laptop_profiles.yaml":
            continue
        spec = _gpu_from_yaml(read_yaml(path), path, profiles)
        if spec.id in out:
            raise CatalogError(f"{path}: duplicate GPU id '{spec.id}'")
        out[spec.id] = spec
    return out


@cache
def _index() -> NameIndex:
    return NameIndex("gpu", {i: g.aliases for i, g in _catalog().items()})


def list_gpus(filter_: str | None = None) -> list[GpuSpec]:
    """Catalog GPUs, optionally filtered by vendor or form factor."""
    allowed = (*VENDORS, *FORM_FACTORS)
    if filter_ is not None and filter_ not in allowed:
        raise CatalogError(f"unknown GPU filter '{filter_}'; allowed: {', '.join(allowed)}")
    gpus = [_catalog()[i] for i in sorted(_catalog())]
    if filter_ is None:
        return gpus
    return [g for g in gpus if filter_ in (g.vendor, g.form_factor)]


def gpu_group(word: str) -> list[str] | None:
    """The catalog ids a group word names (``all``, a vendor or a form factor, as
    ``kvopt list-gpus --filter`` takes them), or None when ``word`` is not one: the one
    expansion of ``--gpus``, fleet files and study files."""
    w = word.strip().lower()
    if w == "all":
        return [g.id for g in list_gpus()]
    if w in (*VENDORS, *FORM_FACTORS):
        return [g.id for g in list_gpus(w)]
    return None


_USER_GPUS: dict[str, GpuSpec] = {}  # cards loaded from user files, by id


def load_gpu(name: str) -> GpuSpec:
    """A catalog GPU by id or alias (case-insensitive), or a GPU card file (``*.yaml`` in
    the catalog's format, e.g. a copy of ``models/gpu/L4.yaml`` edited for your part);
    close matches on a miss. A card loaded from a file is then also known by its id."""
    if name in _USER_GPUS:
        return _USER_GPUS[name]
    if name.endswith((".yaml", ".yml")):
        return load_gpu_file(name)
    return _catalog()[_index().resolve(name)]


def load_gpu_file(path: str | Path) -> GpuSpec:
    """A GPU card from a YAML file (same schema and sourcing rules as the catalog's)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise CatalogError(f"GPU card file '{p}' not found; give a catalog GPU "
                           "(kvopt list-gpus) or an existing *.yaml card")
    spec = _gpu_from_yaml(read_yaml(p), p, laptop_profiles())
    if spec.id in _catalog():
        raise CatalogError(f"{p}: id '{spec.id}' is a catalog GPU; give the card its own id")
    _USER_GPUS[spec.id] = spec
    _USER_GPUS[str(path)] = spec
    return spec
