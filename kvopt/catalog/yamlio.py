"""YAML reading with file-and-line errors, and sourced-number access."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from kvopt.errors import CatalogError

# libyaml's safe loader when PyYAML was built with it (5-10x faster on the catalog; the same
# safe subset: no object construction), else the pure-Python one
_SAFE_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_yaml(path: Path) -> Any:
    """Parse YAML safely (no object construction) with an error naming file and line."""
    from kvopt.errors import InputError
    from kvopt.fileio import read_text_input

    try:
        text = read_text_input(path, "file")
    except InputError as exc:
        raise CatalogError(f"{path}: {exc.rule}") from None
    try:
        return yaml.load(text, Loader=_SAFE_LOADER)  # a safe loader (see _SAFE_LOADER)
    except RecursionError:
        raise CatalogError(f"{path}: not valid YAML: nested too deeply") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise CatalogError(f"{path}: not valid YAML{where}: {exc}") from None


def sourced(node: Any, field: str, origin: str, *,
            nullable: bool = False) -> tuple[float | None, str]:
    """Read ``{value: number|null, source: str}``; the source is mandatory."""
    if not isinstance(node, dict) or "value" not in node or not node.get("source"):
        raise CatalogError(f"{origin}: field '{field}' must be a mapping with 'value' and a "
                           f"non-empty 'source'")
    value = node["value"]
    if value is None:
        if not nullable:
            raise CatalogError(f"{origin}: field '{field}' must have a numeric value")
        return None, str(node["source"])
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise CatalogError(f"{origin}: field '{field}' value {value!r} must be a number >= 0")
    return float(value), str(node["source"])
