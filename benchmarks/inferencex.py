"""How SemiAnalysis InferenceX launched the runs of the silicon sample's ``sweeps`` collection
(see ``accuracy_silicon.py``): its launch scripts' engine flags, the container images of
the rows that record no engine version and the rows that ran its speculative-decoding
configs, read from the repository's history
(github.com/SemiAnalysisAI/InferenceX on main at each row's measurement date: the scripts
under ``benchmarks/`` (later ``benchmarks/single_node/``), the workflow templates
(``.github/workflows/*-tmpl.yml``) until 2025-11-03 and ``.github/configs/nvidia-master.yaml``
after). Keys are kvopt's catalog model, the row's ``system`` and kvopt's weight dtype.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# InferenceX's RANDOM_RANGE_RATIO (.github/workflows/benchmark-tmpl.yml, 0.8 from Nov 2025 on)
RANGE_RATIO = 0.8
# SGLang's --scheduler-recv-interval in the launch scripts: "conc" = 30 at 16 clients or
# more, else 10 (dsr1_fp4_b200.sh, dsr1_fp8_b200.sh TP 8, dsr1_fp4_b300.sh,
# qwen3.5_{bf16,fp4,fp8}_b200.sh, qwen3.5_{bf16,fp4}_b300.sh); 10 in qwen3.5_fp8_b300.sh; the
# H200 and GLM-5 scripts set none (SGLang's default 1).
RECV: dict[tuple[str, str, str], int | str] = {
    ("DeepSeek-V3", "b200_sxm", "fp4"): "conc", ("DeepSeek-V3", "b200_sxm", "fp8"): "conc",
    ("DeepSeek-V3", "b300_sxm", "fp4"): "conc",
    ("Qwen3.5-397B-A17B", "b200_sxm", "bf16"): "conc",
    ("Qwen3.5-397B-A17B", "b200_sxm", "fp4"): "conc",
    ("Qwen3.5-397B-A17B", "b200_sxm", "fp8"): "conc",
    ("Qwen3.5-397B-A17B", "b300_sxm", "bf16"): "conc",
    ("Qwen3.5-397B-A17B", "b300_sxm", "fp4"): "conc",
    ("Qwen3.5-397B-A17B", "b300_sxm", "fp8"): 10,
}
# TensorRT-LLM's attention_dp_config when DP_ATTENTION is true: dsr1_fp4_b200_trt.sh
# (6eecc0e), dsr1_fp8_b200_trt.sh (ec7bafa), dsr1_fp8_h200_trt.sh (b30c339): "batching_wait_iters:
# 0, enable_balance: true, timeout_iters: 60"; gptoss_fp4_b200_trt.sh (b30c339):
# "enable_balance: true" (TensorRT-LLM's defaults: timeout 50, batching wait 10).
ADP: dict[str, tuple[tuple[str, Any], ...]] = {
    "DeepSeek-V3": (("adp_balance", True), ("adp_timeout_iters", 60), ("adp_wait_iters", 0)),
    "gpt-oss-120b": (("adp_balance", True),),
}
# Container images of the rows that record no engine version, (first day, image tag) in order.
# TensorRT-LLM: 70b-tmpl.yml, dsr1-tmpl.yml and gptoss-tmpl.yml at 9596d23 (2025-10-29;
# unchanged to 17d5e20, 2025-11-03), then nvidia-master.yaml (dsr1-fp8-b200-trt: 1.2.0rc6.post2
# from ec7bafa, 2026-01-29; dsr1-fp4-b200-trt: from 6eecc0e, 2026-02-03; gptoss-fp4-b200-trt:
# 1.2.0rc2 from 06667a5, 2025-12-02). gpt-oss on H200 ran ``release:gpt-oss-dev`` (no release).
TRT_IMAGES: dict[tuple[str, str, str], tuple[tuple[str, str], ...]] = {
    ("Llama-3.1-70B", "h200_sxm", "fp8"): (("2025-09-18", "1.1.0rc2.post2"),),
    ("Llama-3.1-70B", "b200_sxm", "fp8"): (("2025-09-18", "1.1.0rc2.post2"),),
    ("Llama-3.1-70B", "b200_sxm", "fp4"): (("2025-09-18", "1.1.0rc2.post2"),),
    ("DeepSeek-V3", "h200_sxm", "fp8"): (("2025-10-29", "1.1.0rc2.post2"),),
    ("DeepSeek-V3", "b200_sxm", "fp8"): (("2025-10-29", "1.1.0rc2.post2"),
                                         ("2026-01-29", "1.2.0rc6.post2")),
    ("DeepSeek-V3", "b200_sxm", "fp4"): (("2025-10-29", "1.1.0rc2.post2"),
                                         ("2026-02-03", "1.2.0rc6.post2")),
    ("gpt-oss-120b", "b200_sxm", "mxfp4"): (("2025-10-29", "1.2.0rc0.post1"),
                                            ("2025-12-02", "1.2.0rc2")),
}
# vLLM (``vllm/vllm-openai``): 70b-tmpl.yml ``v0.10.2`` on every NVIDIA lane from a157a04
# (2025-09-15) until Llama-70B left (2582bce, 2025-10-29); gptoss-tmpl.yml ``v0.10.2`` from
# 77f238d (2025-09-15), kept by nvidia-master.yaml (17d5e20, 2025-11-03), ``v0.11.0`` from
# 7103d66 (2025-11-04), ``v0.11.2`` from 25506e8 (2025-12-05 21:49 UTC: runs dated that day
# are ambiguous, so it counts from the next day).
_LLAMA_VLLM = (("2025-09-15", "0.10.2"),)
_GPTOSS_VLLM = (("2025-09-15", "0.10.2"), ("2025-11-04", "0.11.0"), ("2025-12-05", ""),
                ("2025-12-06", "0.11.2"))
VLLM_IMAGES: dict[tuple[str, str, str], tuple[tuple[str, str], ...]] = {
    ("Llama-3.1-70B", "h100_sxm", "fp8"): _LLAMA_VLLM,
    ("Llama-3.1-70B", "h200_sxm", "fp8"): _LLAMA_VLLM,
    ("Llama-3.1-70B", "b200_sxm", "fp8"): _LLAMA_VLLM,
    ("Llama-3.1-70B", "b200_sxm", "fp4"): _LLAMA_VLLM,
    ("gpt-oss-120b", "h100_sxm", "mxfp4"): _GPTOSS_VLLM,
    ("gpt-oss-120b", "h200_sxm", "mxfp4"): _GPTOSS_VLLM,
    ("gpt-oss-120b", "b200_sxm", "mxfp4"): _GPTOSS_VLLM,
}
IMAGES = {"trtllm": TRT_IMAGES, "vllm": VLLM_IMAGES}
# SGLang releases by the first day InferenceX's configs named their image
# (``lmsysorg/sglang:vX.Y.Z-...``; ``git log -G`` on .github/configs/nvidia-master.yaml and
# .github/workflows): v0.5.5 d8fe8f73e, v0.5.6 d27433dff, v0.5.7 6e35460d2, v0.5.8 f0e131f2e,
# v0.5.9 efd49e50b, v0.5.10 6cb829125, v0.5.11 07d3a7412. A release InferenceX named was
# published by then, so an SGLang nightly built (``nightly-dev[-cuNN]-YYYYMMDD-<commit>``,
# from main) after that day holds at least that release: :func:`nightly_release`.
SGLANG_NAMED: tuple[tuple[str, str], ...] = (
    ("2025-11-10", "0.5.5"), ("2025-12-31", "0.5.6"), ("2026-01-22", "0.5.7"),
    ("2026-02-05", "0.5.8"), ("2026-03-03", "0.5.9"), ("2026-04-14", "0.5.10"),
    ("2026-05-12", "0.5.11"))
_NIGHTLY = re.compile(r"nightly-dev(?:-cu\d+)?-(\d{4})(\d{2})(\d{2})-[0-9a-f]+")
# Rows that are (or cannot be told from) runs of InferenceX's speculative-decoding configs
# (keys ``*-mtp``, ``spec-decoding: mtp``: MTP layers draft, the model verifies), by the image
# tag the row records and, where the image was shared, the day and the layout. (backend, the
# model_path's name, system, image tag, day or "" for any, columns the row must have,
# evidence). Those runs' acceptance rate is not recorded, so kvopt cannot ask them.
SPEC_RUNS: tuple[tuple[str, str, str, str, str, tuple[tuple[str, str], ...], str], ...] = (
    ("trtllm", "DeepSeek-R1", "b200_sxm", "release:1.2.0rc6.post3", "", (),
     "InferenceX ran release:1.2.0rc6.post3 only in dsr1-fp8-b200-trt-mtp (5d517074c, "
     "2026-02-05) and dsr1-fp4-b200-trt-mtp (0aae52d4c, 2026-02-06) until 2026-05-18"),
    ("trtllm", "DeepSeek-R1", "b200_sxm", "release:1.1.0rc2.post2", "2026-01-14", (),
     "the sweep of bf3456727 (Add MTP Benchmark Support for DeepSeek-R1 TRT, merged "
     "2026-01-14 22:26 UTC): tp4 ep4 at 16-32 clients and attention DP at 128 exist only "
     "in its -mtp keys"),
    ("trtllm", "DeepSeek-R1", "h200_sxm", "release:1.1.0rc2.post2", "2026-01-14", (),
     "the sweep of bf3456727 (Add MTP Benchmark Support for DeepSeek-R1 TRT, merged "
     "2026-01-14 22:26 UTC): attention DP at 128-256 clients exists only in "
     "dsr1-fp8-h200-trt-mtp; TPOT 8.6 ms at 4 clients of 8k prompts against 14.9 ms "
     "measured without MTP on 2025-11-02"),
    ("sglang", "DeepSeek-R1", "b200_sxm", "sglang:v0.5.9-cu130", "2026-03-25",
     (("precision", "fp8"), ("tp_size", "8")),
     "12ba0ae07 (2026-03-25) moved dsr1-fp8-b200-sglang and dsr1-fp8-b200-sglang-mtp to this "
     "image together; the MTP key runs TP 8 at 4-512 clients, the plain one TP 8 at 4-64 "
     "(8k prompts: 4), and the day holds two runs of those shared layouts: MTP or plain, "
     "not recorded"),
    ("sglang", "Qwen3.5-397B-A17B", "b200_sxm", "sglang:v0.5.9-cu130", "2026-03-20",
     (("precision", "fp8"),),
     "qwen3.5-fp8-b200-sglang-mtp came with this image in 35d4bb367 (2026-03-20); "
     "qwen3.5-fp8-b200-sglang ran v0.5.9-cu129-amd64 until 6a5dad463 (2026-03-23)"),
)


def measured(row: Mapping[str, str]) -> str:
    """The day a row was measured (``measured=YYYY-MM-DD`` in its source; "" if absent)."""
    found = re.search(r"measured=(\d{4}-\d{2}-\d{2})", row.get("silicon_data_source", ""))
    return found.group(1) if found else ""


def image_tag(row: Mapping[str, str]) -> str:
    """The image a row records (``image=`` in its source), from its last ``/`` on."""
    found = re.search(r"image=([^;]+)", row.get("silicon_data_source", ""))
    return found.group(1).strip().rsplit("/", 1)[-1] if found else ""


def nightly_release(row: Mapping[str, str]) -> str:
    """The newest SGLang release a dated SGLang nightly build the row ran holds (its
    ``backend_version`` or image tag ``nightly-dev[-cuNN]-YYYYMMDD-<commit>``): the last of
    :data:`SGLANG_NAMED` named before the build day ("" for other rows and undated builds)."""
    if row.get("backend") != "sglang":
        return ""
    found = _NIGHTLY.search(row.get("backend_version", "")) or _NIGHTLY.search(
        row.get("silicon_data_source", ""))
    if found is None:
        return ""
    built, out = "-".join(found.groups()), ""
    for first, release in SGLANG_NAMED:
        if first < built:
            out = release
    return out


def spec_decoding(row: Mapping[str, str]) -> str:
    """Why a row is (or cannot be told from) a speculative-decoding run (:data:`SPEC_RUNS`;
    "" when it is a plain run)."""
    tag, day = image_tag(row), measured(row)
    name = row.get("model_path", "").rsplit("/", 1)[-1]
    for backend, model, system, image, on, where, evidence in SPEC_RUNS:
        if ((row["backend"], name, row["system"], tag) == (backend, model, system, image)
                and (not on or day == on) and all(_same(row.get(k, ""), v) for k, v in where)):
            return evidence
    return ""


def _same(cell: str, value: str) -> bool:
    """A row's cell equals ``value`` (as numbers when both are: "8.0" is "8")."""
    try:
        return float(cell) == float(value)
    except ValueError:
        return cell.strip() == value


def recv_interval(system: str, model: str, weights: str, conc: int) -> int:
    """SGLang's ``--scheduler-recv-interval`` in the launch script (:data:`RECV`; 1: none)."""
    rule = RECV.get((model, system, weights), 1)
    if rule == "conc":  # "if [[ $CONC -ge 16 ]]; then SCHEDULER_RECV_INTERVAL=30 else 10"
        return 30 if conc >= 16 else 10
    return int(rule)


def image(row: Mapping[str, str], model: str, weights: str) -> str:
    """The engine image tag a row ran (:data:`IMAGES` by its ``backend``; "" when unknown)."""
    day, tag = measured(row), ""
    for first, image in IMAGES.get(row["backend"], {}).get((model, row["system"], weights), ()):
        if day and day >= first:
            tag = image
    return tag


def trt_args(row: Mapping[str, str], model: str, weights: str, *, conc: int, isl: int,
             osl: int, tp: int, dp: int) -> tuple[tuple[tuple[str, Any], ...], str] | None:
    """The token budget and batch waiting of a TensorRT-LLM launch script, as ``engine_args``
    pairs, and its KV dtype (None: kvopt does not know the script; the caller keeps its own).
    Every script sets ``kv_cache_config.dtype: fp8`` but gpt-oss on H200's (``auto``). The
    running cap is the rank's clients (the scripts pass ``--max_batch_size`` of at least
    that, or none: TensorRT-LLM's 2048; a closed loop never runs more).

    * ``70b_fp{8,4}_{h200,b200}_trt_slurm.sh`` (1b563c8, 2025-09-18; removed 2582bce,
      2025-10-29): ``--max_num_tokens 16384``; ``batch_wait_max_tokens_ratio: 0.9,
      batch_wait_timeout_iters: 20`` "if ISL == 1024 && OSL == 1024 && TP < 8".
    * ``dsr1_fp{8,4}_{h200,b200}_trt*.sh``: ``MAX_NUM_TOKENS=$(( ($CONC+$ISL+64+63)/64*64 ))``,
      at least 8192 from 64af5a7 (2026-01-21); ``dsr1_fp8_b200_trt.sh`` from ec7bafa
      (2026-01-29): ``batch_wait_timeout_iters: 40, batch_wait_max_tokens_ratio: 0.8`` at 1k/1k
      with ``CONC >= 64`` (DELAY_BATCHING; TensorRT-LLM skips it under attention DP).
    * ``gptoss_fp4_{h200,b200}_trt*.sh``: ``--max_num_tokens 20000``.
    """
    day = measured(row)
    per_rank = -(-conc // dp)
    if model == "Llama-3.1-70B":
        out: tuple[tuple[str, Any], ...] = (("max_num_batched_tokens", 16384),
                                            ("max_num_seqs", per_rank))
        if isl == osl == 1024 and tp < 8:
            out += (("batch_wait_timeout_iters", 20), ("batch_wait_max_tokens_ratio", 0.9))
        return out, "fp8"
    if model == "DeepSeek-V3":
        tokens = (conc + isl + 64 + 63) // 64 * 64
        if day >= "2026-01-21":
            tokens = max(tokens, 8192)
        out = (("max_num_batched_tokens", tokens), ("max_num_seqs", per_rank))
        if (row["system"] == "b200_sxm" and weights == "fp8" and day >= "2026-01-29"
                and isl == osl == 1024 and conc >= 64 and dp == 1):
            out += (("batch_wait_timeout_iters", 40), ("batch_wait_max_tokens_ratio", 0.8))
        return out, "fp8"
    if model == "gpt-oss-120b":
        return ((("max_num_batched_tokens", 20000), ("max_num_seqs", per_rank)),
                "fp8" if row["system"] == "b200_sxm" else "bf16")
    return None


def sglang_args(row: Mapping[str, str], model: str, weights: str, *, conc: int, isl: int,
                osl: int, tp: int) -> tuple[tuple[tuple[str, Any], ...], str] | None:
    """The flags of an SGLang launch script as ``engine_args`` pairs, and its KV dtype (None:
    kvopt does not know the script). No script passes ``--enable-mixed-chunk`` (SGLang's
    default, a batch of prompts runs alone: ``prefill_policy=prefill_first``). The step
    budget is the smaller of ``--chunked-prefill-size`` and ``--max-prefill-tokens`` (SGLang's
    default 16384); ``--max-running-requests`` caps the running requests; ``--kv-cache-dtype
    fp8_e4m3`` or none (bf16). Scripts (``benchmarks/[single_node/]<name>.sh`` at the row's
    date):

    * ``dsr1_fp4_{b200,b300}.sh`` (ad4f6a4 on): 16384, 256 running, FP8 KV.
    * ``dsr1_fp8_b200.sh`` (ad4f6a4 on): TP 8 32768 and 128 running; TP 4 (1d29967,
      2026-01-13 on) 8192 and 32; FP8 KV.
    * ``dsr1_fp8_h200.sh`` (41aff0a, 2026-03-06 on): 32768, 512 running at 1k/1k else 256.
    * ``qwen3.5_bf16_b200.sh``: none until 9dc87a6 (2026-02-20), then 32768 and 128;
      ``qwen3.5_{fp8,fp4}_b200.sh``, ``qwen3.5_{bf16,fp4}_b300.sh`` (32274d6, 8acbd08):
      32768, 128 (FP8 KV for fp8 and fp4); ``qwen3.5_fp8_b300.sh`` (c0f62a2): 16384,
      ``$CONC`` running, FP8 KV;
      ``qwen3.5_fp8_h200.sh`` (f65d6b4): 16384, 128 running, FP8 KV.
    * ``glm5_nvfp4_b200.sh`` (d43805f): chunked 131072 (prefill 16384), ``$CONC`` running;
      ``glm5_fp8_b300.sh`` (6c66a00): 32768, ``$CONC``, FP8 KV; ``glm5_fp8_h200.sh``: none.
    """
    day, system = measured(row), row["system"]
    tokens, running, kv = 16384, 0, "bf16"
    if model == "DeepSeek-V3" and weights == "fp4" and system in ("b200_sxm", "b300_sxm"):
        running, kv = 256, "fp8"
    elif model == "DeepSeek-V3" and weights == "fp8" and system == "b200_sxm":
        tokens, running, kv = (8192, 32, "fp8") if tp == 4 else (32768, 128, "fp8")
    elif model == "DeepSeek-V3" and weights == "fp8" and system == "h200_sxm":
        if day < "2026-03-06":
            return None
        tokens, running = 32768, 512 if isl == osl == 1024 else 256
    elif model == "Qwen3.5-397B-A17B" and system in ("b200_sxm", "b300_sxm"):
        if weights == "bf16" and system == "b200_sxm" and day < "2026-02-20":
            return (("prefill_policy", "prefill_first"),), kv  # a bare launch
        tokens, running = 32768, 128
        kv = "fp8" if weights in ("fp8", "fp4") else "bf16"
        if system == "b300_sxm" and weights == "fp8":
            tokens, running, kv = 16384, conc, "fp8"
    elif model == "Qwen3.5-397B-A17B" and system == "h200_sxm" and weights == "fp8":
        running, kv = 128, "fp8"
    elif model == "GLM-5" and system == "b200_sxm" and weights == "fp4":
        running = conc
    elif model == "GLM-5" and system == "b300_sxm" and weights == "fp8":
        tokens, running, kv = 32768, conc, "fp8"
    elif model == "GLM-5" and system == "h200_sxm":
        return (("prefill_policy", "prefill_first"),), kv
    else:
        return None
    out: tuple[tuple[str, Any], ...] = (("prefill_policy", "prefill_first"),
                                        ("max_num_batched_tokens", tokens))
    if running:
        out += (("max_num_seqs", running),)
    return out, kv


def vllm_args(row: Mapping[str, str], model: str, weights: str, *, conc: int,
              isl: int) -> tuple[tuple[tuple[str, Any], ...], str] | None:
    """The flags of a vLLM launch script as ``engine_args`` pairs, and its KV dtype (None:
    kvopt does not know the script; a script that passes no token budget leaves vLLM's).

    * ``70b_fp8_{h100,h200,b200}_*.sh``, ``70b_fp4_b200_docker.sh`` (state at 9596d23,
      2025-10-29): ``max-num-batched-tokens: 8192``, ``kv-cache-dtype: fp8``,
      ``--max-num-seqs $CONC`` (B200: 512).
    * ``gptoss_fp4_{h100,h200,b200}*.sh``: ``max-num-batched-tokens: 8192``, ``--max-num-seqs
      $CONC`` (B200: 512); B200 ``kv-cache-dtype: fp8`` from 25506e8 (2025-12-05).
    * ``minimaxm2.5_fp8_{b200,b300}.sh`` (bddbf40, 2026-04-03 on; B300 from its start) and
      ``minimaxm2.5_fp4_*.sh``: ``--kv-cache-dtype fp8 --max-num-batched-tokens $((ISL * 2))``;
      earlier B200 and the H100/H200 scripts: neither (H100 ``--max-num-seqs 256``).
    * ``kimik2.5_*.sh``: ``--max-num-seqs $CONC``; ``kimik2.5_fp4_b200.sh`` from 6c3aceb
      (2026-04-20) also ``--kv-cache-dtype fp8 --max-num-batched-tokens $((ISL * 2))``.
    """
    day, system = measured(row), row["system"]
    if model in ("Llama-3.1-70B", "gpt-oss-120b"):
        seqs = 512 if system == "b200_sxm" else conc
        kv = "fp8" if model == "Llama-3.1-70B" or (
            system == "b200_sxm" and day >= "2025-12-05") else "bf16"
        return (("max_num_batched_tokens", 8192), ("max_num_seqs", seqs)), kv
    if model == "MiniMax-M2":
        if weights == "fp4" or system == "b300_sxm" or (
                system == "b200_sxm" and day >= "2026-04-03"):
            return (("max_num_batched_tokens", 2 * isl),), "fp8"
        return ((("max_num_seqs", 256),) if system == "h100_sxm" else ()), "bf16"
    if model == "Kimi-K2.5":
        if weights == "fp4" and system == "b200_sxm" and day >= "2026-04-20":
            return (("max_num_batched_tokens", 2 * isl), ("max_num_seqs", conc)), "fp8"
        return (("max_num_seqs", conc),), "bf16"
    return None
