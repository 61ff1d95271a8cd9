"""Names checked against the catalog wherever kvopt takes one (the input layer of
:mod:`kvopt.build`): GPU ids and aliases (a list never drops an unknown name: it is an
error with close matches), engine profiles, and price overrides keyed by GPU."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kvopt import limits
from kvopt.errors import CatalogError, InputError


def gpu_id(name: str, field: str = "gpus") -> str:
    """The catalog id of GPU ``name`` (an id, alias or card file); an unknown name is an
    input error naming ``field`` with close matches."""
    from kvopt.catalog.gpus import load_gpu

    try:
        return load_gpu(str(name).strip()).id
    except CatalogError as exc:
        raise InputError(field, name, "unknown GPU" + (
            f"; did you mean: {', '.join(exc.suggestions)}?" if exc.suggestions else ""),
            "kvopt list-gpus lists the catalog") from None


def gpu_list(gpus: str | Iterable[Any], field: str = "gpus") -> tuple[str, ...]:
    """Candidate GPUs: ids or aliases (each checked against the catalog, never dropped),
    or one group word (all, nvidia, amd, datacenter, desktop, laptop) for every catalog GPU
    in it; duplicates kept once, in order."""
    from kvopt.catalog.gpus import gpu_group

    if isinstance(gpus, str):
        group = gpu_group(gpus.strip())
        if group is not None:
            return tuple(group)
    names = tuple(x.strip() for x in gpus.split(",") if x.strip()) if isinstance(
        gpus, str) else tuple(str(x).strip() for x in gpus)
    limits.check_list(field, names, "list GPU ids (kvopt list-gpus) or a group word "
                      "(all, nvidia, amd, datacenter, desktop, laptop)")
    return tuple(dict.fromkeys(gpu_id(n, field) for n in names))


def engine_name(engine: str) -> str:
    """An engine profile name (``kvopt list-engines``)."""
    from kvopt.catalog.engines import engine_names

    names = engine_names()
    if engine not in names:
        import difflib

        close = difflib.get_close_matches(str(engine), names, n=3)
        raise InputError("engine", engine, "unknown engine" + (
            f"; did you mean: {', '.join(close)}?" if close else ""),
            f"use one of: {', '.join(names)}")
    return engine


def gpu_prices(prices: dict[str, float] | None, field: str = "prices"
               ) -> tuple[tuple[str, float], ...]:
    """$/GPU-hour overrides keyed by catalog id (names checked, prices in range)."""
    out: dict[str, float] = {}
    for g, v in (prices or {}).items():
        out[gpu_id(g, field)] = limits.PRICE_USD_H.check(f"{field}.{g}", v)
    return tuple(sorted(out.items()))
