"""Kernel curves: the forms by hand, the shipped fit (models/efficiency.yaml) against the small
samples of aiconfigurator's tables shipped in benchmarks/data (no aiconfigurator needed), the
transfer rules, and the weight-only rule for quantized weights."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from kvopt import load_gpu
from kvopt.catalog.paths import models_dir
from kvopt.physics.efficiency import (
    attention_curve,
    gemm_curve,
    kernel_engine,
    kernel_family,
    moe_curve,
)
from kvopt.physics.kernels import (
    AllReduceCurve,
    AttentionCurve,
    GemmCurve,
    MoeCurve,
    MoeWork,
    decode_work,
    prefill_work,
)
from kvopt.physics.ops import Op
from kvopt.physics.roofline import op_time
from tests.paths import BENCHMARKS

SHIPPED = yaml.safe_load((models_dir() / "efficiency.yaml").read_text())
SAMPLE_GEMM = BENCHMARKS / "data" / "aic_sample_gemm.csv"
SAMPLE_ATTENTION = BENCHMARKS / "data" / "aic_sample_attention.csv"


def _fitter() -> Any:
    """benchmarks/fit_efficiency.py as a module (it needs scipy and pandas, not
    aiconfigurator, until it reads a table)."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    return importlib.import_module("fit_efficiency")


def _forms() -> Any:
    """benchmarks/fit_forms.py (the least squares the fit uses)."""
    _fitter()
    return importlib.import_module("fit_forms")


# -- the forms by hand ------------------------------------------------------------------------

def test_gemm_form_by_hand() -> None:
    """One fp8 launch X[1, 4096] W[4096, 4096] on a card of 1 PFLOP/s and 3 TB/s:
    F = 2 x 4096^2 = 33,554,432 FLOP; B = 4096^2 x 1 + 1 x 8192 x 2 = 16,793,600 B;
    tc = F / (1e15 x 0.8) = 41.94 ns, tm = B / (3e12 x 0.8) = 6.9973 us;
    smoothmax p = 2: sqrt(tc^2 + tm^2) = 6.9975 us; + floor 3 us + quantization
    8 B x 4096 / 3e12 = 10.92 ns: 10.0084 us. Launches add floors, the rest scales."""
    c = GemmCurve(compute=0.8, memory=0.8, smoothmax_p=2.0, floor_s=3e-6, quant_bytes=8.0)
    f, b = 2 * 4096.0**2, 4096.0**2 + 8192 * 2
    tc, tm = f / 0.8e15, b / 2.4e12
    want = 3e-6 + math.sqrt(tc**2 + tm**2) + 8 * 4096 / 3e12
    got = c.time_s(flops=f, nbytes=b, launches=1, quant_elems=4096, peak_flop_s=1e15,
                   bandwidth_bytes_s=3e12)
    assert float(got) == pytest.approx(want, rel=1e-12)
    assert float(got) * 1e6 == pytest.approx(10.0084, abs=1e-4)
    # 32 layers: 32 floors, 32x the work (smoothmax is homogeneous)
    got32 = c.time_s(flops=32 * f, nbytes=32 * b, launches=32, quant_elems=32 * 4096,
                     peak_flop_s=1e15, bandwidth_bytes_s=3e12)
    assert float(got32) == pytest.approx(32 * want, rel=1e-12)


def test_attention_padding_by_hand() -> None:
    """Decode: 2 sequences with 100 and 300 keys, T = 50 virtual keys each, 1,000 FLOP a
    pair, 10 B a key, 20 B of query/output: FLOPs 1,000 x (400 + 100) = 500,000; bytes
    (400 + 100) x 10 + 2 x (10 + 20) = 5,060. Prefill: a 4-token chunk after 2 cached, its
    queries padded by T = 2: pairs of 6 queries after 2 = 6 x 2 + 21 = 33 (unpadded 18);
    bytes (held 6 + new 4) x 10 + 4 x 20 = 180. Window 3: pairs of 6 queries after 2 seeing
    at most 3 keys: 3 + 3 x 5 = 18."""
    f, b = decode_work(keys=400.0, seqs=2.0, pad_tokens=50.0, flops_per_pair=1000.0,
                       kv_bytes_per_key=10.0, qo_bytes=20.0)
    assert (float(f), float(b)) == (500_000.0, 5_060.0)
    f, b = prefill_work(new=np.array([4.0]), past=np.array([2.0]), window=None, pad_tokens=2.0,
                        flops_per_pair=1.0, kv_bytes_per_key=10.0, qo_bytes=20.0)
    assert (float(f[0]), float(b[0])) == (33.0, 180.0)
    f, _ = prefill_work(new=np.array([4.0]), past=np.array([2.0]), window=3.0, pad_tokens=2.0,
                        flops_per_pair=1.0, kv_bytes_per_key=10.0, qo_bytes=20.0)
    assert float(f[0]) == 18.0
    c = AttentionCurve(compute=0.5, memory=0.5, smoothmax_p=1.0, floor_s=10e-6, pad_tokens=0.0)
    # p = 1: floors + tc + tm; 32 layers: 32 x 10 us + 1e12 / 0.5e15 + 1e9 / 1e12
    t = c.time_s(flops=1e12, nbytes=1e9, launches=32, peak_flop_s=1e15,
                 bandwidth_bytes_s=2e12)
    assert float(t) == pytest.approx(32 * 10e-6 + 2e-3 + 1e-3, rel=1e-12)


def test_moe_form_by_hand() -> None:
    """8 tokens x top-2 over 8 experts: 16 pairs on 4 touched experts = 4 rows each, padded
    to a row tile of 16; width 100 padded to 128; h = 1,000, 3 matrices: F' = 2 x 4 x 16 x 3
    x 1,000 x 128 = 49,152,000 FLOP -> 49.152 us at 1e12 x 1.0; bytes 1e6 at 1e12 x 0.5 ->
    2 us; p = 1 sums them; routing 2 B x 16 pairs x 1,000 x 2 B / 1e12 = 64 ns; floor 5 us."""
    c = MoeCurve(compute=1.0, memory=0.5, smoothmax_p=1.0, floor_s=5e-6, row_tile=16.0,
                 width_tile=128.0, route_bytes=2.0)
    w = MoeWork(touched=4.0, pairs=16.0, hidden=1000.0, width=100.0, matrices=3.0,
                nbytes=1e6, route_pairs=16.0)
    t = c.time_s(w, peak_flop_s=1e12, bandwidth_bytes_s=1e12)
    assert float(t) == pytest.approx(5e-6 + 49.152e-6 + 2e-6 + 64e-9, rel=1e-12)


def test_allreduce_two_regimes_by_hand() -> None:
    """4 GPUs: f = 2 x 3/4 = 1.5; 64 KiB one-shot: 3 us + 1.5 x 65,536 / 100e9 = 3.983 us
    (the two-shot would be 3 + 20 + 0.246 us); 64 MiB two-shot: 3 + 20 + 1.5 x 67,108,864 /
    400e9 = 274.7 us (one-shot: 1,006 us). One GPU: no all-reduce."""
    c = AllReduceCurve(gpus=4, latency_s=3e-6, oneshot_bus_bytes_s=100e9,
                       ring_bus_bytes_s=400e9, switch_s=20e-6)
    assert float(c.time_s(65536)) * 1e6 == pytest.approx(3 + 1.5 * 65536 / 100e9 * 1e6)
    assert float(c.time_s(2**26)) * 1e6 == pytest.approx(23 + 1.5 * 2**26 / 400e9 * 1e6)
    assert float(AllReduceCurve(gpus=1, latency_s=3e-6, oneshot_bus_bytes_s=1.0,
                                ring_bus_bytes_s=1.0, switch_s=0.0).time_s(1e6)) == 0.0


# -- the shipped file ----------------------------------------------------------------------------

def _curves(node: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], dict]]:
    if isinstance(node, dict) and "median_ape_pct" in node:
        return [(path, node)]
    if isinstance(node, dict):
        return [c for k, v in node.items() for c in _curves(v, (*path, str(k)))]
    return []


def test_every_curve_names_its_tables_version_rows_and_errors() -> None:
    assert SHIPPED["aiconfigurator"]["version"] == "0.12.0"
    curves = _curves(SHIPPED["families"]) + _curves(SHIPPED["allreduce"])
    assert len(curves) > 200
    for path, c in curves:
        tables = c.get("tables")
        assert tables and all(t.startswith("aiconfigurator_core/systems/data/")
                              and t.endswith(".parquet") and "silicon_sample" not in t
                              for t in tables), path
        assert c["engine_version"] and c["rows"] > 0 and c["evaluated_rows"] >= c["rows"]
        assert 0 <= c["median_ape_pct"] <= c["p90_ape_pct"], path
        assert set(c["per_gpu"]) <= {g for f in SHIPPED["families"].values() for g in f["gpus"]}
    # each measured GPU belongs to one family, and the families' curves are physical
    gpus = [g for f in SHIPPED["families"].values() for g in f["gpus"]]
    assert len(gpus) == len(set(gpus)) == 9
    for path, c in _curves(SHIPPED["families"]):
        assert 0 < c.get("compute", 1.0) <= 1.0 and 0 < c["memory"] <= 1.0, path


def _sample(path: Path, curve: str, role: str) -> Any:
    import pandas as pd

    frame = pd.read_csv(path)
    return frame[(frame.curve == curve) & (frame.role == role)].reset_index(drop=True)


def test_refit_on_the_shipped_sample_reproduces_the_curve() -> None:
    """benchmarks/data/aic_sample_gemm.csv holds the rows hopper/trtllm/gemm/bf16 was fitted
    on (600 of H100 SXM's table, 600 of H200's, with their table paths and versions):
    refitting them gives the shipped parameters (the --check of fit_efficiency.py on what
    ships without aiconfigurator)."""
    fe = _fitter()
    rows = _sample(SAMPLE_GEMM, "hopper/trtllm/gemm/bf16", "fit")
    node = SHIPPED["families"]["hopper"]["trtllm"]["gemm"]["bf16"]
    assert len(rows) == node["rows"] == 1200
    assert sorted(set(rows.table)) == sorted(node["tables"])
    assert set(rows.engine_version) == {node["engine_version"]}
    r = fe.aic.gemm_rows(rows, "bfloat16")
    prob = fe.gemm_problem(False)
    params = _forms().lsq(prob.predictor(r), prob, r.t)
    for k, v in params.items():
        assert v == pytest.approx(node[k], rel=2e-3, abs=1e-3), k


def test_leaving_h200_out_predicts_its_decode_gemms() -> None:
    """Leave one GPU out on the shipped sample: a fit on H100 SXM's rows alone (what H200
    would get without tables of its own: same die) predicts H200's held-aside decode-sized
    bf16 GEMMs (m <= 64, TensorRT-LLM) with a median error within 2 points of the family fit
    that saw them (the full benchmark: benchmarks/kernel_transfer.py)."""
    fe = _fitter()
    fit_rows = _sample(SAMPLE_GEMM, "hopper/trtllm/gemm/bf16", "fit")
    h100 = fe.aic.gemm_rows(fit_rows[fit_rows.gpu == "H100-SXM"], "bfloat16")
    prob = fe.gemm_problem(False)
    params = _forms().lsq(prob.predictor(h100), prob, h100.t)
    held = fe.aic.gemm_rows(_sample(SAMPLE_GEMM, "hopper/trtllm/gemm/bf16", "held_aside"),
                            "bfloat16")
    assert len(held.t) == 150
    transferred, _ = fe.aic.ape(prob.predictor(held)(params), held.t)
    node = SHIPPED["families"]["hopper"]["trtllm"]["gemm"]["bf16"]
    own, _ = fe.aic.ape(prob.predictor(held)({k: node[k] for k in params}), held.t)
    assert transferred <= own + 2.0
    assert transferred < 10.0


@pytest.mark.parametrize("gpu", ["H100-SXM", "H200"])
def test_runtime_prices_decode_attention_as_fitted(gpu: str) -> None:
    """kvopt's lookup (GPU card -> family -> vLLM's bf16-cache generation curve) and padded
    decode work price held-aside rows of the vLLM decode-attention table (batch <= 64) within
    the error the file records for that GPU, plus 3 points (another subset of rows)."""
    rows = _sample(SAMPLE_ATTENTION, "hopper/vllm/attention/generation_bf16", "held_aside")
    rows = rows[rows.gpu == gpu]
    assert len(rows) == 150
    card = load_gpu(gpu)
    c = attention_curve(card, "generation", "vllm")
    heads, d = rows.num_heads.to_numpy(float), rows.head_dim.to_numpy(float)
    keys = np.minimum(rows.step.to_numpy(float) + 1, np.where(rows.window_size > 0,
                                                              rows.window_size, np.inf))
    b = rows.batch_size.to_numpy(float)
    f, nbytes = decode_work(keys=b * keys, seqs=b, pad_tokens=c.pad_tokens,
                            flops_per_pair=4 * heads * d,
                            kv_bytes_per_key=2 * rows.num_key_value_heads.to_numpy(float) * d * 2,
                            qo_bytes=heads * 2 * d * 2)
    t = c.time_s(flops=f, nbytes=nbytes, launches=1.0, peak_flop_s=card.peak_flop_s("bf16"),
                 bandwidth_bytes_s=card.bandwidth_bytes_s)
    err = float(np.median(np.abs(t / (rows.latency.to_numpy() * 1e-3) - 1))) * 100
    node = SHIPPED["families"]["hopper"]["vllm"]["attention"]["generation_bf16"]
    assert err <= node["per_gpu"][gpu][0] + 3.0


# -- lookups and transfer rules -------------------------------------------------------------------

@pytest.mark.parametrize("gpu,family", [
    ("H100-SXM", "hopper"), ("H200", "hopper"), ("H100-NVL", "hopper"), ("H200-NVL", "hopper"),
    ("B200", "blackwell"), ("B300", "blackwell"), ("GB200", "blackwell"),
    ("RTX-PRO-6000", "blackwell-rtx"), ("RTX-5090", "blackwell-rtx"),
    ("RTX-5080", "blackwell-rtx"), ("L40S", "ada"), ("L4", "ada"), ("RTX-4090", "ada"),
    ("A100-SXM-80GB", "ampere"), ("A10", "ampere"), ("RTX-3090", "ampere"),
    ("MI300X", "hopper"), ("T4", "hopper"), ("V100-SXM-32GB", "hopper"),
])
def test_transfer_rules_pick_a_family(gpu: str, family: str) -> None:
    """Measured GPUs take their family; same-die parts their die's; other parts their
    architecture's; Volta, Turing and AMD the default (hopper: an assumption)."""
    assert kernel_family(load_gpu(gpu)) == family


def test_engines_without_tables_take_a_measured_engine() -> None:
    assert kernel_engine("trtllm-triton") == "trtllm"
    assert kernel_engine("llamacpp") == "vllm"
    assert kernel_engine("some-new-engine") == kernel_engine(None) == "vllm"
    h100 = load_gpu("H100-SXM")
    assert gemm_curve(h100, "bf16", "trtllm-triton") == gemm_curve(h100, "bf16", "trtllm")
    # dtype fallbacks: int8 W8A8 without a curve -> fp8; int4 weight-only without -> bf16
    assert gemm_curve(h100, "int8", "vllm").fitted_on == "hopper/vllm/gemm/fp8"
    assert gemm_curve(h100, "int4", "vllm").fitted_on == "hopper/vllm/gemm/bf16"
    # MLA where a table exists, GQA kernels where not (the engine fallback comes first)
    assert attention_curve(h100, "generation", "trtllm", mla=True).fitted_on.startswith(
        "hopper/trtllm/mla/generation")
    assert attention_curve(h100, "generation", "vllm", mla=True).fitted_on.startswith(
        "hopper/trtllm/mla/generation")
    assert attention_curve(h100, "generation", "vllm", kv="fp8").fitted_on == (
        "hopper/vllm/attention/generation_fp8")
    assert moe_curve(h100, "bf16", "vllm") is not None


def test_poor_fits_are_shipped_but_not_used() -> None:
    """A curve whose median error exceeds transfer.max_median_ape_pct (another kernel path
    than the form describes) is skipped: the next engine's curve prices it."""
    limit = SHIPPED["transfer"]["max_median_ape_pct"]
    bad = [(p, c) for p, c in _curves(SHIPPED["families"]) if c["median_ape_pct"] > limit]
    assert bad  # e.g. vLLM's fp8_block GEMMs on Blackwell (55-280 us slow paths)
    for path, _ in bad:
        family, engine, section, name = path
        if section == "gemm":
            used = gemm_curve(load_gpu(SHIPPED["families"][family]["gpus"][0]), name, engine)
            assert used.fitted_on != "/".join(path)


# -- quantized weights: the weight-only path -----------------------------------------------------

def test_fp8_weights_are_priced_as_the_faster_of_w8a8_and_weight_only() -> None:
    """TensorRT-LLM's per-tensor fp8 GEMM on B200 includes its dynamic activation
    quantization: at m = 1 its floor makes it slower than bf16. An fp8 weight GEMM is priced
    as the faster of that W8A8 curve and the weight-only path (fp8 weight bytes through the
    bf16 curve at the bf16 peak, no quantization pass), so it is never slower than bf16."""
    b200 = load_gpu("B200")
    m, n, k = 1.0, 4096.0, 4096.0
    flops = 2 * m * n * k

    def op(curve: str, dtype: str, wbytes: float, quantized: bool) -> Op:
        w = n * k * wbytes
        return Op("x", "gemm", np.asarray(flops), np.asarray(w + m * (k + n) * 2), w, dtype,
                  1.0, curve=curve, quantized=quantized, quant_elems=m * k if quantized else 0)

    fp8, bf16 = gemm_curve(b200, "fp8", "trtllm"), gemm_curve(b200, "bf16", "trtllm")
    b8 = n * k + m * (k + n) * 2
    b16 = 2 * n * k + m * (k + n) * 2

    def by_hand(c: GemmCurve, peak: float, nbytes: float, q: float, f: float = flops) -> float:
        tc = f / (peak * c.compute)
        tm = nbytes / (b200.bandwidth_bytes_s * c.memory)
        p = c.smoothmax_p
        return c.floor_s + (tc**p + tm**p) ** (1 / p) + c.quant_bytes * q / b200.bandwidth_bytes_s

    w8a8 = by_hand(fp8, b200.peak_flop_s("fp8"), b8, m * k)
    w8a16 = by_hand(bf16, b200.peak_flop_s("bf16"), b8, 0.0)
    plain = by_hand(bf16, b200.peak_flop_s("bf16"), b16, 0.0)
    assert w8a8 > plain > w8a16  # the quantization floor; half the bytes
    got = float(op_time(op("fp8", "fp8", 1.0, True), b200, "trtllm")[0])
    assert got == pytest.approx(w8a16, rel=1e-9)
    assert float(op_time(op("bf16", "bf16", 2.0, False), b200, "trtllm")[0]) == pytest.approx(
        plain, rel=1e-9)
    # compute-bound (m = 8192) the W8A8 kernels win
    fb, bb = 2 * 8192 * n * k, n * k + 8192 * (k + n) * 2
    big = Op("x", "gemm", np.asarray(fb), np.asarray(bb), n * k, "fp8", 1.0, curve="fp8",
             quantized=True, quant_elems=8192 * k)
    w8a8_big = by_hand(fp8, b200.peak_flop_s("fp8"), bb, 8192 * k, fb)
    assert w8a8_big < by_hand(bf16, b200.peak_flop_s("bf16"), bb, 0.0, fb)
    assert float(op_time(big, b200, "trtllm")[0]) == pytest.approx(w8a8_big, rel=1e-9)


def test_b200_bf16_gemm_is_near_the_published_kernel() -> None:
    """An independent source (benchmarks/data/kernels_b200_published.csv, no longer fitted on):
    cuBLAS bf16 8192^3 on B200 takes 774 us (pytorch/ao PR #2427); the fitted curves of all
    three engines are within 15% (the fp8/fp4 rows there exclude the activation quantization
    that aiconfigurator's timings include, so they are not compared)."""
    b200 = load_gpu("B200")
    f = 2 * 8192.0**3
    op = Op("x", "gemm", np.asarray(f), np.asarray(2 * 8192.0**2 * 3), 2 * 8192.0**2, "bf16",
            1.0)
    for engine in ("vllm", "trtllm", "sglang"):
        assert float(op_time(op, b200, engine)[0]) == pytest.approx(774e-6, rel=0.15), engine


def test_gated_deltanet_layers_take_their_own_curves_by_hand() -> None:
    """Qwen3.5-397B-A17B at TP4 on B200 with SGLang, one 8192-token prefill: its 45 Gated
    DeltaNet layers are priced by the fitted ``linear.context`` curve (the gdn tables), on
    the work of the module docstring of kvopt.physics.mixers, by hand:
    per GPU 64/4 = 16 value heads, d_k = d_v = 128, conv channels (2*16*128 + 64*128)/4 =
    3072 with a 4-tap kernel (2*3072*4 = 24,576 FLOP a token), chunk 64:
    FLOP a token = 16 * (4*128*128 + 2*64*(2*128 + 128)) + 24,576 = 1,859,584;
    bytes = 2 * state + tokens * io, state = 3072*3*2 + 16*128*128*4 = 1,067,008 B,
    io = (12,288 + 2*64 + 8192) / 4 * 2 = 10,304 B a token.
    A GPU family without gdn tables (Ampere) prices them with the attention curves."""
    from kvopt import load_model
    from kvopt.physics.efficiency import linear_curve
    from kvopt.physics.ops import step_ops
    from kvopt.physics.precision import resolve_precision
    from kvopt.physics.roofline import half_dtype, mixer_curves

    b200, m = load_gpu("B200"), load_model("Qwen3.5-397B-A17B")
    p = resolve_precision(gpu=b200, weights="fp8", kv_dtype="bf16", engine="sglang",
                          hidden_size=m.hidden_size)
    (op,) = [o for o in step_ops(m, tp=4, precision=p, seqs=1.0, new=8192.0, past=0.0)
             if o.name == "linear"]
    flops = 45 * 8192 * 1_859_584
    nbytes = 45 * (2 * 1_067_008 + 8192 * 10_304)
    assert float(op.flops) == pytest.approx(flops, rel=1e-12)
    assert float(op.bytes) == pytest.approx(nbytes, rel=1e-12)
    curve = linear_curve(b200, "context", "sglang")
    assert curve is not None and curve.fitted_on == "blackwell/sglang/linear/context"
    tc = flops / (b200.peak_flop_s(half_dtype(b200)) * curve.compute)
    tm = nbytes / (b200.bandwidth_bytes_s * curve.memory)
    by_hand = 45 * curve.floor_s + (tc**curve.smoothmax_p
                                    + tm**curve.smoothmax_p) ** (1 / curve.smoothmax_p)
    assert float(op_time(op, b200, "sglang")[0]) == pytest.approx(by_hand, rel=1e-6)
    a100 = load_gpu("A100-SXM-80GB")
    assert linear_curve(a100, "context", "vllm") is None
    assert mixer_curves(a100, "vllm", "linear") == mixer_curves(a100, "vllm", "attention")


def test_gated_deltanet_without_its_own_curve_prices_as_the_attention_kernels() -> None:
    """Ada has a usable Gated DeltaNet context curve but no usable generation one (its
    fit misses the 30% bar): a decode step's linear layers then take the same curve as the
    attention layers, for the replica's own KV-cache format (fp8 here), so their work enters
    the step cost unscaled."""
    from kvopt.physics.mixers import mixer_groups
    from kvopt.physics.roofline import mixer_curves
    from kvopt.serving.replica import build_replica
    from kvopt.serving.stepcost import StepCost

    l40s = load_gpu("L40S")
    gen = attention_curve(l40s, "generation", "vllm", kv="fp8")
    assert mixer_curves(l40s, "vllm", "linear", kv="fp8")[0] == gen
    rep = build_replica(model="Qwen3.5-27B", gpu="L40S", weights="fp8", kv_dtype="fp8")
    ctx = np.array([1000.0, 3000.0])
    flops = nbytes = 0.0
    for g in mixer_groups(rep.model, tp=1, kv_bytes=rep.precision.kv_bytes_per_value,
                          act_bytes=rep.precision.activation_bytes):
        f, b = g.decode_work(keys=float(g.keys(ctx + 1).sum()), held=float((ctx + 1).sum()),
                             seqs=ctx.size, pad_tokens=gen.pad_tokens)
        flops, nbytes = flops + g.layers * float(f), nbytes + g.layers * float(b)
    assert StepCost(rep, 4096).decode_attention_work(ctx) == pytest.approx((flops, nbytes),
                                                                           rel=1e-12)
