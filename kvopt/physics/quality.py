"""Quality loss of a precision (``models/quality.yaml``), in percentage points vs BF16."""

from __future__ import annotations

from functools import cache
from typing import Any

from kvopt.catalog.paths import models_dir
from kvopt.catalog.yamlio import read_yaml, sourced
from kvopt.errors import CatalogError, InputError


@cache
def _data() -> dict[str, Any]:
    path = models_dir() / "quality.yaml"
    data = read_yaml(path)
    if not isinstance(data, dict) or "weights_loss_pct" not in data:
        raise CatalogError(f"{path}: needs 'weights_loss_pct' and 'kv_loss_pct'")
    return data


def quality_loss_pct(weights: str, kv_dtype: str, checkpoint: str = "bf16") -> float:
    """Accuracy loss of ``weights`` + ``kv_dtype`` vs BF16 (losses add). A checkpoint
    released in a quantized format (``checkpoint``, e.g. gpt-oss in MXFP4) is its own
    reference: its format loses nothing against it."""
    data = _data()
    total = 0.0
    for table, key in (("weights_loss_pct", "bf16" if weights == checkpoint else weights),
                       ("kv_loss_pct", kv_dtype)):
        node = data[table].get(key)
        if node is None:
            raise InputError("precision", key, f"no quality figure in models/quality.yaml "
                             f"({table}); known: {', '.join(data[table])}")
        value, _ = sourced(node, f"{table}.{key}", "models/quality.yaml")
        total += float(value or 0.0)
    return total
