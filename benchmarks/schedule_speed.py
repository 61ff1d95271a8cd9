"""Speed of the schedule MILP (issue: cost over time), printed as measured numbers.

One week of hourly demand (168 periods) x 20 workloads (4 models x 5 peak rates, each with
its own diurnal curve and time zone, weekends lower) x every priced datacenter GPU x TP
{1,2,4,8} x 4 precisions x 8 batch levels x 3 regions x 4 ways to pay (on demand, reserved
1 year, spot, owned), GPU inventory per region and type, three workloads held to two
regions; solved to a 0.1% gap. Target: under 60 s on this 2-core machine for the MILP
(pruning + build + HiGHS); the candidate evaluation (physics, once per workload and
candidate, independent of the periods) is timed apart.

Prices: the regions' on-demand prices are the catalog's times 1.00, 1.08 and 0.94; the
other ways to pay take the ratios of the price book's sourced H100-SXM aws-us-east-1 offers
to its on-demand price (reserved 1y 0.53, spot 0.64 at 20% interruption) for every GPU, and
owned GPUs the book's H100-SXM purchase price scaled by the on-demand price ratio (server
power by the TDP ratio; the book's site PUE, $/kWh and hosting): a synthetic book for
timing, not a price claim.

Run: ``python benchmarks/schedule_speed.py [--gpus N] [--periods T]``.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import yaml

from kvopt import list_gpus, price_for
from kvopt.catalog.gpus import load_gpu
from kvopt.catalog.paths import models_dir
from kvopt.catalog.payments import payment_book
from kvopt.fleet.demand import Profile, week_labels
from kvopt.fleet.problem import FleetProblem
from kvopt.fleet.schedule.problem import Horizon, schedule_data
from kvopt.fleet.schedule.run import solve_data
from kvopt.serving.lengths import fixed
from kvopt.serving.results import Slo
from kvopt.space import DEFAULT_BATCHES, DEFAULT_PRECISIONS, Region, Space, Workload

REGIONS = {"us-east": 1.00, "eu-west": 1.08, "ap-south": 0.94}


def ratios() -> dict[str, tuple[float, float]]:
    """(price / on-demand, interruption) of the book's H100-SXM aws-us-east-1 offers."""
    offers = payment_book().for_gpu("H100-SXM", "aws-us-east-1")
    od = offers["on_demand"].usd_per_gpu_hour
    return {k: (o.usd_per_gpu_hour / od, o.interruption_rate) for k, o in offers.items()
            if k in ("reserved_1y", "spot", "owned")}


def book(gpus: tuple[str, ...], path: Path) -> None:
    """A price book file with every GPU's offers in the three regions."""
    r = ratios()
    regions = {}
    for name, f in REGIONS.items():
        offers = {}
        for g in gpus:
            p = price_for(g)
            assert p is not None
            od = p.usd_per_gpu_hour * f
            offers[g] = {"on_demand": {"usd_per_gpu_hour": od, "source": "benchmark"},
                         "reserved_1y": {"usd_per_gpu_hour": od * r["reserved_1y"][0],
                                         "source": "benchmark"},
                         "spot": {"usd_per_gpu_hour": od * r["spot"][0],
                                  "interruption_rate": r["spot"][1], "source": "benchmark"}}
        regions[name] = {"source": "benchmark: synthetic", "offers": offers}
    data = yaml.safe_load((models_dir() / "prices.yaml").read_text())["payments"]["owned"]
    h100 = data["gpus"]["H100-SXM"]
    od_h100 = price_for("H100-SXM").usd_per_gpu_hour  # type: ignore[union-attr]
    owned = {}
    for g in gpus:
        f = price_for(g).usd_per_gpu_hour / od_h100  # type: ignore[union-attr]
        owned[g] = {
            "purchase_usd_per_gpu": {"value": h100["purchase_usd_per_gpu"]["value"] * f,
                                     "source": "benchmark: H100-SXM's x on-demand ratio"},
            "amortization_years": h100["amortization_years"],
            "server_kw_per_gpu": {"value": h100["server_kw_per_gpu"]["value"]
                                  * load_gpu(g).tdp_w / load_gpu("H100-SXM").tdp_w,
                                  "source": "benchmark: H100-SXM's x TDP ratio"}}
    path.write_text(yaml.safe_dump({"payments": {
        "default_region": "us-east", "regions": regions,
        "owned": {"site": data["site"], "gpus": owned}}}))


def profile(periods: int, names: list[str]) -> Profile:
    hours = (1.0,) * periods
    rps = []
    for i, n in enumerate(names):
        shift = (i % 4) * 3  # four time zones
        row = []
        for t in range(periods):
            h = (t + shift) % 24
            day = ((t + shift) // 24) % 7
            diurnal = max(0.0, math.sin(math.pi * (h - 7) / 15)) if 7 <= h <= 22 else 0.0
            row.append(0.15 + 0.85 * diurnal * (0.6 if day >= 5 else 1.0))
        rps.append((n, tuple(row)))
    return Profile(hours=hours, labels=week_labels(hours), rps=tuple(rps))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpus", type=int, default=0, help="limit to the first N GPUs")
    ap.add_argument("--periods", type=int, default=168)
    ap.add_argument("--owned-cap", type=int, default=2,
                    help="most owned GPUs per region and type (0: no cap); the cap binds, so "
                         "the shared limits couple the workloads and the MILP runs")
    args = ap.parse_args(argv)
    gpus = tuple(g.id for g in list_gpus("datacenter") if price_for(g.id))
    if args.gpus:
        gpus = gpus[: args.gpus]
    tmp = Path(tempfile.mkdtemp())
    book(gpus, tmp / "book.yaml")
    regions = tuple(Region(name=n, prices_usd_h=tuple(
        (g, price_for(g).usd_per_gpu_hour * f) for g in gpus),  # type: ignore[union-attr]
        availability=tuple((g, 16 if (n == "us-east" and g == "H100-SXM") else 96)
                           for g in gpus)) for n, f in REGIONS.items())
    space = Space(gpus=gpus, tps=(1, 2, 4, 8), precisions=DEFAULT_PRECISIONS,
                  batches=DEFAULT_BATCHES, regions=regions)
    models = ("Llama-3.1-8B", "Llama-3.1-70B", "Qwen2.5-32B", "Mixtral-8x7B")
    slo = Slo(ttft_p99_ms=2000, tpot_p99_ms=60)
    wls = tuple(Workload(name=f"{m}@{r:g}", model=m, rate_rps=r, input_dist=fixed(1000),
                         output_dist=fixed(200), slo=slo, redundancy=1 if r >= 10 else 0,
                         regions=("us-east", "eu-west") if i % 7 == 0 else ())
                for i, (m, r) in enumerate((m, r) for m in models
                                           for r in (2.0, 5.0, 10.0, 20.0, 40.0)))
    prof = profile(args.periods, [w.name for w in wls])
    owned = tuple((f"{n}:{g}", args.owned_cap) for n in REGIONS for g in gpus) \
        if args.owned_cap else ()
    hz = Horizon(profile=prof, payments=("on_demand", "reserved_1y", "spot", "owned"),
                 price_book=str(tmp / "book.yaml"), owned_gpus=owned)
    problem = FleetProblem(workloads=wls, space=space, horizon=hz)
    print(f"space: {len(gpus)} GPUs x 4 TP x {len(DEFAULT_PRECISIONS)} precisions x "
          f"{len(DEFAULT_BATCHES)} batch levels x {len(REGIONS)} regions; {len(wls)} "
          f"workloads; {prof.periods} periods; ways to pay: {', '.join(hz.payments)}; owned "
          f"GPUs per region and type <= {args.owned_cap or 'no cap'}")
    t0 = time.perf_counter()
    d = schedule_data(problem)
    ev = time.perf_counter() - t0
    kinds = sum(len(o.pays) for o in d.options)
    print(f"candidate evaluation (physics once per workload x candidate): {ev:.1f} s; "
          f"{len(d.options)} options, {kinds} (option, way to pay) pairs")
    t0 = time.perf_counter()
    fast, finfo = solve_data(d, mip_gap=1e-3, time_limit_s=120)
    fast_s = time.perf_counter() - t0
    fr = fast.report if fast else None
    print(f"default path: {fr.solver if fr else 'infeasible'} {fr.status if fr else ''} in "
          f"{fast_s:.2f} s (bounds {finfo.get('bounds_s', 0):.2f} s; decomposed: "
          f"{bool(finfo.get('decomposed'))}; restricted HiGHS "
          f"{finfo.get('restricted_solve_s', 0):.2f} s; Lagrangian "
          f"{finfo.get('lagrangian_s', 0):.2f} s); gap {fr.gap if fr else None}")
    if not finfo.get("decomposed") and fast is not None:
        print(f"  {finfo.get('unresolved_options', 0)} options could still win; "
              f"model {fast.model_size}")
    t0 = time.perf_counter()
    sched, info = solve_data(d, mip_gap=1e-3, time_limit_s=120, decompose=False)
    total = time.perf_counter() - t0
    if sched is None:
        print("infeasible:", info)
        return 1
    r, s = sched.report, sched.model_size
    print(f"MILP path (decomposition off): bounds {info.get('bounds_s', 0):.2f} s; restricted "
          f"model {info.get('restricted_options')} options, HiGHS "
          f"{info.get('restricted_solve_s', 0):.2f} s; {info.get('pruned_options', 0)} of "
          f"{info['options']} options proven out; final model {s['options_in_model']} options")
    print(f"  model: {s['integer_variables']} integer + {s['binary_variables']} binary "
          f"variables, {s['constraints']} constraints; build {r.build_s:.2f} s, HiGHS "
          f"{r.solve_s:.2f} s; status {r.status}, gap {r.gap:.2e}")
    print(f"  total (bounds + builds + solves): {total:.1f} s (target < 60 s, ratio "
          f"{total / 60:.2f})")
    if fast is not None:
        print(f"  objective: default path ${fast.total_usd:,.2f} vs MILP ${sched.total_usd:,.2f}")
    dd = sched.to_dict()
    c = dd["cost"]
    print(f"horizon cost ${c['total_usd']:,.0f}: " + ", ".join(
        f"{k} ${v:,.0f}" for k, v in c["by_kind_usd"].items() if v))
    sv = dd["savings"]
    print(f"the same schedule all on demand ${sv['all_on_demand_usd']:,.0f} "
          f"({sv['vs_all_on_demand_fraction']:.1%} saved)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
