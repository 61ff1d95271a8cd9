"""kvopt's front door for fleets (part of :mod:`kvopt.api`, which re-exports these):
:func:`plan` (the optimal fleet for one workload, a MILP), :func:`compare` (the best plan
per GPU, region or way to pay), :func:`size` (many workloads from a fleet file or a
problem), :func:`schedule` (the cheapest schedule over time), :func:`tco` (own against
rent) and :func:`pareto` (the trade-off front). Parameters and errors as in
:mod:`kvopt.api`; the builders they use are in :mod:`kvopt.build`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from kvopt import build, choices, limits
from kvopt.errors import InfeasiblePlanError, KvoptError

if TYPE_CHECKING:
    from kvopt.fleet.plan import FleetPlan
    from kvopt.fleet.problem import FleetProblem
    from kvopt.fleet.schedule.result import Schedule
    from kvopt.pareto.run import ParetoResult
    from kvopt.serving.lengths import LengthDist


def _precisions(model: str, precisions: Any) -> Any:
    """The default precision list led by the checkpoint's own format (gpt-oss: MXFP4)."""
    from kvopt.catalog.models import with_checkpoint_format

    default = precisions in (choices.PRECISIONS, choices.precision_text(choices.PRECISIONS))
    return with_checkpoint_format(model, choices.PRECISIONS) if default else precisions


def _workload_and_space(kw: dict[str, Any], gpus: Any) -> tuple[Any, Any]:
    w = build.workload(**{k: kw[k] for k in (
        "model", "rps", "input_len", "output_len", "input_len_dist", "output_len_dist",
        "slo_ttft_p99_ms", "slo_tpot_p99_ms", "slo_e2e_p99_ms", "redundancy",
        "max_quality_loss_pct", "images_per_request", "image_size")})
    sp = build.space(gpus=gpus, tp_options=kw["tp_options"],
                     precisions=_precisions(kw["model"], kw["precisions"]),
                     batches=kw["batches"], engine=kw["engine"], prices=kw["prices"],
                     profiles=kw["profiles"], capacity=kw["capacity"],
                     kv_offload_gib=kw.get("kv_offload_gib") or 0.0,
                     ep_options=kw.get("ep_options", (1,)), dp_options=kw.get("dp_options", (1,)),
                     pp_options=kw.get("pp_options", (1,)), parallel=kw.get("parallel"),
                     engine_version=kw.get("engine_version"),
                     engine_args=kw.get("engine_args"))
    return w, sp


_PLAN_DEFAULTS: dict[str, Any] = {
    "input_len": None, "output_len": None, "input_len_dist": None, "output_len_dist": None,
    "slo_ttft_p99_ms": None, "slo_tpot_p99_ms": None, "slo_e2e_p99_ms": None,
    "redundancy": 0, "max_quality_loss_pct": None, "tp_options": choices.TP_OPTIONS,
    "precisions": choices.PRECISIONS, "batches": choices.PLAN_BATCHES,
    "engine": choices.DEFAULT_ENGINE, "engine_version": None, "engine_args": None,
    "prices": None, "profiles": (), "capacity": choices.DEFAULT_CAPACITY}


def plan(*, model: str, rps: float, input_len: int | None = None,
         output_len: int | None = None, input_len_dist: LengthDist | str | None = None,
         output_len_dist: LengthDist | str | None = None,
         slo_ttft_p99_ms: float | None = None, slo_tpot_p99_ms: float | None = None,
         slo_e2e_p99_ms: float | None = None, redundancy: int = 0,
         max_quality_loss_pct: float | None = None, gpus: Any = choices.PLAN_GPUS,
         tp_options: Any = choices.TP_OPTIONS, precisions: Any = choices.PRECISIONS,
         batches: Any = choices.PLAN_BATCHES, engine: str = choices.DEFAULT_ENGINE,
         engine_version: str | None = None, engine_args: Any = None,
         prices: dict[str, float] | None = None, profiles: Sequence[str] = (),
         capacity: str = choices.DEFAULT_CAPACITY, goal: str = "cost",
         ep_options: Any = (1,), dp_options: Any = (1,), pp_options: Any = (1,),
         parallel: Any = None,
         budget_usd_h: float | None = None, power_cap_kw: float | None = None,
         availability: Any = None, allow_mixing: bool = False, solver: str = "highs",
         time_limit_s: float | None = None, gap: float | None = None,
         explain: bool = True, kv_offload_gib: float = 0.0,
         images_per_request: int | None = None,
         image_size: str | Sequence[int] | None = None) -> FleetPlan:
    """The optimal fleet for one workload (GPU, replicas, TP, precision, max batch), solved
    as a MILP to a proven gap; layouts beyond TP cross ``tp_options`` with ``ep_options``,
    ``dp_options`` and ``pp_options``, or are the ``parallel`` list (``"tp8,tp4ep8dp2"``);
    ``explain`` adds the cost of tightening each SLO; ``engine_version``: the engine
    release whose fitted overheads the candidates run with; ``engine_args``: engine flags
    every candidate runs with (``{"batch_wait_timeout_iters": 20}`` or ``KEY=VALUE`` texts;
    not ``max_num_seqs``, the plan's own choice);
    ``kv_offload_gib``: GiB of host memory per replica for a CPU tier of the KV cache,
    written on each fleet entry for the exports (LMCache, vLLM offloading, k8s);
    ``images_per_request`` images of ``image_size`` per request (vision-language models)."""
    kw = dict(locals())
    build.solve_settings(solver=solver, time_limit_s=time_limit_s, gap=gap)
    w, sp = _workload_and_space(kw, gpus)
    return size(build.problem(workloads=(w,), space=sp, availability=availability,
                              budget_usd_h=budget_usd_h, power_cap_kw=power_cap_kw, goal=goal,
                              allow_mixing=allow_mixing),
                solver=solver, time_limit_s=time_limit_s, gap=gap, explain=explain)


def compare(*, gpus: Any = choices.PLAN_GPUS, by: str = "gpu", demand: str | None = None,
            price_book: str | None = None, regions: Sequence[str] = (),
            **kw: Any) -> list[dict[str, Any]]:
    """The best plan per GPU type, side by side (one row per GPU; a GPU with no plan has
    the reason in ``note``); ``by="region"`` or ``"payment"``: the best schedule per region
    (``regions``, else the price book's) or per way to pay, over ``demand`` (a CSV; default
    one period at ``rps``). ``kw``: :func:`plan`'s keywords."""
    if by not in ("gpu", "region", "payment"):
        from kvopt.errors import InputError

        raise InputError("--by", by, "allowed: gpu, region, payment")
    if by != "gpu":
        from kvopt.fleet.horizonfile import with_demand
        from kvopt.fleet.schedule.compare import compare_by

        args = dict(kw, gpus=gpus)
        w, sp = _workload_and_space({**_PLAN_DEFAULTS, **args}, gpus)
        prob = build.problem(workloads=(w,), space=sp, availability=args.get("availability"),
                             budget_usd_h=args.get("budget_usd_h"),
                             power_cap_kw=args.get("power_cap_kw"),
                             goal=args.get("goal", "cost"),
                             allow_mixing=bool(args.get("allow_mixing")))
        prob = with_demand(prob, demand=demand, price_book=price_book)
        return compare_by(prob, by, regions=tuple(regions),
                          solver=str(args.get("solver", "highs")))
    rows: list[dict[str, Any]] = []
    build.solve_settings(solver=kw.get("solver", "highs"), time_limit_s=kw.get("time_limit_s"),
                         gap=kw.get("gap"))
    for g in build.gpu_list(gpus):
        try:
            d = plan(gpus=(g,), **{**kw, "explain": False}).to_dict()
        except KvoptError as exc:
            rows.append({"gpu": g, "note": str(exc)})
            continue
        f = d["fleet"][0] if d["fleet"] else {}
        rows.append({"gpu": g, "replicas": f.get("replicas"), "tp": f.get("tp"),
                     **({k: f[k] for k in ("ep", "dp", "pp") if k in f}),
                     "precision": f"{f.get('weights')}/{f.get('kv_dtype')}",
                     "max_batch": f.get("max_batch"), "gpus": d["totals"]["gpus"],
                     "usd_per_hour": d["totals"]["usd_per_hour"],
                     "ttft_p99_ms": f.get("predicted", {}).get("ttft_p99_ms"),
                     "tpot_p99_ms": f.get("predicted", {}).get("tpot_p99_ms"),
                     "usd_per_million_output_tokens": f.get("usd_per_million_output_tokens"),
                     "note": ""})
    return rows


def size(problem: FleetProblem | str, *, solver: str = "highs",
         time_limit_s: float | None = None, gap: float | None = None, explain: bool = True,
         evaluator: Callable[..., Any] | None = None) -> FleetPlan:
    """The optimal fleet for a :class:`FleetProblem` or a fleet file (fleet.yaml: many
    workloads, regions, caps); ``evaluator`` replaces the candidate evaluation (a study
    passes a cached one)."""
    from kvopt.fleet.plan import plan_fleet

    build.solve_settings(solver=solver, time_limit_s=time_limit_s, gap=gap)
    if isinstance(problem, str):
        from kvopt.fleet.fleetfile import load_fleet_file

        problem = load_fleet_file(problem)
    return plan_fleet(problem, solver=solver, time_limit_s=time_limit_s, mip_gap=gap,
                      explain=explain, evaluator=evaluator)


def schedule(problem: FleetProblem | str, *, demand: str | None = None,
             trace: str | None = None, trace_workload: str | None = None,
             period_hours: float = 1.0, price_book: str | None = None,
             solver: str = "highs", time_limit_s: float | None = None,
             gap: float | None = None, evaluator: Callable[..., Any] | None = None
             ) -> Schedule:
    """The cheapest schedule over time for a fleet file or problem: replicas per period by
    GPU, region and way to pay (on demand, reserved, spot, owned), its cost by way to pay
    and the savings against peak provisioning on demand; demand from the file's
    ``demand:``, a CSV (``demand``: period,hours,rps) or a request trace (``trace``)."""
    from kvopt.fleet.horizonfile import with_demand
    from kvopt.fleet.schedule.run import schedule_fleet

    if isinstance(problem, str):
        from kvopt.fleet.fleetfile import load_fleet_file

        problem = load_fleet_file(problem)
    problem = with_demand(problem, demand=demand, trace=trace, trace_workload=trace_workload,
                          period_hours=period_hours, price_book=price_book)
    return schedule_fleet(problem, solver=solver, time_limit_s=time_limit_s, mip_gap=gap,
                          evaluator=evaluator)


def tco(*, gpu: str, region: str = "", utilization: float = 1.0,
        price_book: str | None = None) -> dict[str, Any]:
    """Own against rent: a GPU's TCO per hour (amortization, power at TDP x PUE x $/kWh,
    hosting) and, per way to rent, the break-even utilization and months."""
    from kvopt.catalog.payments import breakeven

    return breakeven(gpu, region, utilization=utilization, path=price_book)


def pareto(*, model: str, rps: float, input_len: int | None = None,
           output_len: int | None = None, input_len_dist: LengthDist | str | None = None,
           output_len_dist: LengthDist | str | None = None,
           slo_ttft_p99_ms: float | None = None, slo_tpot_p99_ms: float | None = None,
           gpus: Any = choices.PARETO_GPUS, tp_options: Any = choices.TP_OPTIONS,
           ep_options: Any = (1,), dp_options: Any = (1,), pp_options: Any = (1,),
           parallel: Any = None,
           precisions: Any = choices.PRECISIONS, batches: Any = choices.PARETO_BATCHES,
           engine: str = choices.DEFAULT_ENGINE, engine_version: str | None = None,
           engine_args: Any = None,
           prices: dict[str, float] | None = None, profiles: Sequence[str] = (),
           objectives: Any = choices.DEFAULT_PARETO_OBJECTIVES,
           budget_usd_h: float | None = None, max_replicas: int = 16,
           cost_cap_multiple: float | None = 4.0, method: str = "nsga2",
           fleet: str = "single", pop: int = 100, gens: int = 100, seed: int = 0,
           progress: Callable[[int, int], None] | None = None,
           table_builder: Callable[..., Any] | None = None,
           images_per_request: int | None = None,
           image_size: str | Sequence[int] | None = None) -> ParetoResult:
    """The Pareto front (all objectives minimized) over GPU, replicas, TP, precision and
    max batch: NSGA-II checked against the exact front, or the exact front itself. The
    front holds fleets costing at most ``cost_cap_multiple`` x the cheapest feasible one
    (and the budget); its knee is the point a reviewer would pick (the rules are in
    ``ParetoResult.report()``); ``engine_args`` as in :func:`plan`.
    :class:`InfeasiblePlanError` says which constraint empties it."""
    from kvopt.errors import InputError
    from kvopt.pareto.exact import emptying_constraints
    from kvopt.pareto.run import pareto as run

    lim = limits
    pop = lim.POP.check("pop", pop)
    gens = lim.GENS.check("gens", gens)
    seed = lim.SEED.check("seed", seed)
    max_replicas = lim.PARETO_REPLICAS.check("max_replicas", max_replicas)
    if budget_usd_h is not None:
        budget_usd_h = lim.BUDGET_USD_H.check("budget_usd_h", budget_usd_h)
    if method == "nsga2" and pop * gens > lim.MAX_EVALUATIONS:
        raise InputError("pop x gens", pop * gens, f"at most {lim.MAX_EVALUATIONS} "
                         "evaluations (about a minute)", "use fewer generations or a smaller "
                         "population, or --method exact")
    build.choice("method", method, choices.PARETO_METHODS)
    if fleet not in choices.PARETO_FLEETS:
        raise InputError("fleet", fleet, f"one of: {', '.join(choices.PARETO_FLEETS)}")
    objs = build.items(objectives, "--objectives")
    w = build.workload(model=model, rps=rps, input_len=input_len, output_len=output_len,
                       input_len_dist=input_len_dist, output_len_dist=output_len_dist,
                       slo_ttft_p99_ms=slo_ttft_p99_ms, slo_tpot_p99_ms=slo_tpot_p99_ms,
                       images_per_request=images_per_request, image_size=image_size)
    if fleet == "disagg":
        build.refuse_images(w.images, "disaggregated serving", "use --fleet single or mixed")
    sp = build.space(gpus=gpus, tp_options=tp_options, precisions=_precisions(model, precisions),
                     batches=batches, engine=engine, prices=prices, profiles=profiles,
                     ep_options=ep_options, dp_options=dp_options, pp_options=pp_options,
                     parallel=parallel, engine_version=engine_version,
                     engine_args=engine_args)
    res = run(w, sp, objs, method=method, max_replicas=max_replicas,
              budget_usd_h=budget_usd_h, pop=pop, gens=gens, seed=seed, progress=progress,
              mixed=fleet == "mixed", disagg=fleet == "disagg", table_builder=table_builder,
              cost_cap_multiple=None if cost_cap_multiple is None else
              limits.COST_CAP_MULTIPLE.check("cost_cap_multiple", cost_cap_multiple))
    if res.front.F.shape[0] == 0:
        if not res.table.valid.any():
            why = ("no configuration of the space can run the model (memory, precision "
                   "support or TP); add larger GPUs, TP degrees or lower precisions")
        else:
            culprits = emptying_constraints(res.table, w, objs, max_replicas, budget_usd_h)
            why = (f"the constraint(s) {'; '.join(culprits)} exclude every point with up to "
                   f"{max_replicas} replicas; relax them or raise --max-replicas")
        raise InfeasiblePlanError(f"no feasible point: {why}")
    return res
