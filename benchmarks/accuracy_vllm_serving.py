"""Accuracy of kvopt on real open-loop serving runs: vLLM 0.15.1 on H100 under Poisson
stages with shared system prompts (``benchmarks/data/vllm_serving_train.csv``, one row per
experiment x stage x metric; workloads in ``vllm_serving_workloads.json``).

Every row becomes one ``kvopt.api.estimate`` question (two for a whole two-stage run), or
the reason it cannot be asked; kvopt runs as shipped except for the engine flags each run
records. Mapping rules:

* **Load**: stage rows (``stage_index`` 0/1): Poisson arrivals at ``rate_rps`` (divided by
  ``dp`` replicas when ``dp > 1``; blank = 1). Whole-run rows (``stage_index`` -1): a run of
  one stage is the same run as its stage row and counts once; a run of several stages is the
  mixture of their steady states weighted by requests (rate x duration of each stage, from
  the workload file): means (TTFT, ITL, E2E) mix exactly, percentiles do not (*percentile of
  a multi-stage run*).
* **Lengths**: the run's measured mean prompt and output (``measured_input_mean``,
  ``measured_output_mean``) where recorded (one Llama-2-7B run: 591.6 and ~195 tokens, its
  outputs ending before ``max_tokens`` = 247), else fixed prompt ``round(input_mean x 1.045)``
  (system prompt + question; the data README: measured prompts ran 4-5% longer than
  configured, 591.6 vs 566 where recorded) and fixed output ``output_mean`` (``max_tokens``
  with ``ignore_eos``).
* **Prompts and prefix caching**: the runs' client is inference-perf at e8e0aa9 (2025-10-16),
  the commit the study's data-collection pipelines install (tektonc-data-collection
  ``tekton/tasks/install-inference-perf-blis.yaml``, default ``git_commit``; the
  ``blis-campaign`` pipelines give none). Its ``SharedPrefix`` config has the fields
  ``num_groups`` and ``num_prompts_per_group`` (defaults 10 and 10); the workload's
  ``num_unique_system_prompts``, ``num_users_per_system_prompt`` and
  ``enable_multi_turn_chat`` are not among them (their aliases and multi-turn sessions came
  later: inference-perf #311, #257) and pydantic ignores unknown keys. So every run sent
  :data:`PROMPT_POOL` = 100 fixed prompts (a system prompt of ``system_prompt_len`` and a
  question of ``question_len`` random tokens) in one shuffled order over and over
  (``SharedPrefixDataGenerator.get_data``: ``i = (i + 1) % len(self.prompts)``): after the
  first 100 requests each prompt comes back to a vLLM that has its blocks cached. kvopt is
  asked for that: ``prefix_len`` = the prompt's whole 16-token blocks short of its last
  token (vLLM computes at least the last token), hit rate = 1 - 100 / (requests of the
  run), unless the cache cannot keep a prompt's blocks until it comes round again: vLLM
  evicts freed blocks least recently used first, and between two sends of a prompt the other
  99 requests' prompts and outputs pass through the cache, so when 100 requests' blocks
  (``ceil((prompt + output) / 16)`` each) exceed the run's KV blocks (``gpu_kv_blocks``,
  else kvopt's) every prompt is evicted before its turn and none hits (:func:`prefix`).
* **Model**: ``model`` (a Hugging Face id) as in ``accuracy_silicon.py`` (kvopt's resolver,
  then without a quantization tag, then architecture twins); else *model not in catalog*.
* **GPU**: ``hardware`` by :data:`HARDWARE` (H100 -> H100-SXM: the study's 80 GB H100).
* **Engine**: the shipped ``vllm`` profile for that GPU with the run's
  ``max_num_batched_tokens`` and ``max_num_seqs`` as engine flags (``engine_args``);
  ``gpu_mem_util`` is not published (the profile's default); ``cpu_offload`` (vLLM's CPU KV
  offloading) is ignored; ``engine_version`` = the run's ``vllm_version`` where
  overheads are fitted at or below it (``--no-versions``: never).
* **Precision**: ``precision`` FP16/BF16/FP8 -> weights fp16/bf16/fp8; KV ``--kv auto`` =
  vLLM's ``kv_cache_dtype=auto`` (the activation dtype: fp16 for FP16 runs, bf16 otherwise),
  or bf16/fp8 everywhere.
* **Metrics**: ``ttft_mean``, ``ttft_p90``, ``ttft_p99``, ``itl_mean`` (kvopt's mean TPOT),
  ``e2e_mean``, ``e2e_p90``, ``e2e_p99``, all from the estimate.

Run: ``python benchmarks/accuracy_vllm_serving.py [--csv OUT] [--engine E] [--system S]
[--kv auto|bf16|fp8] [--markdown]``. Other scripts reuse :func:`question` and
:func:`predict_row`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

import accuracy_common as ac

DATA = ac.DATA / "vllm_serving_train.csv"
WORKLOADS = ac.DATA / "vllm_serving_workloads.json"
HARDWARE = {"H100": "H100-SXM"}
WEIGHTS = {"FP16": "fp16", "BF16": "bf16", "FP8": "fp8"}
PROMPT_GROWTH = 1.045
# inference-perf e8e0aa9's SharedPrefix defaults: num_groups 10 x num_prompts_per_group 10
# (inference_perf/config.py), the prompts every run cycled through (module docstring)
PROMPT_POOL = 10 * 10
# vLLM's KV block (CacheConfig default 16 tokens on CUDA: models/engines/vllm.yaml block_size)
VLLM_BLOCK = 16
METRICS = ("ttft_mean", "ttft_p90", "ttft_p99", "itl_mean", "e2e_mean", "e2e_p90", "e2e_p99")
MEANS = ("ttft_mean", "itl_mean", "e2e_mean")
ORDER = (ac.MODEL, ac.GPU, ac.PRECISION, ac.HEADS, ac.FIT, ac.DTYPE_GPU, ac.CONTEXT,
         ac.NOT_PREDICTED, ac.STAGE_MIX, ac.KVOPT_ERROR, ac.UNREADABLE)


@cache
def workloads() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(WORKLOADS.read_text(encoding="utf-8"))["workloads"]
    return data


def lengths(row: Mapping[str, str]) -> dict[str, int]:
    """``input_len`` and ``output_len`` of a row: the measured means where recorded, else the
    configured ones (the prompt grown by :data:`PROMPT_GROWTH`)."""
    got_in, got_out = (ac.number(row.get(k)) for k in ("measured_input_mean",
                                                         "measured_output_mean"))
    return {"input_len": round(got_in) if got_in > 0 else round(
                ac.number(row["input_mean"]) * PROMPT_GROWTH),
            "output_len": round(got_out) if got_out > 0 else int(ac.number(row["output_mean"]))}


def prefix(row: Mapping[str, str], q: Mapping[str, Any], requests: float) -> dict[str, Any]:
    """``prefix_len`` and ``prefix_hit_rate`` of a run's requests (see the module docstring):
    the cached whole blocks of its prompt, hit after the first round of the prompt pool
    unless the pool's requests do not fit in the KV cache (then 0)."""
    prompt, output = q["input_len"], q["output_len"]
    blocks = ac.number(row.get("gpu_kv_blocks"))
    if not blocks > 0:
        blocks = _replica(q).kv_capacity_blocks
    per_request = -(-(prompt + output) // VLLM_BLOCK)
    fits = PROMPT_POOL * per_request <= blocks
    return {"prefix_len": (prompt - 1) // VLLM_BLOCK * VLLM_BLOCK,
            "prefix_hit_rate": max(0.0, 1.0 - PROMPT_POOL / requests) if fits else 0.0}


def question(row: Mapping[str, str], kv: str = "auto",
             versions: bool = True) -> list[tuple[float, dict[str, Any]]]:
    """``(weight, kvopt.api.estimate keywords)`` per stage the row covers (one for a stage
    row, one per stage for a whole run); raises :class:`Inexpressible`."""
    model = ac.catalog_model(row["model"])
    if model is None:
        raise ac.Inexpressible(ac.MODEL, row["model"].rsplit("/", 1)[-1])
    gpu = HARDWARE.get(row["hardware"])
    if gpu is None:
        raise ac.Inexpressible(ac.GPU, row["hardware"])
    weights = WEIGHTS.get(row["precision"])
    if weights is None:
        raise ac.Inexpressible(ac.PRECISION, row["precision"])
    w = workloads()[row["workload"]]
    requests = sum(s["rate"] * s["duration"] for s in w["stages"])
    dp = ac.number(row.get("dp"), 1.0)
    base = {"model": model, "gpu": gpu, "tp": int(ac.number(row["tp"])), "weights": weights,
            "kv_dtype": ac.kv_dtype(kv, "vllm", weights, "fp16" if weights == "fp16" else "bf16"),
            "engine": "vllm",
            "engine_args": (
                ("max_num_batched_tokens", int(ac.number(row["max_num_batched_tokens"]))),
                ("max_num_seqs", int(ac.number(row["max_num_seqs"])))),
            **lengths(row)}
    base.update(prefix(row, base, requests))
    rel = ac.fitted_release("vllm", row.get("vllm_version", "")) if versions else None
    if rel:
        base["engine_version"] = rel
    stage = int(ac.number(row["stage_index"]))
    stages = [w["stages"][stage]] if stage >= 0 else w["stages"]
    return [(s["rate"] * s["duration"] / requests if stage < 0 else 1.0,
             {**base, "rps": s["rate"] / dp}) for s in stages]


def _replica(q: Mapping[str, Any]) -> Any:
    """The replica a question runs on (its KV blocks)."""
    from kvopt import build

    return build.replica(model=q["model"], gpu=q["gpu"], tp=q["tp"], weights=q["weights"],
                         kv_dtype=q["kv_dtype"], engine=q["engine"],
                         engine_args=dict(q["engine_args"]))


@cache
def _stage(key: tuple[tuple[str, Any], ...]) -> dict[str, Any]:
    q = dict(key)
    e = ac.estimate(**q)
    lat = e.latency
    rep = _replica(q)
    return {"ttft_mean": lat.ttft_ms, "ttft_p90": lat.ttft_p90_ms, "ttft_p99": lat.ttft_p99_ms,
            "itl_mean": lat.tpot_ms, "e2e_mean": lat.e2e_ms, "e2e_p90": lat.e2e_p90_ms,
            "e2e_p99": lat.e2e_p99_ms,
            "running": e.load.steady_state_batch, "saturated": e.load.saturated,
            "kv_blocks": rep.kv_capacity_blocks}


def predict(stages: Sequence[tuple[float, Mapping[str, Any]]]) -> dict[str, Any]:
    """``pred_<metric>`` for a stage, or the request-weighted means of several stages (their
    percentiles: None); raises :class:`Inexpressible` on a refusal."""
    per = [(wt, _stage(tuple(sorted(q.items())))) for wt, q in stages]
    if len(per) == 1:
        p = per[0][1]
        return {"pred_running": p["running"], "pred_saturated": p["saturated"],
                "pred_kv_blocks": p["kv_blocks"],
                **{f"pred_{m}": p.get(m) for m in METRICS}}
    out: dict[str, Any] = {f"pred_{m}": None for m in METRICS}
    for m in MEANS:
        out[f"pred_{m}"] = sum(wt * p[m] for wt, p in per)
    out.update(pred_saturated=any(p["saturated"] for _, p in per),
               pred_kv_blocks=per[0][1]["kv_blocks"])
    return out


def predict_row(row: Mapping[str, str], kv: str = "auto", versions: bool = True
                ) -> dict[str, Any]:
    """One row's mapping and prediction: ``status`` (``ok`` or ``cannot_express``),
    ``reason``/``detail`` when not ok, the question (``q_*``, the last stage's for a whole
    run), ``pred_*`` for every metric of its run and ``pred``/``measured``/``err`` for the
    row's own metric. Never raises for a row kvopt cannot model."""
    out: dict[str, Any] = {"id": row.get("id", ""), "status": "ok", "reason": "", "detail": "",
                           "metric": row["metric"]}
    try:
        stages = question(row, kv, versions)
        q = dict(stages[-1][1])
        q["engine_args"] = ",".join(f"{k}={v}" for k, v in q["engine_args"])
        out.update({f"q_{k}": v for k, v in q.items()})
        out.update(predict(stages))
        if row["metric"] not in METRICS:
            raise ac.Inexpressible(ac.NOT_PREDICTED, row["metric"])
        if out[f"pred_{row['metric']}"] is None:
            raise ac.Inexpressible(ac.STAGE_MIX, row["metric"])
    except Exception as exc:  # kvopt's reason or a bad cell: recorded, never fatal
        out.update(ac.cannot_express(exc))
    out["measured"] = ac.measured(row.get("actual"))
    out["pred"] = out.get(f"pred_{row['metric']}") if out["status"] == "ok" else None
    out["err"] = ac.relative_error(out["pred"], out["measured"])
    return out


_RUN_ONLY = {"id", "stage_index"}


def unique_rows(rows: Sequence[Mapping[str, str]]) -> list[Mapping[str, str]]:
    """Rows without repeats: a whole-run row (stage -1) identical to a stage row in every
    column but ``id`` and ``stage_index`` (a run of one stage) is dropped."""
    seen = set()
    out = []
    for r in sorted(rows, key=lambda r: ac.measured(r["stage_index"]) < 0):  # stages first
        key = tuple((k, v) for k, v in r.items() if k not in _RUN_ONLY)
        if key in seen:
            continue
        seen.add(key)
        out.append(r)
    return out


def evaluate(rows: Sequence[Mapping[str, str]], kv: str = "auto",
             versions: bool = True) -> list[dict[str, Any]]:
    """Per unique row: its columns, the mapping, the prediction and the error."""
    recs = []
    for row in unique_rows(rows):
        rec: dict[str, Any] = {**row, **predict_row(row, kv, versions)}
        rec["engine"] = f"vllm {row['vllm_version']}"
        rec["scope"] = "whole run" if ac.measured(row["stage_index"]) < 0 else "stage"
        rec[f"err_{row['metric']}"] = rec["err"]
        recs.append(rec)
    return recs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ac.add_common_args(ap, "vllm", "H100")
    args = ap.parse_args(argv)
    start = time.perf_counter()
    rows = [r for r in ac.read_csv(DATA) if (not args.engine or args.engine == "vllm")
            and (not args.system or r["hardware"] == args.system)]
    recs = evaluate(rows, args.kv, not args.no_versions)
    ok = [r for r in recs if r["status"] == "ok"]
    runs = {(r["exp_id"], r["stage_index"]) for r in recs}
    print(f"vllm_serving_train: {len(rows)} rows, {len(recs)} unique ({len(runs)} runs: "
          f"experiment x stage or whole run), {len(ok)} predicted (kv rule {args.kv})\n")
    metrics = [m for m in METRICS if any(r.get(f"err_{m}") is not None for r in ok)]
    print(ac.accuracy_table(ok, ("hardware", "engine", "scope"), metrics, args.markdown,
                            overall=lambda r: r["scope"] == "stage"))
    sat = {(r["exp_id"], r["stage_index"]) for r in ok if r.get("pred_saturated")}
    if sat:
        print(f"\n{len(sat)} runs predicted saturated (infinite error)")
    ac.print_tail(recs, ORDER, lambda r: str(r["detail"]), "unique rows", args, start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
