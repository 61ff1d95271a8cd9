"""The ranges every number kvopt takes must lie in, each with the reason for its ends.

One table serves the CLI (its option types), fleet and study files and the Python front
door (:mod:`kvopt.build`): a value outside its range, or not finite (NaN, inf), is one
:class:`~kvopt.errors.InputError` naming the field, the value, the range and why. The ends
come from physics, from what engines accept, or from what keeps the work bounded (the time
and memory of a run must not grow with a count typed by mistake). Imports nothing heavy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from kvopt.errors import InputError


@dataclass(frozen=True)
class Range:
    """``lo <= value <= hi`` (``lo < value`` when ``lo_open``), finite; whole numbers when
    ``integer``. ``why`` says where the ends come from."""

    lo: float
    hi: float
    why: str
    integer: bool = False
    lo_open: bool = False
    unit: str = ""

    def text(self) -> str:
        lo = f"{_num(self.lo)} < " if self.lo_open else f"{_num(self.lo)} <= "
        kind = "an integer" if self.integer else "a finite number"
        unit = f" {self.unit}" if self.unit else ""
        return f"must be {kind} with {lo}value <= {_num(self.hi)}{unit}"

    def check(self, field: str, value: object, fix: str = "") -> Any:
        """``value`` as a float (an int when ``integer``) if it lies in the range, else an
        InputError naming ``field``."""
        ok = (isinstance(value, int | float) and not isinstance(value, bool)
              and math.isfinite(value)
              and (value > self.lo if self.lo_open else value >= self.lo)
              and value <= self.hi
              and (not self.integer or float(value).is_integer()))
        if not ok:
            raise InputError(field, value, f"{self.text()} ({self.why})", fix)
        num: Any = value
        return int(num) if self.integer else float(num)


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e12 else f"{x:g}"


# --- traffic -------------------------------------------------------------------------
# below 1e-3 (one request every ~17 minutes) the MILP's feasibility tolerance (1e-7 on
# sum_j goodput_j x_j >= rate) cannot tell the demand from none and returns an empty
# fleet; 1e6 is ~30x the busiest public LLM service (~3e4 requests/s)
RPS = Range(1e-3, 1e6, "one request every ~17 minutes to ~30x the busiest LLM service",
            unit="requests/s")
# a token count of one request: the longest context of any catalog model is 131_072 (and
# the model's own context is checked later); 2**22 keeps a typo from allocating per token
TOKENS = Range(1, 2**22, "4x the longest context of any catalogued model; each model's "
               "own context is checked too", integer=True, unit="tokens")
# sequences one engine step holds: the largest default max_num_seqs of any engine profile
# (SGLang, TensorRT-LLM) is 2048; 32x that
SEQS = Range(1, 65_536, "32x the largest max_num_seqs any engine profile runs (2048)",
             integer=True, unit="sequences")
CLIENTS = Range(1, 1_000_000, "closed-loop clients: beyond the engine's max_num_seqs they "
                "only queue", integer=True, unit="clients")
OFFLINE = Range(1, 1_000_000, "requests of an offline run (the analytic run keeps a few "
                "numbers per request and also caps its engine steps)", integer=True,
                unit="requests")
ROUNDS = Range(1, 10_000, "requests each client sends in a benchmark run", integer=True)
SIM_REQUESTS = Range(1, 100_000, "the simulator steps through every request (~10^4 per "
                     "second); larger runs are the analytic model's (kvopt estimate)",
                     integer=True, unit="requests")
# the simulator's work grows with the tokens it generates (~1 us each, every sequence of
# every step): at most this many output tokens per run (~10 s)
MAX_SIM_TOKENS = 10_000_000
# the analytic offline recurrence walks the run step by step (~20 us and ~1 KB a step)
MAX_OFFLINE_STEPS = 500_000
SEED = Range(0, 2**32 - 1, "a 32-bit seed, as numpy and pymoo take", integer=True)
# --- latency, money, power ---------------------------------------------------------------
SLO_MS = Range(0, 86_400_000, "a p99 latency bound: above a day it bounds nothing",
               lo_open=True, unit="ms")
PRICE_USD_H = Range(0, 1_000, "$ per GPU-hour: ~100x the dearest catalog GPU", lo_open=True)
BUDGET_USD_H = Range(0, 1e8, "$ per hour for a fleet", lo_open=True)
POWER_KW = Range(0, 1e7, "kW for a fleet (10 GW)", lo_open=True)
QUALITY_PCT = Range(0, 100, "percentage points of accuracy loss")
TOLERANCE_PCT = Range(0, 1_000, "relative error allowed, %")
GAP = Range(0, 1, "relative MIP gap: 0 (proven optimal) to 1 (any feasible fleet)")
TIME_LIMIT_S = Range(0, 604_800, "seconds a solver may run (a week)", lo_open=True)
DASK_TIMEOUT_S = Range(0, 3_600, "seconds to reach a scheduler", lo_open=True)
# --- fleet shape -----------------------------------------------------------------------
TP = Range(1, 128, "GPUs per replica: TP divides the attention heads (at most 128 in the "
           "catalog)", integer=True)
# parallelism beyond TP (kvopt.physics.parallel): EP divides the routed experts (at most 384
# in the catalog and the silicon data; 512 leaves room), attention-DP ranks and pipeline
# stages each up to the largest NVLink domain (GB200/GB300 NVL72: 72 GPUs) rounded up
EP = Range(1, 512, "expert-parallel ranks: EP divides the routed experts (at most a few "
           "hundred)", integer=True)
DP = Range(1, 128, "attention data-parallel ranks (wide-EP deployments run up to a few "
           "NVL72 racks' worth)", integer=True)
PP = Range(1, 128, "pipeline stages: at most one per layer (the catalog's deepest model has "
           "126 layers)", integer=True)
REPLICA_GPUS = Range(1, 1_024, "GPUs of one replica (tp x dp x pp): the largest wide-EP "
                     "deployments use a few hundred", integer=True)
REDUNDANCY = Range(0, 1_000, "spare replicas per workload", integer=True)
GPU_COUNT = Range(0, 1_000_000, "GPUs of one type on hand", integer=True)
REPLICAS = Range(1, 1_000_000, "replicas of one configuration", integer=True)
PARETO_REPLICAS = Range(1, 1_024, "replicas per configuration a front considers",
                        integer=True)
LIST_ITEMS = 64  # values of one list option (TP degrees, batches, precisions, loads)
# --- multimodal requests ----------------------------------------------------------------
# images per request: vLLM's --limit-mm-per-prompt is set per deployment; 64 keeps one
# request's encoder work (and its activation memory) bounded
IMAGES = Range(0, 64, "images per request (the encoder runs each one)", integer=True,
               unit="images")
# pixels on one side of an image: 4x the 4096 px side of the largest image a catalog
# processor keeps (Qwen3-VL/Qwen3.5 max_pixels = 4096^2); larger ones are resized down
IMAGE_PX = Range(1, 16_384, "pixels on a side: 4x the largest side any catalog image "
                 "processor keeps (4096)", integer=True, unit="px")
# --- features --------------------------------------------------------------------------
HIT_RATE = Range(0, 1, "a fraction of requests")
SPEC_K = Range(1, 16, "draft tokens per step (EAGLE/MTP use 1-8)", integer=True)
ACCEPTANCE = Range(0, 1, "a per-token probability below 1", unit="")
# --- searches and runs -------------------------------------------------------------------
POP = Range(2, 2_000, "NSGA-II individuals", integer=True)
GENS = Range(1, 2_000, "NSGA-II generations", integer=True)
MAX_EVALUATIONS = 400_000  # pop x gens: ~1 minute of evaluations
CURVE_POINTS = Range(2, 100, "loads on a curve", integer=True)


def workers() -> Range:
    """Worker processes of a study: each is CPU-bound, so at most the CPUs this process
    may use (more only add memory and contention)."""
    import os

    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return Range(1, max(1, cpus), f"the CPUs this machine gives kvopt ({cpus})",
                 integer=True)


def check_run_steps(requests: int, in_flight: int, steps: float) -> None:
    """An analytic run that steps through ``steps`` engine steps (``requests`` at once, at
    most ``in_flight`` running) within :data:`MAX_OFFLINE_STEPS` (~10 s, ~0.5 GB)."""
    if steps > MAX_OFFLINE_STEPS:
        raise InputError("requests", requests, f"a run of {requests} requests at once takes "
                         f"~{steps:.3g} engine steps ({in_flight} running); kvopt steps "
                         f"through at most {MAX_OFFLINE_STEPS}",
                         "submit fewer requests at once; a long run's steady state is "
                         f"--concurrency {in_flight}")


def check_acceptance(field: str, value: object) -> float:
    """Speculative acceptance: ``0 <= a < 1``."""
    v = float(ACCEPTANCE.check(field, value))
    if v >= 1.0:
        raise InputError(field, value, "must be below 1 (every draft token accepted is "
                         "infinite speed-up)", "give the measured acceptance rate")
    return v


def check_list(field: str, values: tuple[object, ...], fix: str = "") -> None:
    """A list option: at least one value, at most :data:`LIST_ITEMS`."""
    if not values:
        raise InputError(field, "", "is empty", fix or "give at least one value")
    if len(values) > LIST_ITEMS:
        raise InputError(field, f"{len(values)} values", f"at most {LIST_ITEMS} values "
                         "(each multiplies the configurations searched)", fix)
# --- kvopt bench (a real load run) -------------------------------------------------------
BENCH_REQUESTS = Range(1, 1_000_000, "requests one load run sends (each result is kept)",
                       integer=True, unit="requests")
BENCH_RPS = Range(0, 1e5, "requests/s one client process can send", lo_open=True)
BENCH_CLIENTS = Range(1, 10_000, "requests in flight from one client process",
                      integer=True)
SECONDS = Range(0, 604_800, "seconds (at most a week)", lo_open=True, unit="s")
COST_CAP_MULTIPLE = Range(1, 1_000, "a Pareto front's cost bound, as a multiple of the "
                          "cheapest feasible fleet")
# --- kvopt watch (a running deployment against its plan) ---------------------------------
WATCH_INTERVAL_S = Range(0.05, 86_400, "seconds between scrapes: Prometheus counters need a "
                         "window, and a day is the longest useful one", unit="s")
WATCH_COUNT = Range(0, 10_000_000, "reports before stopping (0: until interrupted)",
                    integer=True)
WATCH_WINDOW_S = Range(0, 2_592_000, "seconds a condition must last (at most 30 days)",
                       unit="s")
UTIL_FRACTION = Range(0, 10, "a fraction of the planned goodput or rate (10x is far past "
                      "any alert worth raising)", lo_open=True)
UNDER_UTIL = Range(0, 1, "a fraction of the planned rate")
KV_FULL = Range(0, 1, "a fraction of the KV cache", lo_open=True)
SLO_RISK = Range(0, 1, "a fraction of an SLO", lo_open=True)
MIN_REQUESTS = Range(1, 1_000_000, "completions in one window", integer=True)
# --- kvopt export (deployment artifacts) --------------------------------------------------
KV_OFFLOAD_GIB = Range(0, 65_536, "GiB of host memory per replica for a CPU tier of the KV "
                       "cache (64 TiB: far past any server's DRAM)", unit="GiB")
LMCACHE_CHUNK = Range(1, 65_536, "tokens per LMCache chunk", integer=True, unit="tokens")
HPA_FACTOR = Range(1, 100, "the autoscaler's maxReplicas as a multiple of the planned "
                   "replicas")
# --- kvopt schedule (cost over time) ----------------------------------------------------
PERIOD_HOURS = Range(1 / 60, 8_784, "hours per period: a minute to a (leap) year", unit="h")
# the schedule MILP grows with periods x options (168 hourly periods x 20 workloads solve in
# ~25 s on 2 cores): at most six weeks of hours; bin a longer trace coarser
MAX_PERIODS = 1_008
UTILIZATION = Range(0, 1, "a share of the hours", lo_open=True)
