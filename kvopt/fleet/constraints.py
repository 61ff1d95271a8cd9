"""One builder per constraint family. Each adds a named Pyomo component to the model and
documents its equation; the table in kvopt/fleet/README.md maps equations to
components and builders (a test keeps it complete).

Notation: options j (a candidate configuration at an operating point) of workload w(j);
x_j integer replicas, y_j binary "option chosen"; g_j rate cap per replica (requests/s),
c_j $/h, n_j GPUs and G(j) GPU type, p_j kW, m_j memory per GPU and M_j GPU memory (GiB),
L_w request rate, k_w redundancy, U_j the data-derived replica bound.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import pyomo.core as pyo  # the modeling layer alone: see kvopt.fleet.solve._solver

from kvopt.fleet.problem import FleetProblem, Option


def add_link(m: Any, opts: list[Option], problem: FleetProblem) -> int:
    """link[j]: x_j <= U_j y_j — replicas only on a chosen option (big-M U_j from data)."""
    m.link = pyo.Constraint(m.J, rule=lambda m, j: m.x[j] <= opts[j].upper * m.y[j])
    return len(opts)


def add_demand(m: Any, opts: list[Option], problem: FleetProblem) -> int:
    """demand[w]: sum_j g_j (x_j - k_w y_j) >= L_w — the rate is covered even with k_w
    replicas of each chosen option down (N + k redundancy; k_w = 0 is plain coverage)."""
    by_w = _by_workload(opts)

    def rule(m: Any, w: int) -> Any:
        k = problem.workloads[w].redundancy
        return sum(opts[j].rate_cap_rps * (m.x[j] - k * m.y[j]) for j in by_w[w]) >= (
            problem.workloads[w].rate_rps)

    m.demand = pyo.Constraint(m.W, rule=rule)
    return len(problem.workloads)


def add_redundancy(m: Any, opts: list[Option], problem: FleetProblem) -> int:
    """redundancy[j]: x_j >= (k_w + 1) y_j — a chosen option runs at least k_w + 1 replicas."""
    idx = [j for j in m.J if problem.workloads[opts[j].workload].redundancy > 0]
    m.redundancy = pyo.Constraint(
        idx, rule=lambda m, j: m.x[j] >= (problem.workloads[opts[j].workload].redundancy + 1)
        * m.y[j])
    return len(idx)


def add_choice(m: Any, opts: list[Option], problem: FleetProblem) -> int:
    """one_config[w]: sum_j y_j <= 1 — one configuration per workload (unless mixing)."""
    if problem.allow_mixing:
        return 0
    by_w = _by_workload(opts)
    m.one_config = pyo.Constraint(m.W, rule=lambda m, w: sum(m.y[j] for j in by_w[w]) <= 1)
    return len(problem.workloads)


def add_cover(m: Any, opts: list[Option], problem: FleetProblem) -> int:
    """cover[j]: x_j >= ceil(L_w / g_j + k_w) y_j — with one configuration per workload the
    chosen option alone covers the demand (a valid inequality that makes the LP relaxation
    tight; absent when mixing is allowed)."""
    if problem.allow_mixing:
        return 0

    def need(j: int) -> int:
        w = problem.workloads[opts[j].workload]
        return math.ceil(w.rate_rps / opts[j].rate_cap_rps + w.redundancy - 1e-9)

    m.cover = pyo.Constraint(m.J, rule=lambda m, j: m.x[j] >= need(j) * m.y[j])
    return len(opts)


def add_memory(m: Any, opts: list[Option], problem: FleetProblem) -> int:
    """memory[j]: m_j y_j <= M_j — a chosen option's weights, activations, runtime and
    steady-state KV fit in each GPU's memory."""
    m.memory = pyo.Constraint(m.J, rule=lambda m, j: opts[j].candidate.memory_per_gpu_gib
                              * m.y[j] <= opts[j].candidate.gpu_memory_gib)
    return len(opts)


def add_slo(m: Any, opts: list[Option], problem: FleetProblem) -> int:
    """ttft_slo[j]: T_j y_j <= S^ttft_w, tpot_slo[j]: P_j y_j <= S^tpot_w and
    e2e_slo[j]: E_j y_j <= S^e2e_w — the p99s of a chosen option at its operating point meet
    the workload's SLOs."""
    def idx(attr: str) -> list[int]:
        return [j for j in m.J if getattr(problem.workloads[opts[j].workload].slo, attr)
                is not None]

    t_idx, p_idx, e_idx = idx("ttft_p99_ms"), idx("tpot_p99_ms"), idx("e2e_p99_ms")
    m.ttft_slo = pyo.Constraint(t_idx, rule=lambda m, j: opts[j].ttft_p99_ms * m.y[j]
                                <= problem.workloads[opts[j].workload].slo.ttft_p99_ms)
    m.tpot_slo = pyo.Constraint(p_idx, rule=lambda m, j: opts[j].tpot_p99_ms * m.y[j]
                                <= problem.workloads[opts[j].workload].slo.tpot_p99_ms)
    m.e2e_slo = pyo.Constraint(e_idx, rule=lambda m, j: opts[j].e2e_p99_ms * m.y[j]
                               <= problem.workloads[opts[j].workload].slo.e2e_p99_ms)
    return len(t_idx) + len(p_idx) + len(e_idx)


def add_budget(m: Any, opts: list[Option], problem: FleetProblem) -> int:
    """budget: sum_j c_j x_j <= B."""
    if problem.budget_usd_h is None:
        return 0
    m.budget = pyo.Constraint(expr=sum(opts[j].candidate.usd_per_hour * m.x[j] for j in m.J)
                              <= problem.budget_usd_h)
    return 1


def add_inventory(m: Any, opts: list[Option], problem: FleetProblem) -> int:
    """inventory[G]: sum_{j: G(j) = G} n_j x_j <= A_G — GPUs of each type on hand (per
    region when regions are given: G = ``region:GPU``)."""
    avail = problem.inventory
    by_g: dict[str, list[int]] = defaultdict(list)
    for o in opts:
        if o.candidate.inventory_key in avail:
            by_g[o.candidate.inventory_key].append(o.index)
    gpus = sorted(by_g)
    m.inventory = pyo.Constraint(gpus, rule=lambda m, g: sum(
        opts[j].candidate.gpus * m.x[j] for j in by_g[g]) <= avail[g])
    return len(gpus)


def add_power(m: Any, opts: list[Option], problem: FleetProblem) -> int:
    """power: sum_j p_j x_j <= P — fleet power at TDP (kW)."""
    if problem.power_cap_kw is None:
        return 0
    m.power = pyo.Constraint(expr=sum(opts[j].candidate.power_kw * m.x[j] for j in m.J)
                             <= problem.power_cap_kw)
    return 1


def add_worst_ratio(m: Any, opts: list[Option]) -> int:
    """worst_ratio[j]: z >= r_j y_j — z bounds the worst p99/SLO ratio of the chosen options
    (the 'latency' and 'balanced' objectives minimize it)."""
    m.z = pyo.Var(domain=pyo.NonNegativeReals)
    m.worst_ratio = pyo.Constraint(m.J, rule=lambda m, j: m.z >= opts[j].slo_ratio * m.y[j])
    return len(opts)


def _by_workload(opts: list[Option]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = defaultdict(list)
    for o in opts:
        out[o.workload].append(o.index)
    return out
