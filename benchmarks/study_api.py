"""A scripted study with the Python API (``kvopt.study``): which GPU is cheapest for each
model as traffic grows, under two SLO tiers and two price books.

Run: ``python benchmarks/study_api.py [--out study-api-out] [--workers 2]``; run it again and
every finished scenario is skipped.
"""

from __future__ import annotations

import argparse

from kvopt.study import Study, load_results, make_scenarios, run_study


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="study-api-out")
    ap.add_argument("--workers", type=int, default=None)
    args = ap.parse_args(argv)

    # 1. a sweep: a base scenario and axes (product of all values)
    study = Study(
        solve="plan",
        name="gpu-choice",
        base={"input_len": 1024, "output_len": 256, "gpus": ["H100-SXM", "A100-SXM-80GB", "L40S"],
              "tp_options": [1, 2], "precisions": ["fp8/fp8", "bf16/bf16"],
              "batches": [32, 128]},
        axes={"model": ["Llama-3.1-8B", "Qwen2.5-7B"],
              "tier": {"interactive": {"slo_ttft_p99_ms": 500, "slo_tpot_p99_ms": 30},
                       "batch": {"slo_tpot_p99_ms": 100}},
              "price_book": {"list": {"prices": {}},
                             "discount": {"prices": {"H100-SXM": 2.0, "A100-SXM-80GB": 1.1}}},
              "rps": [2, 8, 32]},  # traffic last: neighbours share candidate evaluations
    )
    df = study.run(args.out, workers=args.workers)  # a pandas DataFrame
    ok = df[df["status"] == "ok"]
    print(ok.pivot_table(index=["model", "tier", "price_book"], columns="rps",
                         values="usd_per_hour").round(2).to_string())
    print(ok.groupby("gpu").size().rename("plans choosing it").to_string())

    # 2. scenarios built one by one (any Python logic), stored in the same folder
    extra = make_scenarios("capacity", [
        {"model": m, "gpu": g, "input_len": 1024, "output_len": 256, "slo_tpot_p99_ms": 30}
        for m in ("Llama-3.1-8B", "Qwen2.5-7B") for g in ("H100-SXM", "L40S")])
    summary = run_study(extra, args.out + "-capacity")
    print(f"capacity: {summary.done} computed, {summary.skipped} already stored")
    cap = load_results(args.out + "-capacity")
    print(cap[["model", "gpu", "status", "goodput_rps", "usd_per_hour"]].to_string(index=False))
    return 0


if __name__ == "__main__":  # needed: worker processes re-import this file
    raise SystemExit(main())
