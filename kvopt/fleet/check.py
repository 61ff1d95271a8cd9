"""Independent check of a plan: every constraint recomputed from the catalog and the
serving model — not from the MILP's coefficients."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from kvopt.catalog.gpus import load_gpu
from kvopt.catalog.prices import price_for
from kvopt.fleet.problem import FleetProblem
from kvopt.serving.replica import build_replica
from kvopt.serving.serve import steady_model
from kvopt.units import GIB


def check_plan(plan: dict[str, Any], problem: FleetProblem, *, rel_tol: float = 0.02
               ) -> list[str]:
    """Violations found (an empty list means the plan holds)."""
    bad: list[str] = []
    wl = {w.name: w for w in problem.workloads}
    prices = dict(problem.space.prices_usd_h)
    regions = {r.name: r.prices_usd_h for r in problem.space.regions}
    cost = power = 0.0
    gpus: dict[str, int] = defaultdict(int)
    served: dict[str, float] = defaultdict(float)
    configs: dict[str, int] = defaultdict(int)
    for e in plan["fleet"]:
        w = wl[e["workload"]]
        hw_gpu, hw_engine = problem.space.hardware(e["gpu"])
        lay = {k: int(e.get(k, 1)) for k in ("ep", "dp", "pp")}
        rep = build_replica(model=w.model, gpu=hw_gpu, tp=e["tp"], weights=e["weights"],
                            kv_dtype=e["kv_dtype"], engine=hw_engine, images=w.images, **lay)
        where = f"{w.name} on {e['replicas']}x {e['gpu']} {rep.parallel.label}"
        if not rep.fits:
            bad.append(f"{where}: weights do not fit")
            continue
        n, rate = e["replicas"], e["rate_per_replica_rps"]
        served[w.name] += n * rate
        configs[w.name] += 1
        model = steady_model(rep, w.input_dist, w.output_dist, max_num_seqs=e["max_batch"])
        # with k replicas down the rest carry the rate
        up = n - w.redundancy
        if up <= 0:
            bad.append(f"{where}: redundancy {w.redundancy} leaves no replica up")
            continue
        for label, r in (("normal", rate), ("k down", rate * n / up)):
            st = model.poisson(r)
            if st.saturated:
                bad.append(f"{where}: saturated at {r:.3g} req/s per replica ({label})")
                continue
            for name, val, slo in (("TTFT p99", st.ttft_s[3] * 1e3, w.slo.ttft_p99_ms),
                                   ("TPOT p99", st.tpot_s[3] * 1e3, w.slo.tpot_p99_ms),
                                   ("E2E p99", st.e2e_p99_s * 1e3, w.slo.e2e_p99_ms)):
                if slo is not None and val > slo * (1 + rel_tol):
                    bad.append(f"{where}: {name} {val:.1f} ms > SLO {slo} ms ({label})")
            kv = st.steady_state_batch / rep.dp * (w.input_dist.mean
                                                   + w.output_dist.mean / 2) \
                * rep.kv_bytes_per_token
            mem = rep.weights_bytes + rep.activation_bytes + kv
            if mem / GIB + rep.engine.runtime_overhead_gib > rep.gpu.memory_gib:
                bad.append(f"{where}: {mem / GIB:.1f} GiB per GPU exceeds "
                           f"{rep.gpu.memory_gib} GiB ({label})")
        region = e.get("region") or ""
        price = dict(regions.get(region, ())).get(e["gpu"]) if region else None
        if price is None:
            price = prices.get(e["gpu"])
        if price is None:
            p = price_for(e["gpu"])
            price = p.usd_per_gpu_hour if p else float("nan")
        cost += price * rep.n_gpus * n
        power += load_gpu(e["gpu"]).tdp_w * rep.n_gpus * n / 1000.0
        gpus[f"{region}:{e['gpu']}" if region else e["gpu"]] += rep.n_gpus * n
    for w in problem.workloads:
        if served[w.name] < w.rate_rps * (1 - 1e-6):
            bad.append(f"{w.name}: serves {served[w.name]:.3g} of {w.rate_rps} req/s")
        if not problem.allow_mixing and configs[w.name] > 1:
            bad.append(f"{w.name}: {configs[w.name]} configurations without mixing allowed")
    if problem.budget_usd_h is not None and cost > problem.budget_usd_h * (1 + 1e-9):
        bad.append(f"cost ${cost:.2f}/h exceeds the budget ${problem.budget_usd_h}/h")
    if problem.power_cap_kw is not None and power > problem.power_cap_kw * (1 + 1e-9):
        bad.append(f"power {power:.1f} kW exceeds the cap {problem.power_cap_kw} kW")
    for gpu, cap in problem.inventory.items():
        if gpus.get(gpu, 0) > cap:
            bad.append(f"uses {gpus[gpu]} {gpu}, only {cap} available")
    if abs(cost - plan["totals"]["usd_per_hour"]) > 1e-6 * max(cost, 1.0):
        bad.append(f"reported cost {plan['totals']['usd_per_hour']} != recomputed {cost}")
    return bad
