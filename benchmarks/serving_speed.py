"""Speed of the serving model (targets from the serving issue), printed as measured numbers.

* analytic estimate for one config (target < 5 ms): a new replica + steady-state solve;
* capacity over many candidate configs (target: 10,000 in < 2 s): the exact search
  (capacity_levels, one replica at a time on the analytic model's quadrature) and the
  screening model (kvopt.serving.screen: all replicas at once; its error against the exact
  search is printed by benchmarks/screen_accuracy.py), on 10,000 configurations = 1,250
  replicas that fit (five models x vLLM and SGLang x datacenter GPUs x TP x weights) x 8
  max-batch levels, cold (no step-cost table built before), median of 3 runs;
* simulating 10,000 requests (target < 5 s).

Run: ``python benchmarks/serving_speed.py [--configs N]``.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time

import numpy as np

from kvopt import KvoptError, list_gpus
from kvopt.caching import clear_all as clear_caches
from kvopt.serving.capacity import capacity_levels, capacity_many
from kvopt.serving.lengths import fixed, parse_dist
from kvopt.serving.load import Load
from kvopt.serving.replica import build_replica
from kvopt.serving.results import Slo
from kvopt.serving.serve import estimate_under_load, steady_model, step_cost_for
from kvopt.serving.sim import simulate


def screen_speed(levels: tuple[int, ...]) -> None:
    """The screen over 10,000 configurations (see the module docstring)."""
    from kvopt.serving.screen import screen_levels

    reps = []
    models = ("Llama-3.1-8B", "Qwen3-8B", "Mistral-7B", "Llama-3.1-70B", "Qwen3-30B-A3B")
    for model, engine, gpu, tp, w in itertools.product(
            models, ("vllm", "sglang"), list_gpus("datacenter"), (1, 2, 4, 8),
            ("bf16", "fp8", "int4")):
        try:
            rep = build_replica(model=model, gpu=gpu, tp=tp, weights=w, engine=engine)
        except KvoptError:
            continue
        if rep.fits:  # only configurations that need a search count
            reps.append(rep)
        if len(reps) * len(levels) >= 10_000:
            break
    inp, out = parse_dist("lognormal:mean=1000,sigma=0.5"), fixed(200)
    n = len(reps) * len(levels)
    screen_levels(reps[:8], input_dist=inp, output_dist=out, batches=levels)  # imports
    for slo in (Slo(tpot_p99_ms=50), Slo(ttft_p99_ms=500, tpot_p99_ms=50)):
        runs = []
        for _ in range(3):
            clear_caches()
            t0 = time.perf_counter()
            screen_levels(reps, input_dist=inp, output_dist=out, slo=slo, batches=levels)
            runs.append(time.perf_counter() - t0)
        med = statistics.median(runs)
        label = ", ".join(f"{k} {v:g}" for k, v in vars(slo).items() if v is not None)
        print(f"capacity under SLO ({label}) by the screen: {n:,} configs ({len(reps)} "
              f"replicas x {len(levels)} levels) in {med:.2f} s (runs "
              f"{', '.join(f'{r:.2f}' for r in runs)}; {med / n * 1e3:.3f} ms each), ratio "
              f"to 2 s target {med / 2:.2f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", type=int, default=300, help="candidate configs to size")
    args = ap.parse_args(argv)
    inp, out = parse_dist("lognormal:mean=1000,sigma=0.5"), fixed(200)

    # one config, cold: replica + step-cost table + steady state
    times = []
    for tp in (1, 2, 4, 8) * 3:
        clear_caches()
        t0 = time.perf_counter()
        rep = build_replica(model="Llama-3.1-70B", gpu="H100-SXM", tp=tp, weights="fp8")
        estimate_under_load(rep, load=Load(mode="rps", value=1.0), input_dist=inp,
                            output_dist=out)
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    print(f"analytic estimate, one config (cold): median {med * 1e3:.1f} ms  "
          f"ratio to 5 ms target {med / 5e-3:.1f}")
    t0 = time.perf_counter()
    for _ in range(20):
        estimate_under_load(rep, load=Load(mode="rps", value=1.0), input_dist=inp,
                            output_dist=out)
    warm = (time.perf_counter() - t0) / 20
    print(f"analytic estimate, one config (warm step-cost table): {warm * 1e3:.1f} ms  "
          f"ratio {warm / 5e-3:.1f}")

    # capacity over candidate configs
    reps = []
    for gpu, tp, w in itertools.product(list_gpus("datacenter"), (1, 2, 4, 8),
                                        ("bf16", "fp8", "int4")):
        try:
            rep = build_replica(model="Llama-3.1-8B", gpu=gpu, tp=tp, weights=w)
        except KvoptError:
            continue
        reps.append(rep)
        if len(reps) >= args.configs:
            break
    clear_caches()
    t0 = time.perf_counter()
    capacity_many(reps, input_dist=inp, output_dist=out, slo=Slo(tpot_p99_ms=50))
    el = time.perf_counter() - t0
    per = el / len(reps)
    print(f"capacity under SLO: {len(reps)} configs in {el:.2f} s ({per * 1e3:.1f} ms each); "
          f"10,000 configs would take {per * 1e4:.0f} s, ratio to 2 s target "
          f"{per * 1e4 / 2:.0f}")

    # the way the planner calls it: every max-batch level of each replica, searched together
    levels = (8, 16, 32, 64, 128, 256, 512, 1024)
    clear_caches()
    t0 = time.perf_counter()
    for rep in reps:
        if rep.fits:
            capacity_levels(rep, input_dist=inp, output_dist=out, slo=Slo(tpot_p99_ms=50),
                            batches=levels, rel_tol=0.01)
    el = time.perf_counter() - t0
    n = sum(rep.fits for rep in reps) * len(levels)
    per = el / max(n, 1)
    print(f"capacity under SLO with {len(levels)} max-batch levels per replica (plan/pareto): "
          f"{n} configs in {el:.2f} s ({per * 1e3:.1f} ms each); 10,000 configs would take "
          f"{per * 1e4:.0f} s, ratio to 2 s target {per * 1e4 / 2:.0f}")

    screen_speed(levels)

    # the floor of any exact method: the percentiles come from 1,024 quadrature draws per
    # rate, so a configuration costs at least one rate row (the search needs 15-50)
    model = steady_model(reps[0], inp, out)
    cap, _ = model.capacity()
    lams = cap * np.linspace(0.05, 0.9, 16)
    ts = model.step_times(lams)
    model.rows(lams, ts)
    t0 = time.perf_counter()
    for _ in range(10):
        model.rows(lams, ts)
    row = (time.perf_counter() - t0) / 10 / lams.size
    print(f"one rate row of the quadrature ({lams.size} rates per call): {row * 1e3:.2f} ms; "
          f"one row per configuration alone is {row / 2e-4:.1f}x the 0.2 ms per configuration "
          "the target allows")

    # simulator
    rep = build_replica(model="Llama-3.1-8B", gpu="H100-SXM")
    for rate in (2.0, 20.0):
        t0 = time.perf_counter()
        simulate(rep, load=Load(mode="rps", value=rate), input_dist=inp, output_dist=out,
                 num_requests=10_000, step_cost=step_cost_for(rep))
        el = time.perf_counter() - t0
        print(f"simulate 10,000 requests at {rate:g} req/s: {el:.2f} s  ratio to 5 s target "
              f"{el / 5:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
