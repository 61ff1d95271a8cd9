"""models/efficiency.yaml is exactly what benchmarks/fit_efficiency.py fits from the data."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

from kvopt.catalog.paths import models_dir
from kvopt.physics.efficiency import efficiency

ROOT = Path(__file__).resolve().parent.parent
FIT = ROOT / "benchmarks" / "fit_efficiency.py"


@pytest.mark.skipif(not FIT.exists(), reason="source checkout only")
def test_refit_reproduces_shipped_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = importlib.util.spec_from_file_location("fit_efficiency", FIT)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "efficiency.yaml"
    monkeypatch.setattr(mod, "OUT", out)
    mod.main()
    fresh = yaml.safe_load(out.read_text())
    shipped = yaml.safe_load((models_dir() / "efficiency.yaml").read_text())
    assert set(fresh["gpus"]) == set(shipped["gpus"])
    for gpu, per in shipped["gpus"].items():
        if "same_as" in per:
            assert fresh["gpus"][gpu] == per
            continue
        for dtype in (d for d in per if d != "copy_bandwidth_fraction"):
            for key, value in per[dtype].items():
                assert fresh["gpus"][gpu][dtype][key] == pytest.approx(value, rel=0.02, abs=0.05)
    for key, value in shipped["attention"]["fit"].items():
        assert fresh["attention"]["fit"][key] == pytest.approx(value, rel=0.02, abs=0.05), key


def test_fitted_efficiencies_are_physical() -> None:
    for gpu in ("H100-SXM", "H200", "some-unfitted-gpu"):
        for dtype in ("bf16", "fp8"):
            e = efficiency(gpu, dtype)
            assert 0.5 < e.compute < 0.95
            assert 0.5 < e.memory <= e.copy_fraction <= 1.0
    assert efficiency("some-unfitted-gpu", "bf16").fitted_on == "default"
    for dtype in ("bf16", "fp8", "fp4"):  # B200: published kernels, a lower share of peak
        e = efficiency("B200", dtype)
        assert e.fitted_on == "B200" and 0.5 < e.compute < 0.7


def test_fp4_uses_its_own_curve_where_measured() -> None:
    """B200 has NVFP4 kernel rows (benchmarks/data/kernels_b200_published.csv); FP4 there
    uses its own fit, elsewhere the fp8 curve. GB200 (the same die) takes B200's fit; B300
    (another die) the default."""
    fp4, fp8 = efficiency("B200", "fp4"), efficiency("B200", "fp8")
    assert fp4 != fp8
    assert efficiency("GB200", "fp4") == fp4 and efficiency("GB200", "bf16").fitted_on == "B200"
    assert efficiency("B300", "fp4") == efficiency("B300", "fp8")
    assert efficiency("B300", "fp4").fitted_on == "default"


def test_b200_large_gemms_match_the_published_rows() -> None:
    """Compute-bound B200 GEMMs against their published times (roofline without the launch
    floor, as inside an engine step): NVFP4 8192^3 = 1.1e12 FLOP at 0.625 x 9 PFLOP/s ->
    195.5 us (measured 205 us, pytorch/ao PR #2427); FP8 M = 16,384, N = 6,144, K = 4,096
    -> 322 us (324 us, vllm PR #19566); BF16 8192^3 -> 751 us (774 us). Before B200 had its
    own fit, FP4 ran at the Hopper fp8 fraction (0.72 of peak): 170 us, 17% fast."""
    import numpy as np

    from kvopt import load_gpu
    from kvopt.physics.ops import Op
    from kvopt.physics.roofline import op_time

    b200 = load_gpu("B200")

    def gemm(dtype: str, m: int, n: int, k: int, bytes_per: float) -> float:
        w = n * k * bytes_per
        op = Op(name="x", kind="gemm", flops=np.asarray(2.0 * m * n * k),
                bytes=np.asarray(w + m * k * bytes_per + m * n * 2.0), weight_matrix_bytes=w,
                compute_dtype=dtype, count=1.0)
        return float(op_time(op, b200)[0])

    assert gemm("fp4", 8192, 8192, 8192, 0.5625) == pytest.approx(205e-6, rel=0.08)
    assert gemm("fp8", 16384, 6144, 4096, 1.0) == pytest.approx(324e-6, rel=0.08)
    assert gemm("bf16", 8192, 8192, 8192, 2.0) == pytest.approx(774e-6, rel=0.08)
    assert efficiency("B200", "fp4").compute < efficiency("some-unfitted-gpu", "fp8").compute


def test_attention_efficiency_follows_the_measured_kernel() -> None:
    """Causal FlashAttention-3 forward, head dim 128, on H100 SXM
    (benchmarks/data/attention_prefill_h100.csv): the fitted share of the bf16 GEMM fraction
    with its ramp over the sequence length gives every row within 3%, e.g. 16,384 tokens:
    989.5e12 x 0.7688 x 0.8607 x 16384 / (16384 + 603.9) = 631 TFLOP/s against 616
    measured; at 512 tokens it is 0.30 of peak (the GEMM fraction is 0.77). The ramp rises
    with the keys and decode takes the share without it."""
    import csv

    from kvopt.physics.efficiency import attention_efficiency

    att = attention_efficiency("H100-SXM", "bf16")
    assert att.compute == pytest.approx(0.7688 * 0.8607, rel=1e-3)
    assert 989.5e12 * att.prefill_fraction(16384) / 1e12 == pytest.approx(631.5, abs=0.5)
    with (ROOT / "benchmarks" / "data" / "attention_prefill_h100.csv").open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["kernel"] == "FlashAttention-3"
                and r["mask"] == "causal" and r["head_dim"] == "128"]
    assert len(rows) == 6
    for r in rows:
        model = 989.5e12 * att.prefill_fraction(float(r["seqlen"])) / 1e12
        assert model == pytest.approx(float(r["tflops"]), rel=0.03), r["seqlen"]
    keys = [64.0, 512.0, 4096.0, 65536.0]
    fracs = [float(att.prefill_fraction(k)) for k in keys]
    assert fracs == sorted(fracs) and fracs[-1] < att.compute
    # other GPUs: the same share of their own GEMM fraction
    other = attention_efficiency("some-unfitted-gpu", "bf16")
    assert other.compute == pytest.approx(efficiency("some-unfitted-gpu", "bf16").compute
                                          * 0.8607, rel=1e-3)
