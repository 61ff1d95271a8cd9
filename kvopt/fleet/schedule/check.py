"""Independent check of a schedule: in every period each workload's rate is re-evaluated by
the serving model on the replicas the schedule runs (spot at its expected availability),
normally and with k replicas down; the SLOs, memory, inventory and budgets are recomputed
from the catalog and the schedule's own numbers, not from the MILP's coefficients."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from kvopt.fleet.problem import FleetProblem
from kvopt.serving.replica import build_replica
from kvopt.serving.serve import steady_model
from kvopt.units import GIB


def check_schedule(d: dict[str, Any], problem: FleetProblem, *, rel_tol: float = 0.02
                   ) -> list[str]:
    """Violations found (empty: every period holds)."""
    bad: list[str] = []
    wl = {w.name: w for w in problem.workloads}
    labels = {p["period"] - 1: p["label"] for p in d["periods"]}
    by_w: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for f in d["fleet"]:
        by_w[f["workload"]].append(f)
    models: dict[int, Any] = {}
    for name, fleet in by_w.items():
        w = wl[name]
        for f in fleet:
            hw_gpu, hw_engine = problem.space.hardware(f["gpu"])
            rep = build_replica(model=w.model, gpu=hw_gpu, tp=f["tp"], weights=f["weights"],
                                kv_dtype=f["kv_dtype"], engine=hw_engine)
            models[id(f)] = (rep, steady_model(rep, w.input_dist, w.output_dist,
                                               max_num_seqs=f["max_batch"]))
    for t, label in labels.items():
        where = f"period {t + 1} ({label})"
        used: dict[str, int] = defaultdict(int)
        for name in wl:
            rate = d["periods"][t]["rps"][name]
            fleet = by_w.get(name, [])
            if not fleet:
                if rate > 0:
                    bad.append(f"{where}: {name} has no replicas for {rate:.3g} req/s")
                continue
            eff = 0.0
            counts = []
            for f in fleet:
                n_com = sum(f["committed"].values())
                n_od = f["per_period"].get("on_demand", [0] * len(labels))[t]
                n_spot = f["per_period"].get("spot", [0] * len(labels))[t]
                avail = 1.0
                if n_spot:
                    spot = _spot_availability(f, problem, d)
                    avail = spot
                e = n_com + n_od + avail * n_spot
                eff += e * f["rate_per_replica_rps"]
                counts.append((f, e, n_com + n_od + n_spot))
                key = f"{f['region']}:{f['gpu']}" if f["region"] else f["gpu"]
                used[key] += f["tp"] * (n_com + n_od + n_spot)
            k = wl[name].redundancy
            if rate <= 0:
                continue
            for f, e, _ in counts:
                rep, model = models[id(f)]
                share = e * f["rate_per_replica_rps"] / eff if eff else 0.0
                for case, up in (("normal", e), ("k down", e - k)):
                    if up <= 1e-9:
                        bad.append(f"{where}: {name} on {f['gpu']}: no replica up ({case})")
                        continue
                    r = rate * share / up
                    bad += _slo(model, rep, wl[name], r, f"{where}: {name} on {f['gpu']}",
                                case, rel_tol)
        for key, cap in problem.inventory.items():
            if used.get(key, 0) > cap:
                bad.append(f"{where}: uses {used[key]} {key}, only {cap} available")
        usd_h = d["periods"][t]["usd_per_hour"]
        if problem.budget_usd_h is not None and usd_h > problem.budget_usd_h * (1 + 1e-9):
            bad.append(f"{where}: ${usd_h:.2f}/h over the budget ${problem.budget_usd_h}/h")
    total = sum(p["usd"] for p in d["periods"])
    if abs(total - d["cost"]["total_usd"]) > 1e-6 * max(total, 1.0):
        bad.append(f"reported cost {d['cost']['total_usd']} != the periods' sum {total}")
    return bad


def _spot_availability(f: dict[str, Any], problem: FleetProblem, d: dict[str, Any]) -> float:
    from kvopt.catalog.payments import payment_book

    book = payment_book(d["inputs"]["price_book"])
    o = book.for_gpu(f["gpu"], f["region"]).get("spot")
    return o.availability if o else 1.0


def _slo(model: Any, rep: Any, w: Any, rate: float, where: str, case: str,
         rel_tol: float) -> list[str]:
    st = model.poisson(rate)
    if st.saturated:
        return [f"{where}: saturated at {rate:.3g} req/s per replica ({case})"]
    out = []
    for name, val, slo in (("TTFT p99", st.ttft_s[3] * 1e3, w.slo.ttft_p99_ms),
                           ("TPOT p99", st.tpot_s[3] * 1e3, w.slo.tpot_p99_ms),
                           ("E2E p99", st.e2e_p99_s * 1e3, w.slo.e2e_p99_ms)):
        if slo is not None and val > slo * (1 + rel_tol):
            out.append(f"{where}: {name} {val:.1f} ms > SLO {slo} ms ({case})")
    kv = st.steady_state_batch * (w.input_dist.mean + w.output_dist.mean / 2) \
        * rep.kv_bytes_per_token
    mem = (rep.weights_bytes + rep.activation_bytes + kv) / GIB + rep.engine.runtime_overhead_gib
    if mem > rep.gpu.memory_gib:
        out.append(f"{where}: {mem:.1f} GiB per GPU exceeds {rep.gpu.memory_gib} GiB ({case})")
    return out
