"""Aggregate a benchmark run into a ``kvopt.bench/1`` result (see kvopt/bench/result.py).

Statistics are over the completed requests only: mean and the 50/90/99th percentiles with
``numpy.percentile`` (linear interpolation, as vLLM's benchmark). ITL pools the chunk gaps of
every completed request; TPOT is per request ``(e2e - ttft) / (output_tokens - 1)`` for
requests with more than one output token. Throughputs divide the completed requests' tokens
(from the server's usage) by the run's wall time ``duration_s``.

When no request completed there is nothing to measure: :func:`summarize` raises
:class:`BenchFailedError` (the CLI prints it and exits 1 without writing a file, since a
result without latencies would be rejected by ``load_bench`` and mislead ``validate`` and
``calibrate``); the error's ``errors_by_kind`` says what went wrong.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from kvopt._version import __version__
from kvopt.bench.client import BenchConfig, RunOutcome
from kvopt.bench.result import SCHEMA
from kvopt.errors import KvoptError

MISS_WARN = 0.05  # warn when measured mean lengths miss the asked ones by more than 5%


class BenchFailedError(KvoptError):
    """No request completed; ``errors_by_kind`` counts the failures by kind."""

    def __init__(self, message: str, *, errors_by_kind: dict[str, int]) -> None:
        self.errors_by_kind = dict(errors_by_kind)
        super().__init__(message)


@dataclass(frozen=True, kw_only=True)
class Summary:
    """The result dict (``kvopt.bench/1``) and warnings for the user (one line each)."""

    result: dict[str, Any]
    warnings: tuple[str, ...] = ()


def stat_block(values_ms: Iterable[float]) -> dict[str, float]:
    """``{"mean", "p50", "p90", "p99"}`` of the values (ms); zeros when there are none."""
    arr = np.asarray(list(values_ms), dtype=float)
    if arr.size == 0:
        return {"mean": 0.0, "p50": 0.0, "p90": 0.0, "p99": 0.0}
    p50, p90, p99 = np.percentile(arr, [50, 90, 99])
    return {"mean": float(arr.mean()), "p50": float(p50), "p90": float(p90),
            "p99": float(p99)}


def _kinds_text(kinds: dict[str, int]) -> str:
    return ", ".join(f"{k} {n}" for k, n in kinds.items())


def summarize(cfg: BenchConfig, run: RunOutcome) -> Summary:
    """The result of ``run`` under ``cfg``; BenchFailedError when nothing completed."""
    ok = [r for r in run.results if r.error is None]
    failed = [r for r in run.results if r.error is not None]
    kinds = dict(sorted(Counter(str(r.error) for r in failed).items()))
    if not ok:
        what = f"{len(failed)} failed ({_kinds_text(kinds)}; first: {failed[0].detail})" \
            if failed else "none finished"
        cut = f", {run.incomplete} cancelled at the --duration-s deadline" \
            if run.incomplete else ""
        raise BenchFailedError(f"no request to {cfg.endpoint} completed: {what}{cut}; no "
                               "result written", errors_by_kind=kinds)
    out_tokens = [int(r.output_tokens or 0) for r in ok]
    in_tokens = [int(r.prompt_tokens or 0) for r in ok]
    tpot = [(r.e2e_ms - (r.ttft_ms or 0.0)) / (n - 1)
            for r, n in zip(ok, out_tokens, strict=True) if n > 1]
    itl = [g for r in ok for g in r.itl_ms]
    dur = run.duration_s
    mean_in, mean_out = float(np.mean(in_tokens)), float(np.mean(out_tokens))
    result: dict[str, Any] = {
        "schema": SCHEMA, "model": cfg.model, "endpoint": cfg.endpoint, "api": cfg.api,
        "load": {"mode": cfg.mode, "value": (int(cfg.load_value) if cfg.mode == "concurrency"
                                             else float(cfg.load_value))},
        "input_len": cfg.input_len, "output_len": cfg.output_len,
        "num_requests": len(run.results) + run.incomplete, "completed": len(ok),
        "errors": len(failed), "incomplete": run.incomplete, "errors_by_kind": kinds,
        "duration_s": dur,
        "ttft_ms": stat_block(float(r.ttft_ms or 0.0) for r in ok),
        "itl_ms": stat_block(itl), "e2e_ms": stat_block(r.e2e_ms for r in ok),
        "tpot_ms": stat_block(tpot),
        "output_tok_s": sum(out_tokens) / dur, "input_tok_s": sum(in_tokens) / dur,
        "requests_s": len(ok) / dur,
        "mean_input_tokens": mean_in, "mean_output_tokens": mean_out,
        "max_in_flight": run.max_in_flight, "seed": cfg.seed,
        "max_requests": cfg.num_requests, "duration_limit_s": cfg.duration_s,
        "request_timeout_s": cfg.request_timeout_s,
        "prompt_fit": {**run.fit.to_dict(), "words": run.words},
        "started_at": run.started_at, "source": "kvopt bench", "kvopt_version": __version__,
    }
    warns = []
    if abs(mean_in - cfg.input_len) > MISS_WARN * cfg.input_len:
        warns.append(f"prompts averaged {mean_in:.1f} tokens for --input-len {cfg.input_len} "
                     f"(fit: {run.fit.a_tokens:.1f} + {run.fit.b_tokens_per_word:.3f} tokens "
                     f"per word, {run.words} words); the result records both")
    if abs(mean_out - cfg.output_len) > MISS_WARN * cfg.output_len:
        warns.append(f"outputs averaged {mean_out:.1f} tokens for --output-len "
                     f"{cfg.output_len}: the server ignored ignore_eos/min_tokens?")
    if not itl and cfg.output_len > 1:
        warns.append("no request streamed two content chunks: ITL is recorded as 0 (does "
                     "the server stream token by token?)")
    if failed:
        warns.append(f"{len(failed)} of {len(run.results)} requests failed "
                     f"({_kinds_text(kinds)}); first: {failed[0].detail}")
    if run.incomplete:
        warns.append(f"{run.incomplete} requests were cancelled at the --duration-s "
                     f"{cfg.duration_s:g} s deadline")
    return Summary(result=result, warnings=tuple(warns))
