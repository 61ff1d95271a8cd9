"""Accuracy of kvopt's predictions against published measurements.

Reads ``benchmarks/data/published_train.csv`` (numbers from TensorRT-LLM docs, MLPerf logs and
llama.cpp tables; each row keeps its source) and predicts every row kvopt can model so far:

* ``batch`` rows: one static batch -> ``ttft_mean`` = prefill time of the batch,
  ``output_throughput`` = batch x output tokens / (time per output token x output tokens)
  for single-stream decode rows (llama.cpp ``tg`` tests).
* ``offline``, ``rps``, ``concurrency`` rows: the analytic serving model per replica
  (``num_gpus / tp`` replicas share the load); MLPerf OpenOrca rows use the published mean
  lengths as fixed lengths and 10,000 offline requests.

No per-row tuning: every prediction uses the catalog and engine profiles as shipped.
Run: ``python benchmarks/accuracy.py [--markdown]``.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

from kvopt import KvoptError, estimate
from kvopt.serving.load import Load

DATA = Path(__file__).resolve().parent / "data" / "published_train.csv"
ENGINE = {"trtllm": "trtllm", "nim-trtllm": "trtllm", "vllm": "vllm", "llamacpp": "llamacpp"}
# rows whose engine version has its own shipped profile: TensorRT-LLM's v0.14 online table was
# measured through Triton's TensorRT-LLM backend (perf-overview.md: "The TensorRT-LLM backend is
# used to measure the performance of TensorRT-LLM for online serving ... version 0.14.0")
VERSIONED = {("trtllm", "0.14"): "trtllm-triton"}


def engine_of(row: dict[str, str]) -> str:
    """The shipped engine profile a published row is predicted with."""
    return VERSIONED.get((row["engine"], row["engine_version"]), ENGINE[row["engine"]])


def predict(row: dict[str, str]) -> tuple[float | None, str]:
    """(prediction, reason when None) for one published row."""
    tp = int(row["tp"])
    replicas = int(row["num_gpus"]) // tp
    kind = row["load_kind"]
    if kind != "batch":
        value = 10000.0 if row["load_value"] == "openorca" else float(row["load_value"])
        if kind == "rps":
            value /= replicas
        elif kind == "concurrency":
            value = max(1.0, round(value / replicas))
        else:
            value = max(1.0, round(value / replicas))
        est = estimate(model=row["model"], gpu=row["gpu"], tp=tp,
                       weights=row["weight_precision"], kv_dtype=row["kv_precision"],
                       engine=engine_of(row), input_len=int(row["input_len"]),
                       output_len=int(row["output_len"]), load=Load(mode=kind, value=value))
        metric = row["metric"]
        if metric == "output_throughput":
            return replicas * est.throughput.output_tok_s, ""
        if metric == "ttft_mean":
            return est.latency.ttft_ms, ""
        if metric == "itl_mean":
            return est.latency.tpot_ms, ""
        return None, f"metric {metric} not predicted"
    batch = int(float(row["load_value"]))
    est = estimate(model=row["model"], gpu=row["gpu"], tp=tp, weights=row["weight_precision"],
                   kv_dtype=row["kv_precision"],
                   engine=engine_of(row), input_len=int(row["input_len"]),
                   output_len=int(row["output_len"]), batch=batch)
    metric = row["metric"]
    if metric == "ttft_mean":
        return est.latency.ttft_ms, ""
    if metric == "itl_mean":
        return est.latency.tpot_ms, ""
    if metric == "output_throughput":
        return replicas * batch * 1000.0 / est.latency.tpot_ms, ""
    return None, f"metric {metric} not predicted"


_SERVING = ("offline", "rps", "concurrency")
# The accuracy targets of the issues: static rows (foundation issue) and serving rows (the
# serving issue: throughput and ITL on offline/rps/concurrency rows, TTFT at low load, i.e.
# open or closed loops, not offline runs where TTFT is queueing).
TARGETS: tuple[tuple[str, float, Callable[[dict[str, str]], bool]], ...] = (
    ("static rows, output throughput", 15.0,
     lambda r: r["load_kind"] == "batch" and r["metric"] == "output_throughput"),
    ("static rows, TTFT", 15.0,
     lambda r: r["load_kind"] == "batch" and r["metric"] == "ttft_mean"),
    ("serving rows, output throughput", 20.0,
     lambda r: r["load_kind"] in _SERVING and r["metric"] == "output_throughput"),
    ("serving rows, ITL", 20.0,
     lambda r: r["load_kind"] in _SERVING and r["metric"] == "itl_mean"),
    ("serving rows, TTFT at low load", 25.0,
     lambda r: r["load_kind"] in ("rps", "concurrency") and r["metric"] == "ttft_mean"),
)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = ap.parse_args(argv)
    with DATA.open(newline="") as f:
        rows = list(csv.DictReader(f))
    errors: dict[str, list[float]] = {}
    groups: dict[str, list[tuple[str, float]]] = {name: [] for name, _, _ in TARGETS}
    out: list[tuple[str, ...]] = []
    skipped = 0
    for row in rows:
        try:
            pred, _why = predict(row)
        except KvoptError as exc:
            pred = None
            print(f"{row['id']}: kvopt cannot model it: {exc}")
        if pred is None:
            skipped += 1
            continue
        measured = float(row["value"])
        ape = abs(pred - measured) / measured * 100
        errors.setdefault(row["metric"], []).append(ape)
        for name, _, member in TARGETS:
            if member(row):
                groups[name].append((row["id"], ape))
        desc = (f"{row['model']} {row['weight_precision']} {row['gpu']} tp{row['tp']} "
                f"{row['engine']}-{row['engine_version']} in{row['input_len']}/"
                f"out{row['output_len']} {row['load_kind']}={row['load_value']}")
        if (row["engine"], row["engine_version"]) in VERSIONED:
            desc += f" [{engine_of(row)}]"
        out.append((row["id"], desc, row["metric"], f"{measured:g}", f"{pred:.1f}",
                    f"{(pred - measured) / measured * 100:+.1f}%"))
    if args.markdown:
        print("| id | configuration | metric | measured | kvopt | error |")
        print("|---|---|---|---:|---:|---:|")
        for r in out:
            print("| " + " | ".join(r) + " |")
        print()
        print("| metric | rows | median APE | mean APE |")
        print("|---|---:|---:|---:|")
    else:
        for r in out:
            print(f"{r[0]:4s} {r[1]:91s} {r[2]:18s} measured {r[3]:>9s} kvopt {r[4]:>9s} "
                  f"{r[5]:>8s}")
        print()
    for metric, errs in sorted(errors.items()):
        med, mean = statistics.median(errs), statistics.fmean(errs)
        if args.markdown:
            print(f"| {metric} | {len(errs)} | {med:.1f}% | {mean:.1f}% |")
        else:
            print(f"{metric:18s} rows {len(errs):3d}  median APE {med:5.1f}%  mean APE "
                  f"{mean:5.1f}%")
    all_errs = [e for errs in errors.values() for e in errs]
    if all_errs:
        line = (f"all metrics: {len(all_errs)} rows, median APE "
                f"{statistics.median(all_errs):.1f}%, mean APE {statistics.fmean(all_errs):.1f}%"
                f"; {skipped} rows skipped")
        print(("\n" if args.markdown else "") + line)
    print("\ntargets (median APE of the rows each names):")
    for name, target, _ in TARGETS:
        got = groups[name]
        if not got:
            continue
        med = statistics.median(a for _, a in got)
        verdict = "met" if med <= target else "not met"
        print(f"{'- ' if args.markdown else '  '}{name}: {med:.1f}% vs <= {target:g}% "
              f"(ratio {med / target:.2f}, {verdict}; rows {', '.join(i for i, _ in got)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
