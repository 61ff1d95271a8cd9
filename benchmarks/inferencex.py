"""How SemiAnalysis InferenceX launched the runs of the silicon sample's ``sweeps`` collection
(see ``accuracy_silicon.py``): its launch scripts' engine flags and the container images of
the rows that record no engine version, read from the repository's history
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
# TensorRT-LLM images of the rows that record no version, (first day, image tag) in order:
# 70b-tmpl.yml, dsr1-tmpl.yml and gptoss-tmpl.yml at 9596d23 (2025-10-29; unchanged to
# 17d5e20, 2025-11-03), then nvidia-master.yaml (dsr1-fp8-b200-trt: 1.2.0rc6.post2 from
# ec7bafa, 2026-01-29; dsr1-fp4-b200-trt: from 6eecc0e, 2026-02-03; gptoss-fp4-b200-trt:
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


def measured(row: Mapping[str, str]) -> str:
    """The day a row was measured (``measured=YYYY-MM-DD`` in its source; "" if absent)."""
    found = re.search(r"measured=(\d{4}-\d{2}-\d{2})", row.get("silicon_data_source", ""))
    return found.group(1) if found else ""


def recv_interval(system: str, model: str, weights: str, conc: int) -> int:
    """SGLang's ``--scheduler-recv-interval`` in the launch script (:data:`RECV`; 1: none)."""
    rule = RECV.get((model, system, weights), 1)
    if rule == "conc":  # "if [[ $CONC -ge 16 ]]; then SCHEDULER_RECV_INTERVAL=30 else 10"
        return 30 if conc >= 16 else 10
    return int(rule)


def trt_image(row: Mapping[str, str], model: str, weights: str) -> str:
    """The TensorRT-LLM image tag a row ran (:data:`TRT_IMAGES`; "" when unknown)."""
    day, tag = measured(row), ""
    for first, image in TRT_IMAGES.get((model, row["system"], weights), ()):
        if day and day >= first:
            tag = image
    return tag


def trt_args(row: Mapping[str, str], model: str, weights: str, *, conc: int, isl: int,
             osl: int, tp: int, dp: int) -> tuple[tuple[str, Any], ...] | None:
    """The token budget and batch waiting of a TensorRT-LLM launch script, as ``engine_args``
    pairs (None: kvopt does not know the script; the caller keeps its own).

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
        return out
    if model == "DeepSeek-V3":
        tokens = (conc + isl + 64 + 63) // 64 * 64
        if day >= "2026-01-21":
            tokens = max(tokens, 8192)
        out = (("max_num_batched_tokens", tokens), ("max_num_seqs", per_rank))
        if (row["system"] == "b200_sxm" and weights == "fp8" and day >= "2026-01-29"
                and isl == osl == 1024 and conc >= 64 and dp == 1):
            out += (("batch_wait_timeout_iters", 40), ("batch_wait_max_tokens_ratio", 0.8))
        return out
    if model == "gpt-oss-120b":
        return (("max_num_batched_tokens", 20000), ("max_num_seqs", per_rank))
    return None
