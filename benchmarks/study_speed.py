"""Study throughput: single-workload `plan` scenarios over the whole GPU catalog (every GPU
of `kvopt list-gpus`, TP 1/2/4/8, 4 precisions, 8 batch levels), printed as measured numbers.

1. Store overhead: committing one finished scenario (a real plan result) to the SQLite store.
2. No scenario variety: one (model, lengths, SLO) and N request rates. Each worker evaluates
   the candidates once (the per-process cache), then every scenario is a MILP. Timed
   in-process (1 worker) and on 2 local processes: the 2-to-1 wall-time ratio.
3. Scenario variety: K different (model, SLO) pairs x rates on 2 processes: each worker pays
   a full candidate evaluation per pair it meets.
4. The per-process cache off: the same scenarios, evaluation walk not reused (the serving
   model's own capacity cache still is).

Target (issue #7): 1,000 scenarios on 2 workers in under 5 minutes. With N < 1000 the
1,000-scenario time is projected from the measured cold and warm costs; --full runs the
1,000 scenarios of part 2 for real, and 1,000 over ``--full-pairs`` (model, SLO) pairs
(default 36: 12 models x 3 TPOT SLOs, the issue's example study shape).

Run: ``python benchmarks/study_speed.py [--n 40] [--variety-keys 2] [--full [--full-pairs 36]]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from typing import Any

from kvopt.study import Study, make_scenarios, run_study
from kvopt.study.store import Store

TARGET_S = 300.0
BASE = {"input_len": 1024, "output_len": 256, "gpus": "all", "slo_ttft_p99_ms": 1000}
MODELS = ("Llama-3.1-8B", "Qwen2.5-7B", "Mistral-7B", "Llama-3.2-3B", "Gemma-2-9B",
          "Qwen3-8B", "Llama-3.1-70B", "Qwen2.5-14B", "Phi-3-medium", "Mixtral-8x7B",
          "Qwen3-30B-A3B", "Llama-2-13B")


def rates(n: int) -> list[float]:
    return [round(1 + 199 * i / max(1, n - 1), 3) for i in range(n)]


def run(scenarios: Any, workers: int | None, *, cache: bool = True) -> tuple[float, list[Any]]:
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        run_study(scenarios, out, workers=workers, cache=cache)
        wall = time.perf_counter() - t0
        with Store(out, create=False) as store:
            rows = store.rows()
    bad = [r for r in rows if r["status"] != "ok"]
    if bad:
        print(f"  note: {len(bad)} scenarios not ok, e.g. {bad[0]['error']}")
    return wall, rows


def split(rows: list[Any], cold_per_worker: int) -> tuple[float, float]:
    """(median cold seconds, median warm seconds) from the rows' worker seconds: the slowest
    ``cold_per_worker`` rows are the candidate evaluations."""
    secs = sorted((r["seconds"] for r in rows), reverse=True)
    cold, warm = secs[:cold_per_worker], secs[cold_per_worker:]
    return statistics.median(cold), statistics.median(warm or cold)


def steady(rows: list[Any], workers: int) -> float:
    """Seconds per scenario once every worker has its candidates: the finish times after
    the first ``workers`` results."""
    at = sorted(r["finished_at"] for r in rows)[workers - 1:]
    return (at[-1] - at[0]) / max(1, len(at) - 1)


def store_overhead(result: dict[str, Any], n: int = 1000) -> float:
    sc = make_scenarios("plan", [{"model": "Llama-3.1-8B", "input_len": 10, "output_len": 10,
                                  "rps": 1 + i} for i in range(n)])
    row = {"status": "ok", "outputs": {"usd_per_hour": 1.0}, "result": result,
           "seconds": 0.1}
    with tempfile.TemporaryDirectory() as out, Store(out) as store:
        run_id, _ = store.begin_run(sc, runner="bench", name="bench", outputs=())
        t0 = time.perf_counter()
        for s in sc:
            store.record(run_id, s, {**row, "key": s.key})
        return (time.perf_counter() - t0) / n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=40, help="scenarios per timed run")
    ap.add_argument("--variety-keys", type=int, default=2,
                    help="distinct (model, SLO) pairs in the variety run")
    ap.add_argument("--full", action="store_true", help="also run 1,000 scenarios for real")
    ap.add_argument("--full-pairs", type=int, default=36,
                    help="distinct (model, SLO) pairs in the real 1,000-scenario run with "
                         "variety")
    args = ap.parse_args(argv)
    n = args.n
    plain = Study(solve="plan", base={**BASE, "model": "Llama-3.1-8B", "slo_tpot_p99_ms": 50},
                  axes={"rps": rates(n)}, name="no-variety")
    scen = plain.scenarios()
    from kvopt.catalog.gpus import list_gpus

    print(f"catalog: {len(list_gpus())} GPUs x 4 TP x 4 precisions x 8 batch levels; "
          f"{n} plan scenarios per run")

    wall1, rows1 = run(scen, None)
    cold1, warm1 = split(rows1, 1)
    wall2, rows2 = run(scen, 2)
    cold2, warm2 = split(rows2, 2)
    print(f"no variety, 1 worker (in-process): {wall1:.1f} s; candidate evaluation "
          f"{cold1:.1f} s once, then {warm1:.2f} s per scenario")
    print(f"no variety, 2 workers: {wall2:.1f} s (cold {cold2:.1f} s per worker, warm "
          f"{warm2:.2f} s per scenario); 2-to-1 worker wall-time ratio {wall2 / wall1:.2f}")
    s1, s2 = steady(rows1, 1), steady(rows2, 2)
    print(f"  steady state (after the candidate evaluation): {s1:.2f} s per scenario on 1 "
          f"worker, {s2:.2f} s on 2; ratio {s2 / s1:.2f}")
    spawn = wall2 - cold2 - n * warm2 / 2
    proj = cold2 + 1000 * warm2 / 2 + max(0.0, spawn)
    print(f"projected 1,000 scenarios on 2 workers (no variety): {proj:.0f} s; target "
          f"< {TARGET_S:.0f} s, ratio {proj / TARGET_S:.2f}: "
          f"{'met' if proj < TARGET_S else 'NOT met'}")
    if args.full:
        full = Study(solve="plan", base=plain.base, axes={"rps": rates(1000)}, name="full")
        wall_f, rows_f = run(full.scenarios(), 2)
        print(f"measured 1,000 scenarios on 2 workers (no variety): {wall_f:.0f} s "
              f"({len(rows_f)} rows); target < {TARGET_S:.0f} s, ratio "
              f"{wall_f / TARGET_S:.2f}: {'met' if wall_f < TARGET_S else 'NOT met'}")
        kp = max(1, args.full_pairs)
        fpairs = [(m, slo) for slo in (50, 30, 80) for m in MODELS][:kp]
        per_pair = -(-1000 // kp)
        fvar = make_scenarios("plan", [{**BASE, "model": m, "slo_tpot_p99_ms": slo, "rps": r}
                                       for m, slo in fpairs for r in rates(per_pair)][:1000])
        wall_fv, rows_fv = run(fvar, 2)
        print(f"measured 1,000 scenarios over {kp} (model, SLO) pairs on 2 workers: "
              f"{wall_fv:.0f} s ({len(rows_fv)} rows); target < {TARGET_S:.0f} s, ratio "
              f"{wall_fv / TARGET_S:.2f}: {'met' if wall_fv < TARGET_S else 'NOT met'}")

    k = max(1, args.variety_keys)
    pairs = [(m, slo) for slo in (50, 30) for m in MODELS][:k]
    per = max(1, n // k)
    var = make_scenarios("plan", [{**BASE, "model": m, "slo_tpot_p99_ms": slo, "rps": r}
                                  for m, slo in pairs for r in rates(per)])
    wall_v, rows_v = run(var, 2)
    cold_v, warm_v = split(rows_v, 2 * k)
    print(f"variety ({k} (model, SLO) pairs x {per} rates) on 2 workers: {wall_v:.1f} s; "
          f"evaluation {cold_v:.1f} s per pair per worker, warm {warm_v:.2f} s per scenario")
    for keys in (12, 36):
        # scenarios that share an evaluation travel to one worker together (kvopt.study.run
        # chunks), so each pair is evaluated about once: the workers split the evaluations
        p = keys * cold_v / 2 + 1000 * warm_v / 2
        print(f"  projected 1,000 scenarios over {keys} (model, SLO) pairs on 2 workers: "
              f"{p:.0f} s (one evaluation per pair, split between the workers; ratio to "
              f"target {p / TARGET_S:.2f})")

    sample = scen[: min(8, n)]
    t0 = time.perf_counter()
    run(sample, None, cache=True)  # warm this process first (it ran part 2 already)
    with_c = (time.perf_counter() - t0) / len(sample)
    t0 = time.perf_counter()
    run(sample, None, cache=False)
    without = (time.perf_counter() - t0) / len(sample)
    print(f"per scenario, physics warm: {with_c:.2f} s with the candidate cache, "
          f"{without:.2f} s without it")

    ov = store_overhead(rows1[0]["result"] or {})
    size = len(json.dumps(rows1[0]["result"]))
    print(f"store: {ov * 1e3:.2f} ms per finished scenario (one transaction, {size / 1024:.0f}"
          f" KiB result JSON); {ov / max(warm2, 1e-9):.1%} of a warm scenario")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
