"""TensorRT-LLM's whole v0.14 offline throughput table against kvopt (a held-out check).

`benchmarks/data/trtllm_v014_offline.csv` is the "Throughput Measurements" table of
perf-overview.md at the v0.14 release (trtllm-bench throughput, all requests queued at once,
output tokens/s): 622 cells over Llama 3/3.1 8B/70B/405B, Mistral 7B and Mixtral 8x7B/8x22B,
TP 1-8, nine length pairs, on H200 and H100 (FP8), H100, A100 SXM and A100 PCIe (FP16) and
L40S (FP8). None of it was used to build or choose anything in kvopt (`published_train.csv`
has v0.17 and v1.0 rows of the same kind). Each cell is predicted with the `trtllm` engine
profile (what `benchmarks/accuracy.py` uses for trtllm-bench rows) and the offline analytic
model for the page's request count. "LLaMA v3 70B" uses the Llama-3.1-70B card: the
architecture is the same (only the context length differs, and no row exceeds 8K tokens).

Printed: the median absolute percentage error and the median signed error by GPU column, by
TP, by model and overall; the worst cells; cells kvopt cannot model and why.
Run: ``python benchmarks/trtllm_offline_table.py [--rows]``.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from kvopt import KvoptError, estimate
from kvopt.serving.load import Load

DATA = Path(__file__).resolve().parent / "data" / "trtllm_v014_offline.csv"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", action="store_true", help="print every cell")
    args = ap.parse_args(argv)
    with DATA.open(newline="") as f:
        rows = list(csv.DictReader(f))
    groups: dict[str, list[float]] = defaultdict(list)
    done: list[tuple[float, str]] = []
    skipped: dict[str, int] = defaultdict(int)
    for r in rows:
        prec = r["precision"]
        label = (f"{r['published_model']} {r['published_gpu']} tp{r['tp']} "
                 f"{r['input_len']}/{r['output_len']}")
        try:
            est = estimate(model=r["model"], gpu=r["gpu"], tp=int(r["tp"]), weights=prec,
                           kv_dtype=prec, engine="trtllm", input_len=int(r["input_len"]),
                           output_len=int(r["output_len"]),
                           load=Load(mode="offline", value=float(r["num_requests"])))
        except KvoptError as exc:
            skipped[str(exc).split(":")[0][:90]] += 1
            continue
        if not est.memory.fits:
            skipped["does not fit in memory (kvopt's memory model)"] += 1
            continue
        measured = float(r["output_tok_s"])
        err = (est.throughput.output_tok_s / measured - 1) * 100
        done.append((err, label))
        if args.rows:
            print(f"{label:62s} measured {measured:9.1f} kvopt "
                  f"{est.throughput.output_tok_s:9.1f} {err:+6.1f}%")
        for key in (f"GPU {r['published_gpu']}", f"TP {r['tp']}", f"model {r['published_model']}",
                    "all"):
            groups[key].append(err)
    print(f"{'group':36s} {'cells':>5s} {'median APE':>11s} {'median error':>13s}")
    for key in sorted(groups, key=lambda k: (k == "all", k)):
        e = groups[key]
        print(f"{key:36s} {len(e):5d} {statistics.median(abs(x) for x in e):10.1f}% "
              f"{statistics.median(e):+12.1f}%")
    print("\nworst cells:")
    for err, label in sorted(done, key=lambda t: -abs(t[0]))[:8]:
        print(f"  {label:62s} {err:+7.1f}%")
    if skipped:
        print("\nnot predicted:")
        for why, n in sorted(skipped.items()):
            print(f"  {n:3d} cells: {why}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
