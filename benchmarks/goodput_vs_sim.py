"""Goodput (the highest Poisson rate that meets a p99 SLO) analytic against the simulator.

The planner sizes fleets on the analytic goodput, so this is the number that decides whether
a plan meets its SLO. For each configuration of the test grid
(``tests/serving/test_steady_vs_sim.py``) and
two SLOs (TTFT p99 and TPOT p99 at 1.5x and 3x their light-load values: a tight and a loose
one), it prints

* the analytic goodput and what binds it;
* the simulator's p99s at that rate against the SLO (above 100%: the plan would miss it);
* the simulator's own goodput, by bisection on the rate (6 runs), and the analytic error;
* the screening model's goodput (``capacity_many(..., method="screen")``) and its error
  against the simulator's.

Each simulated point runs ``--requests`` requests (default 8,000). Takes a few minutes.

Run: ``python benchmarks/goodput_vs_sim.py [--requests N]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from kvopt.serving.capacity import capacity, capacity_many
from kvopt.serving.lengths import LengthDist, parse_dist
from kvopt.serving.load import Load
from kvopt.serving.replica import Replica, build_replica
from kvopt.serving.results import Slo
from kvopt.serving.serve import estimate_under_load, simulate_under_load, steady_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root
from tests.serving.test_steady_vs_sim import CASES  # the test suite's grid: one list for both

FACTORS = (1.5, 3.0)  # SLO = factor x the light-load p99 (TTFT and TPOT alike)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=8000, help="simulated requests per run")
    args = ap.parse_args(argv)
    print(f"{'configuration':40s} {'SLO':>4s} {'goodput':>8s} {'binds':>12s} "
          f"{'sim TTFT p99':>12s} {'sim TPOT p99':>12s} {'sim goodput':>11s} {'error':>7s} "
          f"{'screen':>7s} {'error':>7s}")
    errors: list[float] = []
    screen_errors: list[float] = []
    misses: list[float] = []
    for model, gpu, tp, engine, i_spec, o_spec in CASES:
        rep = build_replica(model=model, gpu=gpu, tp=tp, engine=engine)
        inp, out = parse_dist(i_spec), parse_dist(o_spec)
        cap, _ = steady_model(rep, inp, out).capacity()
        light = estimate_under_load(rep, load=Load(mode="rps", value=cap * 0.02),
                                    input_dist=inp, output_dist=out).to_dict()["latency"]
        for f in FACTORS:
            slo = Slo(ttft_p99_ms=f * light["ttft_p99_ms"], tpot_p99_ms=f * light["tpot_p99_ms"])
            res = capacity(rep, input_dist=inp, output_dist=out, slo=slo)
            if not res.feasible:
                print(f"{model} {gpu}: no goodput under SLO x{f:g}")
                continue

            at = _sim(rep, inp, out, slo, res.goodput_rps, args.requests)
            misses.append(max(at))
            lo, hi = 0.5 * res.goodput_rps, min(1.3 * res.goodput_rps, cap)
            for _ in range(6):
                mid = (lo + hi) / 2
                ok = max(_sim(rep, inp, out, slo, mid, args.requests)) <= 1.0
                lo, hi = (mid, hi) if ok else (lo, mid)
            err = res.goodput_rps / lo - 1
            errors.append(err)
            scr = capacity_many([rep], input_dist=inp, output_dist=out, slo=slo,
                                method="screen")[0].goodput_rps
            screen_errors.append(scr / lo - 1)
            label = f"{model} {gpu} tp{tp} {engine}"
            print(f"{label:40s} x{f:<3g} {res.goodput_rps:8.2f} {res.binding[:12]:>12s} "
                  f"{at[0] * 100:11.0f}% {at[1] * 100:11.0f}% {lo:11.2f} {err * 100:+6.1f}% "
                  f"{scr:7.2f} {(scr / lo - 1) * 100:+6.1f}%")
    print(f"\nanalytic goodput vs the simulator's: median error "
          f"{statistics.median(errors) * 100:+.1f}%, worst {max(errors, key=abs) * 100:+.1f}% "
          f"({len(errors)} points); at the analytic goodput the simulator's worst p99 is "
          f"{statistics.median(misses) * 100:.0f}% of the SLO (median), "
          f"{max(misses) * 100:.0f}% (worst)")
    print(f"screen goodput vs the simulator's: median error "
          f"{statistics.median(screen_errors) * 100:+.1f}%, worst "
          f"{max(screen_errors, key=abs) * 100:+.1f}%")
    return 0


def _sim(rep: Replica, inp: LengthDist, out: LengthDist, slo: Slo, rate: float,
         requests: int) -> tuple[float, float]:
    """The simulator's (TTFT p99, TPOT p99) at ``rate`` as fractions of the SLO."""
    lat = simulate_under_load(rep, load=Load(mode="rps", value=rate), input_dist=inp,
                              output_dist=out, num_requests=requests).to_dict()["latency"]
    assert slo.ttft_p99_ms is not None and slo.tpot_p99_ms is not None
    return lat["ttft_p99_ms"] / slo.ttft_p99_ms, lat["tpot_p99_ms"] / slo.tpot_p99_ms


if __name__ == "__main__":
    sys.exit(main())
