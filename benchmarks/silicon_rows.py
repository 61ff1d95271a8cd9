"""How a row of aiconfigurator's silicon sample reads (``accuracy_silicon.py`` asks kvopt
with it): its weight dtype, parallel layout (and the rows recorded with the world twice),
clients, collection and engine version, and which rows are one configuration measured again.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Mapping, Sequence

import accuracy_common as ac
import inferencex as ix

DATA = ac.DATA / "silicon_train.csv"
AUTO_GAP = "aic-auto-gap-analysis"  # the collection whose runs used the engines' defaults
# precision / gemm_quant_mode / moe_quant_mode -> kvopt weight dtype
WEIGHTS = {"": "bf16", "bf16": "bf16", "fp8": "fp8", "fp8_block": "fp8", "fp4": "fp4",
           "nvfp4": "fp4", "int4": "int4", "int4_wo": "int4"}
RECORDED_TWICE = 4  # the smallest moe_tp = moe_ep of a row recorded with tp x dp = their product
_MEASURED = ("silicon_ttft_ms", "silicon_tpot_ms")


def _weights(row: Mapping[str, str]) -> str:
    modes = [row.get(k, "").strip().lower() for k in ("precision", "gemm_quant_mode",
                                                      "moe_quant_mode")]
    unknown = [m for m in modes if m not in WEIGHTS]
    if unknown:
        raise ac.Inexpressible(ac.PRECISION, unknown[0])
    kinds = {WEIGHTS[m] for m in modes if m}
    if len(kinds) > 1:
        raise ac.Inexpressible(ac.PRECISION, "/".join(modes))
    return kinds.pop() if kinds else "bf16"


def _checkpoint_weights(model: str) -> str:
    from kvopt.catalog.models import load_model

    return load_model(model).default_weights


def row_weights(row: Mapping[str, str], model: str) -> str:
    """kvopt's weight dtype for a row of catalog ``model`` (:func:`_weights`; a checkpoint
    released in MXFP4, recorded as (nv)fp4, runs its own; all blank: the checkpoint's own)."""
    weights = _weights(row)
    own = _checkpoint_weights(model)
    if own == "mxfp4" and weights == "fp4":  # gpt-oss: its MXFP4 MoE, recorded as (nv)fp4
        return own
    if not any(row.get(k, "").strip() for k in ("precision", "gemm_quant_mode",
                                                "moe_quant_mode")):
        return own  # blank: the checkpoint as released
    return weights


def _size(row: Mapping[str, str], col: str) -> int:
    """A parallelism column (blank, NaN or 0: 1)."""
    value = ac.number(row.get(col), 1.0)
    return int(value) if value >= 1 else 1


def layout(row: Mapping[str, str]) -> tuple[int, int, int, int, int, bool]:
    """``(tp, ep, dp, pp, moe_tp, relabelled)`` of a row (see the module docstring)."""
    tp = int(ac.number(row["tp_size"], 1.0))
    ep, dp, pp = (_size(row, c) for c in ("moe_ep_size", "attention_dp_size", "pp_size"))
    moe_tp = _size(row, "moe_tp_size")
    twice = moe_tp == ep >= RECORDED_TWICE and tp * dp == ep * ep
    if twice:
        if dp > 1:
            dp //= ep
        else:
            tp //= ep
        moe_tp = 1
    return tp, ep, dp, pp, moe_tp, twice


def _source_clients(row: Mapping[str, str]) -> str:
    """The source's ``silicon_concurrency`` ("" when it records none)."""
    found = re.search(r"silicon_concurrency=(\d+)", row.get("silicon_data_source", ""))
    return found.group(1) if found else ""


def concurrency(row: Mapping[str, str]) -> int:
    """Clients of the run: the source's ``silicon_concurrency`` (``batch_size`` is per
    attention-DP rank), else ``batch_size``."""
    if clients := _source_clients(row):
        return int(clients)
    return int(ac.number(row["batch_size"])) * _size(row, "attention_dp_size")


def group(row: Mapping[str, str]) -> str:
    """The parallelism group of a row: tp, ep (EP over a TP group), dp+ep (attention DP),
    pp; ``relabelled`` for rows recorded with the world twice."""
    _, ep, dp, pp, _, twice = layout(row)
    name = "pp" if pp > 1 else "dp+ep" if dp > 1 else "ep" if ep > 1 else "tp"
    return f"{name} (relabelled)" if twice else name


def version(row: Mapping[str, str], model: str = "", weights: str = "") -> str:
    """The engine version a row ran: its ``backend_version``, else (a TensorRT-LLM or vLLM
    sweep) the image InferenceX ran it on (:func:`inferencex.image`)."""
    recorded = row.get("backend_version", "").strip()
    if recorded.lower() not in ("", "nan") or row.get("backend") not in ix.IMAGES:
        return recorded
    if not model:
        model = ac.catalog_model(row["model_path"]) or ""
        weights = row_weights(row, model) if model else _weights(row)
    return ix.image(row, model, weights) if collection(row) == "sweeps" else ""


def release(row: Mapping[str, str], model: str = "", weights: str = "") -> str:
    """The engine release a row ran (:func:`accuracy_common.release` of :func:`version`), else
    the release a dated SGLang nightly build holds (:func:`inferencex.nightly_release`); ""
    when neither is known."""
    rel = ac.release(version(row, model, weights), row.get("silicon_data_source", ""))
    return rel or ix.nightly_release(row)


def recorded_twice_evidence(rows: Sequence[Mapping[str, str]]) -> tuple[int, int]:
    """(relabelled rows whose relabelled configuration appears in ``rows`` with the same
    TTFT and TPOT, ... with other measurements)."""
    def key(r: Mapping[str, str], lay: tuple[int, ...]) -> tuple[object, ...]:
        return (r["backend"], r["system"], r["model_path"], r.get("precision", ""), r["isl"],
                r["osl"], concurrency(r), lay)

    measured: dict[tuple[object, ...], set[tuple[str, str]]] = {}
    for r in rows:
        if r.get("mode") == "agg":
            try:
                tp, ep, dp, pp, mtp, twice = layout(r)
            except (ValueError, KeyError):
                continue
            if not twice:
                measured.setdefault(key(r, (tp, ep, dp, pp, mtp)), set()).add(
                    (r["silicon_ttft_ms"], r["silicon_tpot_ms"]))
    same = other = 0
    for r in rows:
        try:
            tp, ep, dp, pp, mtp, twice = layout(r)
        except (ValueError, KeyError):
            continue
        if r.get("mode") == "agg" and twice:
            found = measured.get(key(r, (tp, ep, dp, pp, mtp)))
            if found is not None:
                if (r["silicon_ttft_ms"], r["silicon_tpot_ms"]) in found:
                    same += 1
                else:
                    other += 1
    return same, other


def _config(row: Mapping[str, str]) -> tuple[str, ...]:
    skip = {"id", "silicon_data_source", *_MEASURED}
    # a speculative-decoding run is never a repeat of one without it
    return (*(v for k, v in row.items() if k not in skip), _source_clients(row),
            ix.spec_decoding(row))


def _run(row: Mapping[str, str]) -> tuple[object, ...]:
    """What makes two rows one run recorded twice: the setup kvopt asks about (the catalog
    model, so a DeepSeek-R1 run relabelled DeepSeek-V3 by the DB dump is one; the layout as
    :func:`layout` reads it, so a row recorded with the world twice is its twin) and both
    measurements to 10 significant digits (the copies differ in the last bit at most)."""
    model = ac.catalog_model(row.get("model_path", "")) or row.get("model_path", "")
    try:
        lay: tuple[object, ...] = layout(row)[:5]
    except (ValueError, KeyError):
        lay = tuple(row.get(c, "") for c in ("tp_size", "pp_size", "attention_dp_size",
                                             "moe_tp_size", "moe_ep_size"))
    cols = ("backend", "system", "precision", "mode", "isl", "osl")
    return (model, _source_clients(row) or row.get("batch_size", ""),
            ix.spec_decoding(row), lay, *(row.get(c, "") for c in cols),
            *(f"{ac.measured(row.get(c, '')):.10g}" for c in _MEASURED))


def same_runs(rows: Sequence[Mapping[str, str]]) -> tuple[list[Mapping[str, str]], int]:
    """``rows`` with each run once (first in file order), and how many rows were dropped.
    InferenceX's DB dump and its daily CSVs hold some runs both, under other ids (and
    model names or version spellings): counted twice they would weigh twice in every median
    and fit."""
    seen: set[tuple[object, ...]] = set()
    kept = []
    for r in rows:
        key = _run(r)
        # rows without both measurements are not matched (the key's last two: "nan")
        if "nan" in key[-len(_MEASURED):] or key not in seen:
            kept.append(r)
            seen.add(key)
    return kept, len(rows) - len(kept)


def unique_rows(rows: Sequence[Mapping[str, str]]) -> list[dict[str, str]]:
    """One row per configuration (first in file order), measured = median of the repeats;
    a run recorded twice (:func:`same_runs`) counts once."""
    groups: dict[tuple[str, ...], list[Mapping[str, str]]] = {}
    for r in same_runs(rows)[0]:
        groups.setdefault(_config(r), []).append(r)
    out = []
    for reps in groups.values():
        first = dict(reps[0])
        for col in _MEASURED:
            vals = [v for r in reps if not math.isnan(v := ac.measured(r[col]))]
            first[col] = repr(statistics.median(vals)) if vals else ""
        first["repeats"] = str(len(reps))
        out.append(first)
    return out


def collection(row: Mapping[str, str]) -> str:
    """Which collection a row comes from: aiconfigurator's gap-analysis runs on the engines'
    defaults, or InferenceX's benchmark sweeps (by its ``silicon_data_source``)."""
    return "gap-analysis" if AUTO_GAP in row.get("silicon_data_source", "") else "sweeps"
