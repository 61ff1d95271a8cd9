"""Calibrate (H100-SXM) on the published TensorRT-LLM v0.14 serving rows and report the
held-out (leave-one-out) error before and after, from two starting profiles: ``trtllm``
(v1.0, PyTorch backend: CUDA graphs, overlap scheduler) and ``trtllm-triton`` (TensorRT
engines behind Triton's backend, the way those rows were measured).

Run: ``python benchmarks/calibrate_published.py``.
"""

from __future__ import annotations

import csv
import sys
from collections import defaultdict
from pathlib import Path

from kvopt.bench.calibrate import Point, calibrate
from kvopt.serving.load import Load

DATA = Path(__file__).resolve().parent / "data" / "published_train.csv"
METRIC = {"ttft_mean": "ttft_mean_ms", "itl_mean": "itl_mean_ms",
          "output_throughput": "output_tok_s"}


def published_points(engine_version: str = "0.14", gpu: str = "H100-SXM") -> list[Point]:
    groups: dict[tuple[str, ...], dict[str, float]] = defaultdict(dict)
    meta: dict[tuple[str, ...], dict[str, str]] = {}
    with DATA.open(newline="") as f:
        for r in csv.DictReader(f):
            if r["engine_version"] != engine_version or r["gpu"] != gpu:
                continue
            key = (r["model"], r["tp"], r["num_gpus"], r["weight_precision"], r["input_len"],
                   r["output_len"], r["load_kind"], r["load_value"])
            value = float(r["value"])
            if r["metric"] == "output_throughput":  # whole system -> per replica
                value /= int(r["num_gpus"]) // int(r["tp"])
            groups[key][METRIC[r["metric"]]] = value
            meta.setdefault(key, {"ids": ""})["ids"] += r["id"] + " "
    out = []
    for key, measured in groups.items():
        model, tp, n_gpus, w, i, o, kind, v = key
        replicas = int(n_gpus) // int(tp)
        value = float(v) / replicas if kind == "rps" else max(1.0, round(float(v) / replicas))
        out.append(Point(label=meta[key]["ids"].strip(), model=model, tp=int(tp), weights=w,
                         kv_dtype=w, load=Load(mode=kind, value=value), input_len=int(i),
                         output_len=int(o), measured=measured))
    return out


def main() -> int:
    pts = published_points()
    print(f"{len(pts)} configurations from TensorRT-LLM v0.14 rows: "
          + "; ".join(p.label for p in pts))
    for engine, fit in (("trtllm", ("overhead",)), ("trtllm", ("overhead", "compute", "memory")),
                        ("trtllm-triton", ("overhead",)),
                        ("trtllm-triton", ("overhead", "compute", "memory"))):
        cal = calibrate(pts, gpu="H100-SXM", engine=engine, fit=fit)
        print(f"{engine}, fit {'+'.join(fit)}: compute efficiency x{cal.compute_scale:.3f}, memory "
              f"efficiency x{cal.memory_scale:.3f}, step overhead "
              f"{cal.step_overhead_ms:.2f} ms; mean abs error in sample "
              f"{cal.error_before_pct:.1f}% -> {cal.error_after_pct:.1f}%, held out "
              f"(leave-one-out) {cal.cv_before_pct:.1f}% -> {cal.cv_after_pct:.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
