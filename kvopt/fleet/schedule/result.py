"""A solved schedule: replicas per period by option (GPU, region) and way to pay, the cost
split by way to pay, and what it saves against peak provisioning on demand and against the
same schedule bought on demand. JSON with a versioned schema (``kvopt.schedule/1``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kvopt._version import __version__
from kvopt.choices import PAYMENT_KINDS
from kvopt.fleet.schedule.problem import ScheduleData
from kvopt.fleet.solve import SolveReport
from kvopt.report import finite

SCHEMA = "kvopt.schedule/1"


@dataclass(frozen=True, kw_only=True)
class Entry:
    """One chosen option: committed replicas and flexible replicas per period, by kind."""

    option: int  # index into ScheduleData.options
    committed: dict[str, int]
    flexible: dict[str, tuple[int, ...]]

    def replicas(self, t: int) -> int:
        return sum(self.committed.values()) + sum(v[t] for v in self.flexible.values())


@dataclass(frozen=True, kw_only=True)
class Schedule:
    data: ScheduleData
    entries: tuple[Entry, ...]
    report: SolveReport
    model_size: dict[str, int] = field(default_factory=dict)
    peak_on_demand_usd: float | None = None
    notes: tuple[str, ...] = ()

    def _n(self, e: Entry) -> int:
        return self.data.options[e.option].option.candidate.tp

    def _price(self, e: Entry, kind: str) -> float:
        p = self.data.options[e.option].pay(kind)
        return p.usd_per_gpu_hour if p else 0.0

    def _od(self, e: Entry) -> float:
        c = self.data.options[e.option].option.candidate
        p = self.data.options[e.option].pay("on_demand")
        return p.usd_per_gpu_hour if p else c.usd_per_hour / c.tp

    def usd_by_kind(self, t: int | None = None) -> dict[str, float]:
        """$ by way to pay, in period t (None: the horizon)."""
        periods = self.data.periods if t is None else (t,)
        out = dict.fromkeys(PAYMENT_KINDS, 0.0)
        for e in self.entries:
            n = self._n(e)
            for s in periods:
                h = self.data.hours[s]
                for k, c in e.committed.items():
                    out[k] += n * c * self._price(e, k) * h
                for k, v in e.flexible.items():
                    out[k] += n * v[s] * self._price(e, k) * h
        return out

    @property
    def total_usd(self) -> float:
        return sum(self.usd_by_kind().values())

    @property
    def upfront_usd(self) -> float:
        total = 0.0
        for e in self.entries:
            for k, c in e.committed.items():
                p = self.data.options[e.option].pay(k)
                total += self._n(e) * c * (p.upfront_usd_per_gpu if p else 0.0)
        return total

    @property
    def all_on_demand_usd(self) -> float:
        """The same replicas in every period, all bought on demand."""
        return sum(self._n(e) * e.replicas(t) * self._od(e) * self.data.hours[t]
                   for e in self.entries for t in self.data.periods)

    def gpus(self, t: int) -> int:
        return sum(self._n(e) * e.replicas(t) for e in self.entries)

    def to_dict(self) -> dict[str, Any]:
        d = self.data
        prof = d.horizon.profile
        wls = d.problem.workloads
        fleet = []
        for e in self.entries:
            o = d.options[e.option]
            c = o.option.candidate
            fleet.append({
                "workload": wls[o.workload].name, "model": wls[o.workload].model,
                "gpu": c.gpu, "region": c.region, "tp": c.tp, "weights": c.weights,
                "kv_dtype": c.kv_dtype, "engine": c.engine, "max_batch": c.max_batch,
                "rate_per_replica_rps": o.option.rate_cap_rps,
                "usd_per_gpu_hour": {p.kind: p.usd_per_gpu_hour for p in o.pays},
                "committed": dict(e.committed),
                "per_period": {k: list(v) for k, v in e.flexible.items()}})
        periods = []
        for t in d.periods:
            by_kind = dict.fromkeys(PAYMENT_KINDS, 0)
            for e in self.entries:
                for k, n in e.committed.items():
                    by_kind[k] += n * self._n(e)
                for k, v in e.flexible.items():
                    by_kind[k] += v[t] * self._n(e)
            usd = self.usd_by_kind(t)
            periods.append({"period": t + 1, "label": prof.labels[t], "hours": prof.hours[t],
                            "rps": {w.name: d.demand[i][t] for i, w in enumerate(wls)},
                            "gpus_by_kind": by_kind, "gpus": self.gpus(t),
                            "usd": sum(usd.values()),
                            "usd_per_hour": sum(usd.values()) / prof.hours[t]})
        total, od_same = self.total_usd, self.all_on_demand_usd
        peak = self.peak_on_demand_usd

        def pct(base: float | None) -> float | None:
            return None if not base else (base - total) / base

        rule = d.horizon.spot_rule
        out: dict[str, Any] = finite({
            "schema": SCHEMA, "kvopt_version": __version__,
            "inputs": {
                "objective": d.problem.objective, "payments": list(d.horizon.payments),
                "spot_rule": {"spares_not_spot": rule.spares_not_spot,
                              "max_share": rule.max_share},
                "budget_usd_h": d.problem.budget_usd_h, "budget_usd": d.horizon.budget_usd,
                "upfront_budget_usd": d.horizon.upfront_budget_usd,
                "power_cap_kw": d.problem.power_cap_kw, "availability": d.problem.inventory,
                "owned_gpus": dict(d.horizon.owned_gpus), "price_book": d.horizon.price_book,
                "allow_mixing": d.problem.allow_mixing, "hours": prof.total_hours,
                "workloads": [{"name": w.name, "model": w.model, "rate_rps": w.rate_rps,
                               "input_len": w.input_dist.label,
                               "output_len": w.output_dist.label,
                               "slo": {"ttft_p99_ms": w.slo.ttft_p99_ms,
                                       "tpot_p99_ms": w.slo.tpot_p99_ms,
                                       "e2e_p99_ms": w.slo.e2e_p99_ms},
                               "redundancy": w.redundancy, "regions": list(w.regions)}
                              for w in wls]},
            "fleet": fleet, "periods": periods,
            "cost": {"total_usd": total, "by_kind_usd": self.usd_by_kind(),
                     "upfront_usd": self.upfront_usd,
                     "usd_per_hour_mean": total / prof.total_hours},
            "savings": {"peak_on_demand_usd": peak,
                        "vs_peak_on_demand_usd": None if peak is None else peak - total,
                        "vs_peak_on_demand_fraction": pct(peak),
                        "all_on_demand_usd": od_same,
                        "vs_all_on_demand_usd": od_same - total,
                        "vs_all_on_demand_fraction": pct(od_same)},
            "solver": {**self.report.to_dict(), **self.model_size},
            "notes": list(self.notes)})
        return out


def extract(d: ScheduleData, m: Any) -> tuple[Entry, ...]:
    """The chosen options and their replicas from a solved model."""
    out = []
    for j in m.J:
        committed = {p: round(m.c[j, p].value or 0) for p in m.kc[j]}
        flexible = {p: tuple(round(m.f[j, p, t].value or 0) for t in m.T) for p in m.kf[j]}
        if (m.y[j].value or 0) > 0.5 and (any(committed.values()) or any(
                any(v) for v in flexible.values())):
            out.append(Entry(option=j, committed={k: v for k, v in committed.items() if v},
                             flexible={k: v for k, v in flexible.items() if any(v)}))
    return tuple(out)
