"""The benchmark result file (``kvopt.bench/1``): what one load run against one replica
measured. ``kvopt bench`` writes it; ``kvopt import-bench`` converts vLLM, GuideLLM and
genai-perf results to it; ``validate`` and ``calibrate`` read it.

Required (times in ms, rates per second):

```
{"schema": "kvopt.bench/1", "model": str, "endpoint": str,
 "load": {"mode": "rps"|"concurrency", "value": float},   # offered req/s, or requests in flight
 "input_len": int, "output_len": int,                     # asked lengths, tokens
 "num_requests": int,          # requests sent (completed + errors + incomplete)
 "completed": int, "errors": int,
 "duration_s": float,          # wall time of the run, start to last finish (kvopt bench:
                               # at least --duration-s when it ended Poisson arrivals)
 "ttft_ms": {"mean", "p50", "p90", "p99"}, "itl_ms": {...}, "e2e_ms": {...},
 "output_tok_s": float,        # output tokens of completed requests / duration_s
 "requests_s": float}          # completed requests / duration_s
```

Imported files hold null for counts their source does not record (genai-perf keeps no
error count, and no request count or duration in older versions). Statistics are over
completed requests; ITL pools the gaps between successive streamed content chunks of all of
them (vLLM's definition); a block of zeros means "not measured" (``validate`` skips
measured values <= 0). ``load_bench`` checks ``schema``, ``load``,
the lengths, ``ttft_ms``, ``itl_ms`` and ``output_tok_s``; files from before the optional
fields below existed still load.

Optional (written by ``kvopt bench``; importers fill what their source has):
``api`` (completions|chat); ``incomplete`` (requests cancelled at the ``--duration-s``
deadline); ``errors_by_kind`` ({kind: count}, kinds: http_5xx, http_4xx, timeout,
disconnected, connect, no_usage, stream_error, bad_response, empty_output);
``tpot_ms`` (block of per-request ``(e2e - ttft) / (output_tokens - 1)``);
``input_tok_s``; ``mean_input_tokens`` and ``mean_output_tokens`` (measured from the
server's usage); ``max_in_flight`` (most requests in flight at once, client side); ``seed``;
``max_requests`` (the ``--num-requests`` bound); ``duration_limit_s``;
``request_timeout_s``; ``prompt_fit`` ({a_tokens, b_tokens_per_word, probe_words,
probe_tokens, target_words, target_tokens_mean, words}: prompt tokens = a + b x words, the
slope from two probes, the intercept from eight probes of the planned size); ``started_at``
(ISO 8601; UTC for ``kvopt bench``, the tool's local time when imported); ``source`` (the
tool that measured: "kvopt bench", "vllm bench serve", "guidellm", "genai-perf");
``imported_from`` (path of the converted file); ``notes`` (list of
str: what an importer derived or assumed); ``kvopt_version``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kvopt.errors import InputError
from kvopt.fileio import read_json_input

SCHEMA = "kvopt.bench/1"
STATS = ("mean", "p50", "p90", "p99")


def check_bench(data: Any, where: str) -> dict[str, Any]:
    """Check a bench dict; a malformed one raises InputError naming ``where`` and the
    field. A vLLM, GuideLLM or genai-perf result says to convert it with import-bench."""
    schema = data.get("schema") if isinstance(data, dict) else None
    if schema != SCHEMA:
        from kvopt.bench.importers import sniff_formats

        found = sniff_formats(data)
        if found:
            raise InputError("bench", where, f"this is a {found[0]} result, not "
                             f"{SCHEMA!r}", f"convert it: kvopt import-bench {where} "
                             "--out bench.json")
        raise InputError("bench", where, f"schema {schema!r} is not {SCHEMA!r}")
    load = data.get("load")
    if not isinstance(load, dict) or load.get("mode") not in ("rps", "concurrency") or not (
            isinstance(load.get("value"), int | float) and load["value"] > 0):
        raise InputError("bench", where, "field 'load' needs mode rps|concurrency and a "
                         "value > 0")
    for key in ("input_len", "output_len"):
        if not isinstance(data.get(key), int) or data[key] < 1:
            raise InputError("bench", where, f"field '{key}' must be a positive integer")
    for key in ("ttft_ms", "itl_ms"):
        block = data.get(key)
        if not isinstance(block, dict) or any(
                not isinstance(block.get(s), int | float) for s in STATS):
            raise InputError("bench", where, f"field '{key}' needs numbers for "
                             + ", ".join(STATS))
    if not isinstance(data.get("output_tok_s"), int | float):
        raise InputError("bench", where, "field 'output_tok_s' must be a number")
    return dict(data)


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
