"""Speed and quality of the Pareto search (targets from the Pareto issue), printed.

Single-model space over the priced datacenter catalog: NSGA-II with default settings
(pop 100, 100 generations) vs the exact enumerated front — hypervolume ratio, seconds,
evaluations per second; the configuration table (serving model) is timed separately.
Run: ``python benchmarks/pareto_speed.py [--gpus N]``.
"""

from __future__ import annotations

import argparse
import sys

from kvopt import list_gpus, price_for
from kvopt.pareto.run import pareto
from kvopt.serving.lengths import fixed
from kvopt.serving.results import Slo
from kvopt.space import Space, Workload


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpus", type=int, default=0)
    args = ap.parse_args(argv)
    gpus = tuple(g.id for g in list_gpus("datacenter") if price_for(g.id))
    if args.gpus:
        gpus = gpus[: args.gpus]
    w = Workload(name="w", model="Llama-3.1-8B", rate_rps=20, input_dist=fixed(1000),
                 output_dist=fixed(200), slo=Slo(tpot_p99_ms=60))
    space = Space(gpus=gpus, tps=(1, 2, 4, 8), batches=(16, 64, 256))
    res = pareto(w, space, ("cost", "ttft_p99", "tpot_p99"), max_replicas=16)
    r = res.report()
    print(f"space: {r['configs']} configurations ({r['valid_configs']} valid) x 16 replica "
          f"counts; table {r['table_s']:.1f} s")
    print(f"exact enumeration: {r['exact_points']} front points from "
          f"{res.exact.evaluations if res.exact else 0} evaluations in {r['exact_s']:.3f} s "
          f"(target < 1 s, ratio {r['exact_s'] / 1:.3f})")
    print(f"NSGA-II: {r['points']} points, {r['evaluations']} evaluations in "
          f"{r['search_s']:.2f} s ({r['evaluations_per_s']:.0f}/s; target < 3 s, ratio "
          f"{r['search_s'] / 3:.2f}); hypervolume ratio to exact {r['hv_ratio_to_exact']:.4f} "
          "(target >= 0.99)")
    hv = r["hv_per_generation"]
    marks = [g for g in (1, 10, 25, 50, 100) if g <= len(hv)]
    print("convergence (HV ratio by generation): "
          + ", ".join(f"{g}: {hv[g - 1]:.3f}" for g in marks))
    return 0


if __name__ == "__main__":
    sys.exit(main())
