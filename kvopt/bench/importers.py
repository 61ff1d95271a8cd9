"""Convert other benchmark tools' results to ``kvopt.bench/1`` (kvopt/bench/result.py).

Each importer reads the tool's own field names (sources cited per function), takes the load
mode and value from the tool's own settings, and raises InputError naming the file and the
missing field (and how to rerun the tool) when a required statistic is absent. What an
importer derives or assumes is listed in the result's ``notes``. Counts a source does not
record are written as null (genai-perf keeps no error count).
"""

from __future__ import annotations

import contextlib
import math
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from kvopt._version import __version__
from kvopt.bench.result import SCHEMA, STATS, check_bench, sniff_formats
from kvopt.errors import InputError
from kvopt.fileio import read_json_input

FORMATS = ("vllm", "guidellm", "genai-perf")
_VLLM_METRIC = {"ttft_ms": "ttft", "itl_ms": "itl", "e2e_ms": "e2el", "tpot_ms": "tpot"}
_VLLM_LIST = {"ttft_ms": "ttfts", "itl_ms": "itls", "e2e_ms": "latencies"}


def _missing(where: str, what: str, fix: str) -> InputError:
    return InputError("import-bench", where, f"{what} is missing", fix)


def _num(d: Any, key: str) -> float | None:
    v = d.get(key) if isinstance(d, dict) else None
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) \
        and math.isfinite(v) else None


def _base(*, source: str, where: str, model: str, endpoint: str, mode: str, value: float,
          input_len: float, output_len: float) -> dict[str, Any]:
    return {"schema": SCHEMA, "model": model, "endpoint": endpoint,
            "load": {"mode": mode, "value": int(value) if mode == "concurrency" else value},
            "input_len": max(1, round(input_len)), "output_len": max(1, round(output_len)),
            "mean_input_tokens": input_len, "mean_output_tokens": output_len,
            "source": source, "imported_from": where, "kvopt_version": __version__}


def from_vllm(d: dict[str, Any], where: str) -> dict[str, Any]:
    """A ``vllm bench serve --save-result`` (or ``benchmarks/benchmark_serving.py``) JSON.

    Fields (vllm-project/vllm, vllm/benchmarks/serve.py: ``main_async`` result_json,
    ``benchmark`` result dict and ``process_one_metric``): model_id, request_rate (float or
    "inf"), max_concurrency, num_prompts, duration, completed, failed, total_input_tokens,
    total_output_tokens, request_throughput, output_throughput, ``mean_/median_/pNN_`` +
    ``ttft|tpot|itl|e2el`` + ``_ms``; per-request lists ttfts, itls, latencies, errors (in
    seconds; ``latencies`` is kept even without ``--save-detailed``). Percentiles that were
    not saved (the default is ``--metric-percentiles 99``) are computed from the per-request
    lists when present. Load: a finite request_rate is ``rps`` (Poisson), else
    max_concurrency is ``concurrency``; with neither, all prompts were sent at once
    (``concurrency`` = num_prompts). Lengths are the measured means (vLLM does not save the
    asked ones).
    """
    notes = ["input_len/output_len: measured mean tokens (vLLM does not save the asked "
             "lengths)"]
    if d.get("ramp_up_strategy"):
        raise InputError("import-bench", where, "a ramp-up run has no fixed load",
                         "import runs with a fixed --request-rate or --max-concurrency")
    rate = _num(d, "request_rate")
    conc = _num(d, "max_concurrency")
    for key, v in (("request_rate", rate), ("max_concurrency", conc)):
        if v is not None and v <= 0:
            raise InputError("import-bench", where, f"{key}={v:g} is not a load (a rate or "
                             "a client count is > 0)", "check the file: it is not a "
                             "measurement of a load run")
    if rate is not None and rate > 0:
        mode, value = "rps", rate
        if conc:
            notes.append(f"max_concurrency {conc:g} also capped the load")
    elif conc:
        mode, value = "concurrency", conc
    elif _num(d, "num_prompts"):
        mode, value = "concurrency", float(d["num_prompts"])
        notes.append("request_rate inf without max_concurrency: every prompt was sent at "
                     "once, recorded as concurrency = num_prompts")
    else:
        raise _missing(where, "request_rate/max_concurrency", "save the result with vllm "
                       "bench serve --save-result")
    completed = _num(d, "completed")
    if not completed:
        raise _missing(where, "a positive 'completed'", "the run completed no request")
    errs = d.get("errors")

    def per_request_ms(key: str) -> np.ndarray[Any, np.dtype[np.float64]]:
        """Successful requests' values (ms) from a per-request list (s): failures are
        the entries with an error text, or (without ``errors``) a zero TTFT/latency."""
        raw = d.get(_VLLM_LIST[key])
        if not isinstance(raw, list):
            return np.zeros(0)
        if isinstance(errs, list) and len(errs) == len(raw):
            raw = [r for r, e in zip(raw, errs, strict=True) if not e]
        flat = [x for r in raw for x in (r if isinstance(r, list) else [r])
                if isinstance(x, int | float)]
        vals = np.asarray(flat, dtype=float) * 1e3
        return vals if key == "itl_ms" else vals[vals > 0]

    def block(key: str) -> dict[str, float] | None:
        name, out = _VLLM_METRIC[key], {}
        for stat, field in zip(STATS, ("mean_{}_ms", "median_{}_ms", "p90_{}_ms",
                                       "p99_{}_ms"), strict=True):
            v = _num(d, field.format(name))
            v = _num(d, f"p50_{name}_ms") if v is None and stat == "p50" else v
            if v is not None:
                out[stat] = v
        vals = per_request_ms(key) if len(out) < len(STATS) and key in _VLLM_LIST \
            else np.zeros(0)
        if vals.size:
            p50, p90, p99 = np.percentile(vals, [50, 90, 99])
            notes.append(f"{key}: {', '.join(s for s in STATS if s not in out)} computed "
                         f"from the per-request '{_VLLM_LIST[key]}'")
            out = {"mean": float(vals.mean()), "p50": float(p50), "p90": float(p90),
                   "p99": float(p99), **out}
        return out if len(out) == len(STATS) else None

    res = _base(source="vllm bench serve", where=where,
                model=str(d.get("model_id") or d.get("model") or "unknown"),
                endpoint=str(d.get("base_url") or f"unknown (vllm bench serve, backend "
                                                  f"{d.get('backend', '?')})"),
                mode=mode, value=value,
                input_len=float(d.get("total_input_tokens", 0)) / completed,
                output_len=float(d.get("total_output_tokens", 0)) / completed)
    failed = _num(d, "failed")
    dur = _num(d, "duration")
    sent = completed + failed if failed is not None else _num(d, "num_prompts") or completed
    res.update(num_requests=int(sent), completed=int(completed),
               errors=None if failed is None else int(failed), duration_s=dur)
    for key in ("ttft_ms", "itl_ms", "e2e_ms", "tpot_ms"):
        b = block(key)
        if b is None and key != "tpot_ms":
            missing = "e2el" if key == "e2e_ms" else _VLLM_METRIC[key]
            raise _missing(where, f"{key} mean/p50/p90/p99 (p90_{missing}_ms, or the "
                           f"per-request list '{_VLLM_LIST[key]}')",
                           "rerun vllm bench serve with --metric-percentiles 50,90,99 "
                           "--percentile-metrics ttft,tpot,itl,e2el")
        if b is not None:
            res[key] = b
    res["output_tok_s"] = _num(d, "output_throughput")
    res["requests_s"] = _num(d, "request_throughput")
    if dur:
        res["input_tok_s"] = float(d.get("total_input_tokens", 0)) / dur
    if isinstance(d.get("date"), str):
        with contextlib.suppress(ValueError):
            res["started_at"] = datetime.strptime(d["date"], "%Y%m%d-%H%M%S").isoformat()
    res["notes"] = notes
    return res


def _dist(metrics: dict[str, Any], name: str, where: str, scale: float = 1.0
          ) -> dict[str, float]:
    """GuideLLM ``metrics[name].successful`` (DistributionSummary) -> a stat block."""
    ds = (metrics.get(name) or {}).get("successful") if isinstance(metrics, dict) else None
    pct = ds.get("percentiles") if isinstance(ds, dict) else None
    vals = {"mean": _num(ds, "mean"), "p50": _num(pct, "p50") or _num(ds, "median"),
            "p90": _num(pct, "p90"), "p99": _num(pct, "p99")}
    if any(v is None for v in vals.values()):
        raise _missing(where, f"metrics.{name}.successful mean/percentiles",
                       "export the report with guidellm benchmark --output-path "
                       "benchmarks.json")
    return {k: float(v or 0.0) * scale for k, v in vals.items()}


def _guidellm_one(b: dict[str, Any], report: dict[str, Any], where: str) -> dict[str, Any]:
    m = b.get("metrics") or {}
    strategy = (b.get("config") or {}).get("strategy") or (b.get("args") or {}).get(
        "strategy") or {}
    kind = strategy.get("type_")
    notes = ["input_len/output_len: measured mean tokens",
             "itl_ms percentiles are over per-request mean ITLs (GuideLLM), not pooled "
             "chunk gaps"]
    if kind in ("poisson", "constant") and _num(strategy, "rate"):
        mode, value = "rps", float(strategy["rate"])
        if kind == "constant":
            notes.append("constant-rate arrivals (not Poisson)")
    elif kind == "concurrent" and _num(strategy, "streams"):
        mode, value = "concurrency", float(strategy["streams"])
    elif kind == "synchronous":
        mode, value = "concurrency", 1.0
    elif kind == "throughput":
        mean_c = _dist(m, "request_concurrency", where)["mean"]
        mode, value = "concurrency", float(max(1, round(mean_c)))
        notes.append(f"throughput strategy (as fast as possible): recorded as the measured "
                     f"mean concurrency {mean_c:.1f}")
    else:
        raise _missing(where, f"a fixed-load strategy (found {kind!r})",
                       "import synchronous, concurrent, constant, poisson or throughput runs")
    totals = m.get("request_totals") or b.get("request_totals") or {}
    args, worker = report.get("args") or {}, b.get("worker") or {}
    backend = (b.get("config") or {}).get("backend") or {}
    model = args.get("model") or worker.get("backend_model") or backend.get("model")
    endpoint = args.get("target") or worker.get("backend_target") or backend.get("target")
    dur = _num(b, "duration")
    if dur is None and _num(b, "end_time") and _num(b, "start_time"):
        dur = float(b["end_time"]) - float(b["start_time"])
    completed = int(_num(totals, "successful") or 0)
    if not completed or not dur:
        raise _missing(where, "successful requests and a duration", "the run completed "
                       "no request")
    out = _dist(m, "output_token_count", where)
    out_sum = _num((m.get("output_token_count") or {}).get("successful"), "total_sum")
    res = _base(source="guidellm", where=where, model=str(model or "unknown"),
                endpoint=str(endpoint or "unknown (guidellm)"), mode=mode, value=value,
                input_len=_dist(m, "prompt_token_count", where)["mean"],
                output_len=out["mean"])
    res.update(num_requests=int(_num(totals, "total") or completed), completed=completed,
               errors=int(_num(totals, "errored") or 0),
               incomplete=int(_num(totals, "incomplete") or 0), duration_s=dur,
               ttft_ms=_dist(m, "time_to_first_token_ms", where),
               itl_ms=_dist(m, "inter_token_latency_ms", where),
               e2e_ms=_dist(m, "request_latency", where, 1e3),
               output_tok_s=(out_sum if out_sum is not None else out["mean"] * completed)
               / dur, requests_s=completed / dur, notes=notes)
    return res


def from_guidellm(d: dict[str, Any], where: str) -> list[dict[str, Any]]:
    """A GuideLLM ``benchmarks.json`` report: one result per benchmark.

    Fields (vllm-project/guidellm): report ``{metadata, args{target, model}, benchmarks}``
    (src/guidellm/benchmark/schemas/generative/report.py); per benchmark ``config.strategy``
    (schemas/base.py ``BenchmarkConfig``; ``args.strategy`` before v0.4,
    src/guidellm/benchmark/benchmark.py) with ``type_`` synchronous | concurrent (streams) |
    throughput | constant | poisson (rate) (src/guidellm/scheduler/strategies.py),
    ``duration``, ``metrics.request_totals`` {successful, errored, incomplete, total}
    (``request_totals`` at the benchmark level before v0.4) and the StatusDistributionSummary
    metrics time_to_first_token_ms, inter_token_latency_ms, request_latency (s),
    prompt_token_count, output_token_count, request_concurrency
    (schemas/generative/metrics.py), each ``successful.{mean, median, total_sum,
    percentiles.{p50, p90, p99}}`` (src/guidellm/schemas/statistics.py ``Percentiles``).
    """
    benches = [b for b in d.get("benchmarks") or [] if isinstance(b, dict)]
    if not benches:
        raise _missing(where, "'benchmarks'", "give a guidellm benchmarks.json")
    return [_guidellm_one(b, d, f"{where}#{i}" if len(benches) > 1 else where)
            for i, b in enumerate(benches, 1)]


def from_genai_perf(d: dict[str, Any], where: str) -> dict[str, Any]:
    """An NVIDIA genai-perf ``profile_export_genai_perf.json``.

    Fields (triton-inference-server/perf_analyzer, genai-perf/genai_perf/export_data/
    json_exporter.py: the statistics plus ``input_config``; metrics/statistics.py: per
    metric ``{unit, avg, p1..p99, min, max, std}``, throughputs only ``avg``;
    metrics/llm_metrics.py: time_to_first_token, inter_token_latency, request_latency (ms),
    output_token_throughput, request_throughput, input/output_sequence_length,
    request_count). Load from ``input_config``: ``perf_analyzer.stimulus`` {concurrency |
    request_rate} (config/input/config_perf_analyzer.py, config_command.py: model_names,
    endpoint.url) or the older argparse fields (genai_perf/parser.py: ``concurrency``,
    ``request_rate``, ``model`` list, ``u`` = --url, ``request_count``). genai-perf records
    no error count (errors: null) and no run duration (duration_s = request count /
    request_throughput when a request count is known, else null).
    """
    cfg = d.get("input_config") or {}
    stim = (cfg.get("perf_analyzer") or {}).get("stimulus") or {}
    rate = _num(stim, "request_rate") or _num(cfg, "request_rate")
    conc = _num(stim, "concurrency") or _num(cfg, "concurrency")
    notes = ["input_len/output_len: measured mean tokens", "genai-perf records no error "
             "count"]
    if rate:
        mode, value = "rps", rate
        notes.append("perf_analyzer request rates are constant-interval by default, not "
                     "Poisson")
    elif conc:
        mode, value = "concurrency", conc
    else:
        raise _missing(where, "input_config concurrency/request_rate", "profile with "
                       "genai-perf --concurrency N or --request-rate R")

    def block(name: str) -> dict[str, float]:
        s = d.get(name)
        vals = [_num(s, k) for k in ("avg", "p50", "p90", "p99")]
        if any(v is None for v in vals):
            raise _missing(where, f"{name} avg/p50/p90/p99", "profile with genai-perf "
                           "profile --streaming (TTFT and ITL need streaming)")
        return dict(zip(STATS, [float(v or 0.0) for v in vals], strict=True))

    names = cfg.get("model_names") or cfg.get("model") or ["unknown"]
    ep = cfg.get("endpoint")
    endpoint = ep.get("url") if isinstance(ep, dict) else cfg.get("u") or cfg.get("url")
    res = _base(source="genai-perf", where=where,
                model=str(names[0] if isinstance(names, list) else names),
                endpoint=str(endpoint or "unknown (genai-perf)"), mode=mode, value=value,
                input_len=block("input_sequence_length")["mean"],
                output_len=block("output_sequence_length")["mean"])
    count = _num(d.get("request_count"), "avg")
    if count is None and (_num(cfg, "request_count") or 0) > 0:
        count = _num(cfg, "request_count")
        notes.append("completed: input_config.request_count (requests measured)")
    rps = _num(d.get("request_throughput"), "avg")
    tok_s = _num(d.get("output_token_throughput"), "avg")
    if rps is None or tok_s is None:
        raise _missing(where, "request_throughput/output_token_throughput avg",
                       "export with genai-perf profile (it writes both)")
    res.update(num_requests=None if count is None else int(count),
               completed=None if count is None else int(count), errors=None,
               duration_s=count / rps if count and rps else None,
               ttft_ms=block("time_to_first_token"), itl_ms=block("inter_token_latency"),
               e2e_ms=block("request_latency"), output_tok_s=tok_s, requests_s=rps,
               notes=notes)
    return res


def import_file(path: str | Path, fmt: str = "auto", *, model: str | None = None,
                endpoint: str | None = None) -> list[dict[str, Any]]:
    """Read ``path`` as ``fmt`` (auto: detect, only when unambiguous) and return checked
    ``kvopt.bench/1`` dicts (several for a GuideLLM report with several benchmarks);
    ``model``/``endpoint`` override what the file records."""
    where = str(path)
    data = read_json_input(path, "import-bench", constants=True)  # vLLM writes Infinity
    if fmt == "auto":
        found = sniff_formats(data)
        if len(found) != 1:
            rule = (f"looks like several formats ({', '.join(found)})" if found else
                    "is not a vLLM, GuideLLM or genai-perf result")
            raise InputError("import-bench", where, rule, "name it with --from "
                             + "|".join(FORMATS))
        fmt = found[0]
    if fmt not in FORMATS or not isinstance(data, dict):
        raise InputError("--from", fmt, "must be auto or " + ", ".join(FORMATS))
    try:
        results = (from_guidellm(data, where) if fmt == "guidellm" else
                   [from_vllm(data, where) if fmt == "vllm" else from_genai_perf(data, where)])
    except InputError:
        raise
    except (AttributeError, TypeError, KeyError, ValueError, ZeroDivisionError) as exc:
        raise InputError("import-bench", where, f"not a well-formed {fmt} result "
                         f"({type(exc).__name__}: {exc})", "check the file and --from"
                         ) from None
    for r in results:
        r.update({k: v for k, v in (("model", model), ("endpoint", endpoint)) if v})
    return [check_bench(r, where) for r in results]
