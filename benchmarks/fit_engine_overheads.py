"""Fit engine time outside the kernels, per engine and version, and write
``models/engine_overheads.yaml``.

Two numbers per engine (and per release where the training data has enough of it): the
per-step overhead (host-side scheduling, sampling and detokenization between GPU passes:
it lengthens every step, so it shows in TPOT at small batches) and the per-request overhead
(API server, tokenization, the client: it adds to TTFT and end-to-end latency once). Fitted
**only** on the training measurements:

* ``benchmarks/data/silicon_train.csv`` (the train half of aiconfigurator 0.12.0's silicon
  sample): every row ``accuracy_silicon.py`` can express, as it asks it (benchmark runs of
  10 rounds per client with aiconfigurator's benchmark deployment flags), repeats counted
  once;
* ``benchmarks/data/vllm_serving_train.csv`` (vLLM 0.15.1, open loop): its stage rows.

For each group the step overhead is chosen on a grid (the predictions re-run at each), and
for each grid point the request overhead that centres the TTFT errors (the median of
measured minus predicted, at least 0 and at most :data:`MAX_REQUEST_MS`); the pair with
the least median TTFT + TPOT error wins. Groups: an engine-wide fit over all its rows (the
``default``), and one per release with at least ``--min-configs`` configurations across at
least two models, named by its release numbers (e.g. ``0.19``). Rows served through NVIDIA
Dynamo's runtime images (``ai-dynamo/*-runtime``, whose tag is Dynamo's version, not the
engine's) or without a version count only in the engine-wide fit.

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
import yaml

OUT = Path(__file__).resolve().parents[1] / "models" / "engine_overheads.yaml"
STEP_GRID_MS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0)
# The request overhead stands for a request's path outside the GPU steps (HTTP, tokenizer,
# admission, the client): tens of milliseconds (vLLM's fits on the open-loop stages and
# the silicon runs land at 0-32 ms). A fit wants far more only where the step model
# misses a group's TTFT (e.g. the burst-like TTFT of the DeepSeek rows on Blackwell): a
# constant per request cannot stand for that, and would add its whole value to every small
# model's first token. So the fit keeps it at most this bound.
MAX_REQUEST_MS = 50.0
Row = dict[str, Any]


def _release(row: dict[str, str]) -> str:
    """The engine release of a silicon row ("" when unknown or a Dynamo runtime tag)."""
    src = row.get("silicon_data_source", "")
    if "ai-dynamo" in src or not row.get("backend_version"):
        return ""
    key = ".".join(str(n) for n in ac_version(row["backend_version"])[:2])
    return key


def ac_version(text: str) -> tuple[int, ...]:
    from kvopt.catalog.engine_versions import version_key

    return version_key(text)


def silicon_rows() -> list[Row]:
    """Expressible silicon rows: (engine, release, model, question, measured TTFT/TPOT)."""
    out = []
    for row in sil.unique_rows(ac.read_csv(sil.DATA)):
        try:
            q = sil.question(row)
        except ac.Inexpressible:
            continue
        out.append({"engine": q["engine"], "release": _release(row), "model": q["model"],
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
            stages = vs.question(row)
        except ac.Inexpressible:
            continue
        key = (row["exp_id"], row["stage_index"])
        rec = by_run.setdefault(key, {"engine": "vllm", "release": "0.15",
                                      "model": stages[0][1]["model"], "q": stages[0][1]})
        rec["ttft" if row["metric"] == "ttft_mean" else "tpot"] = ac.measured(row["actual"])
    return [r for r in by_run.values() if "ttft" in r and "tpot" in r]


def _predict(q: dict[str, Any], step_ms: float) -> tuple[float, float] | None:
    args = dict(q.get("engine_args") or ())
    args.update(step_overhead_ms=step_ms, request_overhead_ms=0.0)
    try:
        e = ac.estimate(**{**q, "engine_args": tuple(sorted(args.items()))})
    except ac.Inexpressible:
        return None
    if e.load.saturated:
        return None
    return e.latency.ttft_ms, e.latency.tpot_ms


def _fit(rows: Sequence[Row], progress: Callable[[str], None]) -> dict[str, Any]:
    """The (step, request) overheads with the least median TTFT + TPOT error on ``rows``."""
    best: dict[str, Any] | None = None
    for step in STEP_GRID_MS:
        preds = [(r, _predict(r["q"], step)) for r in rows]
        ok = [(r, p) for r, p in preds if p is not None]
        if len(ok) < max(5, len(rows) // 2):
            continue
        req = min(MAX_REQUEST_MS, max(0.0, statistics.median(r["ttft"] - p[0] for r, p in ok)))
        e_ttft = statistics.median(abs(p[0] + req - r["ttft"]) / r["ttft"] for r, p in ok)
        e_tpot = statistics.median(abs(p[1] - r["tpot"]) / r["tpot"] for r, p in ok)
        score = e_ttft + e_tpot
        if best is None or score < best["score"]:
            best = {"score": score, "step_overhead_ms": step, "request_overhead_ms": req,
                    "ttft": e_ttft, "tpot": e_tpot, "rows": len(ok)}
    if best is None:
        raise SystemExit("no group could be fitted (too many rows saturated or refused)")
    progress(f"step {best['step_overhead_ms']:g} ms, request {best['request_overhead_ms']:.1f} "
             f"ms: TTFT {best['ttft'] * 100:.1f}%, TPOT {best['tpot'] * 100:.1f}% median "
             f"error on {best['rows']} rows")
    return best


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
        for rel, sub in sorted(by_release.items(), key=lambda kv: ac_version(kv[0])):
            if len(sub) < min_configs or len({r["model"] for r in sub}) < 2:
                continue
            progress(f"{eng} {rel}: {len(sub)} configurations")
            versions[rel] = _entry(_fit(sub, progress), f"{len(sub)} {eng} {rel} runs")
        progress(f"{eng} (all releases): {len(group)} configurations")
        all_fit = _entry(_fit(group, progress), f"{len(group)} {eng} runs (all releases)")
        default = max(versions, key=ac_version) if versions else "all"
        versions.setdefault("all", all_fit)
        engines[eng] = {"default": default, "versions": versions}
    return engines


def _entry(best: dict[str, Any], what: str) -> dict[str, Any]:
    return {"step_overhead_ms": round(float(best["step_overhead_ms"]), 3),
            "request_overhead_ms": round(float(best["request_overhead_ms"]), 2),
            "fitted_on": f"{what} of benchmarks/data/silicon_train.csv and "
                         "vllm_serving_train.csv",
            "rows": int(best["rows"]), "ttft_median_ape_pct": round(best["ttft"] * 100, 1),
            "tpot_median_ape_pct": round(best["tpot"] * 100, 1)}


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
                a, b = fit_[f], (old or {}).get(f)
                if b is None or abs(a - b) > max(0.2, 0.1 * abs(b)):
                    bad.append(f"{eng} {ver} {f}: refit {a}, shipped {b}")
    print("\n".join(bad) if bad else "shipped engine overheads reproduce")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
