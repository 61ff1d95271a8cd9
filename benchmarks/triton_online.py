"""TensorRT-LLM's whole v0.14 online-serving table against kvopt (a held-out check).

`benchmarks/data/trtllm_v014_online.csv` is the full table of perf-overview.md (v0.14): 72
rows, Llama-3.1 8B (TP 1) and 70B (TP 4) on H100 and H200, three length pairs, Poisson rates
of 2-32 req/s and all 500 requests at once (INF), measured through Triton's TensorRT-LLM
backend with 500 requests. `published_train.csv` holds 11 numbers from 7 of its rows; the rest
were never used to build or choose anything in kvopt. Every row is predicted with the
`trtllm-triton` engine profile, two ways:

* analytic: the steady-state serving model (`kvopt estimate --rps/--offline`); rows whose
  rate is above the replica's capacity have no steady state and are left out;
* simulator: `kvopt simulate` of the same 500 requests (Poisson arrivals or all at once, no
  warm-up discarded, three seeds averaged), which also covers the rows above capacity, where
  a 500-request run is a transient.

Printed: per row and per metric (mean TTFT, mean ITL, output tok/s), and the median absolute
percentage error of each metric over the held-out rows and over the rows in the train set.
Run: ``python benchmarks/triton_online.py``.
"""

from __future__ import annotations

import csv
import math
import statistics
import sys
from pathlib import Path

from kvopt.serving.lengths import fixed
from kvopt.serving.load import Load
from kvopt.serving.replica import build_replica
from kvopt.serving.serve import estimate_under_load, simulate_under_load

DATA = Path(__file__).resolve().parent / "data" / "trtllm_v014_online.csv"
ENGINE = "trtllm-triton"
SEEDS = (0, 1, 2)
# rows of the table whose numbers are in published_train.csv (p23-p33)
TRAIN = {("Llama-3.1-8B", "H100-SXM", 467, 256, "2"), ("Llama-3.1-8B", "H100-SXM", 467, 256, "INF"),
         ("Llama-3.1-8B", "H100-SXM", 202, 214, "16"),
         ("Llama-3.1-70B", "H100-SXM", 467, 256, "2"),
         ("Llama-3.1-70B", "H100-SXM", 467, 256, "16"),
         ("Llama-3.1-70B", "H100-SXM", 467, 256, "INF")}
METRICS = (("ttft_mean_ms", "TTFT"), ("itl_mean_ms", "ITL"), ("output_tok_s", "out tok/s"))


def _predicted(est: object) -> dict[str, float]:
    lat = est.latency  # type: ignore[attr-defined]
    return {"ttft_mean_ms": lat.ttft_ms, "itl_mean_ms": lat.tpot_ms,
            "output_tok_s": est.throughput.output_tok_s}  # type: ignore[attr-defined]


def main() -> int:
    with DATA.open(newline="") as f:
        rows = list(csv.DictReader(f))
    errors: dict[tuple[str, str, str], list[float]] = {}
    print(f"{'row':58s} {'metric':9s} {'measured':>9s} {'analytic':>9s} {'err':>7s} "
          f"{'sim':>9s} {'err':>7s}")
    for r in rows:
        tp, i, o = int(r["tp"]), int(r["input_len"]), int(r["output_len"])
        rep = build_replica(model=r["model"], gpu=r["gpu"], tp=tp, weights="bf16",
                            engine=ENGINE)
        load = (Load(mode="offline", value=500) if r["qps"] == "INF"
                else Load(mode="rps", value=float(r["qps"])))
        ana = estimate_under_load(rep, load=load, input_dist=fixed(i), output_dist=fixed(o))
        saturated = bool(ana.load and ana.load.saturated)
        sims = [_predicted(simulate_under_load(rep, load=load, input_dist=fixed(i),
                                               output_dist=fixed(o), num_requests=500,
                                               seed=s, warmup_fraction=0.0))
                for s in SEEDS]
        sim = {k: statistics.fmean(x[k] for x in sims) for k in sims[0]}
        a = _predicted(ana)
        split = "train" if (r["model"], r["gpu"], i, o, r["qps"]) in TRAIN else "held-out"
        label = (f"{r['model']} {r['gpu']} tp{tp} {i}/{o} qps={r['qps']}"
                 f"{' (saturated)' if saturated else ''}")
        for key, name in METRICS:
            measured = float(r[key])
            a_err = (a[key] / measured - 1) * 100
            s_err = (sim[key] / measured - 1) * 100
            if not saturated and math.isfinite(a_err):
                errors.setdefault(("analytic", split, key), []).append(abs(a_err))
            errors.setdefault(("simulator", split, key), []).append(abs(s_err))
            shown_a = "-" if saturated else f"{a[key]:9.1f}"
            shown_ae = "-" if saturated else f"{a_err:+6.1f}%"
            print(f"{label:58s} {name:9s} {measured:9.1f} {shown_a:>9s} {shown_ae:>7s} "
                  f"{sim[key]:9.1f} {s_err:+6.1f}%")
    print()
    print("median APE (rows)        " + "".join(f"{name:>18s}" for _, name in METRICS))
    for how in ("analytic", "simulator"):
        for split in ("held-out", "train"):
            cells = []
            for key, _ in METRICS:
                e = errors.get((how, split, key), [])
                cells.append(f"{statistics.median(e):8.1f}% ({len(e):2d})" if e else "-")
            print(f"{how:9s} {split:9s}      " + "".join(f"{c:>18s}" for c in cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
