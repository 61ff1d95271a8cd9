"""Plan files: load with a schema check, render as JSON, YAML, Markdown or CSV, engine
launch configs, Kubernetes manifests (:mod:`kvopt.export.k8s`) or LMCache configs
(:mod:`kvopt.export.offload`), save atomically (format from the extension or given)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import yaml

from kvopt.errors import InputError
from kvopt.fileio import read_json_input, write_atomic, write_json_atomic
from kvopt.fleet.plan import SCHEMA

FORMATS = ("json", "yaml", "markdown", "csv", "vllm", "sglang", "trtllm", "k8s", "lmcache")
ENGINE_FORMATS = ("vllm", "sglang", "trtllm")


def load_plan(path: str | Path) -> dict[str, Any]:
    """A plan JSON written by kvopt, checked against the ``plan`` schema (``kvopt schema
    plan``); other files, schema versions and malformed plans are clear errors."""
    p = Path(path)
    data = read_json_input(p, "plan")
    schema = data.get("schema") if isinstance(data, dict) else None
    if schema != SCHEMA:
        raise InputError("plan", str(p), f"schema {schema!r} is not {SCHEMA!r}",
                         "re-create the plan with this kvopt (kvopt plan/size --output)")
    from kvopt.schemas import validate

    validate("plan", data, source=str(p))
    return dict(data)


def _workload(plan: dict[str, Any], workload: str) -> dict[str, Any]:
    for w in plan["inputs"]["workloads"]:
        if w["name"] == workload:
            return dict(w)
    raise InputError("plan", workload, "fleet entry names an unknown workload")


def _longest(label: str) -> int:
    from kvopt.serving.lengths import fixed, parse_dist

    text, extra = str(label), 0
    if text.endswith(" image tokens") and "+" in text:  # kvopt.build.with_images
        text, images = text.rsplit("+", 1)
        extra = int(images.split()[0])
    return (fixed(int(text)) if text.isdigit() else parse_dist(text)).max + extra


def max_lengths(workload: dict[str, Any]) -> tuple[int, int]:
    """(longest prompt, longest prompt + output) of a plan's workload, in tokens."""
    prompt = _longest(workload["input_len"])
    return prompt, prompt + _longest(workload["output_len"])


def with_offload(plan: dict[str, Any], gib: float | None) -> dict[str, Any]:
    """``plan`` with every fleet entry's ``kv_offload_gib`` set to ``gib`` (None: as is)."""
    if gib is None:
        return plan
    from kvopt.export.offload import check

    gib = check(gib, "--kv-offload-gib")
    return {**plan, "fleet": [{**e, "kv_offload_gib": gib} for e in plan["fleet"]]}


def render(plan: dict[str, Any], fmt: str, *, engine: str | None = None,
           offload_connector: str = "lmcache", lmcache_chunk_size: int = 256,
           **k8s: Any) -> str:
    """``plan`` as ``fmt`` (:data:`FORMATS`). ``engine``: the engine of the k8s manifests
    [default: the plan's, else vllm]; ``offload_connector``: lmcache | native for entries
    with ``kv_offload_gib``; ``k8s``: :func:`kvopt.export.k8s.manifests`' options."""
    if fmt not in FORMATS:
        raise InputError("--format", fmt, f"allowed: {', '.join(FORMATS)}")
    if fmt == "k8s":
        from kvopt.export import k8s as kube

        eng = engine or plan["inputs"].get("space", {}).get("engine") or "vllm"
        if eng not in ENGINE_FORMATS:  # the plan's engine has no server image kvopt knows
            raise InputError("plan engine", eng, f"k8s manifests run {', '.join(ENGINE_FORMATS)}",
                             f"give --engine {'|'.join(ENGINE_FORMATS)} for the pods")
        return kube.render(plan, engine=eng, offload_connector=offload_connector, **k8s)
    if fmt == "lmcache":
        return _lmcache(plan, offload_connector, lmcache_chunk_size)
    if fmt == "json":
        return json.dumps(plan, indent=2) + "\n"
    if fmt == "yaml":
        return str(yaml.safe_dump(plan, sort_keys=False))
    if fmt == "csv":
        buf = io.StringIO()
        cols = ["workload", "model", "gpu", "region", "tp", "weights", "kv_dtype", "engine",
                "max_batch", "replicas", "gpus", "usd_per_hour", "rate_per_replica_rps",
                "goodput_per_replica_rps", "ttft_p99_ms", "tpot_p99_ms",
                "memory_per_gpu_gib", "quality_loss_pct"]
        wr = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
        wr.writeheader()
        for e in plan["fleet"]:
            wr.writerow({**e, **e["predicted"]})
        return buf.getvalue()
    if fmt in ENGINE_FORMATS:
        return _engine_configs(plan, fmt, offload_connector)
    return _markdown(plan)


def _lmcache(plan: dict[str, Any], connector: str, chunk_size: int) -> str:
    from kvopt.export import offload

    out = []
    for e in plan["fleet"]:
        gib = offload.check(e.get("kv_offload_gib") or 0.0)
        if gib <= 0:
            continue
        out.append(f"# {e['workload']}: {e['replicas']} replica(s) of {e['tp']}x {e['gpu']}, "
                   f"{gib:g} GiB CPU KV tier per replica")
        out.append("# vllm serve ... --kv-transfer-config '" + json.dumps(
            offload.transfer_config(gib, connector), separators=(",", ":")) + "'")
        if connector == "lmcache":
            out.append(f"# LMCACHE_CONFIG_FILE={offload.LMCACHE_CONFIG_PATH} (this YAML; "
                       "max_local_cpu_size in GB per TP worker):")
            out.append(offload.lmcache_yaml(gib, tp=int(e["tp"]), chunk_size=chunk_size)
                       .rstrip())
        out.append("---")
    if not out:
        raise InputError("kv_offload_gib", None, "no fleet entry offloads its KV cache",
                         "plan with --kv-offload-gib, or give export --kv-offload-gib")
    return "\n".join(out[:-1]) + "\n"


def plan_engine_args(plan: dict[str, Any], engine: str) -> tuple[dict[str, Any], str]:
    """The engine flags the plan's candidates ran with (``inputs.space.engine_args``) when
    the launch configs are for the plan's own engine, and a note when they are not."""
    space = plan.get("inputs", {}).get("space") or {}
    args = dict(space.get("engine_args") or {})
    planned = space.get("engine") or "vllm"
    if args and planned != engine:
        return {}, (f"the plan's engine flags ({', '.join(f'{k}={v}' for k, v in args.items())})"
                    f" are {planned}'s: not written for {engine}")
    return args, ""


def _engine_configs(plan: dict[str, Any], engine: str, connector: str = "lmcache") -> str:
    from kvopt.export.engines import engine_config

    out = []
    args, skipped = plan_engine_args(plan, engine)
    if skipped:
        out.append(f"# NOTE: {skipped}")
    for e in plan["fleet"]:
        _check_runs(e, engine)
        w = _workload(plan, e["workload"])
        prompt, total = max_lengths(w)
        cfg = engine_config(e, engine=engine, max_model_len=total, max_prompt_len=prompt,
                            offload_connector=connector, engine_args=args)
        out.append(f"# {e['workload']}: {e['replicas']} replica(s) of {e['tp']}x {e['gpu']}")
        sized = e.get("engine")
        if sized and sized != engine:
            out.append(f"# NOTE: this entry was sized with the {sized} engine profile; {engine}'s "
                       "step times and KV budget differ, so its rate per replica may not hold "
                       f"(re-plan with --engine {engine} to size for it)")
        out += [f"# NOTE: {n}" for n in cfg.notes]
        out.append(cfg.shell())
        if cfg.config_yaml:
            name = "vllm --config YAML" if engine == "vllm" else "extra_llm_api_options.yaml"
            out.append(f"# {name}:")
            out += [f"#   {line}" for line in cfg.config_yaml.rstrip().splitlines()]
        out.append("")
    return "\n".join(out)


def _check_runs(e: dict[str, Any], engine: str) -> None:
    """A launch command only for an entry that can run: the model, GPU, TP and precision
    resolve and the weights fit (a hand-edited plan may ask for fp4 on a GPU without it)."""
    from kvopt.errors import KvoptError
    from kvopt.serving.replica import build_replica

    what = f"{e['gpu']} tp{e['tp']} {e['weights']}/{e['kv_dtype']} under {engine}"
    try:
        rep = build_replica(model=e["model"], gpu=e["gpu"], tp=e["tp"], weights=e["weights"],
                            kv_dtype=e["kv_dtype"], engine=engine,
                            ep=int(e.get("ep", 1)), dp=int(e.get("dp", 1)), pp=int(e.get("pp", 1)))
    except KvoptError as exc:
        raise InputError("plan", f"fleet entry {e['workload']!r}", f"{what} cannot run: "
                         f"{exc}", "re-plan it with kvopt plan --output") from None
    if not rep.fits:
        raise InputError("plan", f"fleet entry {e['workload']!r}", f"{what}: the weights "
                         "do not fit", "re-plan it with kvopt plan --output")


def _fmt(v: Any, digits: int = 1) -> str:
    return "-" if v is None else f"{v:,.{digits}f}" if isinstance(v, float) else str(v)


def _markdown(plan: dict[str, Any]) -> str:
    i, t, s = plan["inputs"], plan["totals"], plan["solver"]
    lines = [f"# Fleet plan ({i['objective']})", "", "## Inputs", ""]
    for w in i["workloads"]:
        slo = ", ".join(f"{k.replace('_ms', '')} {v:g} ms" for k, v in w["slo"].items()
                        if v is not None) or "none"
        lines.append(f"- **{w['name']}**: {w['model']} at {w['rate_rps']:g} req/s, input "
                     f"{w['input_len']}, output {w['output_len']}; SLO {slo}; redundancy "
                     f"N+{w['redundancy']}")
    for key, label in (("budget_usd_h", "budget $/h"), ("power_cap_kw", "power cap kW")):
        if i.get(key) is not None:
            lines.append(f"- {label}: {i[key]:g}")
    if i.get("availability"):
        lines.append("- availability: " + ", ".join(f"{g} {n}" for g, n in
                                                    i["availability"].items()))
    lines += ["", "## Fleet", "",
              "| workload | GPU | TP | precision | max batch | replicas | $/h | req/s per "
              "replica | TTFT p99 ms (headroom) | TPOT p99 ms (headroom) | $/M out tok |",
              "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for e in plan["fleet"]:
        h = e["headroom"]

        def hr(x: float | None) -> str:
            return "" if x is None else f" ({x:.0%})"

        lines.append(
            f"| {e['workload']} | {e['gpu']}{' @' + e['region'] if e.get('region') else ''} | "
            f"{e['tp']} | {e['weights']}/{e['kv_dtype']} | {e['max_batch']} | {e['replicas']} "
            f"| {_fmt(e['usd_per_hour'], 2)} | {_fmt(e['rate_per_replica_rps'], 2)} | "
            f"{_fmt(e['predicted']['ttft_p99_ms'])}{hr(h['ttft_p99'])} | "
            f"{_fmt(e['predicted']['tpot_p99_ms'])}{hr(h['tpot_p99'])} | "
            f"{_fmt(e['usd_per_million_output_tokens'], 3)} |")
    lines += ["", f"**Total**: {t['gpus']} GPUs, ${t['usd_per_hour']:.2f}/h, "
              f"{t['power_kw']:.1f} kW", "", "## Memory per GPU", ""]
    for e in plan["fleet"]:
        lines.append(f"- {e['workload']} on {e['gpu']}: {e['memory_per_gpu_gib']:.1f} GiB of "
                     f"{e['gpu_memory_gib']:g} GiB (weights, activations, runtime and the KV "
                     "cache at the steady batch)")
    lines += ["", "## Binding constraints", ""] + [f"- {b}" for b in plan["binding"]]
    if plan.get("slo_marginal_cost"):
        lines += ["", "## Cost of tighter SLOs", ""]
        for m in plan["slo_marginal_cost"]:
            d = m["delta_usd_per_hour"]
            lines.append(f"- {m['workload']} {m['slo']} {m['from']:g} -> {m['to']:g} ms: "
                         + ("infeasible" if d is None else f"{d:+.2f} $/h"))
    lines += ["", "## Solver", "",
              f"{s['solver']}: {s['status']}, objective {s['objective']}, best bound "
              f"{s['best_bound']}, gap {s['gap']}, build {s['build_s'] * 1e3:.0f} ms, solve "
              f"{s['solve_s'] * 1e3:.0f} ms", ""]
    return "\n".join(lines)


def save(plan: dict[str, Any], path: str | Path, fmt: str | None = None, **options: Any
         ) -> None:
    """Write ``plan`` atomically; the format comes from ``fmt`` or the file extension;
    ``options``: :func:`render`'s."""
    p = Path(path)
    ext = {".json": "json", ".yaml": "yaml", ".yml": "yaml", ".md": "markdown",
           ".csv": "csv"}.get(p.suffix.lower())
    kind = fmt or ext
    if kind is None:
        raise InputError("path", str(p), "cannot tell the format from the extension",
                         "use .json, .yaml, .md or .csv, or give the format")
    if kind == "json":
        write_json_atomic(plan, p)
        return
    write_atomic(p, render(plan, kind, **options))  # also engine configs, k8s, lmcache
