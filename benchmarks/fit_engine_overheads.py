"""Fit the time a request spends outside the modelled engine steps, per engine release, and
write ``models/engine_overheads.yaml``.

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
  10 rounds per client with aiconfigurator's benchmark deployment flags), repeats counted
  once;
* ``benchmarks/data/vllm_serving_train.csv`` (vLLM 0.15.1, open loop): its stage rows.

A release is the first three numbers of ``backend_version`` (``1.2.0rc6.post2`` -> 1.2.0);
rows served through NVIDIA Dynamo's runtime images (``ai-dynamo/*-runtime``, whose tag is
Dynamo's version, not the engine's), nightly builds and unversioned rows are not fitted. A
release is fitted when it has at least ``--min-configs`` configurations across at least two
models; its overhead is the median of measured minus predicted TTFT (predicted without
one), clipped to [0, :data:`MAX_REQUEST_MS`]. The per-step overhead stays the profile's.

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
import yaml

OUT = Path(__file__).resolve().parents[1] / "models" / "engine_overheads.yaml"
# A sanity bound on a fitted per-request overhead: the largest the train runs call for is
# about 270 ms (SGLang 0.5.9, DeepSeek-V3 and Qwen3.5 on Blackwell).
MAX_REQUEST_MS = 300.0
Row = dict[str, Any]


def _release(row: dict[str, str]) -> str:
    """The engine release of a silicon row (:func:`accuracy_common.release`)."""
    return ac.release(row.get("backend_version", ""), row.get("silicon_data_source", ""))


def ac_version(text: str) -> tuple[int, ...]:
    from kvopt.catalog.engine_versions import version_key

    return version_key(text)


def silicon_rows() -> list[Row]:
    """Expressible silicon rows: (engine, release, model, question, measured TTFT/TPOT)."""
    out = []
    for row in sil.unique_rows(ac.read_csv(sil.DATA)):
        try:
            q = sil.question(row, versions=False)
        except ac.Inexpressible:
            continue
        out.append({"engine": q["engine"], "release": _release(row), "model": q["model"],
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


def _predict(q: dict[str, Any]) -> tuple[float, float] | None:
    """(TTFT, TPOT) of a question without any per-request overhead."""
    args = dict(q.get("engine_args") or ())
    args.update(request_overhead_ms=0.0)
    q = {k: v for k, v in q.items() if k != "engine_version"}
    try:
        e = ac.estimate(**{**q, "engine_args": tuple(sorted(args.items()))})
    except ac.Inexpressible:
        return None
    if e.load.saturated:
        return None
    return e.latency.ttft_ms, e.latency.tpot_ms


def _errors(ok: Sequence[tuple[Row, tuple[float, float]]], req: float) -> float:
    return statistics.median(abs(p[0] + req - r["ttft"]) / r["ttft"] for r, p in ok)


def _fit(rows: Sequence[Row], progress: Callable[[str], None]) -> dict[str, Any] | None:
    """The per-request overhead of ``rows``: the median TTFT residual, clipped. None when
    too many rows saturated or were refused, or when it makes the median TTFT error of the
    release's closed-loop or open-loop runs worse (a constant that does not hold for both
    is not a property of the release)."""
    preds = [(r, _predict(r["q"])) for r in rows]
    ok = [(r, p) for r, p in preds if p is not None]
    if len(ok) < max(5, len(rows) // 2):
        return None
    req = min(MAX_REQUEST_MS, max(0.0, statistics.median(r["ttft"] - p[0] for r, p in ok)))
    before, after = _errors(ok, 0.0), _errors(ok, req)
    progress(f"request {req:.1f} ms: TTFT {before * 100:.1f}% -> {after * 100:.1f}% median "
             f"error on {len(ok)} rows")
    for loop in sorted({r["loop"] for r, _ in ok}):
        part = [(r, p) for r, p in ok if r["loop"] == loop]
        b, a = _errors(part, 0.0), _errors(part, req)
        if a > b:
            progress(f"  not kept: its {len(part)} {loop}-loop runs go {b * 100:.1f}% -> "
                     f"{a * 100:.1f}%")
            return None
    return {"request_overhead_ms": req, "before": before, "ttft": after, "rows": len(ok),
            "files": sorted({"silicon_train.csv" if r["loop"] == "closed"
                             else "vllm_serving_train.csv" for r, _ in ok})}


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
            models = sorted({r["model"] for r in sub})
            if len(sub) < min_configs or len(models) < 2:
                continue
            progress(f"{eng} {rel}: {len(sub)} configurations")
            best = _fit(sub, progress)
            if best is not None:
                versions[rel] = _entry(best, f"{len(sub)} {eng} {rel} runs ({', '.join(models)})")
        if versions:
            engines[eng] = {"default": None, "versions": versions}
    return engines


def _entry(best: dict[str, Any], what: str) -> dict[str, Any]:
    return {"request_overhead_ms": round(float(best["request_overhead_ms"]), 1),
            "fitted_on": f"{what} of " + " and ".join(f"benchmarks/data/{f}"
                                                      for f in best["files"]),
            "rows": int(best["rows"]),
            "ttft_median_ape_pct_before": round(best["before"] * 100, 1),
            "ttft_median_ape_pct": round(best["ttft"] * 100, 1)}


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
            for f in ("request_overhead_ms",):
                a, b = fit_[f], (old or {}).get(f)
                if b is None or abs(a - b) > max(0.2, 0.1 * abs(b)):
                    bad.append(f"{eng} {ver} {f}: refit {a}, shipped {b}")
    for eng, node in shipped.items():
        for ver in node.get("versions", {}):
            if ver not in engines.get(eng, {}).get("versions", {}):
                bad.append(f"{eng} {ver}: shipped, not refitted")
    print("\n".join(bad) if bad else "shipped engine overheads reproduce")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
