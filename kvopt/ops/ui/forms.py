"""The web app's forms: text fields -> the keywords of :mod:`kvopt.api`, checked with the
same one-line errors as the CLI (each names the CLI option, the value, the rule and a fix),
and the CLI command that asks the same question (shown under every result)."""

from __future__ import annotations

import shlex
from typing import Any

from kvopt import choices
from kvopt.errors import InputError

Form = dict[str, Any]
LOAD_MODES = choices.LOAD_MODES


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def _blank(v: Any) -> bool:
    return v is None or (isinstance(v, str) and not v.strip())


def number(form: Form, key: str, kind: type = float, *, required: bool = False,
           minimum: float | None = None, above: float | None = None) -> Any:
    """``form[key]`` as an int or float (None when blank and not required)."""
    v = form.get(key)
    if _blank(v):
        if required:
            raise InputError(_flag(key), None, "is required", f"give {_flag(key)}")
        return None
    what = "an integer" if kind is int else "a number"
    try:
        x = kind(str(v).strip()) if not isinstance(v, int | float) or isinstance(v, bool) \
            else kind(v)
        if kind is int and isinstance(v, float) and not v.is_integer():
            raise ValueError
    except (TypeError, ValueError):
        raise InputError(_flag(key), v, f"not {what}", f"give {what}") from None
    if minimum is not None and x < minimum:
        raise InputError(_flag(key), x, f"must be >= {minimum:g}")
    if above is not None and not x > above:
        raise InputError(_flag(key), x, f"must be > {above:g}")
    return x


def text(form: Form, key: str, default: str | None = None, *,
         allowed: tuple[str, ...] | None = None) -> Any:
    v = form.get(key)
    out = default if _blank(v) else str(v).strip()
    if allowed is not None and out is not None and out not in allowed:
        raise InputError(_flag(key), out, f"one of: {', '.join(allowed)}")
    return out


def flag(form: Form, key: str) -> bool:
    return str(form.get(key, "")).lower() in ("1", "true", "on", "yes")


def _lengths(form: Form) -> dict[str, Any]:
    return {"input_len": number(form, "input_len", int, required=True, minimum=1),
            "output_len": number(form, "output_len", int, required=True, minimum=1)}


def estimate_kw(form: Form) -> dict[str, Any]:
    """:func:`kvopt.api.estimate`'s keywords."""
    from kvopt.catalog.engines import engine_names

    mode = text(form, "load_mode", "batch", allowed=LOAD_MODES)
    kind = float if mode == "rps" else int
    return {"model": required_text(form, "model"), "gpu": required_text(form, "gpu"),
            "tp": number(form, "tp", int, minimum=1) or 1,
            "weights": text(form, "weights", "bf16", allowed=choices.WEIGHT_DTYPES),
            "kv_dtype": text(form, "kv_dtype", None, allowed=choices.KV_DTYPES),
            "engine": text(form, "engine", choices.DEFAULT_ENGINE,
                           allowed=tuple(engine_names())),
            **_lengths(form),
            mode: number({mode: form.get("load_value")}, mode, kind, required=True,
                         above=0),
            "price_usd_h": number(form, "price_usd_h", above=0)}


def required_text(form: Form, key: str) -> str:
    if _blank(form.get(key)):
        raise InputError(_flag(key), None, "is required", f"give {_flag(key)}")
    return str(form[key]).strip()


def _space(form: Form, gpus: tuple[str, ...]) -> dict[str, Any]:
    return {"gpus": text(form, "gpus", ",".join(gpus)),
            "tp_options": text(form, "tp_options", choices.int_text(choices.TP_OPTIONS)),
            "precisions": text(form, "precisions", choices.precision_text(choices.PRECISIONS)),
            "engine": text(form, "engine", choices.DEFAULT_ENGINE)}


def _workload(form: Form) -> dict[str, Any]:
    return {"model": required_text(form, "model"),
            "rps": number(form, "rps", required=True, above=0), **_lengths(form),
            **{k: number(form, k, above=0) for k in ("slo_ttft_p99_ms", "slo_tpot_p99_ms")}}


def plan_kw(form: Form) -> dict[str, Any]:
    """:func:`kvopt.api.plan`'s (and compare's) keywords."""
    from kvopt import build

    return {**_workload(form), **_space(form, choices.PLAN_GPUS),
            "slo_e2e_p99_ms": number(form, "slo_e2e_p99_ms", above=0),
            "batches": text(form, "batches", choices.int_text(choices.PLAN_BATCHES)),
            "budget_usd_h": number(form, "budget_usd_h", above=0),
            "availability": build.availability(text(form, "availability")),
            "redundancy": number(form, "redundancy", int, minimum=0) or 0,
            "goal": text(form, "goal", "cost", allowed=choices.GOALS),
            "capacity": text(form, "capacity", choices.DEFAULT_CAPACITY,
                             allowed=choices.CAPACITY_METHODS),
            "allow_mixing": flag(form, "allow_mixing"),
            "kv_offload_gib": number(form, "kv_offload_gib", minimum=0) or 0.0}


def pareto_kw(form: Form) -> dict[str, Any]:
    """:func:`kvopt.api.pareto`'s keywords."""
    return {**_workload(form), **_space(form, choices.PARETO_GPUS),
            "batches": text(form, "batches", choices.int_text(choices.PARETO_BATCHES)),
            "objectives": text(form, "objectives",
                               ",".join(choices.DEFAULT_PARETO_OBJECTIVES)),
            "budget_usd_h": number(form, "budget_usd_h", above=0),
            "max_replicas": number(form, "max_replicas", int, minimum=1) or 16,
            "pop": number(form, "pop", int, minimum=2) or 40,
            "gens": number(form, "gens", int, minimum=1) or 20,
            "seed": number(form, "seed", int, minimum=0) or 0,
            "method": text(form, "method", "nsga2", allowed=choices.PARETO_METHODS),
            "fleet": text(form, "fleet", "single", allowed=choices.PARETO_FLEETS)}


def regions(value: Any) -> dict[str, Any]:
    """``"us-east:H100-SXM=3.9x16,L40S=1.8; eu-west:H100-SXM=4.2"`` -> a fleet file's
    ``regions`` (per region, $/GPU-hour by GPU and, after ``x``, the most GPUs there)."""
    out: dict[str, Any] = {}
    fix = "e.g. us-east:H100-SXM=3.9x16,L40S=1.8; eu-west:H100-SXM=4.2"
    for part in str(value or "").split(";"):
        if not part.strip():
            continue
        name, sep, offers = part.partition(":")
        if not sep or not name.strip() or not offers.strip():
            raise InputError("--regions", part.strip(), "use REGION:GPU=PRICE[xCOUNT],...", fix)
        prices: dict[str, float] = {}
        caps: dict[str, int] = {}
        for offer in offers.split(","):
            gpu, eq, rest = offer.strip().partition("=")
            price, _, cap = rest.partition("x")
            try:
                prices[gpu.strip()] = float(price)
                if cap:
                    caps[gpu.strip()] = int(cap)
            except ValueError:
                raise InputError("--regions", offer.strip(), "use GPU=PRICE or "
                                 "GPU=PRICExCOUNT", fix) from None
            if not eq or not gpu.strip() or prices[gpu.strip()] <= 0:
                raise InputError("--regions", offer.strip(), "a GPU and a price > 0", fix)
        out[name.strip()] = {"prices_usd_h": prices, **({"availability": caps} if caps else {})}
    return out


def fleet_doc(kw: dict[str, Any], where: dict[str, Any]) -> dict[str, Any]:
    """The fleet file (``kvopt size``) that asks :func:`plan_kw`'s question over
    ``where`` (:func:`regions`)."""
    from kvopt import build

    slo = {k.removeprefix("slo_"): kw[k] for k in ("slo_ttft_p99_ms", "slo_tpot_p99_ms",
                                                   "slo_e2e_p99_ms") if kw.get(k)}
    doc: dict[str, Any] = {
        "objective": kw["goal"], "engine": kw["engine"], "capacity": kw["capacity"],
        "gpus": list(build.gpu_list(kw["gpus"])),
        "tps": list(build.items(kw["tp_options"], "--tp-options", int)),
        "precisions": [f"{w}/{k}" for w, k in build.precision_pairs(kw["precisions"])],
        "batches": list(build.items(kw["batches"], "--batches", int)), "regions": where,
        "workloads": [{"name": kw["model"], "model": kw["model"], "rate_rps": kw["rps"],
                       "input_len": kw["input_len"], "output_len": kw["output_len"],
                       "slo": slo, "redundancy": kw["redundancy"]}]}
    for key in ("budget_usd_h", "allow_mixing"):
        if kw.get(key):
            doc[key] = kw[key]
    if kw.get("availability"):
        doc["availability"] = dict(kw["availability"])
    return doc


# how a keyword is spelled on the command line (None: not an option of that command)
_CLI_SKIP = {"explain", "availability", "allow_mixing", "load_mode"}


def command(name: str, kw: dict[str, Any], *, extra: tuple[str, ...] = ("--json",)) -> str:
    """The CLI command that asks what ``kw`` asks (``kvopt NAME --key value ... --json``)."""
    parts = ["kvopt", name]
    for k, v in kw.items():
        if k in _CLI_SKIP or v is None or v is False or v == "" or (k == "redundancy" and
                                                                   v == 0):
            continue
        if k == "kv_offload_gib" and not v:
            continue
        if v is True:
            parts.append(_flag(k))
            continue
        parts += [_flag(k), f"{v:g}" if isinstance(v, float) else str(v)]
    avail = kw.get("availability")
    if avail:
        parts += ["--availability", ",".join(f"{g}={n}" for g, n in avail)]
    if kw.get("allow_mixing"):
        parts.append("--allow-mixing")
    return " ".join(shlex.quote(p) for p in [*parts, *extra])

