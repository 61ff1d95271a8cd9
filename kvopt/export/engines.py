"""Engine launch configurations for a planned replica, spelled as each engine expects.

* vLLM: ``vllm serve`` flags and the equivalent ``--config`` YAML (keys = flag names).
* SGLang: ``python -m sglang.launch_server`` flags.
* TensorRT-LLM: ``trtllm-serve`` flags and the ``--extra_llm_api_options`` YAML.

Values follow the plan: TP (and expert, attention-data and pipeline parallelism: vLLM
``--enable-expert-parallel`` / ``--data-parallel-size`` / ``--pipeline-parallel-size``,
SGLang ``--ep-size`` / ``--dp-size --enable-dp-attention`` / ``--pp-size`` with
``--tp-size`` = tp x dp, TensorRT-LLM ``moe_expert_parallel_size`` /
``enable_attention_dp`` / ``pipeline_parallel_size``; a layout an engine cannot spell is an
error), max sequences = planned max batch (per attention-DP rank), a context that covers the
longest prompt + output, a token budget aligned to the KV block size, the engine's memory
fraction, the KV-cache dtype, prefix caching. FP8 weights quantize online in vLLM/SGLang;
INT4 and FP4 need a quantized checkpoint, which the output says rather than pretend. A
CPU tier for the KV cache (``kv_offload_gib``) adds each engine's offload settings
(:mod:`kvopt.export.offload`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import yaml

from kvopt.catalog.engine_args import USER_ARG, with_args
from kvopt.catalog.engines import load_engine
from kvopt.catalog.gpus import load_gpu
from kvopt.catalog.models import load_model
from kvopt.errors import InputError
from kvopt.export import offload
from kvopt.physics.parallel import Parallel

ENGINES = ("vllm", "sglang", "trtllm")


def _layout(entry: dict[str, Any], engine: str, model: Any) -> Parallel:
    """The entry's layout (``ep``, ``dp``, ``pp`` default 1), checked against the model and
    what ``engine`` can run (:mod:`kvopt.serving.parallel_engine`)."""
    from kvopt.physics.parallel import check
    from kvopt.serving.parallel_engine import check_engine

    par = Parallel(tp=int(entry["tp"]), ep=int(entry.get("ep", 1)), dp=int(entry.get("dp", 1)),
                   pp=int(entry.get("pp", 1)))
    check(model, par)
    check_engine(engine, par)
    return par


def _vllm_parallel(par: Parallel) -> dict[str, Any]:
    """vLLM: ``--data-parallel-size`` ranks of ``--tensor-parallel-size``; experts over all
    of them with ``--enable-expert-parallel`` (ep = tp x dp)."""
    out: dict[str, Any] = {}
    if par.pp > 1:
        out["pipeline-parallel-size"] = par.pp
    if par.dp > 1:
        out["data-parallel-size"] = par.dp
    if par.ep > 1:
        out["enable-expert-parallel"] = True
    return out


def _sglang_parallel(par: Parallel) -> list[str]:
    """SGLang: ``--tp-size`` is every GPU of a stage; attention ranks ``--dp-size`` with
    ``--enable-dp-attention``; ``--ep-size``; ``--pp-size``."""
    out: list[str] = []
    if par.dp > 1:
        out += ["--dp-size", str(par.dp), "--enable-dp-attention"]
    if par.ep > 1:
        out += ["--ep-size", str(par.ep)]
    if par.pp > 1:
        out += ["--pp-size", str(par.pp)]
    return out


@dataclass(frozen=True)
class EngineConfig:
    engine: str
    command: list[str]
    config_yaml: str  # "" when the engine takes flags only
    notes: list[str]
    env: dict[str, str] = field(default_factory=dict)  # environment the command needs

    def shell(self) -> str:
        """The command, one ``--flag value`` per line."""
        first = next((i for i, p in enumerate(self.command) if p.startswith("--")),
                     len(self.command))
        lines = [" ".join([*(f"{k}={v}" for k, v in self.env.items()),
                           *self.command[:first]])]
        for part in self.command[first:]:
            if part.startswith("--"):
                lines.append(f"  {part}")
            else:
                lines[-1] += f" {_quote(part)}"
        return " \\\n".join(lines)


def _quote(part: str) -> str:
    import shlex

    return shlex.quote(part)


def _checkpoint_note(weights: str, engine: str, own: str = "bf16") -> list[str]:
    """What a precision needs beyond the checkpoint (``own``: the format it ships in)."""
    if weights == own:
        return []
    if own not in ("bf16", "fp16") and weights in ("bf16", "fp16"):
        return [f"{weights} weights need a {weights} copy of the model for {engine} (the "
                f"released checkpoint is {own})"]
    if weights == "mxfp4":
        return [f"mxfp4 weights need an MXFP4 checkpoint of the model for {engine}"]
    if weights in ("int4",):
        return [f"int4 weights need an AWQ/GPTQ checkpoint of the model for {engine} "
                "(point the model path at it)"]
    if weights == "fp4":
        return [f"fp4 weights need an NVFP4 checkpoint (TensorRT Model Optimizer) for {engine}"]
    if weights == "int8":
        return [f"int8 weights need a W8A8 (SmoothQuant/llm-compressor) checkpoint for {engine}"]
    return []


def _user_flags(prof: Any, engine: str, dp: int, user: set[str]
                ) -> tuple[list[str], dict[str, Any], dict[str, Any], list[str]]:
    """The flags the plan's engine args (``--engine-arg``; ``user``: the profile fields they
    set) set, beyond the token budget and memory fraction the launch line always carries:
    (SGLang flags, vLLM flags, TensorRT-LLM YAML keys, notes)."""
    sg: list[str] = []
    vl: dict[str, Any] = {}
    trt: dict[str, Any] = {}
    notes = [f"{k} is a setting of kvopt's model, not an engine flag: not written"
             for k in sorted(user & {"request_overhead_ms", "step_overhead_ms"})]
    if "chunked_prefill" in user:
        if engine == "vllm":
            vl["enable-chunked-prefill"] = prof.chunked_prefill
        elif engine == "sglang" and not prof.chunked_prefill:
            sg += ["--chunked-prefill-size", "-1"]
        elif engine == "trtllm":
            trt["enable_chunked_prefill"] = prof.chunked_prefill
    if engine == "sglang" and "prefill_policy" in user and prof.prefill_policy == "mixed":
        sg.append("--enable-mixed-chunk")
    elif engine != "sglang" and "prefill_policy" in user:
        notes.append(f"prefill_policy={prof.prefill_policy} has no {engine} flag (its steps "
                     "always mix prefill chunks with decodes): not written")
    if "fp8_scaling" in user:
        notes.append(f"fp8_scaling={prof.fp8_scaling} is the checkpoint's scaling: serve a "
                     "checkpoint quantized that way (export --model-path)")
    if engine == "sglang" and prof.admit_interval_steps > 1:
        sg += ["--scheduler-recv-interval", str(prof.admit_interval_steps)]
    if engine == "trtllm" and user & {"adp_balance", "adp_timeout_iters", "adp_wait_iters"}:
        if dp > 1:
            trt["attention_dp_config"] = {"enable_balance": prof.adp_balance,
                                          "timeout_iters": prof.adp_timeout_iters,
                                          "batching_wait_iters": prof.adp_wait_iters}
        else:
            notes.append("attention_dp_config applies with attention DP only (dp > 1): "
                         "not written")
    if engine == "trtllm" and prof.batch_wait_timeout_iters > 0:
        trt.update(batch_wait_timeout_iters=prof.batch_wait_timeout_iters,
                   batch_wait_max_tokens_ratio=prof.batch_wait_max_tokens_ratio)
    return sg, vl, trt, notes


def engine_config(entry: dict[str, Any], *, engine: str, max_model_len: int,
                  model_path: str | None = None, max_prompt_len: int = 0,
                  offload_connector: str = offload.DEFAULT_CONNECTOR,
                  engine_args: dict[str, Any] | None = None) -> EngineConfig:
    """Launch config for one fleet entry of a plan (keys as in the plan JSON).

    ``max_prompt_len``: the workload's longest prompt; an engine that does not chunk
    prefills by default (TensorRT-LLM) gets a token budget that holds it, as kvopt modeled.
    ``entry["kv_offload_gib"]`` (optional): a CPU tier for the KV cache, through
    ``offload_connector`` (lmcache | native) on vLLM. ``engine_args``: the engine flags the
    plan's candidates ran with (``inputs.space.engine_args``), written as the engine spells
    them."""
    if engine not in ENGINES:
        raise InputError("engine", engine, f"allowed: {', '.join(ENGINES)}")
    model = load_model(entry["model"])
    gpu = load_gpu(entry["gpu"])
    prof = load_engine(engine, gpu)
    if engine_args:
        prof = with_args(prof, dict(engine_args))
    weights, kv = entry["weights"], entry["kv_dtype"]
    # fp8 of a model whose card names its publisher's FP8 checkpoint (the scaling kvopt
    # priced): served from that checkpoint, no online quantization
    fp8_ckpt = weights == "fp8" and model_path is None and bool(model.fp8_checkpoint)
    path = model.fp8_checkpoint if fp8_ckpt else model_path or model.hf_id or model.name
    tp, batch = int(entry["tp"]), int(entry["max_batch"])
    par = _layout(entry, engine, model)
    user = {k for k, src in prof.sources if src == USER_ARG}
    sg_user, vl_user, trt_user, user_notes = _user_flags(prof, engine, par.dp, user)
    bs = prof.block_size
    budget = max(prof.max_num_batched_tokens, batch)
    # a checkpoint's own format needs no flag: it ships in it
    own = "fp8" if fp8_ckpt else model.default_weights
    notes = _checkpoint_note(weights, engine, own) + user_notes
    if fp8_ckpt:
        notes.append(f"serves {path}, the publisher's FP8 checkpoint kvopt priced (export "
                     "--model-path serves another)")
    if not prof.chunked_prefill and max_prompt_len > budget:
        budget = max_prompt_len
        how = "here" if "chunked_prefill" in user else "by default"
        notes.append(f"{engine} does not chunk prefills {how}: max_num_tokens is raised to "
                     f"the longest prompt ({max_prompt_len:,} tokens)")
    budget = int(math.ceil(budget / bs) * bs)  # aligned to the KV block size
    half = "float16" if weights == "fp16" else "bfloat16"
    gib = offload.check(entry.get("kv_offload_gib") or 0.0)
    extra_flags, trt_extra, env, off_notes = offload.engine_flags(
        engine, gib, tp=tp, connector=offload_connector)
    notes += off_notes
    if engine == "vllm":
        flags: dict[str, Any] = {
            "tensor-parallel-size": tp, **_vllm_parallel(par),
            "max-num-seqs": batch, "max-model-len": max_model_len,
            "max-num-batched-tokens": budget, "gpu-memory-utilization": prof.memory_fraction,
            "block-size": bs, "dtype": half if weights in ("bf16", "fp16") else "auto",
            "enable-prefix-caching": True}
        if weights == "fp8" and own != "fp8":
            flags["quantization"] = "fp8"  # online dynamic FP8 from a 16-bit checkpoint
        if kv == "fp8":
            flags["kv-cache-dtype"] = "fp8"
        if extra_flags:
            flags["kv-transfer-config"] = extra_flags[1]
        flags.update(vl_user)
        cmd = ["vllm", "serve", path]
        for k, v in flags.items():
            cmd += ([f"--{k}"] if v is True else [f"--no-{k}"] if v is False
                    else [f"--{k}", str(v)])
        cfg = yaml.safe_dump({k: v for k, v in flags.items()}, sort_keys=False)
        return EngineConfig("vllm", cmd, cfg, notes, env)
    if engine == "sglang":
        cmd = ["python", "-m", "sglang.launch_server", "--model-path", path,
               "--tp-size", str(par.world), *_sglang_parallel(par),
               "--max-running-requests", str(batch * par.dp),
               "--context-length", str(max_model_len), "--chunked-prefill-size", str(budget),
               "--mem-fraction-static", str(prof.memory_fraction), "--page-size", str(bs)]
        if weights == "fp8" and own != "fp8":
            cmd += ["--quantization", "fp8"]
        if kv == "fp8":
            cmd += ["--kv-cache-dtype", "fp8_e4m3"]
        if "-1" in sg_user:  # no chunking: the one flag that sets it, not the budget's
            i = cmd.index("--chunked-prefill-size")
            del cmd[i:i + 2]
        return EngineConfig("sglang", cmd + sg_user + extra_flags, "", notes, env)
    cmd = ["trtllm-serve", path, "--tp_size", str(par.world),
           *(["--pp_size", str(par.pp)] if par.pp > 1 else []),
           "--max_batch_size", str(batch),
           "--max_num_tokens", str(budget), "--max_seq_len", str(max_model_len),
           "--kv_cache_free_gpu_memory_fraction", str(prof.memory_fraction),
           "--extra_llm_api_options", "extra_llm_api_options.yaml"]
    extra: dict[str, Any] = {"kv_cache_config": {"enable_block_reuse": True,
                                                 "tokens_per_block": bs}}
    if model.is_moe and not par.plain:
        extra.update(moe_expert_parallel_size=par.ep, moe_tensor_parallel_size=par.moe_tp)
    if par.dp > 1:
        extra["enable_attention_dp"] = True
    if kv == "fp8":
        extra["kv_cache_config"]["dtype"] = "fp8"
    extra["kv_cache_config"].update(trt_extra)
    extra.update(trt_user)
    if weights == "fp8" and own != "fp8":
        notes.append("TensorRT-LLM runs FP8 from a pre-quantized checkpoint (Model Optimizer)")
    return EngineConfig("trtllm", cmd, yaml.safe_dump(extra, sort_keys=False), notes, env)
