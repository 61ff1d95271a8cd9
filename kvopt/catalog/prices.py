"""The dated price book (``models/prices.yaml``): on-demand USD per GPU-hour by provider."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from kvopt.catalog.paths import models_dir
from kvopt.catalog.yamlio import read_yaml
from kvopt.errors import CatalogError


@dataclass(frozen=True, kw_only=True)
class Price:
    gpu_id: str
    usd_per_gpu_hour: float
    provider: str
    source: str
    date: str


def _load(path: Path) -> dict[str, Any]:
    data = read_yaml(path)
    if not isinstance(data, dict) or not isinstance(data.get("providers"), dict):
        raise CatalogError(f"{path}: expected 'providers' mapping (see models/prices.yaml)")
    return data


@cache
def _book(path: str | None) -> dict[str, Price]:
    p = Path(path) if path else models_dir() / "prices.yaml"
    data = _load(p)
    order = list(data.get("default_provider_order") or []) + sorted(data["providers"])
    out: dict[str, Price] = {}
    for provider in order:
        node = data["providers"].get(provider)
        if not isinstance(node, dict):
            continue
        if not node.get("source"):
            raise CatalogError(f"{p}: provider '{provider}' needs a source")
        for gpu_id, price in (node.get("prices_usd_h") or {}).items():
            if isinstance(price, bool) or not isinstance(price, int | float) or price <= 0:
                raise CatalogError(f"{p}: {provider}.{gpu_id}={price!r} must be a positive number")
            if gpu_id not in out:
                out[gpu_id] = Price(gpu_id=gpu_id, usd_per_gpu_hour=float(price),
                                    provider=str(provider), source=str(node["source"]),
                                    date=str(node.get("date") or data.get("date", "")))
    return out


def price_for(gpu_id: str, *, price_file: str | Path | None = None,
              override_usd_h: float | None = None) -> Price | None:
    """Price of one GPU-hour: an explicit override, else the first provider that lists it."""
    if override_usd_h is not None:
        return Price(gpu_id=gpu_id, usd_per_gpu_hour=override_usd_h, provider="user",
                     source="--price-usd-h", date="")
    return _book(str(price_file) if price_file else None).get(gpu_id)


def all_prices(price_file: str | Path | None = None) -> dict[str, Price]:
    return dict(_book(str(price_file) if price_file else None))
