"""Accuracy of kvopt on real serving runs at a fixed concurrency: aiconfigurator's silicon
sample (train half, ``benchmarks/data/silicon_train.csv``; vLLM, SGLang and TensorRT-LLM on
H100/H200/B200/B300/GB200/GB300).

Every row becomes one ``kvopt.api.estimate`` question, or the reason it cannot be asked; kvopt
runs as shipped (catalog and engine profiles, no per-row tuning). Mapping rules:

* **Collections**: the rows of ``silicon_data_source`` ``aic-auto-gap-analysis`` are
  aiconfigurator's own gap-analysis runs (*gap-analysis*); the others (``source_file=...``,
  ``db-dump ... config_id=...``) are SemiAnalysis InferenceX sweeps (*sweeps*:
  aiconfigurator 0.12.0 ships an adapter for InferenceX's DB records keyed by
  ``config_id``, ``aiconfigurator/sdk/config_adapter/inferencex.py``; their model names
  (DeepSeek-R1), the 1k/1k, 1k/8k and 8k/1k grids, the concurrencies and the images match
  InferenceX's ``nvidia-master.yaml``).
* **Load**: a benchmark run of ``batch_size`` clients (``concurrency=batch_size``); one
  replica of ``tp_size`` GPUs takes all the clients. **Lengths** (``--lengths auto``): the
  gap-analysis runs send ``input_len=isl`` and ``output_len=osl`` tokens (``ignore_eos``,
  min = max tokens = OSL); the sweeps draw both uniform on the integers ``[int(0.8 L), L]``
  (InferenceX runs sa-bench's random dataset, ``benchmark_serving.py
  sample_random_requests``: ``np.random.randint(int(L * range_ratio), L + 1)``, with
  ``RANDOM_RANGE_RATIO: 0.8`` in ``.github/workflows/benchmark-tmpl.yml``);
  ``--lengths fixed``: isl/osl everywhere. Each client
  sends ``--rounds`` requests (default 10), all starting together: NVIDIA's Dynamo
  benchmark recipes run ``aiperf profile --concurrency C --request-count $((10*C))
  --warmup-request-count C`` (ai-dynamo/dynamo recipes, e.g. the Qwen3-235B-A22B-FP8 vLLM
  recipe's perf.yaml); aiconfigurator 0.12.0's ``generator/sflow.py`` uses
  ``MULTI_ROUND`` (default 20) rounds with one warmup round. ``--rounds 0``: the steady
  state.
* **Deployment** (``--deployment auto``, default): the gap-analysis runs (aiconfigurator's own
  eval of the deployments its generator wrote) keep the engines' defaults but the token
  budget of its TensorRT-LLM and vLLM workers, ``max_num_batched_tokens = C + isl + 1500``
  (:data:`EVAL_BUDGET_ENGINES`; the generator's ``max_batch_size + isl + 1500`` with the clients for
  the batch size it picked, which the rows do not record; SGLang's keep the profile's, see
  benchmarks/README); the sweeps get their InferenceX launch script's flags where
  :mod:`inferencex` has them (token budgets, running caps, TensorRT-LLM's batch waiting,
  SGLang's prefill-first batches and the KV dtype: :func:`inferencex.trt_args`,
  :func:`inferencex.sglang_args`, :func:`inferencex.vllm_args`), else the flags
  aiconfigurator 0.12.0's benchmark generator sets
  (``aiconfigurator/generator/rule_plugin/benchmark/*.rule``): vLLM
  ``max_num_batched_tokens = C + isl + 1500`` and ``max_num_seqs = C``; TensorRT-LLM
  ``max_num_tokens = C + isl + 1500`` rounded up to a multiple of 32 tokens and
  ``max_batch_size = C``; SGLang ``--enable-mixed-chunk`` (decodes ride with prefill
  batches: ``prefill_policy=mixed``), ``max_prefill_tokens = isl + 1500`` (the step budget
  is the smaller of it and the profile's chunked-prefill size) and ``max_batch_size = C``.
  ``--deployment aic``: aiconfigurator's flags on every row; ``defaults``: the engines' own
  defaults on every row. On top, the sweeps' SGLang runs poll for new requests as their
  launch script set (``--scheduler-recv-interval``: :data:`inferencex.RECV`, kvopt's
  ``admit_interval_steps``), and their TensorRT-LLM runs with attention DP balance the
  ranks' prompts as theirs did (``attention_dp_config``: :data:`inferencex.ADP`, kvopt's
  ``adp_balance``, ``adp_timeout_iters``, ``adp_wait_iters``).
* **Model**: ``model_path`` (a Hugging Face id) through kvopt's resolver (ids, aliases; the
  organisation and ``-Instruct`` dropped), then the name without a quantization tag
  (``-FP8``, ``-NVFP4``, ...: ``nvidia/Llama-3.1-8B-Instruct-FP8`` -> Llama-3.1-8B), then the
  architecture twins of ``accuracy_common.ARCHITECTURE_TWINS`` (DeepSeek-V3.1 has
  DeepSeek-V3's config; DeepSeek-R1 is a catalog alias of DeepSeek-V3). Otherwise: *model not
  in catalog*.
* **GPU**: ``system`` by :data:`SYSTEMS` (a system whose card the catalog lacks, e.g.
  ``gb300`` before its card: *GPU not in catalog*).
* **Engine**: ``backend`` -> the shipped profile of the same name (vllm, sglang, trtllm),
  whatever the ``backend_version`` (each row's CSV output carries the version the profile
  models next to the measured one; a TensorRT-LLM or vLLM sweep that records none ran the
  image InferenceX's config named at its date, :data:`inferencex.IMAGES`); asked with
  ``engine_version`` = the row's release (:func:`silicon_rows.release`; an SGLang nightly
  built on a recorded day, ``nightly-dev-20260216-d3bae71e``: the newest release InferenceX
  had named before that day, :func:`inferencex.nightly_release`) where
  ``models/engine_overheads.yaml`` has overheads fitted at or below it
  (:func:`accuracy_common.fitted_release`; ``--no-versions``: never).
* **Weights**: ``precision`` (blank = the checkpoint's bf16; ``fp8`` with ``fp8`` or
  ``fp8_block`` scaling -> fp8; ``fp4``/``nvfp4`` -> fp4; ``int4``/``int4_wo`` -> int4,
  weight-only), checked against ``gemm_quant_mode`` and ``moe_quant_mode``: a GEMM or MoE
  mode of another family is *weight precision kvopt has no dtype for*. A checkpoint released
  in MXFP4 (gpt-oss, whose MoE aiconfigurator records as ``nvfp4``) runs its own mxfp4; all
  three blank: the checkpoint's own format (its quantization_config, else bf16).
* **KV cache dtype** (not recorded): ``--kv auto`` (default) = a sweep's launch script's where
  :mod:`inferencex` knows it, else fp8 for TensorRT-LLM running an fp8/fp4 checkpoint, bf16
  otherwise; ``--kv bf16``/``--kv fp8`` everywhere.
* **Parallelism** (:func:`layout`): ``tp_size`` (attention TP), ``attention_dp_size``,
  ``moe_ep_size`` and ``pp_size`` (blank or 0 = 1) become kvopt's ``tp``, ``dp``, ``ep``,
  ``pp``; kvopt's experts are sliced ``moe_tp = tp x dp / ep`` ways, so a row whose
  ``moe_tp_size`` is not that cannot be asked (aiconfigurator's own rule, ``tp x
  attention_dp = moe_tp x moe_ep``, holds for it in no other way). **Rows recorded with the
  world twice** (:data:`RECORDED_TWICE`): rows with ``moe_tp_size = moe_ep_size = e >= 4``
  and ``tp x attention_dp = e^2`` (``tp16 mtp4 ep4``, ``tp64 mtp8 ep8``, ``dp64 mtp8 ep8``:
  16 or 64 GPUs of attention TP or DP at concurrency 4) carry exactly the measurements of
  rows labelled ``tp e, ep e`` (or ``dp e, ep e``) with ``moe_tp`` 1 wherever both exist in
  the file (``python benchmarks/accuracy_silicon.py`` prints the count), i.e. the same runs
  with ``tp``/``dp`` recorded as ``moe_tp x moe_ep``; they are asked as ``e`` GPUs
  (``tp``/``dp`` divided by ``e``, ``moe_tp`` 1) and reported in their own group
  (``relabelled``). The concurrency of a DP row is the source's ``silicon_concurrency``
  (``batch_size`` is per attention-DP rank). ``mode=disagg`` cannot be asked. A row gets the
  first reason in the order of :data:`ORDER`: disaggregation, model, speculative decoding
  (runs of InferenceX's MTP configs, :data:`inferencex.SPEC_RUNS`), MoE TP, GPU, engine,
  weights, then kvopt's own refusals (TP that does not divide the heads, weights that do
  not fit, a dtype the GPU lacks, a layout the engine cannot run).
* **Duplicates**: rows with identical configurations (every column but ``id``,
  ``silicon_data_source`` and the measurements; the concurrency of disaggregated rows from
  the source; a speculative-decoding run never repeats one without it) count once, measured
  = the median of the repeats (``repeats`` in the CSV). A run recorded twice (InferenceX's
  DB dump and its daily CSVs hold some runs both, under other ids, model names, version
  spellings or the world recorded twice: the same setup for kvopt's catalog model and the
  layout as read above, and both measurements to 10 significant digits) is one run, not a
  repeat (``silicon_rows.same_runs``).

Compared: TTFT mean (``silicon_ttft_ms``) and TPOT mean (``silicon_tpot_ms``) against
kvopt's mean TTFT and TPOT. A saturated prediction counts with an infinite error.

Run: ``python benchmarks/accuracy_silicon.py [--csv OUT] [--engine E] [--system S]
[--kv auto|bf16|fp8] [--markdown]``. Other scripts reuse :func:`question` and
:func:`predict_row`.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import accuracy_common as ac
import inferencex as ix
from silicon_rows import (  # noqa: F401 (the row readers other scripts and tests use)
    AUTO_GAP,
    DATA,
    RECORDED_TWICE,
    WEIGHTS,
    collection,
    concurrency,
    group,
    layout,
    recorded_twice_evidence,
    release,
    row_weights,
    same_runs,
    unique_rows,
    version,
)

SYSTEMS = {"h100_sxm": "H100-SXM", "h200_sxm": "H200", "b200_sxm": "B200", "b300_sxm": "B300",
           "gb200": "GB200", "gb300": "GB300"}  # a system whose card is absent: GPU reason
ENGINES = {"vllm": "vllm", "sglang": "sglang", "trtllm": "trtllm"}
# The gap-analysis runs' token budget: aiconfigurator's generator deploys an aggregated
# TensorRT-LLM or vLLM worker with max_num_tokens = max_batch_size + ISL + 1500
# (generator/backends/trtllm.py from 84ee71ebc, 2025-09-30, and cli/backends/trtllm.py before
# it; rule_plugin/{trtllm,vllm}.rule "agg max_num_tokens = max_batch_size + SlaConfig.isl +
# 1500" from 95ddf241a, 2025-12-04). The batch size it picked is not recorded: the clients
# stand for it (the budget moves by a few percent).
EVAL_BUDGET_ENGINES = ("trtllm", "vllm")
# ISL + 1500: the prompt plus headroom in every budget aiconfigurator's generator writes
# (these deployments and its 0.12.0 benchmark rules, :func:`aic_engine_args`)
GENERATOR_EXTRA_TOKENS = 1500
METRICS = {"ttft_mean": ("pred_ttft_ms", "silicon_ttft_ms"),
           "tpot_mean": ("pred_tpot_ms", "silicon_tpot_ms")}
ORDER = (ac.DISAGG, ac.MODEL, ac.SPEC, ac.MOE_TP, ac.GPU, ac.ENGINE, ac.PRECISION, ac.HEADS,
         ac.FIT, ac.DTYPE_GPU, ac.CONTEXT, ac.LAYOUT, ac.KVOPT_ERROR, ac.UNREADABLE)


def question(row: Mapping[str, str], kv: str = "auto", rounds: int = 10,
             deployment: str = "auto", versions: bool = True,
             lengths: str = "auto") -> dict[str, Any]:
    """The ``kvopt.api.estimate`` keywords for one row; raises :class:`Inexpressible`.
    ``versions``: ask for the row's engine release where overheads are fitted for it;
    ``lengths``: ``auto`` (the sweeps' lengths as their benchmark drew them) or ``fixed``."""
    if row["mode"] != "agg":
        raise ac.Inexpressible(ac.DISAGG, row["mode"])
    model = ac.catalog_model(row["model_path"])
    if model is None:
        raise ac.Inexpressible(ac.MODEL, row["model_path"].rsplit("/", 1)[-1])
    spec = ix.spec_decoding(row)
    if spec:
        raise ac.Inexpressible(ac.SPEC, spec)
    tp, ep, dp, pp, moe_tp, _ = layout(row)
    if ac.is_moe(model) and moe_tp * ep != tp * dp:
        raise ac.Inexpressible(ac.MOE_TP, f"moe_tp_size={moe_tp} x moe_ep_size={ep} != "
                               f"tp_size={tp} x attention_dp_size={dp}")
    gpu = SYSTEMS.get(row["system"])
    if gpu is None or not ac.has_gpu(gpu):
        raise ac.Inexpressible(ac.GPU, row["system"])
    engine = ENGINES.get(row["backend"])
    if engine is None:
        raise ac.Inexpressible(ac.ENGINE, row["backend"])
    weights = row_weights(row, model)
    isl = int(ac.number(row["isl"]))
    conc = concurrency(row)
    per_rank = -(-conc // dp)  # each attention-DP rank's clients (its max batch)
    q = {"model": model, "gpu": gpu, "tp": tp, "weights": weights,
         "kv_dtype": ac.kv_dtype(kv, engine, weights), "engine": engine,
         "input_len": isl, "output_len": int(ac.number(row["osl"])), "concurrency": conc}
    if (ep, dp, pp) != (1, 1, 1):
        q.update(ep=ep, dp=dp, pp=pp)
    sweep = collection(row) == "sweeps"
    osl = int(ac.number(row["osl"]))
    if lengths == "auto" and sweep:  # sa-bench's random lengths
        q.pop("output_len")
        q.pop("input_len")
        q["input_len_dist"] = f"uniform:low={int(isl * ix.RANGE_RATIO)},high={isl}"
        q["output_len_dist"] = f"uniform:low={int(osl * ix.RANGE_RATIO)},high={osl}"
    if rounds:
        q["rounds"] = rounds
    script = launch_script(row, engine, model, weights, conc=conc, isl=isl, osl=osl, tp=tp,
                           dp=dp) if sweep and deployment == "auto" else None
    if script:  # the sweep's own launch script, where kvopt knows it
        q["engine_args"] = script[0]
        if kv == "auto":
            q["kv_dtype"] = script[1]
    elif deployment == "aic" or (deployment == "auto" and sweep):
        q["engine_args"] = aic_engine_args(engine, gpu, isl, per_rank)
    elif deployment == "auto" and engine in EVAL_BUDGET_ENGINES:
        q["engine_args"] = (("max_num_batched_tokens", per_rank + isl + GENERATOR_EXTRA_TOKENS),)
    polls = ix.recv_interval(row["system"], model, weights, conc) if sweep else 1
    if engine == "sglang" and polls > 1:
        q["engine_args"] = (*q.get("engine_args", ()), ("admit_interval_steps", polls))
    if engine == "trtllm" and dp > 1 and sweep:
        q["engine_args"] = (*q.get("engine_args", ()), *ix.ADP.get(model, ix.ADP["DeepSeek-V3"]))
    rel = ac.fitted_release(engine, release(row, model, weights)) if versions else None
    if rel:
        q["engine_version"] = rel
    return q


def launch_script(row: Mapping[str, str], engine: str, model: str, weights: str, *,
                  conc: int, isl: int, osl: int, tp: int, dp: int
                  ) -> tuple[tuple[tuple[str, Any], ...], str] | None:
    """A sweep's InferenceX launch flags and KV dtype (:mod:`inferencex`; None: unknown)."""
    if engine == "trtllm":
        return ix.trt_args(row, model, weights, conc=conc, isl=isl, osl=osl, tp=tp, dp=dp)
    if engine == "sglang":
        return ix.sglang_args(row, model, weights, conc=conc, isl=isl, osl=osl, tp=tp)
    if engine == "vllm" and dp == 1:
        return ix.vllm_args(row, model, weights, conc=conc, isl=isl)
    return None


def aic_engine_args(engine: str, gpu: str, isl: int, conc: int) -> tuple[tuple[str, Any], ...]:
    """The engine flags of aiconfigurator 0.12.0's benchmark deployments (see the module
    docstring), as ``engine_args`` pairs."""
    if engine == "sglang":
        from kvopt.catalog.engines import load_engine
        from kvopt.catalog.gpus import load_gpu

        chunk = load_engine("sglang", load_gpu(gpu)).max_num_batched_tokens
        return (("max_num_batched_tokens", min(chunk, isl + GENERATOR_EXTRA_TOKENS)),
                ("max_num_seqs", conc),
                ("prefill_policy", "mixed"))
    tokens = conc + isl + GENERATOR_EXTRA_TOKENS
    if engine == "trtllm":
        tokens = -(-tokens // 32) * 32
    return (("max_num_batched_tokens", tokens), ("max_num_seqs", conc))


def predict(q: Mapping[str, Any]) -> dict[str, Any]:
    """kvopt's answer to a question (cached); raises :class:`Inexpressible` on a refusal."""
    e = ac.estimate(**q)
    lat, load, mem = e.latency, e.load, e.memory
    return {"pred_ttft_ms": lat.ttft_ms, "pred_tpot_ms": lat.tpot_ms, "pred_e2e_ms": lat.e2e_ms,
            "pred_prefill_ms": lat.prefill_ms, "pred_decode_step_ms": lat.decode_step_ms,
            "pred_running": load.steady_state_batch, "pred_saturated": load.saturated,
            "pred_limit": load.limit, "pred_max_seqs": mem.max_concurrent_seqs}


def predict_row(row: Mapping[str, str], kv: str = "auto", rounds: int = 10,
                deployment: str = "auto", versions: bool = True,
                lengths: str = "auto") -> dict[str, Any]:
    """One row's mapping and prediction: ``status`` (``ok`` or ``cannot_express``),
    ``reason``/``detail`` when not ok, the question (``q_*``) and ``pred_*`` figures.
    Never raises for a row kvopt cannot model."""
    from kvopt.catalog.engines import load_engine

    out: dict[str, Any] = {"id": row.get("id", ""), "status": "ok", "reason": "", "detail": ""}
    try:
        q = question(row, kv, rounds, deployment, versions, lengths)
        out.update({f"q_{k}": v for k, v in q.items()})
        out["engine_version_modeled"] = load_engine(q["engine"]).version_modeled
        out.update(predict(q))
    except Exception as exc:  # kvopt's reason or a bad cell: recorded, never fatal
        out.update(ac.cannot_express(exc))
    return out


def evaluate(rows: Sequence[Mapping[str, str]], kv: str = "auto", rounds: int = 10,
             deployment: str = "auto", versions: bool = True,
             lengths: str = "auto") -> list[dict[str, Any]]:
    """Per unique row: the data's columns, the mapping, the prediction and the errors."""
    out = []
    for row in unique_rows(rows):
        rec: dict[str, Any] = {**row, **predict_row(row, kv, rounds, deployment, versions,
                                                     lengths)}
        rec["collection"] = collection(row)
        try:  # the version recorded, else the image's (TensorRT-LLM sweeps)
            rec["version_ran"] = version(row)
        except ac.Inexpressible:
            rec["version_ran"] = row.get("backend_version", "")
        model = rec.get("q_model")
        rec["architecture"] = ("moe" if ac.is_moe(str(model)) else "dense") if model else ""
        try:
            rec["parallelism"] = group(row)
        except (ValueError, KeyError, TypeError):
            rec["parallelism"] = "unreadable"
        for name, (pred, meas) in METRICS.items():
            rec[f"err_{name}"] = ac.relative_error(rec.get(pred), ac.measured(row[meas]))
        out.append(rec)
    return out


def _short(r: Mapping[str, Any]) -> str:
    """The detail shown per reason: the model or GPU that is missing, else the kind."""
    if r["reason"] in (ac.MODEL, ac.GPU, ac.ENGINE, ac.PRECISION):
        return str(r["detail"])
    if r["reason"] in (ac.HEADS, ac.FIT, ac.DTYPE_GPU, ac.CONTEXT, ac.LAYOUT):
        lay = "".join(f"{k}{r[f'q_{k}']}" for k in ("ep", "dp", "pp") if r.get(f"q_{k}"))
        return f"{r.get('q_model', '')} tp{r.get('q_tp', '')}{lay} {r.get('system', '')}"
    return ""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ac.add_common_args(ap, "vllm, sglang, trtllm", "h100_sxm, b200_sxm, ...")
    ap.add_argument("--rounds", type=int, default=10,
                    help="requests per client of the benchmark run (0: the steady state)")
    ap.add_argument("--deployment", choices=("auto", "aic", "defaults"), default="auto",
                    help="engine flags: by data source (auto), aiconfigurator's benchmark "
                         "deployments (aic) or the engines' defaults")
    ap.add_argument("--lengths", choices=("auto", "fixed"), default="auto",
                    help="request lengths: as each collection's benchmark drew them (auto: "
                         "the sweeps' uniform [0.8 L, L]) or fixed at isl/osl everywhere")
    args = ap.parse_args(argv)
    start = time.perf_counter()
    rows = [r for r in ac.read_csv(DATA) if (not args.engine or r["backend"] == args.engine)
            and (not args.system or r["system"] == args.system)]
    recs = evaluate(rows, args.kv, args.rounds, args.deployment, not args.no_versions,
                    args.lengths)
    ok = [r for r in recs if r["status"] == "ok"]
    asked = sum(1 for r in ok if r.get("q_engine_version"))
    twice = same_runs(rows)[1]
    print(f"silicon_train: {len(rows)} rows ({twice} a run another row holds too: counted "
          f"once), {len(recs)} unique configurations, "
          f"{len(ok)} predicted (kv rule {args.kv}, {args.lengths} lengths, "
          f"{args.rounds or 'steady-state'} rounds, "
          f"{args.deployment} deployment; {asked} asked for their engine release's fitted "
          "overhead)\n")
    print(ac.accuracy_table(ok, ("system", "backend"), list(METRICS), args.markdown))
    print("\nBy system, all engines together (the same rows):\n")
    print(ac.accuracy_table(ok, ("system",), list(METRICS), args.markdown))
    print("\nBy collection and engine version (recorded, else the image InferenceX ran; the "
          "same rows):\n")
    print(ac.accuracy_table(ok, ("collection", "backend", "version_ran"), list(METRICS),
                            args.markdown))
    print("\nBy parallelism (tp: tensor parallelism only; ep: experts over EP ranks of one TP "
          "group; dp+ep: attention data parallelism):\n")
    print(ac.accuracy_table(ok, ("parallelism",), list(METRICS), args.markdown))
    print()
    print(ac.accuracy_table(ok, ("parallelism", "backend"), list(METRICS), args.markdown))
    print("\nBy architecture (dense: every layer a dense MLP; moe: routed experts) and model:\n")
    print(ac.accuracy_table(ok, ("architecture", "backend"), list(METRICS), args.markdown))
    print()
    print(ac.accuracy_table(ok, ("architecture", "q_model"), list(METRICS), args.markdown))
    twins, clashes = recorded_twice_evidence(rows)
    print(f"\nrows recorded with the world twice (relabelled): {twins} have a row with the "
          f"relabelled configuration and exactly the same measurements, {clashes} one with "
          "different measurements")
    sat = sum(1 for r in ok if r.get("pred_saturated"))
    if sat:
        print(f"\n{sat} predictions saturated (infinite error)")
    ac.print_tail(recs, ORDER, _short, "unique configurations", args, start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
