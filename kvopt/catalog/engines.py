"""Serving-engine profiles (``models/engines/<name>.yaml``): defaults with a source each."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

from kvopt.catalog.engine_admission import (
    admit_interval,
    adp_balance,
    batch_wait,
    check_admission,
)
from kvopt.catalog.engine_args import PREFILL_POLICIES, USER_ARG
from kvopt.catalog.gpus import GpuSpec
from kvopt.catalog.model_spec import FP8_SCALINGS
from kvopt.catalog.paths import models_dir
from kvopt.catalog.resolve import NameIndex
from kvopt.catalog.yamlio import read_yaml, sourced
from kvopt.errors import CatalogError


@dataclass(frozen=True, kw_only=True)
class EngineProfile:
    """Engine defaults that shape memory and step time (for one GPU type)."""

    name: str
    memory_fraction: float
    memory_fraction_applies_to: str  # total | free_after_weights
    block_size: int
    max_num_seqs: int
    max_num_batched_tokens: int
    cuda_graphs: bool
    chunked_prefill: bool
    prefix_caching: bool
    runtime_overhead_gib: float
    step_overhead_ms: float
    kernel_launch_us: float
    physical_batch_tokens: int = 0  # tokens per forward pass when below the budget (llama.cpp)
    # time a request spends in the server outside the engine steps (HTTP, tokenization,
    # admission, detokenization of the stream): added to its TTFT and end-to-end latency.
    # 0 in the shipped profiles (no published figure); `kvopt calibrate --fit request` fits it
    request_overhead_ms: float = 0.0
    # how the scheduler admits a request against the KV pool: "on_demand" (blocks as tokens
    # are written; the newest request is preempted when they run out: vLLM, SGLang) or
    # "full_sequence" (blocks for prompt + max output reserved at admission, never
    # preempted: TensorRT-LLM's GUARANTEED_NO_EVICT)
    kv_admission: str = "on_demand"
    # how a step is composed when prompts wait: "mixed" (the decodes of running sequences
    # and prefill chunks share each step, up to the token budget: vLLM V1, TensorRT-LLM's
    # in-flight batching, SGLang with --enable-mixed-chunk) or "prefill_first" (a batch of
    # waiting prompts runs alone and the running decodes wait for it: SGLang's default)
    prefill_policy: str = "mixed"
    # when the engine's own all-reduce kernels run instead of plain NCCL (unregistered
    # buffers): rules (tp_max, max_bytes, max_tokens), the first with tp <= tp_max applies;
    # none: always its own kernels (the catalog's default all-reduce curve)
    allreduce_rules: tuple[tuple[int, float, float], ...] = ()
    # element-wise ops the engine fuses into a neighbour kernel (no launch of their own):
    # "allreduce" (residual add + RMSNorm inside the TP all-reduce), "attention" (RoPE
    # inside the attention kernel); see kvopt.physics.ops
    fused_elementwise: tuple[str, ...] = ()
    # FP8 weights of a model with no published FP8 checkpoint: how the engine's quantization
    # recipe scales activations (kvopt.catalog.model_spec.FP8_SCALINGS), and whether it has
    # an FP8 weight-only GEMM (FP8 weights, 16-bit math) a native path may fall back on
    fp8_scaling: str = "dynamic"
    fp8_weight_only: bool = True
    # the scheduler takes in newly arrived requests only every N decode passes (and right
    # after a pass that prefilled): SGLang --scheduler-recv-interval. 1: every pass. The
    # flag that sets it ("": the engine has none and polls every pass)
    admit_interval_steps: int = 1
    admit_interval_flag: str = ""
    # attention DP's balancing (TensorRT-LLM attention_dp_config): a prompt waits until
    # every attention-DP rank has one (then ``adp_wait_iters`` more iterations while every
    # rank also decodes), or ``adp_timeout_iters`` iterations pass. The flag ("": none)
    adp_balance: bool = False
    adp_timeout_iters: int = 50
    adp_wait_iters: int = 10
    adp_balance_flag: str = ""
    # batch waiting (TensorRT-LLM batch_wait_timeout_iters, batch_wait_max_tokens_ratio):
    # while requests decode, prompts are held until they and the decodes make up the ratio
    # of max_num_tokens, or the timeout in held passes; on when both are > 0 and attention
    # DP is off. The flag ("": the engine has none)
    batch_wait_timeout_iters: int = 0
    batch_wait_max_tokens_ratio: float = 0.0
    batch_wait_flag: str = ""
    version_modeled: str = ""
    fitted_version: str = ""  # the version whose fitted overheads apply ("": none fitted)
    sources: tuple[tuple[str, str], ...] = ()

    @property
    def fp8_scaling_set(self) -> bool:
        """Whether the user set ``fp8_scaling`` (``--engine-arg``): it then overrides the
        scaling of the model publisher's FP8 checkpoint."""
        return dict(self.sources).get("fp8_scaling") == USER_ARG

    def allreduce_custom(self, tp: int, tokens: Any, n_bytes: Any) -> Any:
        """Whether a TP all-reduce of ``n_bytes`` for ``tokens`` tokens runs the engine's own
        kernels (True) or falls back to plain NCCL (False); element-wise on arrays."""
        for tp_max, max_bytes, max_tokens in self.allreduce_rules:
            if tp <= tp_max:
                return (np.asarray(n_bytes) <= max_bytes) & (np.asarray(tokens) <= max_tokens)
        return np.ones(np.broadcast(np.asarray(tokens), np.asarray(n_bytes)).shape, dtype=bool)

    def unchunked_note(self, longest_prompt: int) -> str | None:
        """What kvopt assumes when a prompt exceeds the token budget of an engine that does
        not chunk prefills (it could not schedule the prompt as launched)."""
        if self.chunked_prefill or longest_prompt <= self.step_tokens:
            return None
        return (f"{self.name} does not chunk prefills by default and its token budget "
                f"(max_num_tokens) is {self.step_tokens}: prompts of up to {longest_prompt:,} "
                f"tokens need max_num_tokens >= {longest_prompt:,} (kvopt assumes it) or "
                "chunked prefill enabled")

    @property
    def batch_waits(self) -> bool:
        """Whether batch waiting is on (both knobs above 0; the engine still skips it under
        attention DP)."""
        return self.batch_wait_timeout_iters > 0 and self.batch_wait_max_tokens_ratio > 0.0

    @property
    def batch_wait_tokens(self) -> float:
        """The tokens (prompts in full, one per decoding request) that end a batch wait."""
        return self.batch_wait_max_tokens_ratio * self.max_num_batched_tokens

    @property
    def step_tokens(self) -> int:
        """Most prompt tokens one forward pass processes."""
        if self.physical_batch_tokens:
            return min(self.physical_batch_tokens, self.max_num_batched_tokens)
        return self.max_num_batched_tokens

    def __post_init__(self) -> None:
        if not 0 < self.memory_fraction <= 1:
            raise ValueError(f"memory_fraction {self.memory_fraction} must lie in (0, 1]")
        if self.request_overhead_ms < 0:
            raise ValueError("request_overhead_ms must be >= 0")
        if self.physical_batch_tokens < 0:
            raise ValueError("physical_batch_tokens must be >= 0")
        if self.prefill_policy not in PREFILL_POLICIES:
            raise ValueError(f"prefill_policy {self.prefill_policy!r} must be one of "
                             f"{', '.join(PREFILL_POLICIES)}")
        if self.kv_admission not in KV_ADMISSIONS:
            raise ValueError(f"kv_admission {self.kv_admission!r} must be one of "
                             f"{', '.join(KV_ADMISSIONS)}")
        if not set(self.fused_elementwise) <= set(FUSIONS):
            raise ValueError(f"fused_elementwise {list(self.fused_elementwise)} must name only "
                             f"{', '.join(FUSIONS)}")
        if self.fp8_scaling not in FP8_SCALINGS:
            raise ValueError(f"fp8_scaling {self.fp8_scaling!r} must be one of "
                             f"{', '.join(FP8_SCALINGS)}")
        check_admission(self)
        if self.block_size < 1 or self.max_num_seqs < 1 or self.max_num_batched_tokens < 1:
            raise ValueError("block_size, max_num_seqs and max_num_batched_tokens must be >= 1")


KV_ADMISSIONS = ("on_demand", "full_sequence")
FUSIONS = ("allreduce", "attention")
def parse_custom_allreduce(node: Any, origin: str, srcs: dict[str, str]
                      ) -> tuple[tuple[int, float, float], ...]:
    """``custom_allreduce: {value: [{tp_max, max_bytes, max_tokens}, ...], source}``: the
    engine runs its own kernels for an all-reduce of at most ``max_bytes`` in a step of at most
    ``max_tokens`` tokens (either may be omitted) under the first rule with ``tp <= tp_max``,
    plain NCCL otherwise. Absent: its own kernels at every size."""
    if node is None:
        return ()
    rules = node.get("value") if isinstance(node, dict) else None
    allowed = {"tp_max", "max_bytes", "max_tokens"}
    if (not isinstance(rules, list) or not rules or not node.get("source")
            or not all(isinstance(r, dict) and "tp_max" in r and not set(r) - allowed
                       for r in rules)):
        raise CatalogError(f"{origin}: field 'custom_allreduce' must be a mapping with 'value' "
                           "(a list of {tp_max, max_bytes, max_tokens}) and a non-empty 'source'")
    srcs["custom_allreduce"] = str(node["source"])
    out = []
    for r in rules:
        for key, v in r.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
                raise CatalogError(f"{origin}: custom_allreduce {key} = {v!r} must be a "
                                   "number > 0")
        out.append((int(r["tp_max"]), float(r.get("max_bytes", math.inf)),
                    float(r.get("max_tokens", math.inf))))
    return tuple(sorted(out))


def _sourced_choice(data: dict[str, Any], field: str, default: str, origin: str,
                   srcs: dict[str, str]) -> str:
    """``field: {value: ..., source: ...}`` of a profile (absent: ``default``); the
    dataclass checks the value against its allowed choices."""
    node = data.get(field)
    if node is None:
        return default
    if not isinstance(node, dict) or not node.get("source") or "value" not in node:
        raise CatalogError(f"{origin}: field '{field}' must be a mapping with 'value' and a "
                           "non-empty 'source'")
    srcs[field] = str(node["source"])
    return str(node["value"])


def _sourced_flag(data: dict[str, Any], field: str, default: bool, origin: str,
                  srcs: dict[str, str]) -> bool:
    """``field: {value: true|false, source: ...}`` of a profile (absent: ``default``)."""
    value = _sourced_choice(data, field, str(default).lower(), origin, srcs).lower()
    if value not in ("true", "false"):
        raise CatalogError(f"{origin}: field '{field}' value {value!r} must be true or false")
    return value == "true"


def _fusions(data: dict[str, Any], origin: str, srcs: dict[str, str]) -> tuple[str, ...]:
    """``fused_elementwise: {value: [...], source: ...}`` of a profile (absent: none)."""
    node = data.get("fused_elementwise")
    if node is None:
        return ()
    if not isinstance(node, dict) or not node.get("source") or not isinstance(
            node.get("value"), list):
        raise CatalogError(f"{origin}: field 'fused_elementwise' must be a mapping with a "
                           "'value' list and a non-empty 'source'")
    bad = [v for v in node["value"] if v not in FUSIONS]
    if bad:
        raise CatalogError(f"{origin}: fused_elementwise {bad[0]!r} is not one of "
                           f"{', '.join(FUSIONS)}; name only those (or drop the field)")
    srcs["fused_elementwise"] = str(node["source"])
    return tuple(str(v) for v in node["value"])


@cache
def _raw() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for path in sorted((models_dir() / "engines").glob("*.yaml")):
        data = read_yaml(path)
        if not isinstance(data, dict) or data.get("name") != path.stem:
            raise CatalogError(f"{path}: needs 'name: {path.stem}'")
        data["__origin__"] = str(path)
        out[path.stem] = data
    return out


def engine_names() -> list[str]:
    """Profile names (the files' stems; a file is parsed and checked when it is loaded)."""
    return sorted(p.stem for p in (models_dir() / "engines").glob("*.yaml"))


def load_engine(name: str, gpu: GpuSpec | None = None,
                version: str | None = None) -> EngineProfile:
    """The profile of engine ``name``, with large-GPU overrides applied for ``gpu`` and the
    overheads fitted for ``version`` (None: the file's default version, if it names one)."""
    from kvopt.catalog.engine_versions import overrides

    canonical = NameIndex("engine", {n: () for n in _raw()}).resolve(name)
    data = _raw()[canonical]
    origin = data["__origin__"]
    srcs: dict[str, str] = {}
    fitted_version, fitted = overrides(canonical, version)

    def num(node: Any, key: str) -> float:
        if key in fitted:  # engine time outside the kernels, fitted per version
            srcs[key] = fitted[key][1]
            return fitted[key][0]
        value, src = sourced(node, key, origin)
        srcs[key] = src
        return float(value or 0.0)

    seqs = num(data.get("max_num_seqs"), "max_num_seqs")
    tokens = num(data.get("max_num_batched_tokens"), "max_num_batched_tokens")
    big = data.get("large_gpu")
    if gpu is not None and isinstance(big, dict):
        excluded = set(big.get("exclude_architectures") or ())
        if gpu.memory_gib >= float(big.get("min_memory_gib", 1e9)) and (
                gpu.architecture not in excluded):
            seqs = num(big.get("max_num_seqs"), "large_gpu.max_num_seqs")
            tokens = num(big.get("max_num_batched_tokens"), "large_gpu.max_num_batched_tokens")
    admit = admit_interval(data, origin, srcs)
    try:
        return EngineProfile(
            name=canonical, memory_fraction=num(data.get("memory_fraction"), "memory_fraction"),
            memory_fraction_applies_to=str(data.get("memory_fraction_applies_to", "total")),
            block_size=int(num(data.get("block_size"), "block_size")), max_num_seqs=int(seqs),
            max_num_batched_tokens=int(tokens), cuda_graphs=bool(data.get("cuda_graphs", True)),
            chunked_prefill=bool(data.get("chunked_prefill", True)),
            prefix_caching=bool(data.get("prefix_caching", False)),
            runtime_overhead_gib=num(data.get("runtime_overhead_gib"), "runtime_overhead_gib"),
            step_overhead_ms=num(data.get("step_overhead_ms"), "step_overhead_ms"),
            kernel_launch_us=num(data.get("kernel_launch_us"), "kernel_launch_us"),
            physical_batch_tokens=int(num(data["physical_batch_tokens"], "physical_batch_tokens"))
            if "physical_batch_tokens" in data else 0,
            request_overhead_ms=num(data.get("request_overhead_ms"), "request_overhead_ms")
            if "request_overhead_ms" in data or "request_overhead_ms" in fitted else 0.0,
            kv_admission=_sourced_choice(data, "kv_admission", "on_demand", origin, srcs),
            prefill_policy=_sourced_choice(data, "prefill_policy", "mixed", origin, srcs),
            allreduce_rules=parse_custom_allreduce(data.get("custom_allreduce"), origin, srcs),
            fused_elementwise=_fusions(data, origin, srcs),
            fp8_scaling=_sourced_choice(data, "fp8_scaling", "dynamic", origin, srcs),
            fp8_weight_only=_sourced_flag(data, "fp8_weight_only", True, origin, srcs),
            admit_interval_steps=admit[0], admit_interval_flag=admit[1],
            **adp_balance(data, origin, srcs), **batch_wait(data, origin, srcs),
            version_modeled=str(data.get("version_modeled", "")),
            fitted_version=fitted_version,
            sources=tuple(sorted(srcs.items())),
        )
    except ValueError as exc:
        raise CatalogError(f"{origin}: {exc}") from None
