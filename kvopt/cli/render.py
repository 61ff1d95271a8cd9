"""Rendering for the CLI: rich tables for people, plain dicts for ``--json``."""

from __future__ import annotations

import math
from typing import Any

from rich.console import Console
from rich.table import Table

from kvopt.catalog.engines import EngineProfile
from kvopt.catalog.gpus import DTYPES, GpuSpec
from kvopt.catalog.model_spec import ModelSpec
from kvopt.catalog.prices import Price
from kvopt.report import Estimate


def _console() -> Console:
    return Console(highlight=False, soft_wrap=False, width=140)


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def gpu_row(g: GpuSpec, price: Price | None) -> dict[str, Any]:
    return {
        "id": g.id, "name": g.name, "vendor": g.vendor, "architecture": g.architecture,
        "form_factor": g.form_factor, "memory_gib": g.memory_gib,
        "memory_bandwidth_gb_s": g.memory_bandwidth_gb_s,
        "tensor_tflops_dense": dict(g.tensor_tflops), "interconnect": g.interconnect_kind,
        "interconnect_bandwidth_gb_s": g.interconnect_bandwidth_gb_s, "tdp_w": g.tdp_w,
        "usd_per_gpu_hour": price.usd_per_gpu_hour if price else None,
        "price_provider": price.provider if price else None,
    }


def gpu_table(gpus: list[GpuSpec], prices: dict[str, Price]) -> None:
    t = Table(title=f"{len(gpus)} GPUs (dense tensor TFLOP/s; - = no hardware support)")
    for col in ("id", "arch", "form", "mem GiB", "BW GB/s", "bf16", "fp8", "fp4", "link",
                "TDP W", "$/GPU-h"):
        t.add_column(col, justify="left" if col in ("id", "arch", "form", "link") else "right")
    for g in gpus:
        p = prices.get(g.id)
        t.add_row(g.id, g.architecture, g.form_factor, _fmt(g.memory_gib, 0),
                  _fmt(g.memory_bandwidth_gb_s, 0), _fmt(g.tensor_tflops.get("bf16")),
                  _fmt(g.tensor_tflops.get("fp8")), _fmt(g.tensor_tflops.get("fp4")),
                  g.interconnect_kind, _fmt(g.tdp_w, 0), _fmt(p.usd_per_gpu_hour, 2) if p else "-")
    _console().print(t)


def gpu_detail(g: GpuSpec, price: Price | None) -> dict[str, Any]:
    data = gpu_row(g, price)
    data.pop("tensor_tflops_dense")
    for d in DTYPES:
        data[f"tensor_tflops_dense.{d}"] = g.tensor_tflops.get(d)
    data["aliases"] = list(g.aliases)
    if g.laptop:
        data["laptop_profile"] = g.laptop.name
        data["compute_sustained_factor"] = g.laptop.compute_sustained_factor
        data["bandwidth_sustained_factor"] = g.laptop.bandwidth_sustained_factor
    data["sources"] = dict(g.sources)
    if price:
        data["sources"]["usd_per_gpu_hour"] = f"{price.provider} {price.date}: {price.source}"
    data["notes"] = g.notes
    return data


def engine_row(e: EngineProfile) -> dict[str, Any]:
    return {"name": e.name, "version_modeled": e.version_modeled, "block_size": e.block_size,
            "max_num_seqs": e.max_num_seqs, "max_num_batched_tokens": e.max_num_batched_tokens,
            "kv_admission": e.kv_admission, "cuda_graphs": e.cuda_graphs,
            "chunked_prefill": e.chunked_prefill, "step_overhead_ms": e.step_overhead_ms}


def engine_table(rows: list[dict[str, Any]]) -> None:
    t = Table(title="Engine profiles (models/engines/*.yaml; large-GPU overrides not applied)")
    heads = {"name": "engine", "version_modeled": "version", "block_size": "block",
             "max_num_seqs": "max seqs", "max_num_batched_tokens": "token budget",
             "kv_admission": "KV admission", "cuda_graphs": "CUDA graphs",
             "chunked_prefill": "chunked prefill", "step_overhead_ms": "step overhead ms"}
    for col in rows[0] if rows else ():
        t.add_column(heads.get(col, col),
                     justify="left" if col in ("name", "kv_admission") else "right")
    for r in rows:
        t.add_row(*(_cell(v) for v in r.values()))
    _console().print(t)


def engine_detail(e: EngineProfile) -> dict[str, Any]:
    """Every field of an engine profile that shapes memory and step time, and its sources."""
    def lim(v: float) -> float | None:
        return None if math.isinf(v) else v

    return {
        "name": e.name, "version_modeled": e.version_modeled,
        "memory_fraction": e.memory_fraction,
        "memory_fraction_applies_to": e.memory_fraction_applies_to,
        "block_size": e.block_size, "max_num_seqs": e.max_num_seqs,
        "max_num_batched_tokens": e.max_num_batched_tokens, "kv_admission": e.kv_admission,
        "cuda_graphs": e.cuda_graphs, "chunked_prefill": e.chunked_prefill,
        "prefix_caching": e.prefix_caching, "runtime_overhead_gib": e.runtime_overhead_gib,
        "step_overhead_ms": e.step_overhead_ms, "kernel_launch_us": e.kernel_launch_us,
        "request_overhead_ms": e.request_overhead_ms,
        "custom_allreduce": [{"tp_max": t, "max_bytes": lim(b), "max_tokens": lim(k)}
                             for t, b, k in e.allreduce_rules] or "own kernels at every size",
        "fused_elementwise": list(e.fused_elementwise) or "none (each its own launch)",
        "fp8_scaling": e.fp8_scaling, "fp8_weight_only": e.fp8_weight_only,
        "admit_interval_steps": (f"{e.admit_interval_steps} ({e.admit_interval_flag})"
                                 if e.admit_interval_flag else "1 (polls every pass)"),
        "attention_dp_balance": ({"enabled": e.adp_balance, "timeout_iters": e.adp_timeout_iters,
                                  "wait_iters": e.adp_wait_iters, "flag": e.adp_balance_flag}
                                 if e.adp_balance_flag else "none"),
        "batch_wait": ({"timeout_iters": e.batch_wait_timeout_iters,
                        "max_tokens_ratio": e.batch_wait_max_tokens_ratio,
                        "flag": e.batch_wait_flag} if e.batch_wait_flag else "none"),
        "sources": dict(e.sources),
    }


def model_row(m: ModelSpec) -> dict[str, Any]:
    from kvopt.physics.memory import kv_bytes_per_token
    from kvopt.physics.params import param_counts

    pc = param_counts(m)
    return {
        "name": m.name, "model_type": m.model_type, "hf_id": m.hf_id,
        "params": pc.total, "active_params": pc.active, "params_published": m.params_published,
        "layers": m.num_layers, "hidden_size": m.hidden_size, "heads": m.num_heads,
        "kv_heads": m.num_kv_heads, "attention": m.attention_kind,
        "experts": m.moe.num_experts if m.moe else 0, "max_context": m.max_context,
        "kv_bytes_per_token_bf16": kv_bytes_per_token(m, 2.0),
        "fp8_checkpoint_scaling": m.fp8_scaling or None,
        "fp8_checkpoint": m.fp8_checkpoint or (m.hf_id if m.fp8_scaling else None),
        "source": m.source,
    }


def model_table(models: list[ModelSpec]) -> None:
    t = Table(title=f"{len(models)} models")
    for col in ("name", "type", "params B", "active B", "layers", "attn", "experts",
                "context", "KV B/token (bf16)"):
        t.add_column(col, justify="left" if col in ("name", "type", "attn") else "right")
    for m in models:
        r = model_row(m)
        t.add_row(m.name, m.model_type, _fmt(r["params"] / 1e9, 2),
                  _fmt(r["active_params"] / 1e9, 2), str(m.num_layers), r["attention"],
                  str(r["experts"] or "-"), f"{m.max_context:,}",
                  f"{r['kv_bytes_per_token_bf16']:,.0f}")
    _console().print(t)


def model_detail(m: ModelSpec) -> dict[str, Any]:
    from kvopt.catalog.layout import layer_layout, layout_summary
    from kvopt.physics.memory import linear_state_bytes

    data = model_row(m)
    data["head_dim"] = m.head_dim
    data["intermediate_size"] = m.intermediate_size
    data["vocab_size"] = m.vocab_size
    data["tie_embeddings"] = m.tie_embeddings
    data["sliding_windows"] = sorted({w for w in m.sliding_windows if w is not None})
    data["aliases"] = list(m.aliases)
    if m.moe:
        data["experts_per_token"] = m.moe.experts_per_token
    if m.mla:
        data["kv_lora_rank"] = m.mla.kv_lora_rank
        data["qk_rope_head_dim"] = m.mla.qk_rope_head_dim
    data["default_weights"] = m.default_weights
    data["layer_types"] = layout_summary(m)
    if m.linear is not None:
        data["linear_state_bytes_per_seq"] = linear_state_bytes(m)
    if m.vision is not None:
        data["vision_encoder"] = (f"{m.vision.kind}: {m.vision.num_layers} layers of "
                                  f"{m.vision.hidden_size}, patch {m.vision.patch_size}")
    data["layout"] = layer_layout(m)
    return data


def layout_table(rows: list[dict[str, Any]]) -> None:
    t = Table(title="Layer layout")
    for col in ("layers", "count", "attention", "mlp"):
        t.add_column(col, justify="right" if col == "count" else "left", overflow="fold")
    for r in rows:
        t.add_row(r["layers"], str(r["count"]), r["attention"], r["mlp"])
    _console().print(t)


def _cell(value: Any) -> str:
    """A detail value for people: floats to 4 significant digits (the JSON keeps them all)."""
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e6 else f"{value:,.0f}"
    return str(value)


def detail_table(title: str, data: dict[str, Any]) -> None:
    t = Table(title=title, show_header=False)
    t.add_column("field")
    t.add_column("value", overflow="fold")
    for key, value in data.items():
        if isinstance(value, dict):
            for k, v in value.items():
                t.add_row(f"{key}.{k}", _cell(v))
        else:
            t.add_row(key, _cell(value))
    _console().print(t)


def _layout(row: dict[str, Any]) -> str:
    """The TP column of a plan, compare or front row: ``4``, or ``4 ep8 dp2`` beyond TP."""
    rest = " ".join(f"{k}{row[k]}" for k in ("ep", "dp", "pp") if int(row.get(k) or 1) > 1)
    return f"{row['tp']} {rest}".strip()


def _gpus(tp: int, ep: int, dp: int, pp: int) -> str:
    """``4x`` or ``16x (tp4 ep16 dp4)``: the GPUs of one replica."""
    if (ep, dp, pp) == (1, 1, 1):
        return f"{tp}x"
    parts = " ".join(f"{k}{v}" for k, v in (("ep", ep), ("dp", dp), ("pp", pp)) if v > 1)
    return f"{tp * dp * pp}x (tp{tp} {parts})"


def estimate_tables(e: Estimate) -> None:
    c = _console()
    c.print(f"[bold]{e.model}[/bold] on {_gpus(e.tp, e.ep, e.dp, e.pp)} {e.gpu} | weights "
            f"{e.weights}, KV {e.kv_dtype} | engine {e.engine}")
    mem = e.memory
    t = Table(title="Memory per GPU (GiB)")
    for col in ("weights", "KV cache", "activations", "runtime", "total", "GPU", "fits"):
        t.add_column(col, justify="right")
    t.add_row(_fmt(mem.weights_gib, 2), _fmt(mem.kv_cache_gib, 2), _fmt(mem.activations_gib, 2),
              _fmt(mem.overhead_gib, 2), _fmt(mem.total_gib, 2), _fmt(mem.gpu_gib, 0),
              "yes" if mem.fits else "[red]NO[/red]")
    c.print(t)
    c.print(f"KV: {mem.kv_bytes_per_token:,.0f} B/token per GPU; capacity "
            f"{mem.kv_capacity_tokens:,} tokens; max concurrent sequences "
            f"{mem.max_concurrent_seqs:,}")
    if mem.reason:
        c.print(f"[red]does not fit:[/red] {mem.reason}")
    lat, thr, u, cost = e.latency, e.throughput, e.utilization, e.cost
    t = Table(title="Latency and throughput (per replica)")
    for col in ("prefill ms", "TTFT ms", "TPOT ms", "e2e ms", "output tok/s", "total tok/s",
                "req/s"):
        t.add_column(col, justify="right")
    t.add_row(_fmt(lat.prefill_ms), _fmt(lat.ttft_ms), _fmt(lat.tpot_ms, 2), _fmt(lat.e2e_ms, 0),
              _fmt(thr.output_tok_s, 0), _fmt(thr.total_tok_s, 0), _fmt(thr.requests_s, 2))
    c.print(t)
    if e.load.mode != "batch":
        ld = e.load
        t = Table(title=f"Under load: {ld.mode} = {ld.value:g}")
        for col in ("TTFT p50", "TTFT p90", "TTFT p99", "TPOT p50", "TPOT p90", "TPOT p99",
                    "queue ms", "batch", "util", "capacity req/s"):
            t.add_column(col, justify="right")
        t.add_row(_fmt(lat.ttft_p50_ms), _fmt(lat.ttft_p90_ms), _fmt(lat.ttft_p99_ms),
                  _fmt(lat.tpot_p50_ms, 2), _fmt(lat.tpot_p90_ms, 2), _fmt(lat.tpot_p99_ms, 2),
                  _fmt(lat.queue_ms), _fmt(ld.steady_state_batch), f"{ld.utilization:.0%}",
                  _fmt(ld.capacity_rps, 2))
        c.print(t)
        if ld.saturated:
            c.print(f"[red]saturated[/red]: capacity {ld.capacity_rps or 0:.3g} req/s "
                    f"(bound by {ld.limit})")
    t = Table(title="Utilization and cost")
    for col in ("MFU", "MBU", "FLOP/byte", "bottleneck", "$/h", "$/M output tok"):
        t.add_column(col, justify="right")
    t.add_row(f"{u.mfu:.1%}", f"{u.mbu:.1%}", _fmt(u.arithmetic_intensity), u.bottleneck,
              _fmt(cost.usd_per_hour, 2), _fmt(cost.usd_per_million_output_tokens, 3))
    c.print(t)
    for note in e.notes:
        c.print(f"note: {note}")


def curve_table(d: dict[str, Any]) -> None:
    """`kvopt curve`: one row per load."""
    c = _console()
    c.print(f"[bold]{d['model']}[/bold] on {d['tp']}x {d['gpu']} | weights {d['weights']}, "
            f"KV {d['kv_dtype']} | engine {d['engine']} | capacity {d['capacity_rps']:.3g} "
            f"req/s ({d['limit']})")
    t = Table(title="Latency and throughput against load (per replica)")
    for col in ("req/s" if d["mode"] == "rps" else "clients", "util", "batch", "TTFT p50",
                "TTFT p99", "TPOT p50", "TPOT p99", "queue ms", "output tok/s", "$/M out tok"):
        t.add_column(col, justify="right")
    for r in d["points"]:
        value = f"{r['value']:.4g}" if d["mode"] == "rps" else f"{r['value']:.0f}"
        t.add_row(value + (" [red]sat[/red]" if r["saturated"] else ""),
                  f"{r['utilization']:.0%}", _fmt(r["steady_state_batch"]),
                  _fmt(r["ttft_p50_ms"]), _fmt(r["ttft_p99_ms"]), _fmt(r["tpot_p50_ms"], 2),
                  _fmt(r["tpot_p99_ms"], 2), _fmt(r["queue_ms"]), _fmt(r["output_tok_s"], 0),
                  _fmt(r["usd_per_million_output_tokens"], 3))
    c.print(t)
    for note in d["notes"]:
        c.print(f"note: {note}")


def plan_tables(d: dict[str, Any]) -> None:
    c = _console()
    t = Table(title=f"Fleet plan ({d['inputs']['objective']})")
    for col in ("workload", "GPU", "TP", "precision", "max batch", "replicas", "GPUs", "$/h",
                "req/s per replica", "TTFT p99 ms", "TPOT p99 ms", "$/M out tok"):
        t.add_column(col, justify="left" if col in ("workload", "GPU", "precision") else "right")
    for f in d["fleet"]:
        t.add_row(f["workload"], f["gpu"], _layout(f), f"{f['weights']}/{f['kv_dtype']}",
                  str(f["max_batch"]), str(f["replicas"]), str(f["gpus"]),
                  _fmt(f["usd_per_hour"], 2), _fmt(f["rate_per_replica_rps"], 2),
                  _fmt(f["predicted"]["ttft_p99_ms"]), _fmt(f["predicted"]["tpot_p99_ms"], 1),
                  _fmt(f["usd_per_million_output_tokens"], 3))
    c.print(t)
    tot, s = d["totals"], d["solver"]
    c.print(f"total: {tot['gpus']} GPUs, ${tot['usd_per_hour']:.2f}/h, {tot['power_kw']:.1f} kW"
            f" | {s['solver']} {s['status']}, objective {s['objective']}, bound "
            f"{s['best_bound']}, gap {s['gap']}, build {s['build_s'] * 1e3:.0f} ms, solve "
            f"{s['solve_s'] * 1e3:.0f} ms")
    for b in d["binding"]:
        c.print(f"binding: {b}")
    for m in d["slo_marginal_cost"]:
        delta, base = m["delta_usd_per_hour"], m.get("base_usd_per_hour")
        other = base is not None and abs(base - tot["usd_per_hour"]) > 1e-9
        c.print(f"tightening {m['workload']} {m['slo']} {m['from']:g} -> {m['to']:g} ms: "
                + ("infeasible" if delta is None else f"{delta:+.2f} $/h")
                + (f" (cheapest fleet ${base:.2f}/h -> "
                   + ("none" if m["usd_per_hour"] is None else f"${m['usd_per_hour']:.2f}/h")
                   + ")" if other else ""))
    for note in d["notes"]:
        c.print(f"note: {note}")


def compare_table(rows: list[dict[str, Any]]) -> None:
    t = Table(title="Best plan per GPU")
    for col in ("GPU", "replicas", "TP", "precision", "max batch", "GPUs", "$/h",
                "TTFT p99 ms", "TPOT p99 ms", "$/M out tok", "note"):
        t.add_column(col, overflow="fold")
    for r in rows:
        t.add_row(r["gpu"], str(r.get("replicas") or "-"),
                  _layout(r) if r.get("tp") else "-",
                  str(r.get("precision") or "-"), str(r.get("max_batch") or "-"),
                  str(r.get("gpus") or "-"), _fmt(r.get("usd_per_hour"), 2),
                  _fmt(r.get("ttft_p99_ms")), _fmt(r.get("tpot_p99_ms"), 1),
                  _fmt(r.get("usd_per_million_output_tokens"), 3), r.get("note", ""))
    _console().print(t)


def pareto_report(meta: dict[str, Any], data: list[dict[str, Any]],
                  objectives: tuple[str, ...]) -> None:
    c = _console()
    t = Table(title=f"Pareto front: {meta['points']} points ({meta['method']})")
    two = bool(data) and "gpu_b" in data[0]
    label = {"nsga2-disagg": ("prefill pool", "decode pool")}.get(meta["method"],
                                                                  ("group a", "group b"))
    for col in ("GPU", "TP", "precision", "batch", "replicas"):
        t.add_column(col if not two else f"{label[0]}: {col}",
                     justify="left" if col in ("GPU", "precision") else "right")
    if two:
        t.add_column(f"{label[1]}: config", justify="left")
    for col in (*objectives, "knee"):
        t.add_column(col, justify="right")
    for r in sorted(data, key=lambda r: r[objectives[0]]):
        extra = []
        if two:
            extra = [f"{r['replicas_b']}x {r['gpu_b']} tp{r['tp_b']} "
                     f"{r['weights_b']}/{r['kv_dtype_b']} b{r['max_batch_b']}"
                     if r["replicas_b"] else "-"]
        t.add_row(r["gpu"], _layout(r), f"{r['weights']}/{r['kv_dtype']}",
                  str(r["max_batch"]), str(r["replicas"]), *extra,
                  *(_fmt(r[o], 2) for o in objectives), "*" if r["knee"] else "")
    c.print(t)
    hv = meta["hv_ratio_to_exact"]
    c.print(f"table {meta['table_s']:.1f} s ({meta['valid_configs']}/{meta['configs']} configs "
            f"valid); search {meta['search_s']:.2f} s, {meta['evaluations']} evaluations "
            f"({meta['evaluations_per_s']:.0f}/s); hypervolume ratio to the exact front: "
            + ("-" if hv is None else f"{hv:.4f}"))
