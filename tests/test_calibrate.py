"""Calibration: recovers known parameters from synthetic measurements; profiles apply."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from kvopt.bench.calibrate import Calibration, Point, calibrate, load_profile, predict
from kvopt.serving.load import Load

TRUE = Calibration(gpu="H100-SXM", engine="vllm", compute_scale=0.8, memory_scale=0.85,
                   step_overhead_ms=3.0)
SHAPES = (("rps", 2, 500, 200), ("rps", 6, 2000, 100), ("concurrency", 16, 1000, 300),
          ("batch", 1, 2048, 1), ("batch", 1, 1, 256))


def synthetic(noise: float, seed: int = 0) -> list[Point]:
    g, eng = TRUE.apply()
    rng = np.random.default_rng(seed)
    pts = []
    for model, tp in (("Llama-3.1-8B", 1), ("Llama-3.1-70B", 4)):
        for mode, v, i, o in SHAPES:
            p = Point(label=f"{model}-{mode}-{i}", model=model, tp=tp, weights="bf16",
                      kv_dtype=None, load=Load(mode=mode, value=v), input_len=i, output_len=o,
                      measured={})
            pred = predict(p, g, eng)
            meas = {k: x * (1 + noise * rng.standard_normal()) for k, x in pred.items()}
            pts.append(Point(**{**p.__dict__, "measured": meas}))
    return pts


def test_recovers_known_parameters_from_noisy_synthetic_measurements() -> None:
    cal = calibrate(synthetic(0.02), gpu="H100-SXM", engine="vllm", cross_validate=False)
    assert cal.compute_scale == pytest.approx(0.8, rel=0.08)
    assert cal.memory_scale == pytest.approx(0.85, rel=0.08)
    assert cal.step_overhead_ms == pytest.approx(3.0, rel=0.15)
    assert cal.error_after_pct < cal.error_before_pct
    assert cal.error_after_pct < 5.0  # about the 2% noise


def test_fit_subset_keeps_the_others() -> None:
    cal = calibrate(synthetic(0.0), gpu="H100-SXM", engine="vllm", cross_validate=False,
                    fit=("overhead",))
    assert cal.compute_scale == pytest.approx(1.0) and cal.memory_scale == pytest.approx(1.0)


def test_calibrate_cli_and_profile(tmp_path: Path, run_cli) -> None:
    # measurements from an engine that only spends more time per step (3 ms, not 1.5 ms)
    g, eng = Calibration(gpu="H100-SXM", engine="vllm", compute_scale=1.0, memory_scale=1.0,
                         step_overhead_ms=3.0).apply()
    files = []
    for k, (mode, v, i, o) in enumerate(SHAPES[:3]):
        p = Point(label="b", model="Llama-3.1-8B", tp=1, weights="bf16", kv_dtype=None,
                  load=Load(mode=mode, value=v), input_len=i, output_len=o, measured={})
        pred = predict(p, g, eng)
        b = {"schema": "kvopt.bench/1", "model": "Llama-3.1-8B", "endpoint": "x",
             "load": {"mode": mode, "value": v}, "input_len": i, "output_len": o,
             "num_requests": 100, "completed": 100, "errors": 0, "duration_s": 10.0,
             "ttft_ms": {"mean": pred["ttft_mean_ms"], "p50": 1, "p90": 1, "p99": 1},
             "itl_ms": {"mean": pred["itl_mean_ms"], "p50": 1, "p90": 1, "p99": 1},
             "e2e_ms": {"mean": 1, "p50": 1, "p90": 1, "p99": 1},
             "output_tok_s": pred["output_tok_s"], "requests_s": 1.0}
        f = tmp_path / f"b{k}.json"
        f.write_text(json.dumps(b))
        files.append(str(f))
    out = tmp_path / "profile.yaml"
    res = run_cli("calibrate", *files, "--gpu", "H100-SXM", "--engine", "vllm", "--fit",
                  "overhead", "--out", str(out))
    assert res.exit_code == 0, res.output
    assert "held out" in res.stdout
    cal = load_profile(out)
    assert cal.step_overhead_ms == pytest.approx(3.0, rel=0.1)
    base = ["estimate", "--model", "Llama-3.1-8B", "--gpu", "H100-SXM", "--input-len", "500",
            "--output-len", "100", "--batch", "1", "--json"]
    plain = json.loads(run_cli(*base).stdout)["latency"]["tpot_ms"]
    tuned = json.loads(run_cli(*base, "--profile", str(out)).stdout)["latency"]["tpot_ms"]
    # 3 ms of engine overhead instead of the shipped 1.5 ms
    assert tuned - plain == pytest.approx(cal.step_overhead_ms - 1.5, rel=0.05)
    res = run_cli(*base[:4], "L40S", *base[5:], "--profile", str(out))
    assert res.exit_code == 1 and "calibrated for H100-SXM" in res.stderr
