"""The worker side of a study: a task (plain dict) in, a result row (plain dict) out.

:func:`run_task` is a top-level function of plain dicts, so it pickles to a
``ProcessPoolExecutor`` or a Dask worker alike. It never raises for a failing scenario: an
infeasible problem (or an SLO below what the hardware can do) is recorded as ``infeasible``
and any other error as ``error``, with the message, so one bad scenario never stops a study.

**Per-process candidate cache.** Evaluating a plan's candidates (capacity under the SLOs of
every GPU x TP x precision x batch) dominates a plan. That evaluation depends on the model,
the length distributions, the SLOs, the quality floor and the space (GPUs, TP degrees,
precisions, batch levels, engine, prices) — not on the request rate, the redundancy, the
budget, the inventory or the goal, which only enter the MILP (``kvopt.space.evaluate``
never reads them). So each worker process keeps the last :data:`CACHE_SIZE` evaluations
keyed by exactly the inputs ``evaluate`` reads, and scenarios that differ only in traffic,
budget or goal reuse them. A ``pareto`` scenario's configuration table (capacity and p99
curves over load fractions) depends on the model, the lengths and the space only — not on
the rate, the SLOs or the budget, which are the search's constraints — and is cached the
same way. ``tests/test_study.py`` checks cached and fresh results agree. Spaces with
calibration profiles are never cached.
"""

from __future__ import annotations

import math
import os
import signal
import socket
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from typing import Any

from kvopt._version import __version__
from kvopt.errors import InfeasiblePlanError, InputError, KvoptError

CACHE_SIZE = 16
_CANDIDATES: OrderedDict[tuple[object, ...], Any] = OrderedDict()
_TABLES: OrderedDict[tuple[object, ...], Any] = OrderedDict()
CACHE_STATS: Counter[str] = Counter()  # hits / misses in this process

Solved = tuple[dict[str, Any], dict[str, Any], str, str | None]  # result, outputs, status, msg


def init_worker(parent_pid: int | None = None) -> None:
    """Pool initializer: Ctrl-C is the parent's to handle (it stops the pool itself), and
    the worker ends when its parent does (:func:`exit_with_parent`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    exit_with_parent(parent_pid)


def exit_with_parent(parent_pid: int | None = None, poll_s: float = 0.5) -> None:
    """End this process when the one that started it dies, even by SIGKILL (no orphans):
    on Linux the kernel sends SIGKILL on the parent's death (``PR_SET_PDEATHSIG``); on any
    system a daemon thread checks every ``poll_s`` that the parent is still ours. The
    parent is ``parent_pid``, else this process's parent now."""
    import sys
    import threading

    parent = parent_pid or os.getppid()
    if sys.platform.startswith("linux"):
        import contextlib
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # it died before we armed the watch
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(poll_s)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="kvopt-parent-watch", daemon=True).start()


def evaluation_key(workload: Any, space: Any) -> tuple[object, ...]:
    """What :func:`kvopt.space.evaluate` reads of a workload and a space: scenarios with
    the same key share one candidate evaluation (the rate, budget, goal and the other
    MILP inputs are not in it)."""
    return (workload.name, workload.model, workload.input_dist.label,
            workload.output_dist.label, workload.slo, workload.max_quality_loss_pct,
            space.gpus, space.tps, space.layouts, space.precisions, space.batches,
            space.engine, space.engine_version, space.engine_args, space.prices_usd_h,
            space.regions,
            "screen" if space.capacity == "screen" else "exact")  # confirm: exact here


def plan_evaluation_key(scenario: dict[str, Any]) -> str:
    """:func:`evaluation_key` of a plan scenario, as text (the chunker groups by it)."""
    return repr(evaluation_key(_workload(scenario), _space(scenario)))


def cached_evaluate(workload: Any, space: Any, *, prune: str | None = None,
                    bound: Any = None) -> Any:
    """:func:`kvopt.space.evaluate`, memoized per process on the inputs it reads. The
    ``bound`` is ignored: it depends on the rate, which scenarios sharing an evaluation
    differ in (the options drop what it would have skipped, so plans are the same)."""
    from kvopt.space import CandidateSet, evaluate

    if space.calibrations:
        return evaluate(workload, space, prune=prune)
    key = (*evaluation_key(workload, space), prune if space.capacity == "confirm" else None)
    if key in _CANDIDATES:
        CACHE_STATS["hits"] += 1
        _CANDIDATES.move_to_end(key)
        hit = _CANDIDATES[key]
    else:
        CACHE_STATS["misses"] += 1
        try:
            hit = evaluate(workload, space, prune=prune)
        except KvoptError as exc:  # an SLO below physics: as final as a result
            hit = exc
        _CANDIDATES[key] = hit
        if len(_CANDIDATES) > CACHE_SIZE:
            _CANDIDATES.popitem(last=False)
    if isinstance(hit, KvoptError):
        raise hit
    return CandidateSet(list(hit.candidates), Counter(hit.excluded))


def cached_table(workload: Any, space: Any, role: str) -> Any:
    """:func:`kvopt.pareto.table.build_table`, memoized per process on the inputs it
    reads (model, length distributions, space, role)."""
    from kvopt.pareto.table import build_table

    if space.calibrations:
        return build_table(workload, space, role)
    key = (workload.model, workload.input_dist.label, workload.output_dist.label,
           space.gpus, space.tps, space.layouts, space.precisions, space.batches,
           space.engine, space.engine_version, space.engine_args, space.prices_usd_h, role)
    if key in _TABLES:
        CACHE_STATS["table_hits"] += 1
        _TABLES.move_to_end(key)
        return _TABLES[key]
    CACHE_STATS["table_misses"] += 1
    table = _TABLES[key] = build_table(workload, space, role)
    if len(_TABLES) > CACHE_SIZE:
        _TABLES.popitem(last=False)
    return table


def run_chunk(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """:func:`run_task` on each task of a chunk, in this process (one candidate evaluation
    serves the chunk's plan scenarios that share it)."""
    return [run_task(t) for t in tasks]


def run_task(task: dict[str, Any]) -> dict[str, Any]:
    """Solve one scenario. ``task``: key, solve, scenario, kvopt_version, and optionally
    cache (bool) and keep_result (bool)."""
    t0 = time.perf_counter()
    row: dict[str, Any] = {"key": task["key"], "status": "ok", "error": None, "outputs": {},
                           "result": None, "pid": os.getpid(), "host": socket.gethostname(),
                           "kvopt_version": __version__}
    if task.get("kvopt_version", __version__) != __version__:
        row.update(status="error", error=f"this worker runs kvopt {__version__} but the "
                   f"study was hashed with {task['kvopt_version']}; install one version on "
                   "every worker")
    else:
        try:
            result, outputs, status, msg = SOLVERS[task["solve"]](
                task["scenario"], bool(task.get("cache", True)))
            row.update(status=status, error=msg, outputs=_scalars(outputs),
                       result=result if task.get("keep_result", True) else None)
        except InfeasiblePlanError as exc:
            row.update(status="infeasible", error=str(exc))
        except InputError as exc:  # an SLO below physics is infeasible, not a mistake
            row.update(status="infeasible" if exc.field.endswith("_p99_ms") else "error",
                       error=str(exc))
        except KvoptError as exc:
            row.update(status="error", error=str(exc))
        except Exception as exc:  # a kvopt bug must not stop the study: record it
            row.update(status="error", error=f"{type(exc).__name__}: {exc}")
    row["seconds"] = time.perf_counter() - t0
    return row


def _scalars(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in d.items()}


def _lengths(s: dict[str, Any]) -> dict[str, Any]:
    return {k: s.get(k) for k in ("input_len", "output_len", "input_len_dist",
                                  "output_len_dist")}


def _workload(s: dict[str, Any]) -> Any:
    from kvopt import build
    from kvopt.catalog.models import load_model

    load_model(s["model"])  # an unknown model is an error, not an infeasible plan
    return build.workload(model=s["model"], rps=s["rps"], **_lengths(s),
                          slo_ttft_p99_ms=s.get("slo_ttft_p99_ms"),
                          slo_tpot_p99_ms=s.get("slo_tpot_p99_ms"),
                          slo_e2e_p99_ms=s.get("slo_e2e_p99_ms"),
                          redundancy=s.get("redundancy", 0),
                          max_quality_loss_pct=s.get("max_quality_loss_pct"))


def _space(s: dict[str, Any]) -> Any:
    from kvopt import build, choices

    return build.space(gpus=tuple(s["gpus"]), tp_options=tuple(s["tp_options"]),
                       precisions=tuple(tuple(p.split("/", 1)) for p in s["precisions"]),
                       batches=tuple(s["batches"]), engine=s["engine"], prices=s["prices"],
                       engine_version=s.get("engine_version"),
                       engine_args=s.get("engine_args"),
                       capacity=s.get("capacity", choices.DEFAULT_CAPACITY),  # pareto: none
                       **_layouts(s))


def _layouts(s: dict[str, Any]) -> dict[str, Any]:
    """The space's layout keywords of a plan or pareto scenario."""
    return {"ep_options": tuple(s.get("ep_options") or (1,)),
            "dp_options": tuple(s.get("dp_options") or (1,)),
            "pp_options": tuple(s.get("pp_options") or (1,)), "parallel": s.get("parallel")}


def _fleet(problem: Any, s: dict[str, Any], cache: bool) -> Solved:
    from kvopt import api

    plan = api.size(problem, solver=s["solver"], time_limit_s=s["time_limit_s"], gap=s["gap"],
                    explain=s["explain"], evaluator=cached_evaluate if cache else None)
    d = plan.to_dict()
    fleet, totals, rep = d["fleet"], d["totals"], d["solver"]
    main = max(fleet, key=lambda e: e["usd_per_hour"]) if fleet else {}
    tok_h = sum(e["usd_per_hour"] / e["usd_per_million_output_tokens"] * 1e6 for e in fleet
                if e.get("usd_per_million_output_tokens"))
    out = {"usd_per_hour": totals["usd_per_hour"], "total_gpus": totals["gpus"],
           "power_kw": totals["power_kw"], "replicas": sum(e["replicas"] for e in fleet),
           "gpu": "+".join(sorted({e["gpu"] for e in fleet})), "tp": main.get("tp"),
           "precision": f"{main['weights']}/{main['kv_dtype']}" if main else None,
           "max_batch": main.get("max_batch"),
           "ttft_p99_ms": max((e["predicted"]["ttft_p99_ms"] or 0.0 for e in fleet),
                              default=None),
           "tpot_p99_ms": max((e["predicted"]["tpot_p99_ms"] or 0.0 for e in fleet),
                              default=None),
           "usd_per_million_output_tokens": totals["usd_per_hour"] / tok_h * 1e6
           if tok_h else None,
           "solver_status": rep["status"], "mip_gap": rep["gap"],
           "solve_s": rep["build_s"] + rep["solve_s"]}
    return d, out, "ok", None


def _plan(s: dict[str, Any], cache: bool) -> Solved:
    from kvopt import build

    problem = build.problem(workloads=(_workload(s),), space=_space(s),
                            availability=s["availability"], budget_usd_h=s["budget_usd_h"],
                            power_cap_kw=s["power_cap_kw"], goal=s["goal"],
                            allow_mixing=s["allow_mixing"])
    return _fleet(problem, s, cache)


def _size(s: dict[str, Any], cache: bool) -> Solved:
    from dataclasses import replace

    from kvopt.fleet.fleetfile import load_fleet_file

    p = load_fleet_file(s["fleet_file"])
    space = p.space
    if s["prices"] or s["gpus"]:
        space = replace(space, gpus=tuple(s["gpus"] or space.gpus), prices_usd_h=tuple(
            sorted({**dict(space.prices_usd_h), **s["prices"]}.items())))
    p = replace(p, space=space, objective=s["goal"] or p.objective,
                budget_usd_h=s["budget_usd_h"] or p.budget_usd_h,
                power_cap_kw=s["power_cap_kw"] or p.power_cap_kw,
                workloads=tuple(replace(w, rate_rps=w.rate_rps * s["rate_scale"])
                                for w in p.workloads))
    d, out, status, msg = _fleet(p, s, cache)
    out["workloads"] = len(p.workloads)
    return d, out, status, msg


def _pareto(s: dict[str, Any], cache: bool) -> Solved:
    from kvopt import api
    from kvopt.pareto import export

    res = api.pareto(model=s["model"], rps=s["rps"], **_lengths(s),
                     slo_ttft_p99_ms=s.get("slo_ttft_p99_ms"),
                     slo_tpot_p99_ms=s.get("slo_tpot_p99_ms"),
                     gpus=tuple(s["gpus"]), tp_options=tuple(s["tp_options"]), **_layouts(s),
                     precisions=tuple(tuple(p.split("/", 1)) for p in s["precisions"]),
                     batches=tuple(s["batches"]), engine=s["engine"], prices=s["prices"],
                     engine_version=s.get("engine_version"),
                     engine_args=s.get("engine_args"),
                     objectives=tuple(s["objectives"]), budget_usd_h=s["budget_usd_h"],
                     max_replicas=s["max_replicas"], method=s["method"], fleet=s["fleet"],
                     pop=s["pop"], gens=s["gens"], seed=s["seed"],
                     table_builder=cached_table if cache else None)
    objectives = res.objectives
    rows = [export.clean_row(r) for r in export.rows(res.front, res.table, objectives, res.norm,
                                                     knee_at=res.knee)]
    knee = next((r for r in rows if r["knee"]), rows[0])
    out = {"front_points": len(rows), "min_usd_per_hour": min(r["usd_per_hour"] for r in rows),
           "knee_usd_per_hour": knee["usd_per_hour"], "knee_gpu": knee["gpu"],
           "knee_tp": knee["tp"], "knee_precision": f"{knee['weights']}/{knee['kv_dtype']}",
           "knee_max_batch": knee["max_batch"], "knee_replicas": knee["replicas"],
           "hv_ratio_to_exact": res.hv_ratio, "evaluations": res.front.evaluations}
    return {"report": res.report(), "front": rows}, out, "ok", None


def _estimate(s: dict[str, Any], cache: bool) -> Solved:
    from kvopt import api

    mode = next(m for m in ("batch", "rps", "concurrency") if s[m] is not None)
    e = api.estimate(model=s["model"], gpu=s["gpu"], tp=s["tp"], ep=s.get("ep", 1),
                     dp=s.get("dp", 1), pp=s.get("pp", 1), weights=s["weights"],
                     kv_dtype=s["kv_dtype"], engine=s["engine"],
                     engine_version=s.get("engine_version"),
                     engine_args=s.get("engine_args"), **_lengths(s),
                     **{mode: s[mode]}, price_usd_h=s["price_usd_h"])
    d = e.to_dict()
    lat, thr, cost = d["latency"], d["throughput"], d["cost"]
    out = {"fits": d["memory"]["fits"], "ttft_ms": lat["ttft_ms"], "tpot_ms": lat["tpot_ms"],
           "ttft_p99_ms": lat.get("ttft_p99_ms"), "tpot_p99_ms": lat.get("tpot_p99_ms"),
           "e2e_ms": lat["e2e_ms"], "output_tok_s": thr["output_tok_s"],
           "requests_s": thr["requests_s"], "memory_total_gib": d["memory"]["total_gib"],
           "bottleneck": d["utilization"]["bottleneck"],
           "saturated": (d.get("load") or {}).get("saturated"),
           "usd_per_hour": cost["usd_per_hour"],
           "usd_per_million_output_tokens": cost["usd_per_million_output_tokens"]}
    return d, out, "ok", None


def _capacity(s: dict[str, Any], cache: bool) -> Solved:
    from kvopt import api

    cap = api.capacity(model=s["model"], gpu=s["gpu"], tp=s["tp"], ep=s.get("ep", 1),
                       dp=s.get("dp", 1), pp=s.get("pp", 1), weights=s["weights"],
                       kv_dtype=s["kv_dtype"], engine=s["engine"],
                       engine_version=s.get("engine_version"),
                       engine_args=s.get("engine_args"), **_lengths(s),
                       slo_ttft_p99_ms=s["slo_ttft_p99_ms"], slo_tpot_p99_ms=s["slo_tpot_p99_ms"],
                       slo_e2e_p99_ms=s["slo_e2e_p99_ms"], price_usd_h=s["price_usd_h"])
    res, d = cap.result, cap.to_dict()
    out = {k: d[k] for k in ("goodput_rps", "saturation_rps", "steady_state_batch",
                             "ttft_p99_ms", "tpot_p99_ms", "e2e_p99_ms", "output_tok_s",
                             "binding", "feasible", "usd_per_hour")}
    if not res.feasible:
        return d, out, "infeasible", f"no rate meets the SLO on this replica ({res.binding})"
    return d, out, "ok", None


SOLVERS: dict[str, Callable[[dict[str, Any], bool], Solved]] = {
    "plan": _plan, "size": _size, "pareto": _pareto, "estimate": _estimate,
    "capacity": _capacity}
