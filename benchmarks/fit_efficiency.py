"""Fit kvopt's kernel forms on aiconfigurator 0.12.0's measured kernels -> models/efficiency.yaml.

Data: the parquet tables of ``aiconfigurator-core==0.12.0`` (see ``aic_tables.py``), CUDA-graph
timings in ms per op call, per GPU x engine (TensorRT-LLM, vLLM, SGLang; the version folder
aiconfigurator queries). Forms (``kvopt/physics/kernels.py``; fractions of kvopt's own GPU
cards, ``models/gpu/*.yaml``), each fitted per kernel family (``aic_tables.FAMILIES``: the
measured GPUs of one architecture, each row priced with its own card; errors per GPU) x engine
x dtype, so that a part with more bandwidth (or peak) of an architecture is never priced
slower:

* GEMM per GPU x engine x dtype: ``t = t0 + smoothmax(F/(P ec), B/(BW em); p) + q m k / BW``
  (``q`` only where the path quantizes its activations), on weight shapes ``n, k >= 512``.
* Attention per GPU x engine, context and generation apart (GQA/MHA tables, bf16 math, every
  window and KV dtype; MLA tables for DeepSeek-V3 geometry): ``t0 + smoothmax(tc, tm; p)`` on
  work padded by ``T`` tokens (virtual keys per decode sequence; query padding per prefill).
* Gated DeltaNet per GPU x engine, context and generation apart (``gdn`` tables: short
  convolution + chunked or recurrent delta rule, summed per shape): the attention form on
  ``kvopt.physics.mixers.linear_group``'s work, without padding.
* MoE per GPU x engine x dtype (power-law routing of exponent 1.2, gated experts): floor,
  per-expert row tile ``T_m``, width padding ``W_p`` and routing traffic ``g`` (``MoeCurve``).
* Element-wise kernels per GPU x engine (``quantize`` tables: static fp8 quantization, the
  traffic of a norm or activation): ``t = t0 + B / (BW em)`` (``fit_elementwise.py``).
* All-reduce per GPU x implementation (TensorRT-LLM's, vLLM's and SGLang's CUDA-graph custom
  kernels, NCCL) x GPU count: ``lat + min(f B / bw_1, s + f B / bw_2)``.

Least squares on log time (scipy), on a deterministic subsample of each curve's rows (seed 0;
errors over all of them). Run with the aiconfigurator package installed (``.ci/run`` makes a
``.venv-fit``): ``python benchmarks/fit_efficiency.py`` writes the file and the small samples
the tests use (``benchmarks/data/aic_sample_*.csv``); ``--check`` refits and compares with the
shipped file (exit 1 on drift; tolerance: ``CHECK_TOLERANCE``).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import aic_tables as aic
import efficiency_file
from fit_elementwise import fit_elementwise
from fit_forms import (
    SAMPLE_ROWS,
    Fit,
    Predictor,
    Problem,
    family_tables,
    fit_parts,
)

from kvopt.physics.comm import link_bytes_s
from kvopt.physics.efficiency import (
    allreduce_curve_from,
    attention_curve_from,
    gemm_curve_from,
    moe_curve_from,
)
from kvopt.physics.kernels import MoeWork

OUT = aic.ROOT / "models" / "efficiency.yaml"
SAMPLES = aic.ROOT / "benchmarks" / "data"
# --check: a refit matches the shipped curve when its predictions on the curve's rows agree
# within 2% at the 99th percentile and its median/p90 errors within 0.5/1.0 points; the table
# path, engine version and row counts must be identical
CHECK_TOLERANCE = {"prediction_p99": 0.02, "median_pts": 0.5, "p90_pts": 1.0}
# broken tables: RTX PRO 6000 vLLM fp8_block has 518 rows at <= 3 TFLOP/s
SKIP = {("rtx_pro_6000_server", "vllm", "gemm", "fp8_block")}


# -- GEMM -----------------------------------------------------------------------------------------

def gemm_problem(quant: bool) -> Problem:
    def predictor(r: aic.GemmRows) -> Predictor:
        return lambda p: gemm_curve_from(p).time_s(
            flops=r.flops, nbytes=r.nbytes, launches=1.0, quant_elems=r.quant_elems,
            peak_flop_s=r.peak, bandwidth_bytes_s=r.bw)

    n = 5 if quant else 4
    return Problem(("compute", "memory", "smoothmax_p", "floor_us", "quant_bytes")[:n],
                   (0.05, 0.05, 1.0, 0.0, 0.0)[:n], (1.0, 1.0, 20.0, 100.0, 40.0)[:n],
                   ((0.7, 0.8, 2.5, 3.0, 5.0)[:n], (0.5, 0.6, 6.0, 8.0, 1.0)[:n]), predictor)


def gemm_frame(frame: pd.DataFrame, dtype: str) -> pd.DataFrame:
    """Rows of one dtype on weight shapes (n, k >= 512), the fastest kernel per shape (vLLM
    times several fp8_block kernels; the engine picks)."""
    g = frame[(frame.gemm_dtype == dtype) & (frame.n >= 512) & (frame.k >= 512)]
    return g.groupby(["gpu", "m", "n", "k"], as_index=False)["latency"].min()


def fit_gemm(family: str, engine: str, members: tuple[str, ...] | None = None) -> list[Fit]:
    tabs = family_tables(family, "gemm", engine, "gemm_perf.parquet",
                         ["gemm_dtype", "m", "n", "k", "latency"], members)
    fits = []
    for dtype, (key, peak_dtype, _, quant) in aic.GEMM_DTYPES.items():
        parts = [(t, gemm_frame(t.frame, dtype)) for t in tabs
                 if (t.path.split("/")[3], engine, "gemm", key) not in SKIP
                 and aic.load_gpu(t.gpu).has_tensor(peak_dtype)]
        parts = [(t, f) for t, f in parts if len(f) >= 50]
        if dtype == "fp8_static":
            parts = static_fp8_parts(tabs, engine)
        if parts:
            fits.append(fit_parts((family, engine, "gemm", key), gemm_problem(quant), parts,
                                  lambda f, d=dtype: aic.gemm_rows(f, d), "gemm"))
    return fits


def static_fp8_parts(tabs: list[aic.Table], engine: str) -> list[tuple[aic.Table, pd.DataFrame]]:
    """The fp8 GEMM rows of each table less the engine's dynamic scale computation at the
    same ``m, k`` (its own ``quantize/computescale_perf`` table, same system and version):
    a static-scale checkpoint's GEMM. None where the engine's computation takes no time
    (SGLang's table: zeros at the median), nor where a row would not stay positive."""
    parts = []
    for t in tabs:
        system = t.path.split("/")[3]
        cs = aic.read_table(system, "quantize", engine, "computescale_perf.parquet",
                            ["m", "k", "latency"])
        rows = gemm_frame(t.frame, "fp8")
        if (cs is None or cs.version != t.version or not cs.frame.latency.median() > 0
                or len(rows) < 50):
            continue
        scale = cs.frame.groupby(["m", "k"], as_index=False)["latency"].median()
        both = rows.merge(scale, on=["m", "k"], suffixes=("", "_scale"))
        both = both.assign(latency=both.latency - both.latency_scale)
        both = both[both.latency > 0].drop(columns="latency_scale").reset_index(drop=True)
        derived = aic.Table(frame=both, path=f"{t.path} - {cs.path}", version=t.version)
        parts.append((derived, both.assign(gemm_dtype="fp8_static")))
    return parts


# -- attention ------------------------------------------------------------------------------------

def attention_problem() -> Problem:
    def predictor(r: aic.AttentionRows) -> Predictor:
        def pred(p: dict[str, float]) -> np.ndarray:
            flops, nbytes = aic.attention_work(r, p["pad_tokens"])
            return attention_curve_from(p).time_s(
                flops=flops, nbytes=nbytes, launches=1.0, peak_flop_s=r.peak,
                bandwidth_bytes_s=r.bw)
        return pred

    return Problem(("compute", "memory", "smoothmax_p", "floor_us", "pad_tokens"),
                   (0.005, 0.05, 1.0, 0.0, 0.0), (1.0, 1.0, 20.0, 200.0, 2048.0),
                   ((0.5, 0.8, 3.0, 10.0, 100.0), (0.1, 0.6, 1.5, 5.0, 20.0)), predictor)


ATTENTION_TABLES = {  # (op folder, table, MLA geometry)
    ("attention", "context"): ("attention", "context_attention_perf.parquet", False),
    ("attention", "generation"): ("attention", "generation_attention_perf.parquet", False),
    ("mla", "context"): ("mla", "context_mla_perf.parquet", True),
    ("mla", "generation"): ("mla", "generation_mla_perf.parquet", True),
}
GQA_GROUPS_MAX = 16  # query heads per KV head in the catalog's models (Llama-3.1-405B: 16);
# TensorRT-LLM's XQA decode slows several-fold above it (few KV heads: few thread blocks)
KV_NAMES = {"bfloat16": "bf16", "fp8": "fp8"}


def attention_frame(frame: pd.DataFrame, mla: bool) -> pd.DataFrame:
    d = frame
    for col in ("attn_dtype", "mla_dtype"):  # kvopt prices attention math in bf16
        if col in d:
            d = d[d[col] == "bfloat16"]
    if not mla:
        d = d[d.num_heads / d.num_key_value_heads <= GQA_GROUPS_MAX]
    keys = [c for c in ("gpu", "batch_size", "isl", "step", "num_heads", "num_key_value_heads",
                        "head_dim", "window_size", "kv_cache_dtype") if c in d]
    return d.groupby(keys, as_index=False)["latency"].min()


def fit_attention(family: str, engine: str, members: tuple[str, ...] | None = None
                  ) -> list[Fit]:
    """Context and generation apart, and per KV-cache dtype (the fp8 cache runs other kernels:
    dequantization in the inner loop or fp8 math), curves named ``<phase>_<kv dtype>``."""
    fits = []
    for (section, phase), (op, table, mla) in ATTENTION_TABLES.items():
        frames = [(t, attention_frame(t.frame, mla))
                  for t in family_tables(family, op, engine, table, None, members)]
        for kv, kv_name in KV_NAMES.items():
            parts = [(t, f[f.kv_cache_dtype == kv].reset_index(drop=True)) for t, f in frames]
            parts = [(t, f) for t, f in parts if len(f) >= 50]
            if parts:
                fits.append(fit_parts((family, engine, section, f"{phase}_{kv_name}"),
                                      attention_problem(), parts,
                                      lambda f, ph=phase, m=mla: aic.attention_rows(f, ph, m),
                                      "attention"))
    return fits


# -- Gated DeltaNet -------------------------------------------------------------------------------

def linear_problem() -> Problem:
    """The attention form without padding (a recurrence has no key tiles to pad)."""
    def predictor(r: aic.GdnRows) -> Predictor:
        return lambda p: attention_curve_from({**p, "pad_tokens": 0.0}).time_s(
            flops=r.flops, nbytes=r.nbytes, launches=1.0, peak_flop_s=r.peak,
            bandwidth_bytes_s=r.bw)

    return Problem(("compute", "memory", "smoothmax_p", "floor_us"),
                   (0.0005, 0.005, 1.0, 0.0), (1.0, 1.0, 20.0, 500.0),
                   ((0.2, 0.5, 3.0, 10.0), (0.02, 0.1, 1.5, 30.0)), predictor)


def fit_linear(family: str, engine: str, members: tuple[str, ...] | None = None
               ) -> list[Fit]:
    """Gated DeltaNet layers (``linear_attention/gdn_perf``), context and generation apart:
    curves ``linear.context`` and ``linear.generation`` (no padding: ``pad_tokens`` 0)."""
    tabs = family_tables(family, "linear_attention", engine, "gdn_perf.parquet", None, members)
    fits = []
    for phase in ("context", "generation"):
        parts = [(t, aic.gdn_frame(t.frame, phase)) for t in tabs]
        parts = [(t, f) for t, f in parts if len(f) >= 50]
        if parts:
            fit = fit_parts((family, engine, "linear", phase), linear_problem(), parts,
                            lambda f, ph=phase: aic.gdn_rows(f, ph), "linear")
            fit.params["pad_tokens"] = 0.0
            fits.append(fit)
    return fits


# -- MoE ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MoeRows:
    work: MoeWork
    peak: np.ndarray
    bw: np.ndarray
    t: np.ndarray


def moe_rows(frame: pd.DataFrame, dtype: str) -> MoeRows:
    """One fused MoE layer on one rank, as kvopt's ``experts`` op counts it (gated experts):
    local experts ``E / ep``, touched ``(E/ep)(1 - (1 - k/E)^T)``, local pairs ``T k / ep``,
    width ``inter / tp``; bytes = touched experts' weights + pairs x (2h + 3w) bf16."""
    _, peak_dtype, wbytes = aic.MOE_DTYPES[dtype]
    T, h, inter, k, E, tp, ep = (frame[c].to_numpy(np.float64) for c in (
        "num_tokens", "hidden_size", "inter_size", "topk", "num_experts", "moe_tp_size",
        "moe_ep_size"))
    w = inter / tp
    touched = (E / ep) * (1 - (1 - k / E) ** T)
    pairs = T * k / ep
    nbytes = touched * 3 * h * w * wbytes + pairs * (2 * h + 3 * w) * aic.ACT_BYTES
    work = MoeWork(touched=touched, pairs=pairs, hidden=h, width=w, matrices=3.0,
                   nbytes=nbytes, route_pairs=T * k)
    peak, bw = aic.card_arrays(frame, peak_dtype)
    return MoeRows(work, peak, bw, frame["latency"].to_numpy(np.float64) * 1e-3)


def moe_problem() -> Problem:
    def predictor(r: MoeRows) -> Predictor:
        return lambda p: moe_curve_from(p).time_s(r.work, peak_flop_s=r.peak,
                                                  bandwidth_bytes_s=r.bw)

    return Problem(("compute", "memory", "smoothmax_p", "floor_us", "row_tile", "width_tile",
                    "route_bytes"),
                   (0.02, 0.05, 1.0, 0.0, 1.0, 1.0, 0.0),
                   (1.0, 1.0, 20.0, 300.0, 512.0, 2048.0, 50.0),
                   ((0.6, 0.8, 3.0, 20.0, 32.0, 64.0, 1.0),
                    (0.3, 0.5, 1.5, 40.0, 64.0, 128.0, 4.0)), predictor)


# Which of the MoE tables' routings the curves price. aiconfigurator 0.12.0 times each shape
# under three: "balanced" (every expert gets T k / E pairs), "power_law_1.01" and
# "power_law_1.2" (expert loads drawn from a power law, its generator's default exponent for
# MoE models, aiconfigurator_core/sdk/models/moe.py _power_law_alpha; 1.01 for the DeepSeek
# family). Real routers are not balanced (popular experts; benchmark prompts are not the
# training text), and a skewed load costs time at prefill sizes (the busiest expert: +10-30%
# at 4096-16384 tokens) and saves it at decode sizes (fewer experts touched: -10-25% at
# 16-256 tokens). Chosen on the silicon train runs (benchmarks/accuracy_silicon.py
# --no-versions, 1,374 configurations, median TTFT / TPOT error): balanced 42.6 / 13.7%,
# power_law_1.01 40.5 / 12.9%, power_law_1.2 39.6 / 12.6%. One exponent for every model (a
# property of the serving traffic, not fitted per model).
MOE_ROUTING = "power_law_1.2"


def fit_moe(family: str, engine: str, members: tuple[str, ...] | None = None) -> list[Fit]:
    """Gated experts, the fastest kernel per shape (the engine picks), the tables' power-law
    routing of exponent 1.2 (:data:`MOE_ROUTING`)."""
    frames = []
    for t in family_tables(family, "moe", engine, "moe_perf.parquet", None, members):
        d = t.frame
        frames.append((t, d[(d.distribution == MOE_ROUTING)
                            & ~d.kernel_source.astype(str).str.contains("nongated")]))
    fits, done = [], set()
    for dtype, (key, peak_dtype, _) in aic.MOE_DTYPES.items():
        parts = []
        for t, d in frames:
            if key in done or not aic.load_gpu(t.gpu).has_tensor(peak_dtype):
                continue
            f = d[d.moe_dtype == dtype].groupby(
                ["gpu", "num_tokens", "hidden_size", "inter_size", "topk", "num_experts",
                 "moe_tp_size", "moe_ep_size"], as_index=False)["latency"].min()
            if len(f) >= 100:
                parts.append((t, f))
        if parts:
            done.add(key)
            fit = fit_parts((family, engine, "moe", key), moe_problem(), parts,
                            lambda f, d=dtype: moe_rows(f, d), "moe")
            fit.meta["routing"] = MOE_ROUTING
            fits.append(fit)
    return fits


# -- all-reduce (per measured GPU: the links are the system's) ------------------------------------

@dataclass(frozen=True)
class ArRows:
    nbytes: np.ndarray
    t: np.ndarray


def allreduce_problem(n: int) -> Problem:
    def predictor(r: ArRows) -> Predictor:
        return lambda p: allreduce_curve_from(p, n).time_s(r.nbytes)

    return Problem(("latency_us", "oneshot_bus_gb_s", "ring_bus_gb_s", "switch_us"),
                   (0.0, 0.5, 0.5, 0.0), (300.0, 3000.0, 3000.0, 2000.0),
                   ((5.0, 100.0, 300.0, 10.0), (15.0, 30.0, 100.0, 50.0)), predictor)


ALLREDUCE_IMPLS = {  # name in the file -> (engine folder, table, row filter)
    "trtllm": ("trtllm", "custom_allreduce_perf.parquet",
               lambda d: d[~d.kernel_source.astype(str).str.contains("MNNVL")]),
    "vllm": ("vllm", "custom_allreduce_perf.parquet", lambda d: d[d.backend == "vllm_graph"]),
    "sglang": ("sglang", "custom_allreduce_perf.parquet",
               lambda d: d[d.backend == "sglang_graph"]),
    "nccl": ("nccl", "nccl_perf.parquet",
             lambda d: d[(d.op_name == "all_reduce") & (d.nccl_dtype == "half")]),
}


# a measured all-reduce whose two-shot/ring bus bandwidth is below this fraction of the card's
# link (per direction) ran over another path than the card's interconnect (L40S at 4 and 8
# GPUs: 4-5 and 1.3-2 GB/s, host-staged across sockets, against a P2P PCIe Gen4 card at
# 31.5 GB/s); those sizes keep models/interconnect.yaml's constants
MIN_LINK_FRACTION = 0.25


def fit_allreduce(system: str) -> list[Fit]:
    gpu = aic.load_gpu(aic.SYSTEMS[system])
    link = link_bytes_s(gpu)
    fits = []
    for impl, (folder, table, keep) in ALLREDUCE_IMPLS.items():
        tab = aic.read_table(system, "comm", folder, table)
        if tab is None:
            continue
        d = keep(tab.frame)
        if not len(d):
            continue
        d = d.groupby(["gpu", "num_gpus", "message_size"], as_index=False)["latency"].min()
        for n in sorted(int(v) for v in d.num_gpus.unique() if 2 <= v <= gpu.max_gpus_per_node):
            dn = d[d.num_gpus == n].reset_index(drop=True)
            if len(dn) < 6:
                continue
            fit = fit_parts(
                (gpu.id, impl, "allreduce", str(n)), allreduce_problem(n), [(tab, dn)],
                lambda f: ArRows(f["message_size"].to_numpy(np.float64) * 2.0,  # bf16
                                 f["latency"].to_numpy(np.float64) * 1e-3), "allreduce")
            if fit.params["ring_bus_gb_s"] * 1e9 >= MIN_LINK_FRACTION * link:
                fits.append(fit)
    return fits


# -- main -----------------------------------------------------------------------------------------

def fit_all(families: list[str], log: Callable[[str], None]) -> list[Fit]:
    fits: list[Fit] = []
    for family in families:
        for engine in aic.ENGINES:
            for fn in (fit_gemm, fit_attention, fit_linear, fit_moe, fit_elementwise):
                for f in fn(family, engine):
                    fits.append(f)
                    per = " ".join(f"{g} {m:.1f}/{q:.1f}" for g, (m, q) in
                                   f.meta["per_gpu"].items())
                    log(f"{'/'.join(f.path):44s} {f.meta['median_ape_pct']:6.1f} "
                        f"{f.meta['p90_ape_pct']:6.1f}   {per}")
        for system in aic.FAMILIES[family]:
            fits += fit_allreduce(system)
    return fits


def check(fits: list[Fit], shipped: dict[str, Any]) -> list[str]:
    """Drift of a refit against the shipped file (``CHECK_TOLERANCE``)."""
    problems = []
    seen = set()
    for f in fits:
        node = efficiency_file.curve_node(shipped, f.path)
        seen.add(f.path)
        if node is None:
            problems.append(f"{'/'.join(f.path)}: not in the shipped file")
            continue
        for key in ("tables", "engine_version", "rows", "evaluated_rows"):
            if node.get(key) != f.meta[key]:
                problems.append(f"{'/'.join(f.path)}: {key} {node.get(key)} != {f.meta[key]}")
        old = f.predict({k: float(node[k]) for k in f.params})
        diff = float(np.quantile(np.abs(old / f.predict(f.params) - 1.0), 0.99))
        if diff > CHECK_TOLERANCE["prediction_p99"]:
            problems.append(f"{'/'.join(f.path)}: predictions differ by {diff:.1%} (p99)")
        for key, tol in (("median_ape_pct", "median_pts"), ("p90_ape_pct", "p90_pts")):
            if abs(float(node[key]) - f.meta[key]) > CHECK_TOLERANCE[tol]:
                problems.append(f"{'/'.join(f.path)}: {key} {node[key]} -> {f.meta[key]}")
    for path in efficiency_file.curve_paths(shipped):
        if path not in seen:
            problems.append(f"{'/'.join(path)}: shipped but not refitted")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true",
                    help="refit and compare with the shipped file (exit 1 on drift)")
    ap.add_argument("--families", default=",".join(aic.FAMILIES),
                    help="kernel families to fit (aic_tables.FAMILIES)")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args(argv)
    start = time.time()
    log = (lambda s: None) if a.quiet else (lambda s: print(s, flush=True))
    fits = fit_all(a.families.split(","), log)
    if a.check:
        shipped = yaml.safe_load(a.out.read_text())
        problems = check(fits, shipped)
        for p in problems:
            print("DRIFT", p)
        print(f"checked {len(fits)} curves against {a.out} in {time.time() - start:.0f} s: "
              f"{'OK' if not problems else f'{len(problems)} problems'}")
        return 1 if problems else 0
    efficiency_file.write(a.out, fits, aic.AIC_VERSION,
                          {f: [aic.SYSTEMS[s] for s in m] for f, m in aic.FAMILIES.items()})
    if SAMPLE_ROWS:
        efficiency_file.write_samples(SAMPLES, SAMPLE_ROWS)
    print(f"wrote {a.out} ({len(fits)} curves) in {time.time() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
