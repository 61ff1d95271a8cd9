"""Engine time outside the kernels, per engine and version: the per-step overhead (host
scheduling, sampling, detokenization between GPU passes) and the per-request overhead (API
server, tokenization, client) that ``models/engine_overheads.yaml`` holds, fitted by
``benchmarks/fit_engine_overheads.py`` on the training measurements only (each entry says
which rows). An engine's profile keeps its own figures unless a version is given
(``default: null``) or the file names a default version; a version given takes the greatest
fitted version at or below it. An entry may fit one of the two figures (the other stays the
profile's).
"""

from __future__ import annotations

import re
from functools import cache
from typing import TYPE_CHECKING, Any

from kvopt.catalog.paths import models_dir
from kvopt.catalog.yamlio import read_yaml
from kvopt.errors import CatalogError, InputError

if TYPE_CHECKING:
    from kvopt.catalog.engines import EngineProfile

FIELDS = ("step_overhead_ms", "request_overhead_ms")


def version_key(text: str) -> tuple[int, ...]:
    """``"0.19.0"`` -> (0, 19, 0); ``"1.3.0rc1"`` -> (1, 3, 0): the release numbers."""
    nums = re.findall(r"\d+", str(text).split("rc")[0].split("-")[0])
    return tuple(int(n) for n in nums[:3])


def _padded(key: tuple[int, ...]) -> tuple[int, ...]:
    """A release key of three numbers (missing ones 0); () stays ()."""
    return key + (0,) * (3 - len(key)) if key else key


@cache
def _data() -> dict[str, Any]:
    path = models_dir() / "engine_overheads.yaml"
    if not path.is_file():
        return {}
    data = read_yaml(path)
    if not isinstance(data, dict) or not data.get("source") or not isinstance(
            data.get("engines"), dict):
        raise CatalogError(f"{path}: needs 'source' and an 'engines' mapping")
    for name, node in data["engines"].items():
        if not isinstance(node, dict) or not isinstance(node.get("versions"), dict) or (
                node.get("default") is not None
                and str(node.get("default")) not in node["versions"]):
            raise CatalogError(f"{path}: engines.{name} needs 'versions' and a 'default' "
                               "among them (or null)")
        for ver, fit in node["versions"].items():
            given = [fit[f] for f in FIELDS if f in fit] if isinstance(fit, dict) else []
            if not given or not fit.get("fitted_on") or any(
                    not isinstance(v, int | float) or v < 0 for v in given):
                raise CatalogError(f"{path}: engines.{name}.versions.{ver} needs "
                                   f"'fitted_on' and {' or '.join(FIELDS)} >= 0")
    return dict(data["engines"])


def versions(engine: str) -> tuple[str, ...]:
    """The fitted versions of ``engine`` (oldest first); empty: none fitted."""
    node = _data().get(engine)
    return tuple(sorted((str(v) for v in node["versions"]), key=version_key)) if node else ()


def at_or_below(engine: str, version: str) -> str | None:
    """The greatest fitted version of ``engine`` at or below ``version`` (None: none, or
    ``version`` has no release numbers). Missing numbers are zeros: ``0.12`` is 0.12.0."""
    want = _padded(version_key(version))
    older = [v for v in versions(engine) if want and _padded(version_key(v)) <= want]
    return older[-1] if older else None


def overrides(engine: str, version: str | None) -> tuple[str, dict[str, tuple[float, str]]]:
    """(the fitted version applied, ``{field: (value, source)}``) for ``engine`` at
    ``version`` (None: the default); ("", {}) when none is fitted."""
    node = _data().get(engine)
    if not node:
        if version is not None:
            raise InputError("--engine-version", version, f"no fitted versions of {engine}",
                             "drop --engine-version")
        return "", {}
    listed = versions(engine)
    if version is None:
        if node.get("default") is None:
            return "", {}
        key = str(node["default"])
    else:
        if not version_key(version):
            raise InputError("--engine-version", version, "not a version number",
                             f"give a release like {listed[-1]}; for a nightly or custom "
                             "build, the release it was built after")
        found = at_or_below(engine, version)
        if found is None:
            raise InputError("--engine-version", version, f"older than every fitted "
                             f"{engine} version ({', '.join(listed)})",
                             f"drop --engine-version (the profile's own figures) or give "
                             f"{listed[0]} or later")
        key = found
    fit = node["versions"][key]
    src = (f"fitted: benchmarks/fit_engine_overheads.py ({engine} {key}) on "
           f"{fit['fitted_on']}")
    return key, {f: (float(fit[f]), src) for f in FIELDS if f in fit}


def transfer_note(profile: EngineProfile, model: str) -> str | None:
    """A note when the engine ``profile`` runs with a release's fitted request overhead
    (not one the user set) that was fitted on runs of other models than ``model`` (catalog
    name): how well it transferred to a model left out of its fit (the entry's
    ``ttft_median_ape_pct_held_out_by_model``)."""
    engine, fitted_version = profile.name, profile.fitted_version
    if not dict(profile.sources).get("request_overhead_ms", "").startswith("fitted:"):
        return None
    node = _data().get(engine)
    fit = (node or {}).get("versions", {}).get(fitted_version) if fitted_version else None
    if not isinstance(fit, dict) or "request_overhead_ms" not in fit:
        return None
    models = [str(m) for m in fit.get("models") or ()]
    if not models or model in models:
        return None
    held = fit.get("ttft_median_ape_pct_held_out_by_model")
    how = (f"; refitted without each of them in turn, its TTFT on the one left out erred by "
           f"a median {float(held):g}%" if isinstance(held, int | float) else "")
    return (f"{engine} {fitted_version}'s request overhead "
            f"({float(fit['request_overhead_ms']):g} ms) was fitted on runs of "
            f"{', '.join(models)}, not {model}{how}")
