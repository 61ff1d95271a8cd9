"""Engine launch configurations for a planned replica, spelled as each engine expects.

* vLLM: ``vllm serve`` flags and the equivalent ``--config`` YAML (keys = flag names).
* SGLang: ``python -m sglang.launch_server`` flags.
* TensorRT-LLM: ``trtllm-serve`` flags and the ``--extra_llm_api_options`` YAML.

Values follow the plan: TP, max sequences = planned max batch, a context that covers the
longest prompt + output, a token budget aligned to the KV block size, the engine's memory
fraction, the KV-cache dtype, prefix caching. FP8 weights quantize online in vLLM/SGLang;
INT4 and FP4 need a quantized checkpoint, which the output says rather than pretend.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import yaml

from kvopt.catalog.engines import load_engine
from kvopt.catalog.gpus import load_gpu
from kvopt.catalog.models import load_model
from kvopt.errors import InputError

ENGINES = ("vllm", "sglang", "trtllm")


@dataclass(frozen=True)
class EngineConfig:
    engine: str
    command: list[str]
    config_yaml: str  # "" when the engine takes flags only
    notes: list[str]

    def shell(self) -> str:
        """The command, one ``--flag value`` per line."""
        first = next((i for i, p in enumerate(self.command) if p.startswith("--")),
                     len(self.command))
        lines = [" ".join(self.command[:first])]
        for part in self.command[first:]:
            if part.startswith("--"):
                lines.append(f"  {part}")
            else:
                lines[-1] += f" {part}"
        return " \\\n".join(lines)


def _checkpoint_note(weights: str, engine: str) -> list[str]:
    if weights in ("int4",):
        return [f"int4 weights need an AWQ/GPTQ checkpoint of the model for {engine} "
                "(point the model path at it)"]
    if weights == "fp4":
        return [f"fp4 weights need an NVFP4 checkpoint (TensorRT Model Optimizer) for {engine}"]
    if weights == "int8":
        return [f"int8 weights need a W8A8 (SmoothQuant/llm-compressor) checkpoint for {engine}"]
    return []


def engine_config(entry: dict[str, Any], *, engine: str, max_model_len: int,
                  model_path: str | None = None, max_prompt_len: int = 0) -> EngineConfig:
    """Launch config for one fleet entry of a plan (keys as in the plan JSON).

    ``max_prompt_len``: the workload's longest prompt; an engine that does not chunk
    prefills by default (TensorRT-LLM) gets a token budget that holds it, as kvopt modeled."""
    if engine not in ENGINES:
        raise InputError("engine", engine, f"allowed: {', '.join(ENGINES)}")
    model = load_model(entry["model"])
    gpu = load_gpu(entry["gpu"])
    prof = load_engine(engine, gpu)
    path = model_path or model.hf_id or model.name
    tp, batch = int(entry["tp"]), int(entry["max_batch"])
    weights, kv = entry["weights"], entry["kv_dtype"]
    bs = prof.block_size
    budget = max(prof.max_num_batched_tokens, batch)
    notes = _checkpoint_note(weights, engine)
    if not prof.chunked_prefill and max_prompt_len > budget:
        budget = max_prompt_len
        notes.append(f"{engine} does not chunk prefills by default: max_num_tokens is raised to "
                     f"the longest prompt ({max_prompt_len:,} tokens)")
    budget = int(math.ceil(budget / bs) * bs)  # aligned to the KV block size
    half = "float16" if weights == "fp16" else "bfloat16"
    if engine == "vllm":
        flags: dict[str, Any] = {
            "tensor-parallel-size": tp, "max-num-seqs": batch, "max-model-len": max_model_len,
            "max-num-batched-tokens": budget, "gpu-memory-utilization": prof.memory_fraction,
            "block-size": bs, "dtype": half if weights in ("bf16", "fp16") else "auto",
            "enable-prefix-caching": True}
        if weights == "fp8":
            flags["quantization"] = "fp8"  # online dynamic FP8 from a 16-bit checkpoint
        if kv == "fp8":
            flags["kv-cache-dtype"] = "fp8"
        cmd = ["vllm", "serve", path]
        for k, v in flags.items():
            cmd += [f"--{k}"] if v is True else [f"--{k}", str(v)]
        cfg = yaml.safe_dump({k: v for k, v in flags.items()}, sort_keys=False)
        return EngineConfig("vllm", cmd, cfg, notes)
    if engine == "sglang":
        cmd = ["python", "-m", "sglang.launch_server", "--model-path", path,
               "--tp-size", str(tp), "--max-running-requests", str(batch),
               "--context-length", str(max_model_len), "--chunked-prefill-size", str(budget),
               "--mem-fraction-static", str(prof.memory_fraction), "--page-size", str(bs)]
        if weights == "fp8":
            cmd += ["--quantization", "fp8"]
        if kv == "fp8":
            cmd += ["--kv-cache-dtype", "fp8_e4m3"]
        return EngineConfig("sglang", cmd, "", notes)
    cmd = ["trtllm-serve", path, "--tp_size", str(tp), "--max_batch_size", str(batch),
           "--max_num_tokens", str(budget), "--max_seq_len", str(max_model_len),
           "--kv_cache_free_gpu_memory_fraction", str(prof.memory_fraction),
           "--extra_llm_api_options", "extra_llm_api_options.yaml"]
    extra: dict[str, Any] = {"kv_cache_config": {"enable_block_reuse": True,
                                                 "tokens_per_block": bs}}
    if kv == "fp8":
        extra["kv_cache_config"]["dtype"] = "fp8"
    if weights == "fp8":
        notes.append("TensorRT-LLM runs FP8 from a pre-quantized checkpoint (Model Optimizer)")
    return EngineConfig("trtllm", cmd, yaml.safe_dump(extra, sort_keys=False), notes)
