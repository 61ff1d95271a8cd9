"""Ways to pay for a GPU, per region: the ``payments:`` section of the price book
(``models/prices.yaml``, or a user's file of the same layout given with ``--price-book``).

Kinds (:data:`kvopt.choices.PAYMENT_KINDS`): ``on_demand`` (by the hour), ``reserved_1y`` and
``reserved_3y`` (committed for the term; an hourly equivalent that includes the upfront part
spread over the term), ``spot`` (by the hour, reclaimable: ``interruption_rate`` is the
share of the capacity counted as lost) and ``owned`` (bought: the total cost of ownership
per GPU-hour, :class:`OwnedTco`).

Owned TCO per GPU-hour = purchase / (amortization years x 8760 h)
+ TDP (kW) x PUE x $/kWh + hosting $/kW-month x server kW per GPU / 730 h.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from kvopt.catalog.paths import models_dir
from kvopt.catalog.yamlio import read_yaml
from kvopt.choices import COMMITTED_KINDS, PAYMENT_KINDS
from kvopt.errors import CatalogError, InputError

HOURS_PER_YEAR = 8760.0
HOURS_PER_MONTH = 730.0
TERM_YEARS = {"reserved_1y": 1.0, "reserved_3y": 3.0}


@dataclass(frozen=True, kw_only=True)
class OwnedTco:
    """The parts of owning one GPU, per GPU-hour (and the purchase itself)."""

    gpu: str
    purchase_usd_per_gpu: float
    amortization_years: float
    tdp_w: float
    pue: float
    usd_per_kwh: float
    hosting_usd_per_kw_month: float
    server_kw_per_gpu: float
    sources: tuple[tuple[str, str], ...] = ()

    @property
    def amortization_usd_per_gpu_hour(self) -> float:
        return self.purchase_usd_per_gpu / (self.amortization_years * HOURS_PER_YEAR)

    @property
    def power_usd_per_gpu_hour(self) -> float:
        return self.tdp_w / 1000.0 * self.pue * self.usd_per_kwh

    @property
    def hosting_usd_per_gpu_hour(self) -> float:
        return self.hosting_usd_per_kw_month * self.server_kw_per_gpu / HOURS_PER_MONTH

    @property
    def running_usd_per_gpu_hour(self) -> float:
        """What an owned GPU costs per hour once bought (power and hosting)."""
        return self.power_usd_per_gpu_hour + self.hosting_usd_per_gpu_hour

    @property
    def usd_per_gpu_hour(self) -> float:
        return self.amortization_usd_per_gpu_hour + self.running_usd_per_gpu_hour

    def parts(self) -> dict[str, float]:
        return {"amortization_usd_per_gpu_hour": self.amortization_usd_per_gpu_hour,
                "power_usd_per_gpu_hour": self.power_usd_per_gpu_hour,
                "hosting_usd_per_gpu_hour": self.hosting_usd_per_gpu_hour,
                "tco_usd_per_gpu_hour": self.usd_per_gpu_hour}


@dataclass(frozen=True, kw_only=True)
class Offer:
    """One way to pay for one GPU type in one region."""

    region: str
    gpu: str
    kind: str
    usd_per_gpu_hour: float  # hourly equivalent (upfront spread over the term; owned: TCO)
    upfront_usd_per_gpu: float = 0.0  # paid at purchase (reserved upfront, owned purchase)
    interruption_rate: float = 0.0  # spot: share of the capacity counted as lost
    source: str = ""
    tco: OwnedTco | None = None

    @property
    def committed(self) -> bool:
        return self.kind in COMMITTED_KINDS

    @property
    def availability(self) -> float:
        """Expected share of a replica's capacity that is there (1 - interruption rate)."""
        return 1.0 - self.interruption_rate


@dataclass(frozen=True)
class PaymentBook:
    """Offers by (region, GPU, kind) and the owned-GPU TCO inputs."""

    offers: dict[tuple[str, str, str], Offer]
    default_region: str
    date: str
    origin: str

    def regions(self) -> list[str]:
        return sorted({r for r, _, _ in self.offers})

    def for_gpu(self, gpu: str, region: str = "") -> dict[str, Offer]:
        """The offers for ``gpu`` in ``region`` by kind (region "": the default region)."""
        r = region or self.default_region
        return {k: o for (rr, g, k), o in self.offers.items() if rr == r and g == gpu}


def _num(node: Any, key: str, where: str, *, lo: float = 0.0, hi: float | None = None,
         required: bool = True) -> float:
    value = node.get(key) if isinstance(node, dict) else None
    if value is None and not required:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, int | float) or value < lo or (
            hi is not None and value > hi):
        bound = f">= {lo:g}" + (f" and <= {hi:g}" if hi is not None else "")
        raise CatalogError(f"{where}.{key}={value!r}: must be a number {bound}")
    return float(value)


def _sourced(node: Any, key: str, where: str) -> tuple[float, str]:
    item = node.get(key) if isinstance(node, dict) else None
    if not isinstance(item, dict) or not item.get("source"):
        raise CatalogError(f"{where}.{key}: needs {{value, source}}")
    return _num(item, "value", f"{where}.{key}"), str(item["source"])


def _owned(data: dict[str, Any], origin: str, gpu_tdp: Any) -> dict[str, dict[str, Any]]:
    """Owned-TCO inputs by GPU id (site parameters merged in)."""
    node = data.get("owned") or {}
    site = node.get("site") or {}
    out: dict[str, dict[str, Any]] = {}
    for gpu, g in (node.get("gpus") or {}).items():
        where = f"{origin}: payments.owned.gpus.{gpu}"
        row: dict[str, Any] = {"sources": []}
        for key in ("purchase_usd_per_gpu", "amortization_years", "server_kw_per_gpu"):
            row[key], src = _sourced(g, key, where)
            row["sources"].append((key, src))
        for key in ("pue", "usd_per_kwh", "hosting_usd_per_kw_month"):
            row[key], src = _sourced(site, key, f"{origin}: payments.owned.site")
            row["sources"].append((key, src))
        if row["amortization_years"] <= 0:
            raise CatalogError(f"{where}.amortization_years: must be > 0")
        row["tdp_w"] = gpu_tdp(str(gpu))
        out[str(gpu)] = row
    return out


def _tco(gpu: str, row: dict[str, Any], site: dict[str, Any] | None, origin: str) -> OwnedTco:
    vals = dict(row)
    srcs = list(vals.pop("sources"))
    for key in ("pue", "usd_per_kwh", "hosting_usd_per_kw_month"):
        if site and key in site:
            vals[key], src = _sourced(site, key, f"{origin}: site")
            srcs = [(k, s) for k, s in srcs if k != key] + [(key, src)]
    return OwnedTco(gpu=gpu, sources=tuple(srcs), **vals)


def parse_book(data: Any, origin: str) -> PaymentBook:
    """A :class:`PaymentBook` from a parsed ``payments:`` mapping (errors name the file)."""
    from kvopt.catalog.gpus import load_gpu

    if not isinstance(data, dict) or not isinstance(data.get("regions"), dict):
        raise CatalogError(f"{origin}: payments needs a 'regions' mapping (see "
                           "models/prices.yaml)")
    owned = _owned(data, origin, lambda g: load_gpu(g).tdp_w)
    offers: dict[tuple[str, str, str], Offer] = {}
    for region, rnode in data["regions"].items():
        if not isinstance(rnode, dict) or not rnode.get("source"):
            raise CatalogError(f"{origin}: payments.regions.{region} needs a source")
        for gpu, kinds in (rnode.get("offers") or {}).items():
            gpu_id = load_gpu(str(gpu)).id
            for kind, o in (kinds or {}).items():
                where = f"{origin}: payments.regions.{region}.offers.{gpu}.{kind}"
                if kind not in PAYMENT_KINDS or kind == "owned":
                    raise CatalogError(f"{where}: unknown way to pay; allowed: "
                                       + ", ".join(k for k in PAYMENT_KINDS if k != "owned"))
                if not isinstance(o, dict) or not o.get("source"):
                    raise CatalogError(f"{where}: needs usd_per_gpu_hour and a source")
                offers[(str(region), gpu_id, kind)] = Offer(
                    region=str(region), gpu=gpu_id, kind=kind,
                    usd_per_gpu_hour=_num(o, "usd_per_gpu_hour", where, lo=1e-9),
                    upfront_usd_per_gpu=_num(o, "upfront_usd_per_gpu", where, required=False),
                    interruption_rate=_num(o, "interruption_rate", where, hi=0.99,
                                           required=kind == "spot"),
                    source=str(o["source"]))
        for gpu, row in owned.items():
            gpu_id = load_gpu(gpu).id
            tco = _tco(gpu_id, row, rnode.get("site"), origin)
            offers[(str(region), gpu_id, "owned")] = Offer(
                region=str(region), gpu=gpu_id, kind="owned", usd_per_gpu_hour=tco.usd_per_gpu_hour,
                upfront_usd_per_gpu=tco.purchase_usd_per_gpu, source="owned TCO: " + "; ".join(
                    f"{k}: {s}" for k, s in tco.sources), tco=tco)
    default = str(data.get("default_region") or next(iter(data["regions"]), ""))
    return PaymentBook(offers=offers, default_region=default, date=str(data.get("date", "")),
                       origin=origin)


@cache
def _load(path: str | None) -> PaymentBook:
    p = Path(path) if path else models_dir() / "prices.yaml"
    if path and not p.is_file():
        raise InputError("price_book", str(p), "no such file",
                         "give a YAML file laid out like the payments: section of "
                         "models/prices.yaml")
    data = read_yaml(p)
    node = data.get("payments", data) if isinstance(data, dict) else data
    return parse_book(node, str(p))


def payment_book(path: str | Path | None = None) -> PaymentBook:
    """The packaged book, or the packaged book with a user's file laid over it (a user's
    offer replaces the packaged one for the same region, GPU and kind)."""
    base = _load(None)
    if path is None:
        return base
    user = _load(str(path))
    return PaymentBook(offers={**base.offers, **user.offers},
                       default_region=user.default_region or base.default_region,
                       date=user.date or base.date, origin=f"{base.origin} + {user.origin}")


def owned_tco(gpu: str, region: str = "", path: str | Path | None = None) -> OwnedTco | None:
    """The owned-GPU TCO of ``gpu`` (None when the book has no purchase price for it)."""
    from kvopt.catalog.gpus import load_gpu

    o = payment_book(path).for_gpu(load_gpu(gpu).id, region).get("owned")
    return o.tco if o else None


def breakeven(gpu: str, region: str = "", *, utilization: float = 1.0,
              path: str | Path | None = None) -> dict[str, Any]:
    """Own against rent for one GPU: the TCO parts, and per way to rent the utilization
    above which owning is cheaper (TCO / rent price: renting only the hours used) and the
    months after which buying has paid for itself at ``utilization`` (purchase / (730 x
    (rent x utilization - power - hosting)); None: never). Spot's rent is per GPU-hour
    that is there (price / (1 - interruption rate))."""
    from kvopt.catalog.gpus import load_gpu

    if not 0 < utilization <= 1:
        raise InputError("--utilization", utilization, "must be in (0, 1]",
                         "the share of the hours the GPU would be rented, e.g. 0.6")
    g = load_gpu(gpu).id
    book = payment_book(path)
    offers = book.for_gpu(g, region)
    own = offers.get("owned")
    if own is None or own.tco is None:
        raise InputError("gpu", g, f"the price book has no purchase price for it in region "
                         f"{region or book.default_region!r}",
                         "add it under payments.owned.gpus in a --price-book file")
    tco = own.tco
    rows = []
    for kind in ("on_demand", "reserved_1y", "reserved_3y", "spot"):
        o = offers.get(kind)
        if o is None:
            continue
        rent = o.usd_per_gpu_hour / o.availability  # spot: per GPU-hour that is there
        margin = rent * utilization - tco.running_usd_per_gpu_hour
        rows.append({"rent": kind, "usd_per_gpu_hour": o.usd_per_gpu_hour,
                     "usd_per_available_gpu_hour": rent,
                     "breakeven_utilization": tco.usd_per_gpu_hour / rent,
                     "breakeven_months": tco.purchase_usd_per_gpu / (HOURS_PER_MONTH * margin)
                     if margin > 0 else None,
                     "source": o.source})
    return {"gpu": g, "region": region or book.default_region, "utilization": utilization,
            "purchase_usd_per_gpu": tco.purchase_usd_per_gpu,
            "amortization_years": tco.amortization_years, "tdp_w": tco.tdp_w,
            "pue": tco.pue, "usd_per_kwh": tco.usd_per_kwh,
            "hosting_usd_per_kw_month": tco.hosting_usd_per_kw_month,
            "server_kw_per_gpu": tco.server_kw_per_gpu, **tco.parts(),
            "rent": rows, "sources": dict(tco.sources)}
