"""The benchmark result file (``kvopt.bench/1``): what one load run against one replica
measured.

```
{"schema": "kvopt.bench/1", "model": str, "endpoint": str,
 "load": {"mode": "rps"|"concurrency", "value": float},
 "input_len": int, "output_len": int, "num_requests": int, "completed": int, "errors": int,
 "duration_s": float,
 "ttft_ms": {"mean", "p50", "p90", "p99"}, "itl_ms": {...}, "e2e_ms": {...},
 "output_tok_s": float, "requests_s": float}
```
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kvopt.errors import InputError
from kvopt.fileio import read_json_input

SCHEMA = "kvopt.bench/1"
STATS = ("mean", "p50", "p90", "p99")


def load_bench(path: str | Path) -> dict[str, Any]:
    """Read and check a bench file; a malformed one names the file and the field."""
    p = Path(path)
    data = read_json_input(p, "bench")
    schema = data.get("schema") if isinstance(data, dict) else None
    if schema != SCHEMA:
        raise InputError("bench", str(p), f"schema {schema!r} is not {SCHEMA!r}")
    load = data.get("load")
    if not isinstance(load, dict) or load.get("mode") not in ("rps", "concurrency") or not (
            isinstance(load.get("value"), int | float) and load["value"] > 0):
        raise InputError("bench", str(p), "field 'load' needs mode rps|concurrency and a "
                         "value > 0")
    for key in ("input_len", "output_len"):
        if not isinstance(data.get(key), int) or data[key] < 1:
            raise InputError("bench", str(p), f"field '{key}' must be a positive integer")
    for key in ("ttft_ms", "itl_ms"):
        block = data.get(key)
        if not isinstance(block, dict) or any(
                not isinstance(block.get(s), int | float) for s in STATS):
            raise InputError("bench", str(p), f"field '{key}' needs numbers for "
                             + ", ".join(STATS))
    if not isinstance(data.get("output_tok_s"), int | float):
        raise InputError("bench", str(p), "field 'output_tok_s' must be a number")
    return dict(data)
