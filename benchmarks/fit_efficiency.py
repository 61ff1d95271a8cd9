"""Fit kvopt's GEMM efficiency curves on measured microbenchmarks and write models/efficiency.yaml.

Model for one GEMM ``X[M,K] @ W[K,N]`` (per GPU, per dtype):

    t = t_launch + smoothmax(F / (P * ec), B / (BW * em * B / (B + BW tau)); p)
    smoothmax(a, b; p) = (a**p + b**p) ** (1/p)

F = 2MKN FLOP, B = bytes of X, W and the output (what one launch moves), P = dense spec
peak, BW = spec bandwidth. Small launches stream below the asymptotic bandwidth fraction
``em``: half of it at ``B = BW x tau`` (the driver is the bytes the kernel moves, not the
weight bytes alone: a skinny GEMM such as an MoE router, with a tiny weight and large M,
streams its activations like any kernel of that size). Expressing the ramp as a time
``tau`` (not bytes) lets it transfer to GPUs of other bandwidths. ``t_launch`` is the floor
of one CUDA-event-timed launch; kvopt does not add it inside engine steps (CUDA graphs;
engines carry their own overheads). Fitted by least squares on log time (scipy).
Run: ``python benchmarks/fit_efficiency.py``.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
from scipy.optimize import least_squares

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "benchmarks" / "data" / "kernels_h100_h200.csv"
# B200 rows read from public benchmark posts (each row names its source); no device-copy
# measurement among them
DATA_B200 = ROOT / "benchmarks" / "data" / "kernels_b200_published.csv"
OUT = ROOT / "models" / "efficiency.yaml"
# bytes per element: NVFP4 is 4 bits plus one FP8 scale per 16 values
BYTES = {"bf16": 2.0, "fp8": 1.0, "fp4": 0.5 + 1 / 16}


def load_rows() -> list[dict[str, str]]:
    rows = []
    for path in (DATA, DATA_B200):
        with path.open(newline="") as f:
            rows += list(csv.DictReader(f))
    return rows


def fit_one(rows: list[dict[str, str]], peak_flop_s: float, bw_bytes_s: float,
            dtype: str, copy_fraction: float) -> dict[str, float]:
    """Fit one GPU x dtype. ``em`` is capped by the measured copy fraction: a GEMM cannot
    stream weights faster than a device copy does."""
    m = np.array([float(r["M"]) for r in rows])
    k = np.array([float(r["K"]) for r in rows])
    n = np.array([float(r["N"]) for r in rows])
    t = np.array([float(r["ms"]) for r in rows]) / 1e3
    b = BYTES[dtype]
    out_b = 2.0  # bf16 output in both kernels
    flops = 2 * m * k * n
    w_bytes = k * n * b
    nbytes = m * k * b + w_bytes + m * n * out_b

    def model(x: np.ndarray) -> np.ndarray:
        ec, em, log_tau, t0, p = x
        wh = bw_bytes_s * np.exp(log_tau)
        tc = flops / (peak_flop_s * ec)
        tm = nbytes / (bw_bytes_s * em * nbytes / (nbytes + wh))
        return np.asarray(t0 + (tc**p + tm**p) ** (1 / p))

    def resid(x: np.ndarray) -> np.ndarray:
        return np.log(model(x)) - np.log(t)

    x0 = np.array([0.75, 0.8 * copy_fraction, np.log(3e-6), 5e-6, 3.0])
    lo = np.array([0.05, 0.05, np.log(1e-8), 0.0, 1.0])
    hi = np.array([1.0, copy_fraction, np.log(1e-3), 1e-4, 20.0])
    res = least_squares(resid, x0, bounds=(lo, hi))
    ec, em, log_tau, t0, p = res.x
    err = np.abs(np.exp(resid(res.x)) - 1)
    return {"compute_efficiency": round(float(ec), 4), "memory_efficiency": round(float(em), 4),
            "ramp_tau_us": round(float(np.exp(log_tau)) * 1e6, 3),
            "launch_floor_us": round(float(t0) * 1e6, 2), "smoothmax_p": round(float(p), 3),
            "rows": len(rows), "median_ape_pct": round(float(np.median(err)) * 100, 2),
            "max_ape_pct": round(float(np.max(err)) * 100, 2)}


SPECS = {  # dense spec peaks and bandwidth, from models/gpu/<id>.yaml (sourced there)
    "H100-SXM": {"bf16": 989.5e12, "fp8": 1979e12, "bw": 3350e9},
    "H200": {"bf16": 989.5e12, "fp8": 1979e12, "bw": 4800e9},
    "B200": {"bf16": 2250e12, "fp8": 4500e12, "fp4": 9000e12, "bw": 7700e9},
}
MEASURED_COPY = ("H100-SXM", "H200")  # GPUs with a device-copy row: they make `default`
# GPUs without kernel rows of their own that take a fitted GPU's curves: a GB200 superchip's
# GPUs are the B200 die (at a higher power limit), so B200's fractions of peak are the best
# evidence for them (an assumption, stated in the generated file)
SAME_AS = {"GB200": "B200"}


DATA_ATTENTION = ROOT / "benchmarks" / "data" / "attention_prefill_h100.csv"
ATTENTION_KERNEL = ("FlashAttention-3", "causal", 128)  # what the serving engines run on
# Hopper (vLLM's and SGLang's default prefill backends); cuDNN and FA2 rows are context


def fit_attention(bf16_compute: float) -> dict[str, float]:
    """Causal prefill attention on H100: TFLOP/s = P x e_max x L / (L + L0) over the
    sequence length L (queries = keys), fitted by least squares on relative error. Stored
    as its share of the bf16 GEMM compute fraction (``e_max / ec``), so that other GPUs
    take it relative to their own GEMM fit (an assumption), and the ramp ``L0`` in tokens:
    short causal sequences waste part of the diagonal tiles and fill the GPU worse."""
    kernel, mask, head_dim = ATTENTION_KERNEL
    with DATA_ATTENTION.open(newline="") as f:
        sel = [r for r in csv.DictReader(f) if r["gpu"] == "H100-SXM"
               and r["kernel"] == kernel and r["mask"] == mask
               and int(r["head_dim"]) == head_dim]
    seq = np.array([float(r["seqlen"]) for r in sel])
    tflops = np.array([float(r["tflops"]) for r in sel]) * 1e12
    peak = SPECS["H100-SXM"]["bf16"]

    def resid(x: np.ndarray) -> np.ndarray:
        return peak * x[0] * seq / (seq + x[1]) / tflops - 1

    res = least_squares(resid, np.array([0.6, 500.0]), bounds=([0.05, 0.0], [1.0, 1e5]))
    e_max, l0 = res.x
    err = np.abs(resid(res.x))
    return {"share_of_gemm_compute": round(float(e_max) / bf16_compute, 4),
            "ramp_tokens": round(float(l0), 1), "h100_peak_fraction": round(float(e_max), 4),
            "rows": len(sel), "median_ape_pct": round(float(np.median(err)) * 100, 2),
            "max_ape_pct": round(float(np.max(err)) * 100, 2)}


def main() -> int:
    rows = load_rows()
    fits: dict[str, dict[str, dict[str, float]]] = {}
    copies: dict[str, float] = {}
    for gpu in MEASURED_COPY:
        copy = [r for r in rows if r["gpu"] == gpu and r["kernel"] == "copy"]
        copies[gpu] = round(float(copy[0]["gbps"]) * 1e9 / SPECS[gpu]["bw"], 4)
    mean_copy = round(float(np.mean([copies[g] for g in MEASURED_COPY])), 4)
    for gpu, spec in SPECS.items():
        fits[gpu] = {}
        # no copy row (B200): the measured GPUs' mean copy fraction caps its weight streams
        copies.setdefault(gpu, mean_copy)
        for dtype in (d for d in BYTES if d in spec):
            sel = [r for r in rows if r["gpu"] == gpu and r["kernel"] != "copy"
                   and r["dtype"] == dtype]
            fits[gpu][dtype] = fit_one(sel, spec[dtype], spec["bw"], dtype, copies[gpu])
    lines = [
        "# GENERATED by benchmarks/fit_efficiency.py; do not edit by hand.",
        "# Fitted on measured: benchmarks/data/kernels_h100_h200.csv (H100 SXM and H200,",
        "# PyTorch 2.11 / CUDA 13, cuBLAS bf16 and torch._scaled_mm fp8 GEMMs) and",
        "# benchmarks/data/kernels_b200_published.csv (B200: cuBLAS bf16, vLLM CUTLASS fp8,",
        "# cuBLASLt and vLLM CUTLASS NVFP4 GEMMs read from public benchmark posts, a source per",
        "# row; no device-copy row, so B200's copy_bandwidth_fraction is the H100/H200 mean).",
        "# GPUs without their own fit use `default` = mean of the H100 and H200 fits (an",
        "# assumption: kernel efficiency fractions transfer across parts; calibrate to override).",
        'source: "measured: benchmarks/data/kernels_h100_h200.csv, '
        'benchmarks/data/kernels_b200_published.csv (fit: benchmarks/fit_efficiency.py)"',
        "gpus:",
    ]
    for gpu, per in fits.items():
        lines.append(f"  {gpu}:")
        lines.append(f"    copy_bandwidth_fraction: {copies[gpu]}")
        for dtype, f in per.items():
            lines.append(f"    {dtype}: {{{', '.join(f'{k}: {v}' for k, v in f.items())}}}")
    for gpu, fitted in SAME_AS.items():
        lines.append(f"  {gpu}: {{same_as: {fitted}}}  # same GPU die, assumed the same fractions")
    lines.append("default:")
    lines.append(f"  copy_bandwidth_fraction: {mean_copy}")
    for dtype in ("bf16", "fp8"):
        keys = ("compute_efficiency", "memory_efficiency", "ramp_tau_us", "smoothmax_p")
        avg = {k: round(float(np.mean([fits[g][dtype][k] for g in MEASURED_COPY])), 4)
               for k in keys}
        lines.append(f"  {dtype}: {{{', '.join(f'{k}: {v}' for k, v in avg.items())}}}")
    att = fit_attention(fits["H100-SXM"]["bf16"]["compute_efficiency"])
    lines += [
        "# Attention's compute term (prefill chunks): the GEMM compute fraction x this share x",
        "# L / (L + ramp_tokens), L the keys a chunk's queries see; decode attention (one query",
        "# a sequence) takes the share without the ramp. Fitted on causal FlashAttention-3, head",
        "# dim 128, H100 SXM (benchmarks/data/attention_prefill_h100.csv); other GPUs take the",
        "# same share of their own GEMM fraction (an assumption).",
        "attention:",
        '  source: "measured: benchmarks/data/attention_prefill_h100.csv (FlashAttention-3 '
        'causal forward, head dim 128, H100 SXM; arXiv 2407.08608; fit: '
        'benchmarks/fit_efficiency.py)"',
        f"  fit: {{{', '.join(f'{k}: {v}' for k, v in att.items())}}}",
    ]
    tmp = OUT.with_suffix(".yaml.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(OUT)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
