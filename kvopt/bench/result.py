"""The benchmark result file (``kvopt.bench/1``): what one load run against one replica
measured. ``kvopt bench`` writes it; ``kvopt import-bench`` converts vLLM, GuideLLM and
genai-perf results to it; ``validate`` and ``calibrate`` read it.

Its format is documented once, as the JSON Schema ``kvopt/schemas/bench.schema.json``
(``kvopt schema bench``): every key, its type, range and meaning (times in ms, rates per
second, lengths in tokens). :func:`check_bench` checks a file against it; files from before
the optional fields existed still load.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

from kvopt.errors import InputError
from kvopt.fileio import read_json_input

SCHEMA = "kvopt.bench/1"
STATS = ("mean", "p50", "p90", "p99")


def sniff_formats(data: Any) -> list[str]:
    """The foreign formats ``data`` looks like (empty: none of them)."""
    if not isinstance(data, dict):
        return []
    found = []
    if "request_throughput" in data and ("mean_ttft_ms" in data or "backend" in data):
        found.append("vllm")
    bench = data.get("benchmarks")
    if isinstance(bench, list) and bench and isinstance(bench[0], dict) \
            and "metrics" in bench[0]:
        found.append("guidellm")
    ttft = data.get("time_to_first_token")
    if "input_config" in data and isinstance(ttft, dict) and "avg" in ttft:
        found.append("genai-perf")
    return found


def check_bench(data: Any, where: str) -> dict[str, Any]:
    """Check a bench dict against the ``bench`` schema (``kvopt schema bench``); a malformed
    one raises InputError naming ``where``, the field and what it allows. A vLLM, GuideLLM
    or genai-perf result says to convert it with import-bench."""
    schema = data.get("schema") if isinstance(data, dict) else None
    if schema != SCHEMA:
        found = sniff_formats(data)
        if found:
            raise InputError("bench", where, f"this is a {found[0]} result, not "
                             f"{SCHEMA!r}", f"convert it: kvopt import-bench {where} "
                             "--out bench.json")
        raise InputError("bench", where, f"schema {schema!r} is not {SCHEMA!r}")
    from kvopt.schemas import validate

    validate("bench", data, source=where)
    check_measurement(data, where)
    return dict(data)


def check_measurement(data: dict[str, Any], where: str) -> None:
    """What a schema cannot say: that the numbers can be a measurement of a load run.
    Every latency and rate finite and positive, percentiles in order (p50 <= p90 <= p99),
    a request's end after its first token, at least one request completed and no more
    than were sent."""
    def bad(field: str, value: Any, rule: str) -> InputError:
        return InputError("bench", where, f"{field}={value!r}: {rule}; this cannot be a "
                          "measurement", "re-run the benchmark or re-import its result")

    def num(v: Any) -> bool:
        return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)

    load = data["load"]
    if not (num(load.get("value")) and load["value"] > 0):
        raise bad("load.value", load.get("value"), "a load is a finite number > 0")
    completed, sent = data.get("completed"), data.get("num_requests")
    if completed is not None and completed < 1:
        raise bad("completed", completed, "no request completed")
    if completed is not None and sent is not None and completed > sent:
        raise bad("completed", completed, f"more than the {sent} requests sent")
    for key in ("duration_s", "output_tok_s", "requests_s", "input_tok_s"):
        v = data.get(key)
        if v is not None and not (num(v) and v > 0):
            raise bad(key, v, "must be a finite number > 0")
    for block in ("ttft_ms", "itl_ms", "e2e_ms", "tpot_ms"):
        b = data.get(block)
        if not isinstance(b, dict):
            continue
        for stat in STATS:
            v = b.get(stat)
            if v is None and block == "tpot_ms":
                continue
            if not num(v) or v < 0 or (v == 0 and block in ("ttft_ms", "e2e_ms")):  # type: ignore[operator]
                raise bad(f"{block}.{stat}", v, "a latency is a finite number > 0 ms")
        qs = [float(b[s]) for s in ("p50", "p90", "p99") if num(b.get(s))]
        if any(a > c * (1 + 1e-9) + 1e-9 for a, c in itertools.pairwise(qs)):
            raise bad(block, {s: b.get(s) for s in ("p50", "p90", "p99")},
                      "percentiles must not decrease (p50 <= p90 <= p99)")
    if data["e2e_ms"]["mean"] < data["ttft_ms"]["mean"] * (1 - 1e-9):
        raise bad("e2e_ms.mean", data["e2e_ms"]["mean"], "a request ends after its first "
                  f"token (TTFT mean {data['ttft_ms']['mean']:g} ms)")


def load_bench(path: str | Path) -> dict[str, Any]:
    """Read and check a bench file; a malformed one names the file and the field."""
    p = Path(path)
    return check_bench(read_json_input(p, "bench"), str(p))


def per_token_block(bench: dict[str, Any]) -> tuple[str, dict[str, float]]:
    """The measured time per output token to compare kvopt's TPOT with: ``tpot_ms`` (per
    request, ``(e2e - ttft) / (output_tokens - 1)``) when the file has it, else ``itl_ms``
    (gaps between streamed chunks: equal to TPOT only when every chunk carries one token;
    servers that buffer tokens under load stream them in bursts)."""
    block = bench.get("tpot_ms")
    if isinstance(block, dict) and all(isinstance(block.get(s), int | float) for s in STATS) \
            and block["mean"] > 0:
        return "tpot", {s: float(block[s]) for s in STATS}
    return "itl", {s: float(bench["itl_ms"][s]) for s in STATS}


def measured_lengths(bench: dict[str, Any]) -> tuple[int, int]:
    """(input, output) tokens per request to predict with: the means the server's usage
    reported when the file has them (prompts built from words miss the asked length by a
    few tokens), else the asked lengths."""
    out = []
    for asked, measured in (("input_len", "mean_input_tokens"),
                            ("output_len", "mean_output_tokens")):
        m = bench.get(measured)
        out.append(max(1, round(m)) if isinstance(m, int | float) and m >= 1
                   else int(bench[asked]))
    return out[0], out[1]
