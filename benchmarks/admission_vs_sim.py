"""The admission waits (:mod:`kvopt.serving.admission`) against the simulator: SGLang's
polling (``admit_interval_steps``), TensorRT-LLM's attention-DP balancing (``adp_balance``) and
batch waiting (``batch_wait_timeout_iters``, ``batch_wait_max_tokens_ratio``), each on one
configuration (``tests/serving/test_admission.py`` tests some of these points), under the
loads a user asks about: benchmark runs of 10 rounds per client, steady closed loops and
Poisson loads at 15-80% of the capacity the estimate finds with the mechanism. Spread lengths
(uniform on [0.8 L, L], as InferenceX's client draws them). Prints mean TTFT and TPOT,
estimate against simulator, and the wait the mechanism adds in each (the same question
without it).

Run: ``python benchmarks/admission_vs_sim.py [--requests N]`` (~45 s on 2 cores).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from kvopt import api

UNIFORM_1K = {"input_len_dist": "uniform:low=819,high=1024",
              "output_len_dist": "uniform:low=819,high=1024"}
UNIFORM_1K_256 = {"input_len_dist": "uniform:low=819,high=1024",
                  "output_len_dist": "uniform:low=204,high=256"}
# (label, question, the mechanism's engine args, the same without it)
CASES: tuple[tuple[str, dict[str, Any], dict[str, Any], dict[str, Any]], ...] = (
    ("SGLang polling every 14 passes, Llama-3.1-8B H100",
     dict(model="Llama-3.1-8B", gpu="H100-SXM", engine="sglang", **UNIFORM_1K_256),
     {"admit_interval_steps": 14}, {}),
    ("TensorRT-LLM batch waiting 20 / 0.9, Llama-3.1-70B FP8 2x H200",
     dict(model="Llama-3.1-70B", gpu="H200", tp=2, weights="fp8", kv_dtype="fp8",
          engine="trtllm", **UNIFORM_1K),
     {"max_num_batched_tokens": 16384, "batch_wait_timeout_iters": 20,
      "batch_wait_max_tokens_ratio": 0.9}, {"max_num_batched_tokens": 16384}),
    ("TensorRT-LLM attention-DP balancing 60 / 0, Qwen3-235B-A22B FP8 DP 8",
     dict(model="Qwen3-235B-A22B", gpu="H200", tp=1, dp=8, ep=8, weights="fp8",
          engine="trtllm", **UNIFORM_1K_256),
     {"adp_balance": True, "adp_timeout_iters": 60, "adp_wait_iters": 0},
     {"adp_balance": False}),
)
CLIENTS = (4, 16, 64)
FRACTIONS = (0.15, 0.35, 0.6, 0.8)


def capacity_rps(q: dict[str, Any], args: dict[str, Any]) -> float:
    """The largest Poisson rate the estimate serves unsaturated (bisection, 1%)."""
    lo, hi = 0.0, 1.0
    while not api.estimate(**q, rps=hi, engine_args=args).load.saturated:
        lo, hi = hi, hi * 2.0
        if hi > 1e5:
            return lo
    while hi - lo > 0.01 * hi:
        mid = (lo + hi) / 2.0
        if api.estimate(**q, rps=mid, engine_args=args).load.saturated:
            hi = mid
        else:
            lo = mid
    return lo


def row(label: str, q: dict[str, Any], on: dict[str, Any], off: dict[str, Any],
        requests: int, **load: Any) -> str:
    """One load: TTFT and TPOT (estimate, simulator, error) and the wait each adds."""
    sim_n = max(requests, 10 * int(load.get("concurrency", 0)))
    e = api.estimate(**q, **load, engine_args=on).latency
    s = api.simulate(**q, **load, engine_args=on, num_requests=sim_n).latency
    e0 = api.estimate(**q, **load, engine_args=off).latency
    s0 = api.simulate(**q, **load, engine_args=off, num_requests=sim_n).latency
    err = (e.ttft_ms - s.ttft_ms) / s.ttft_ms * 100.0
    errp = (e.tpot_ms - s.tpot_ms) / s.tpot_ms * 100.0
    return (f"{label:22s} {e.ttft_ms:9.1f} {s.ttft_ms:9.1f} {err:+6.1f} "
            f"{e.tpot_ms:7.2f} {s.tpot_ms:7.2f} {errp:+6.1f}   "
            f"{e.ttft_ms - e0.ttft_ms:8.1f} {s.ttft_ms - s0.ttft_ms:8.1f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=2000,
                    help="simulated requests per Poisson point (closed loops: 10 per client)")
    args = ap.parse_args(argv)
    head = (f"{'load':22s} {'TTFT est':>9s} {'sim':>9s} {'err %':>6s} {'TPOT est':>7s} "
            f"{'sim':>7s} {'err %':>6s}   {'wait est':>8s} {'sim':>8s}  (ms)")
    for label, q, on, off in CASES:
        print(f"\n{label}\n{head}")
        for c in CLIENTS:
            print(row(f"{c} clients, 10 rounds", q, on, off, args.requests, concurrency=c,
                      rounds=10))
        for c in CLIENTS:
            print(row(f"{c} clients, steady", q, on, off, 40 * c, concurrency=c))
        if q.get("dp", 1) > 1:
            continue  # Poisson arrivals take the least-loaded rank: not what is tested
        cap = capacity_rps(q, on)
        for frac in FRACTIONS:
            print(row(f"Poisson {frac:.2f} x {cap:.1f}/s", q, on, off, args.requests,
                      rps=round(cap * frac, 3)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
