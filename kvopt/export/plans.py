"""Plan files: load with a schema check, render as JSON, YAML, Markdown or CSV, save
atomically (format from the extension or given)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import yaml

from kvopt.errors import InputError
from kvopt.fileio import read_json_input, write_atomic
from kvopt.fleet.plan import SCHEMA, write_json_atomic

FORMATS = ("json", "yaml", "markdown", "csv", "vllm", "sglang", "trtllm")


def load_plan(path: str | Path) -> dict[str, Any]:
    """A plan JSON written by kvopt; other files or schema versions are clear errors."""
    p = Path(path)
    data = read_json_input(p, "plan")
    schema = data.get("schema") if isinstance(data, dict) else None
    if schema != SCHEMA:
        raise InputError("plan", str(p), f"schema {schema!r} is not {SCHEMA!r}",
                         "re-create the plan with this kvopt (kvopt plan/size --output)")
    return dict(data)


def _workload(plan: dict[str, Any], workload: str) -> dict[str, Any]:
    for w in plan["inputs"]["workloads"]:
        if w["name"] == workload:
            return dict(w)
    raise InputError("plan", workload, "fleet entry names an unknown workload")


def _longest(label: str) -> int:
    from kvopt.serving.lengths import fixed, parse_dist

    text = str(label)
    return (fixed(int(text)) if text.isdigit() else parse_dist(text)).max


def render(plan: dict[str, Any], fmt: str) -> str:
    if fmt not in FORMATS:
        raise InputError("--format", fmt, f"allowed: {', '.join(FORMATS)}")
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
    if fmt in ("vllm", "sglang", "trtllm"):
        return _engine_configs(plan, fmt)
    return _markdown(plan)


def _engine_configs(plan: dict[str, Any], engine: str) -> str:
    from kvopt.export.engines import engine_config

    out = []
    for e in plan["fleet"]:
        w = _workload(plan, e["workload"])
        prompt = _longest(w["input_len"])
        cfg = engine_config(e, engine=engine, max_model_len=prompt + _longest(w["output_len"]),
                            max_prompt_len=prompt)
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


def save(plan: dict[str, Any], path: str | Path, fmt: str | None = None) -> None:
    """Write ``plan`` atomically; the format comes from ``fmt`` or the file extension."""
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
    write_atomic(p, render(plan, kind))  # also engine launch configs (vllm, sglang, trtllm)
