"""kvopt's vocabularies, in one place: what a goal, a capacity method, an objective or a
precision may be, and the defaults of a search space.

The CLI's ``--help``, the study schema, fleet files and the Python front door all read
these, so they cannot drift apart. This module imports nothing (``kvopt --help`` reads it
without numpy).
"""

from __future__ import annotations

# fleet sizing goals (kvopt plan --goal, fleet.yaml objective, study goal)
GOALS = ("cost", "latency", "throughput", "quality", "balanced", "gpus", "power")
# goals under which a dominated candidate can never be chosen (the planner may prove it
# dominated instead of searching it: capacity "confirm"), and the column it prunes on
PRUNE_GOALS = ("cost", "quality")
# how candidates' goodput is found: the analytic model's exact search; the screen (every
# candidate at once, its own approximation); confirm (screen ranks, exact decides)
CAPACITY_METHODS = ("exact", "screen", "confirm")
DEFAULT_CAPACITY = "confirm"
# Pareto objectives (all minimized) and what each measures
PARETO_OBJECTIVES = {
    "cost": "$/h of the fleet",
    "ttft_p99": "TTFT p99 in ms at the planned rate",
    "tpot_p99": "TPOT p99 in ms at the planned rate",
    "quality": "accuracy loss vs BF16 in percentage points",
    "throughput": "minus the fleet's output capacity in tokens/s (minimized)",
    "gpus": "GPUs in the fleet",
}
DEFAULT_PARETO_OBJECTIVES = ("cost", "ttft_p99", "tpot_p99")
PARETO_METHODS = ("nsga2", "exact")
PARETO_FLEETS = ("single", "mixed", "disagg")  # one config; two mixed; prefill/decode pools
# load modes of one replica
LOAD_MODES = ("batch", "concurrency", "rps", "offline")
# precisions a replica may take (weights, KV cache); support depends on the GPU
WEIGHT_DTYPES = ("bf16", "fp16", "fp8", "int8", "int4", "fp4", "mxfp4")
KV_DTYPES = ("bf16", "fp16", "fp8")
# GPU groups a list of candidate GPUs may name instead of ids
GPU_VENDORS = ("nvidia", "amd")
GPU_FORM_FACTORS = ("datacenter", "desktop", "laptop")
GPU_GROUPS = ("all", *GPU_VENDORS, *GPU_FORM_FACTORS)
# default search space of plan/compare/size and of pareto
PLAN_GPUS = ("H100-SXM", "H200", "A100-SXM-80GB", "L40S", "L4", "MI300X")
PARETO_GPUS = ("H100-SXM", "A100-SXM-80GB", "L40S", "L4")
TP_OPTIONS = (1, 2, 4, 8)
PRECISIONS: tuple[tuple[str, str], ...] = (
    ("bf16", "bf16"), ("fp8", "fp8"), ("fp8", "bf16"), ("int4", "bf16"))
PLAN_BATCHES = (8, 16, 32, 64, 128, 256, 512, 1024)
PARETO_BATCHES = (16, 64, 256)
DEFAULT_ENGINE = "vllm"


def precision_text(pairs: tuple[tuple[str, str], ...]) -> str:
    """``(("bf16", "bf16"), ...)`` -> ``"bf16/bf16,..."`` (the CLI's and files' spelling)."""
    return ",".join(f"{w}/{kv}" for w, kv in pairs)


def int_text(values: tuple[int, ...]) -> str:
    """``(1, 2, 4)`` -> ``"1,2,4"``."""
    return ",".join(str(v) for v in values)

# kvopt watch: health from best to worst, and the exit code of each (1 and 2 are taken by
# errors and usage errors)
WATCH_STATUSES = ("ok", "warning", "critical", "unreachable")
WATCH_EXIT_CODES = {"ok": 0, "warning": 3, "critical": 4, "unreachable": 5}
# ways to pay for GPUs (kvopt schedule, the price book's payments: section); committed kinds
# are fixed for the horizon, flexible ones are bought per period
PAYMENT_KINDS = ("on_demand", "reserved_1y", "reserved_3y", "spot", "owned")
COMMITTED_KINDS = ("reserved_1y", "reserved_3y", "owned")
FLEXIBLE_KINDS = ("on_demand", "spot")
# goals a schedule optimizes (the separable ones: a sum over workloads)
SCHEDULE_GOALS = ("cost", "gpus", "power", "quality")
