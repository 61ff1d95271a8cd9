"""Speed of fleet sizing (targets from the MILP issue), printed as measured numbers.

1. One workload over the catalog: every priced datacenter GPU x TP {1,2,4,8} x 4 precision
   combinations x 8 batch levels. Candidate evaluation (serving model), model build and
   HiGHS solve are timed separately; the brute-force enumeration of the same options
   (one configuration per workload) is timed for the ratio.
2. 20 workloads (4 models x 5 rates) over the same space, gap <= 0.1%; once on the options
   the planner keeps (dominated ones dropped) and once on all of them (solver scaling).
3. Candidate evaluation with ``capacity: confirm`` (the default: the screen ranks, the exact
   search runs where it can change the plan, one exact check proves the rest dominated)
   against ``exact`` (the exact search on every candidate), each from cold caches, on both
   problems: time ratio, and whether the options handed to the MILP and the optimum are
   the same.

Run: ``python benchmarks/fleet_speed.py [--gpus N]`` (N = how many catalog GPUs; default all
priced datacenter GPUs).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import replace

from kvopt import list_gpus, price_for
from kvopt.caching import clear_all as clear_caches
from kvopt.fleet.build import build_model
from kvopt.fleet.options import OptionSet, build_options
from kvopt.fleet.problem import FleetProblem
from kvopt.fleet.solve import solve_model
from kvopt.serving.lengths import fixed
from kvopt.serving.results import Slo
from kvopt.space import (
    DEFAULT_BATCHES,
    DEFAULT_PRECISIONS,
    DOMINATED,
    Space,
    Workload,
)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpus", type=int, default=0, help="limit to the first N GPUs")
    args = ap.parse_args(argv)
    gpus = tuple(g.id for g in list_gpus("datacenter") if price_for(g.id))
    if args.gpus:
        gpus = gpus[: args.gpus]
    space = Space(gpus=gpus, tps=(1, 2, 4, 8), precisions=DEFAULT_PRECISIONS,
                  batches=DEFAULT_BATCHES, capacity="exact")
    print(f"space: {len(gpus)} GPUs x 4 TP x {len(DEFAULT_PRECISIONS)} precisions x "
          f"{len(DEFAULT_BATCHES)} batch levels = "
          f"{len(gpus) * 4 * len(DEFAULT_PRECISIONS) * len(DEFAULT_BATCHES)} configurations")
    slo = Slo(ttft_p99_ms=2000, tpot_p99_ms=60)
    w = Workload(name="chat", model="Llama-3.1-70B", rate_rps=20, input_dist=fixed(1000),
                 output_dist=fixed(200), slo=slo)
    problem = FleetProblem(workloads=(w,), space=space)
    clear_caches()
    t0 = time.perf_counter()
    opts = build_options(problem)
    ev = time.perf_counter() - t0
    model, _, build_s = build_model(problem, opts.options)
    rep = solve_model(model, build_s=build_s)
    print(f"1 workload: {len(opts.options)} options; evaluation {ev:.1f} s; build "
          f"{build_s * 1e3:.0f} ms + solve {rep.solve_s * 1e3:.0f} ms = "
          f"{(build_s + rep.solve_s):.2f} s (target < 2 s, ratio "
          f"{(build_s + rep.solve_s) / 2:.2f}); status {rep.status}, gap {rep.gap}")
    t0 = time.perf_counter()
    best = min(o.candidate.usd_per_hour * math.ceil(w.rate_rps / o.rate_cap_rps)
               for o in opts.options)
    bf = time.perf_counter() - t0
    print(f"  brute force over the same options: {bf * 1e3:.2f} ms, optimum ${best:.2f}/h vs "
          f"MILP ${rep.objective:.2f}/h; MILP/brute-force time ratio "
          f"{(build_s + rep.solve_s) / max(bf, 1e-9):.0f}")

    models = ("Llama-3.1-8B", "Llama-3.1-70B", "Qwen2.5-32B", "Mixtral-8x7B")
    wls = tuple(replace(w, name=f"{m}@{r}", model=m, rate_rps=r)
                for m in models for r in (2.0, 5.0, 10.0, 20.0, 40.0))
    p20 = FleetProblem(workloads=wls, space=space, allow_mixing=False)
    clear_caches()
    t0 = time.perf_counter()
    opts20 = build_options(p20)
    ev20 = time.perf_counter() - t0
    model, _, build_s = build_model(p20, opts20.options)
    rep = solve_model(model, build_s=build_s, mip_gap=1e-3)
    total = build_s + rep.solve_s
    print(f"20 workloads: {len(opts20.options)} options; evaluation {ev20:.1f} s; build "
          f"{build_s * 1e3:.0f} ms + solve {rep.solve_s * 1e3:.0f} ms = {total:.2f} s "
          f"(target < 30 s, ratio {total / 30:.3f}); status {rep.status}, gap {rep.gap}")
    # the solver on every option (the dominance filter off): how the MILP itself scales
    import kvopt.fleet.options as fo

    keep = fo.undominated
    fo.undominated = lambda opts, problem: opts  # type: ignore[assignment]
    try:
        all20 = build_options(p20)
    finally:
        fo.undominated = keep
    model, _, build_s = build_model(p20, all20.options)
    rep_all = solve_model(model, build_s=build_s, mip_gap=1e-3)
    total = build_s + rep_all.solve_s
    print(f"  without the dominance filter: {len(all20.options)} options; build "
          f"{build_s * 1e3:.0f} ms + solve {rep_all.solve_s * 1e3:.0f} ms = {total:.2f} s "
          f"(ratio {total / 30:.3f}); objective ${rep_all.objective:.2f}/h vs "
          f"${rep.objective:.2f}/h filtered")
    print("capacity confirm (the default) against exact, cold caches:")
    for label, prob, ex_opts, ex_s, ex_obj in (("1 workload", problem, opts, ev, best),
                                               ("20 workloads", p20, opts20, ev20,
                                                rep.objective)):
        confirm(label, prob, ex_opts, ex_s, ex_obj)
    return 0


def confirm(label: str, problem: FleetProblem, exact: OptionSet, exact_s: float,
            exact_obj: float | None) -> None:
    prob = replace(problem, space=replace(problem.space, capacity="confirm"))
    clear_caches()
    t0 = time.perf_counter()
    opts = build_options(prob)
    took = time.perf_counter() - t0
    model, _, build_s = build_model(prob, opts.options)
    rep = solve_model(model, build_s=build_s, mip_gap=1e-3)
    proven = sum(cs.excluded[DOMINATED] for cs in opts.candidates)
    same = _rows(opts) == _rows(exact)
    print(f"  {label}: evaluation {took:.1f} s vs {exact_s:.1f} s exact (ratio "
          f"{took / exact_s:.2f}); {proven} configurations proven dominated by one check; "
          f"options identical: {same}; optimum ${rep.objective:.2f}/h vs "
          f"${exact_obj or math.nan:.2f}/h")


def _rows(opts: OptionSet) -> list[tuple[object, ...]]:
    return sorted((o.workload, o.candidate.label, o.rate_cap_rps, o.ttft_p99_ms,
                   o.tpot_p99_ms, o.candidate.memory_per_gpu_gib) for o in opts.options)


if __name__ == "__main__":
    sys.exit(main())
