"""The screening capacity model against the exact search, printed as measured numbers.

For every (replica, max-batch level, SLO) below, `capacity_levels` (the analytic model's
search on its 1,024 quadrature points, to 0.5%) and `screen_levels` (kvopt.serving.screen)
give a goodput. Printed per length mix and SLO:

* the screen's goodput error against the exact one: median (signed and absolute), 90th
  percentile and worst;
* what the error means in latency: the analytic model's p99 (the SLO's metric) at the
  screen's goodput, over the SLO. A large goodput error where the p99 barely moves with the
  rate (an SLO on an almost flat part) is a small ratio; a ratio above 1 is a goodput the
  analytic model says misses the SLO.

Replicas: every 4th fitting (GPU, TP, weights) of Llama-3.1-8B over the datacenter GPUs,
and a spread of Llama-3.1-70B and Qwen3-30B-A3B ones; levels 8, 64, 512. SLOs are set from
each mix's light-load p99s on an H100 (so they bind somewhere between light load and
saturation). Run: ``python benchmarks/screen_accuracy.py`` (about a minute).
"""

from __future__ import annotations

import itertools
import statistics
import sys
import time

import numpy as np

from kvopt import KvoptError, list_gpus
from kvopt.serving.capacity import capacity_levels
from kvopt.serving.lengths import parse_dist
from kvopt.serving.replica import build_replica
from kvopt.serving.results import Slo
from kvopt.serving.screen import screen_levels
from kvopt.serving.serve import steady_model

LEVELS = (8, 64, 512)
MIXES = [("lognormal:mean=1000,sigma=0.5", "fixed:200"),
         ("lognormal:mean=800,sigma=0.6", "lognormal:mean=250,sigma=0.5"),
         ("fixed:2000", "fixed:300")]


def replicas() -> list:
    out = []
    for gpu, tp, w in itertools.product(list_gpus("datacenter"), (1, 2, 4, 8),
                                        ("bf16", "fp8", "int4")):
        try:
            rep = build_replica(model="Llama-3.1-8B", gpu=gpu, tp=tp, weights=w)
        except KvoptError:
            continue
        if rep.fits:
            out.append(rep)
    out = out[::4]
    for model, tp, gpu, w in itertools.product(("Llama-3.1-70B", "Qwen3-30B-A3B"), (2, 4),
                                               ("H100-SXM", "A100-SXM-80GB", "L40S",
                                                "MI300X"), ("bf16", "fp8")):
        try:
            rep = build_replica(model=model, gpu=gpu, tp=tp, weights=w)
        except KvoptError:
            continue
        if rep.fits:
            out.append(rep)
    return out


def slos(inp, out) -> list[Slo]:
    ref = steady_model(build_replica(model="Llama-3.1-8B", gpu="H100-SXM"), inp, out)
    lo = ref.poisson(1e-6)
    ttft, tpot, e2e = lo.ttft_s[3] * 1e3, lo.tpot_s[3] * 1e3, lo.e2e_p99_s * 1e3
    return [Slo(), Slo(tpot_p99_ms=tpot * 3.0), Slo(ttft_p99_ms=ttft * 3.0),
            Slo(ttft_p99_ms=ttft * 4.0, tpot_p99_ms=tpot * 4.0), Slo(e2e_p99_ms=e2e * 3.0)]


def ratio(rep, inp, out, b: int, slo: Slo, rate: float) -> float:
    """The analytic model's p99 at ``rate`` over the SLO (the largest over its limits)."""
    st = steady_model(rep, inp, out, max_num_seqs=b).poisson(rate)
    if st.saturated:
        return float("inf")
    vals = [v * 1e3 / lim for v, lim in ((st.ttft_s[3], slo.ttft_p99_ms),
                                         (st.tpot_s[3], slo.tpot_p99_ms),
                                         (st.e2e_p99_s, slo.e2e_p99_ms)) if lim is not None]
    return max(vals) if vals else float("nan")


def main() -> int:
    reps = replicas()
    print(f"{len(reps)} replicas x levels {LEVELS}")
    print(f"{'mix':38s} {'SLO':22s} {'n':>4s} {'median':>7s} {'|med|':>6s} {'p90':>6s} "
          f"{'worst':>7s}  exact p99/SLO at screen goodput: median p90 max >1.05")
    t_exact = t_screen = 0.0
    all_err: list[float] = []
    all_ratio: list[float] = []
    for i_spec, o_spec in MIXES:
        inp, out = parse_dist(i_spec), parse_dist(o_spec)
        for slo in slos(inp, out):
            t0 = time.perf_counter()
            exact = [capacity_levels(rep, input_dist=inp, output_dist=out, slo=slo,
                                     batches=LEVELS, rel_tol=0.005) for rep in reps]
            t1 = time.perf_counter()
            screen = screen_levels(reps, input_dist=inp, output_dist=out, slo=slo,
                                   batches=LEVELS)
            t2 = time.perf_counter()
            t_exact, t_screen = t_exact + t1 - t0, t_screen + t2 - t1
            errs, ratios = [], []
            for rep, ex_row, sc_row in zip(reps, exact, screen, strict=True):
                for b, e, s in zip(LEVELS, ex_row, sc_row, strict=True):
                    if e.goodput_rps <= 0 or s.goodput_rps <= 0:
                        continue
                    errs.append(s.goodput_rps / e.goodput_rps - 1)
                    if slo != Slo():
                        ratios.append(ratio(rep, inp, out, b, slo, s.goodput_rps))
            all_err += errs
            all_ratio += ratios
            a = np.abs(errs)
            label = ", ".join(f"{k.split('_')[0]} {v:.0f}" for k, v in vars(slo).items()
                              if v is not None) or "none (saturation)"
            r = np.array([x for x in ratios if np.isfinite(x)])
            rtxt = (f"{np.median(r):.3f} {np.quantile(r, 0.9):.3f} {r.max():.3f} "
                    f"{np.mean(r > 1.05) * 100:.0f}%") if r.size else "-"
            print(f"{i_spec + ' / ' + o_spec:38s} {label:22s} {len(errs):4d} "
                  f"{statistics.median(errs) * 100:+6.2f}% {np.median(a) * 100:5.2f}% "
                  f"{np.quantile(a, 0.9) * 100:5.2f}% {errs[int(np.argmax(a))] * 100:+6.1f}%  "
                  f"{rtxt}")
    a = np.abs(all_err)
    r = np.array([x for x in all_ratio if np.isfinite(x)])
    print(f"\nall: {len(all_err)} goodputs, median error {statistics.median(all_err) * 100:+.2f}%"
          f" (|median| {np.median(a) * 100:.2f}%, p90 {np.quantile(a, 0.9) * 100:.2f}%); "
          f"exact p99/SLO at the screen's goodput: median {np.median(r):.3f}, "
          f"p90 {np.quantile(r, 0.9):.3f}, max {r.max():.3f}, {np.mean(r > 1.05) * 100:.1f}% "
          "above 1.05")
    print(f"time: exact search {t_exact:.1f} s, screen {t_screen:.1f} s "
          f"(ratio {t_exact / max(t_screen, 1e-9):.0f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
