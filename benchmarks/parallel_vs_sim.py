"""The analytic steady state against the discrete-event simulator for replicas with expert,
attention-data and pipeline parallelism (:mod:`kvopt.serving.parallel_step`: the analytic
model splits the work evenly over attention ranks and micro-batches; the simulator assigns
each request to a rank and each prompt chunk to one micro-batch).

Poisson loads at 15, 35, 60 and 80% of each replica's capacity; errors of the analytic mean
TTFT, mean TPOT and throughput against the simulator's (%).

Run: ``python benchmarks/parallel_vs_sim.py [--requests N]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys

from analytic_vs_sim import both_at_fractions

from kvopt.serving.lengths import fixed
from kvopt.serving.replica import build_replica

# model, GPU, weights, engine, layout (tp, ep, dp, pp), input, output
CASES = (
    ("Qwen3-30B-A3B", "H100-SXM", "fp8", "vllm", (4, 4, 1, 1), 1000, 200),
    ("Qwen3-30B-A3B", "H100-SXM", "fp8", "vllm", (2, 4, 2, 1), 1000, 200),
    ("DeepSeek-V3", "H200", "fp8", "trtllm", (1, 8, 8, 1), 1024, 256),
    ("DeepSeek-V3", "H200", "fp8", "sglang", (8, 8, 1, 1), 1024, 256),
    ("Llama-3.1-70B", "H100-SXM", "bf16", "vllm", (4, 1, 1, 2), 1000, 200),
    ("Mixtral-8x7B", "H100-SXM", "bf16", "vllm", (2, 4, 2, 2), 1000, 200),
)
FRACTIONS = (0.15, 0.35, 0.6, 0.8)
METRICS = (("latency", "ttft_ms"), ("latency", "tpot_ms"), ("throughput", "output_tok_s"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=2000, help="simulated requests per point")
    args = ap.parse_args(argv)
    print(f"{'configuration':46s} {'load':>5s} {'ttft':>8s} {'tpot':>8s} {'tok/s':>8s}"
          "   (analytic vs simulator, %)")
    errs: dict[str, list[float]] = {k: [] for _, k in METRICS}
    for model, gpu, w, eng, (tp, ep, dp, pp), isl, osl in CASES:
        rep = build_replica(model=model, gpu=gpu, tp=tp, ep=ep, dp=dp, pp=pp, weights=w,
                            engine=eng)
        inp, out = fixed(isl), fixed(osl)
        for frac, a, s in both_at_fractions(rep, inp, out, FRACTIONS, args.requests):
            cells = []
            for block, key in METRICS:
                e = (a[block][key] - s[block][key]) / s[block][key] * 100
                errs[key].append(abs(e))
                cells.append(f"{e:+8.1f}")
            label = f"{model} {gpu} {rep.parallel.label} {w} {eng}"
            print(f"{label:46s} {frac:5.0%} {' '.join(cells)}")
    print("\nmedian |error| %: " + ", ".join(
        f"{k} {statistics.median(v):.1f}" for k, v in errs.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
