"""Fit engine time outside the kernels per engine release (the per-step and the per-request
overhead) and write ``models/engine_overheads.yaml``.

kvopt prices the engine steps from the kernels (``models/efficiency.yaml``) and the engine
profile's scheduling; real runs of some releases take a near-constant extra time per request
before their first token that the steps do not explain (SGLang 0.5.9-0.5.10 and
TensorRT-LLM 1.0-1.2 on MoE models: 100-250 ms at 4-8 clients for a prompt kvopt prefills
in 25-50 ms, about as much at 8192 tokens). Its cause is not identified here (API server,
tokenization, the engine's first scheduling of a request, the client); it is fitted as the
engine's per-request overhead (``request_overhead_ms``: added to every request's TTFT and
end-to-end time), one number per release, **only** on the training measurements:

* ``benchmarks/data/silicon_train.csv`` (the train half of aiconfigurator 0.12.0's silicon
  sample): every row ``accuracy_silicon.py`` can express, as it asks it (benchmark runs of
  10 rounds per client with the deployment flags it gives each collection), repeats counted
  once;
* ``benchmarks/data/vllm_serving_train.csv`` (vLLM 0.15.1, open loop): its stage rows.

A release is the first three numbers of ``backend_version`` (``1.2.0rc6.post2`` -> 1.2.0; a
TensorRT-LLM or vLLM sweep that records none: its InferenceX image's,
``accuracy_silicon.version``; an SGLang nightly built on a recorded day: the newest release
InferenceX had named before it, ``inferencex.nightly_release``); rows whose version is the
tag of the NVIDIA Dynamo runtime image they ran (``ai-dynamo/*-runtime``: Dynamo's
version, not the engine's), undated nightly or model-named builds and unversioned rows are
not fitted. A release is fitted when it has at least
``--min-configs`` configurations across at least two models. Its per-step overhead (host
scheduling, sampling and detokenization between GPU passes: it lengthens every step, so it
shows in TPOT) starts at the profile's and moves twice by the median TPOT residual; its
per-request overhead is then the one that minimizes the median relative TTFT error, averaged
over the release's closed- and open-loop runs (each kind once; predicted without one); see
:func:`_fit`. Each is kept only when it lowers the release's median TTFT + TPOT error
without raising that of its closed-loop or open-loop runs (the step overhead, which must
also lower the median TPOT error, judged together with the request overhead that would ship
with it).

How a release's request overhead transfers to a model it was not fitted on is measured too
(``ttft_median_ape_pct_held_out_by_model``): refitted without each of its models in turn and
scored on that model's runs. It is printed and shipped beside the in-sample error and the
models (``models``: kvopt's estimate notes both when it applies the fit to another model);
it is not used to choose the value.

The file names no default release (``default: null``): kvopt applies a fit only when asked
for that release (``--engine-version``, ``engine_version=``), since a constant fitted on
MoE runs would add its whole value to every other model's first token.

Run: ``python benchmarks/fit_engine_overheads.py [--check] [--min-configs N]``; ``--check``
refits and compares with the shipped file (exit 1 when a value moved by more than 10% and
0.2 ms).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import accuracy_common as ac
import accuracy_silicon as sil
import accuracy_vllm_serving as vs
import numpy as np
import yaml

from kvopt.catalog.engine_versions import version_key

OUT = Path(__file__).resolve().parents[1] / "models" / "engine_overheads.yaml"
# A sanity bound on a fitted per-request overhead: the largest fitted is 194 ms (SGLang
# 0.5.9, DeepSeek-V3, GLM-5 and Qwen3.5 on Blackwell).
MAX_REQUEST_MS = 300.0
# ... and on a fitted per-step overhead (host time between GPU passes)
MAX_STEP_MS = 10.0
Row = dict[str, Any]


def silicon_rows() -> list[Row]:
    """Expressible silicon rows: (engine, release, model, question, measured TTFT/TPOT)."""
    out = []
    for row in sil.unique_rows(ac.read_csv(sil.DATA)):
        try:
            q = sil.question(row, versions=False)
        except ac.Inexpressible:
            continue
        out.append({"engine": q["engine"], "release": sil.release(row), "model": q["model"],
                    "loop": "closed",
                    "q": q, "ttft": ac.measured(row["silicon_ttft_ms"]),
                    "tpot": ac.measured(row["silicon_tpot_ms"])})
    return out


def serving_rows() -> list[Row]:
    """The vLLM 0.15.1 open-loop stage runs (TTFT and ITL means)."""
    by_run: dict[tuple[str, ...], Row] = {}
    for row in vs.unique_rows(ac.read_csv(vs.DATA)):
        if ac.measured(row["stage_index"]) < 0 or row["metric"] not in ("ttft_mean",
                                                                          "itl_mean"):
            continue
        try:
            stages = vs.question(row, versions=False)
        except ac.Inexpressible:
            continue
        key = (row["exp_id"], row["stage_index"])
        rec = by_run.setdefault(key, {"engine": "vllm", "release": "0.15.1", "loop": "open",
                                      "model": stages[0][1]["model"], "q": stages[0][1]})
        rec["ttft" if row["metric"] == "ttft_mean" else "tpot"] = ac.measured(row["actual"])
    return [r for r in by_run.values() if "ttft" in r and "tpot" in r]


def _predict(q: dict[str, Any], step_ms: float | None = None) -> tuple[float, float] | None:
    """(TTFT, TPOT) of a question without any per-request overhead, with the profile's
    per-step overhead or ``step_ms``."""
    args = dict(q.get("engine_args") or ())
    args.update(request_overhead_ms=0.0)
    if step_ms is not None:
        args.update(step_overhead_ms=step_ms)
    q = {k: v for k, v in q.items() if k != "engine_version"}
    try:
        e = ac.estimate(**{**q, "engine_args": tuple(sorted(args.items()))})
    except ac.Inexpressible:
        return None
    if e.load.saturated:
        return None
    return e.latency.ttft_ms, e.latency.tpot_ms


Pred = dict[int, tuple[float, float]]
METRIC = {0: "ttft", 1: "tpot"}


def _run(rows: Sequence[Row], step_ms: float | None) -> Pred:
    out = {}
    for i, r in enumerate(rows):
        p = _predict(r["q"], step_ms)
        if p is not None:
            out[i] = p
    return out


def _error(rows: Sequence[Row], pred: Pred, idx: Sequence[int], k: int,
           shift: float = 0.0) -> float:
    """Median relative error of metric ``k`` (0 TTFT, 1 TPOT) over rows ``idx``."""
    m = METRIC[k]
    return statistics.median(abs(pred[i][k] + shift - rows[i][m]) / rows[i][m] for i in idx)


def _score(rows: Sequence[Row], pred: Pred, idx: Sequence[int], req: float) -> float:
    """Median TTFT error (+ ``req`` ms on every TTFT) plus median TPOT error over ``idx``."""
    return _error(rows, pred, idx, 0, req) + _error(rows, pred, idx, 1)


def _worse(rows: Sequence[Row], before: tuple[Pred, float], after: tuple[Pred, float],
           what: str, progress: Callable[[str], None]) -> bool:
    """Whether ``after`` ((predictions, request overhead)) fails to lower the median TTFT +
    TPOT error of the release's runs, or raises that of its closed-loop or open-loop runs
    (over the runs both predictions have)."""
    both = sorted(set(before[0]) & set(after[0]))
    for loop in ("all", "closed", "open"):
        idx = [i for i in both if loop == "all" or rows[i]["loop"] == loop]
        if not idx:
            continue
        b = _score(rows, before[0], idx, before[1])
        a = _score(rows, after[0], idx, after[1])
        if a > b or (loop == "all" and a == b):
            progress(f"  {what} not kept: its {len(idx)} {loop} runs' median TTFT + TPOT "
                     f"error goes {b * 100:.1f}% -> {a * 100:.1f}%")
            return True
    return False


def _request(rows: Sequence[Row], pred: Pred) -> float:
    """The per-request overhead (ms, on a 0.1 ms grid in [0, :data:`MAX_REQUEST_MS`]) that
    minimizes the mean over the release's loop kinds (closed, open) of their median relative
    TTFT error: each kind of run counts once, however many rows it has."""
    kinds = [[i for i in pred if rows[i]["loop"] == loop] for loop in ("closed", "open")]
    kinds = [k for k in kinds if k]
    grid = np.arange(0.0, MAX_REQUEST_MS + 0.05, 0.1)
    cost = [statistics.fmean(_error(rows, pred, k, 0, float(g)) for k in kinds) for g in grid]
    return float(grid[int(np.argmin(cost))])


def _fit(rows: Sequence[Row], engine: str,
         progress: Callable[[str], None]) -> dict[str, Any] | None:
    """The release's overheads (None: none kept, or too many rows saturated or refused).

    Per-step: the profile's, moved twice by the median TPOT residual (measured minus
    predicted; each move re-predicts), clipped to [0, :data:`MAX_STEP_MS`]. Per-request:
    :func:`_request` with that step overhead.
    The request overhead is kept only when it lowers the release's median TTFT + TPOT error
    and raises neither its closed-loop nor its open-loop runs' (a constant that does not
    hold for both is not a property of the release); the step overhead only when it lowers
    the median TPOT error and, judged like that, each of the two step overheads (fitted,
    profile's) with the request overhead that would ship with it (a faster step shortens
    the prefill too, which the request overhead then makes up)."""
    from kvopt.catalog.engines import load_engine

    base = _run(rows, None)
    if len(base) < max(5, len(rows) // 2):
        return None
    out: dict[str, Any] = {"rows": len(base), "files": sorted(
        {"silicon_train.csv" if r["loop"] == "closed" else "vllm_serving_train.csv"
         for r in rows})}
    step = load_engine(engine).step_overhead_ms
    pred = base
    for _ in range(2):
        resid = statistics.median(rows[i]["tpot"] - p[1] for i, p in pred.items())
        step = min(MAX_STEP_MS, max(0.0, step + resid))
        pred = _run(rows, step)
    both = sorted(set(base) & set(pred))
    before, after = _error(rows, base, both, 1), _error(rows, pred, both, 1)
    progress(f"step {step:.2f} ms: TPOT {before * 100:.1f}% -> {after * 100:.1f}% median "
             f"error on {len(both)} rows")
    if after >= before:
        progress("  step not kept: it does not lower the median TPOT error")
    req = req_base = _request(rows, base)
    if len(pred) >= max(5, len(rows) // 2) and after < before:
        req_step = _request(rows, pred)
        if not _worse(rows, (base, _kept(rows, base, req_base)),
                      (pred, _kept(rows, pred, req_step)), "step", progress):
            out.update(step_overhead_ms=step, tpot_before=before, tpot=after)
            req = req_step
    if "step_overhead_ms" not in out:
        pred = base
    both = sorted(set(base) & set(pred))
    before, after = _error(rows, base, both, 0), _error(rows, pred, both, 0, req)
    progress(f"request {req:.1f} ms: TTFT {before * 100:.1f}% -> {after * 100:.1f}% median "
             f"error on {len(both)} rows")
    if not _worse(rows, (pred, 0.0), (pred, req), "request", progress):
        out.update(request_overhead_ms=req, ttft_before=before, ttft=after)
        held = _held_out_by_model(rows, pred)
        if held is not None:
            out["ttft_held_out"] = held
            progress(f"  held out by model (refit without each model, scored on it): TTFT "
                     f"{held * 100:.1f}% median error")
    return out if "step_overhead_ms" in out or "request_overhead_ms" in out else None


def _held_out_by_model(rows: Sequence[Row], pred: Pred) -> float | None:
    """How the release's request overhead transfers to a model it was not fitted on: for
    each model, :func:`_request` on the release's other models' runs, scored on that
    model's runs; the median relative TTFT error over all of them (None: one model)."""
    models = sorted({rows[i]["model"] for i in pred})
    if len(models) < 2:
        return None
    errors = []
    for m in models:
        req = _request(rows, {i: p for i, p in pred.items() if rows[i]["model"] != m})
        errors += [abs(p[0] + req - rows[i]["ttft"]) / rows[i]["ttft"]
                   for i, p in pred.items() if rows[i]["model"] == m]
    return statistics.median(errors)


def _kept(rows: Sequence[Row], pred: Pred, req: float) -> float:
    """The request overhead :func:`_fit` would ship with these predictions, ``req`` being
    the one :func:`_request` finds for them (0: not kept)."""
    return 0.0 if _worse(rows, (pred, 0.0), (pred, req), "", lambda _: None) else req


def fit(min_configs: int, progress: Callable[[str], None] = print) -> dict[str, Any]:
    rows = silicon_rows() + serving_rows()
    by_engine: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        by_engine[r["engine"]].append(r)
    engines: dict[str, Any] = {}
    for eng, group in sorted(by_engine.items()):
        versions: dict[str, Any] = {}
        by_release: dict[str, list[Row]] = defaultdict(list)
        for r in group:
            if r["release"]:
                by_release[r["release"]].append(r)
        for rel, sub in sorted(by_release.items(), key=lambda kv: version_key(kv[0])):
            models = sorted({r["model"] for r in sub})
            if len(sub) < min_configs or len(models) < 2:
                continue
            progress(f"{eng} {rel}: {len(sub)} configurations")
            best = _fit(sub, eng, progress)
            if best is not None:
                versions[rel] = _entry(best, f"{len(sub)} {eng} {rel} runs ({', '.join(models)})",
                                       models)
        if versions:
            engines[eng] = {"default": None, "versions": versions}
    return engines


def _entry(best: dict[str, Any], what: str, models: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f, before, after, name in (("step_overhead_ms", "tpot_before", "tpot", "tpot"),
                                   ("request_overhead_ms", "ttft_before", "ttft", "ttft")):
        if f in best:
            out[f] = round(float(best[f]), 2 if f == "step_overhead_ms" else 1)
            out[f"{name}_median_ape_pct_before"] = round(best[before] * 100, 1)
            out[f"{name}_median_ape_pct"] = round(best[after] * 100, 1)
    if "ttft_held_out" in best:
        out["ttft_median_ape_pct_held_out_by_model"] = round(best["ttft_held_out"] * 100, 1)
    out["fitted_on"] = f"{what} of " + " and ".join(f"benchmarks/data/{f}"
                                                      for f in best["files"])
    out["models"] = list(models)  # kvopt notes a fit used for another model
    out["rows"] = int(best["rows"])
    return out


def render(engines: dict[str, Any]) -> str:
    head = ("# GENERATED by benchmarks/fit_engine_overheads.py; do not edit by hand.\n"
            "# Engine time outside the kernels per engine and release, fitted only on the\n"
            "# training measurements (see the script's docstring).\n")
    body = {"source": "fitted: benchmarks/fit_engine_overheads.py on "
                      "benchmarks/data/silicon_train.csv and vllm_serving_train.csv",
            "engines": engines}
    return head + yaml.safe_dump(body, sort_keys=False, width=100)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare with the shipped file")
    ap.add_argument("--min-configs", type=int, default=20)
    args = ap.parse_args(argv)
    engines = fit(args.min_configs)
    if not args.check:
        from kvopt.fileio import write_atomic

        write_atomic(OUT, render(engines))
        print(f"wrote {OUT}")
        return 0
    shipped = yaml.safe_load(OUT.read_text(encoding="utf-8"))["engines"]
    bad = []
    for eng, node in engines.items():
        for ver, fit_ in node["versions"].items():
            old = shipped.get(eng, {}).get("versions", {}).get(ver)
            for f in ("step_overhead_ms", "request_overhead_ms"):
                a, b = fit_.get(f), (old or {}).get(f)
                if a is None and b is None:
                    continue
                if a is None or b is None or abs(a - b) > max(0.2, 0.1 * abs(b)):
                    bad.append(f"{eng} {ver} {f}: refit {a}, shipped {b}")
    for eng, node in shipped.items():
        for ver in node.get("versions", {}):
            if ver not in engines.get(eng, {}).get("versions", {}):
                bad.append(f"{eng} {ver}: shipped, not refitted")
    print("\n".join(bad) if bad else "shipped engine overheads reproduce")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
