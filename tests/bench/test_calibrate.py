"""Calibration: recovers known parameters from synthetic measurements; profiles apply."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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
             "e2e_ms": {q: pred["ttft_mean_ms"] + (o - 1) * pred["itl_mean_ms"]
                        for q in ("mean", "p50", "p90", "p99")},
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


# -- profiles in plan / pareto -----------------------------------------------------------

def _workload():  # type: ignore[no-untyped-def]
    from kvopt.serving.lengths import fixed
    from kvopt.space import Workload

    return Workload(name="w", model="Llama-3.1-8B", rate_rps=20.0, input_dist=fixed(500),
                    output_dist=fixed(100))


def test_space_profile_slows_only_its_gpu() -> None:
    from kvopt.catalog.engines import load_engine
    from kvopt.catalog.gpus import load_gpu
    from kvopt.space import Space, evaluate

    shipped = load_engine("vllm", load_gpu("H100-SXM")).step_overhead_ms
    kw = {"gpus": ("H100-SXM", "L40S"), "tps": (1,), "precisions": (("bf16", "bf16"),),
          "batches": (16, 64)}
    slow = Calibration(gpu="H100-SXM", engine="vllm", compute_scale=1.0, memory_scale=1.0,
                       step_overhead_ms=shipped + 10.0)
    same = Calibration(gpu="H100-SXM", engine="vllm", compute_scale=1.0, memory_scale=1.0,
                       step_overhead_ms=shipped)
    plain = {c.label: c for c in evaluate(_workload(), Space(**kw)).candidates}
    tuned = {c.label: c for c in evaluate(_workload(), Space(**kw, calibrations=(slow,)))
             .candidates}
    ident = {c.label: c for c in evaluate(_workload(), Space(**kw, calibrations=(same,)))
             .candidates}
    assert plain.keys() == tuned.keys() == ident.keys()
    for label, c in plain.items():
        assert ident[label] == c  # the catalog values as a profile change nothing
        if c.gpu == "H100-SXM":
            # 10 ms more per step: one replica sustains a lower rate
            assert tuned[label].goodput_rps < c.goodput_rps
        else:
            assert tuned[label] == c


def test_space_rejects_mismatched_profiles() -> None:
    from kvopt.errors import InputError
    from kvopt.space import Space

    sgl = Calibration(gpu="H100-SXM", engine="sglang", compute_scale=1, memory_scale=1,
                      step_overhead_ms=1)
    with pytest.raises(InputError, match="engine sglang"):
        Space(gpus=("H100-SXM",), calibrations=(sgl,))
    l4 = Calibration(gpu="L4", engine="vllm", compute_scale=1, memory_scale=1,
                     step_overhead_ms=1)
    with pytest.raises(InputError, match="L4 is not a candidate GPU"):
        Space(gpus=("H100-SXM",), calibrations=(l4,))
    with pytest.raises(InputError, match="two profiles"):
        Space(gpus=("L4",), calibrations=(l4, l4))


def test_plan_and_pareto_accept_profiles(tmp_path: Path, run_cli) -> None:
    from kvopt.bench.calibrate import save_profile

    prof = tmp_path / "h100.yaml"
    save_profile(Calibration(gpu="H100-SXM", engine="vllm", compute_scale=0.9,
                             memory_scale=0.9, step_overhead_ms=8.0, fitted_on=("b1", "b2")),
                 prof)
    base = ["plan", "--model", "Llama-3.1-8B", "--rps", "20", "--input-len", "500",
            "--output-len", "100", "--gpu", "H100-SXM", "--tp-options", "1", "--precisions",
            "bf16/bf16", "--batches", "16,64", "--slo-tpot-p99-ms", "60", "--no-explain",
            "--json"]
    plain = json.loads(run_cli(*base).stdout)
    res = run_cli(*base, "--profile", str(prof))
    assert res.exit_code == 0, res.output
    tuned = json.loads(res.stdout)
    cal = tuned["inputs"]["space"]["calibrations"]
    assert cal[0]["gpu"] == "H100-SXM" and cal[0]["fitted_on"] == ["b1", "b2"]
    assert plain["inputs"]["space"]["calibrations"] == []
    # a slower replica: the plan's predicted TPOT rises and it never gets cheaper
    assert (tuned["fleet"][0]["predicted"]["tpot_p99_ms"]
            > plain["fleet"][0]["predicted"]["tpot_p99_ms"])
    assert tuned["totals"]["usd_per_hour"] >= plain["totals"]["usd_per_hour"]
    res = run_cli(*base, "--engine", "sglang", "--profile", str(prof))
    assert res.exit_code == 1 and "calibrated for engine vllm" in res.stderr
    res = run_cli("pareto", "--model", "Llama-3.1-8B", "--rps", "5", "--input-len", "500",
                  "--output-len", "100", "--gpus", "H100-SXM,L40S", "--tp-options", "1",
                  "--precisions", "fp8/fp8", "--batches", "64", "--method", "exact",
                  "--profile", str(prof), "--json")
    assert res.exit_code == 0, res.output


def _predicted_bench(gpu: Any, engine: Any, path: Path) -> Path:
    """A bench file whose measurements are kvopt's prediction for Llama-3.1-8B FP8 at
    2 req/s of 500/100 tokens on (``gpu``, ``engine``): validating it with the same
    hardware gives zero error."""
    from kvopt import estimate

    est = estimate(model="Llama-3.1-8B", gpu=gpu, engine=engine, weights="fp8",
                   kv_dtype="fp8", input_len=500, output_len=100,
                   load=Load(mode="rps", value=2.0))
    lat = est.latency
    b = {"schema": "kvopt.bench/1", "model": "Llama-3.1-8B", "endpoint": "x",
         "load": {"mode": "rps", "value": 2.0}, "input_len": 500, "output_len": 100,
         "num_requests": 100, "completed": 100, "errors": 0, "duration_s": 50.0,
         "ttft_ms": {"mean": lat.ttft_ms, "p50": 1, "p90": 1, "p99": lat.ttft_p99_ms},
         "itl_ms": {"mean": lat.tpot_ms, "p50": 1, "p90": 1, "p99": lat.tpot_p99_ms},
         "e2e_ms": {q: lat.e2e_ms for q in ("mean", "p50", "p90", "p99")},
         "output_tok_s": est.throughput.output_tok_s, "requests_s": 2.0}
    path.write_text(json.dumps(b))
    return path


def test_validate_uses_the_plans_profile(tmp_path: Path, run_cli) -> None:
    cal = Calibration(gpu="H100-SXM", engine="vllm", compute_scale=0.9, memory_scale=0.8,
                      step_overhead_ms=6.0)
    from kvopt.bench.calibrate import save_profile

    prof = tmp_path / "h100.yaml"
    save_profile(cal, prof)
    plan_file = tmp_path / "plan.json"
    res = run_cli("plan", "--model", "Llama-3.1-8B", "--rps", "5", "--input-len", "500",
                  "--output-len", "100", "--gpu", "H100-SXM", "--tp-options", "1",
                  "--precisions", "fp8/fp8", "--batches", "64", "--no-explain", "--profile",
                  str(prof), "--output", str(plan_file), "--json")
    assert res.exit_code == 0, res.output
    g, eng = cal.apply()
    bf = _predicted_bench(g, eng, tmp_path / "b.json")
    d = json.loads(run_cli("validate", "--bench", str(bf), "--plan", str(plan_file),
                           "--json").stdout)
    # the measurement is the calibrated prediction: zero error only if validate applied it
    assert all(abs(c["error_pct"]) < 1e-6 for c in d["checks"])


def test_validate_uses_the_plans_engine_release(tmp_path: Path, run_cli) -> None:
    """A plan made with --engine-version is validated with that release's overheads (the
    measurement below is that prediction: zero error only if validate applied them);
    --engine-version on validate itself does the same without a plan."""
    from kvopt.catalog.engines import load_engine
    from kvopt.catalog.gpus import load_gpu

    plan_file = tmp_path / "plan.json"
    res = run_cli("plan", "--model", "Llama-3.1-8B", "--rps", "5", "--input-len", "500",
                  "--output-len", "100", "--gpu", "H100-SXM", "--tp-options", "1",
                  "--precisions", "fp8/fp8", "--batches", "64", "--no-explain", "--engine",
                  "sglang", "--engine-version", "0.5.9", "--output", str(plan_file), "--json")
    assert res.exit_code == 0, res.output
    g = load_gpu("H100-SXM")
    eng = load_engine("sglang", g, "0.5.9")
    assert eng.request_overhead_ms > 100  # the fitted figure, far from the profile's 0
    bf = _predicted_bench(g, eng, tmp_path / "b.json")
    for args in (("--plan", str(plan_file)),
                 ("--model", "Llama-3.1-8B", "--gpu", "H100-SXM", "--weights", "fp8",
                  "--kv-dtype", "fp8", "--engine", "sglang", "--engine-version", "0.5.9")):
        d = json.loads(run_cli("validate", "--bench", str(bf), *args, "--json").stdout)
        assert all(abs(c["error_pct"]) < 1e-6 for c in d["checks"]), args
    # without the release the TTFT misses by the overhead
    d = json.loads(run_cli("validate", "--bench", str(bf), "--model", "Llama-3.1-8B", "--gpu",
                           "H100-SXM", "--weights", "fp8", "--kv-dtype", "fp8", "--engine",
                           "sglang", "--json").stdout)
    assert any(c["metric"].startswith("ttft") and c["error_pct"] < -50 for c in d["checks"])


def test_validate_uses_the_plans_engine_args(tmp_path: Path, run_cli) -> None:
    """A plan made with --engine-arg is validated with those flags (the measurement below
    is that prediction: zero error only if validate applied them)."""
    from kvopt.catalog.engine_args import with_args
    from kvopt.catalog.engines import load_engine
    from kvopt.catalog.gpus import load_gpu

    plan_file = tmp_path / "plan.json"
    res = run_cli("plan", "--model", "Llama-3.1-8B", "--rps", "5", "--input-len", "500",
                  "--output-len", "100", "--gpu", "H100-SXM", "--tp-options", "1",
                  "--precisions", "fp8/fp8", "--batches", "64", "--no-explain",
                  "--engine-arg", "request_overhead_ms=80", "--output", str(plan_file),
                  "--json")
    assert res.exit_code == 0, res.output
    g = load_gpu("H100-SXM")
    eng = with_args(load_engine("vllm", g), {"request_overhead_ms": 80.0})
    bf = _predicted_bench(g, eng, tmp_path / "b.json")
    d = json.loads(run_cli("validate", "--bench", str(bf), "--plan", str(plan_file),
                           "--json").stdout)
    assert all(abs(c["error_pct"]) < 1e-6 for c in d["checks"])


def test_fleet_file_profiles(tmp_path: Path) -> None:
    from kvopt.bench.calibrate import save_profile
    from kvopt.errors import InputError
    from kvopt.fleet.fleetfile import load_fleet_file

    (tmp_path / "profiles").mkdir()
    cal = Calibration(gpu="H100-SXM", engine="vllm", compute_scale=0.9, memory_scale=0.9,
                      step_overhead_ms=4.0, fitted_on=("b1",))
    save_profile(cal, tmp_path / "profiles" / "h100.yaml")
    body = ("gpus: [H100-SXM, L40S]\n{extra}profiles: [profiles/h100.yaml]\nworkloads:\n"
            "  - name: a\n    model: Llama-3.1-8B\n    rate_rps: 3\n    input_len: 100\n"
            "    output_len: 10\n")
    f = tmp_path / "fleet.yaml"
    f.write_text(body.format(extra=""))
    # the path is relative to the fleet file, not the working directory
    assert load_fleet_file(f).space.calibrations[0].fitted_on == ("b1",)
    f.write_text(body.format(extra="engine: sglang\n"))
    with pytest.raises(InputError, match=r"fleet\.yaml:3: profiles: .*engine vllm"):
        load_fleet_file(f)
    f.write_text(body.format(extra="").replace("h100.yaml", "nope.yaml"))
    with pytest.raises(InputError, match=r"fleet\.yaml:2: profiles: .*cannot read it"):
        load_fleet_file(f)


def test_recovers_a_request_overhead() -> None:
    """A server that spends 20 ms per request outside the engine steps (HTTP, tokenization):
    fitting it with the step overhead recovers both; the default fit (no request term)
    cannot express it and stays worse."""
    global TRUE
    saved = TRUE
    TRUE = Calibration(gpu="H100-SXM", engine="vllm", compute_scale=1.0, memory_scale=1.0,
                       step_overhead_ms=3.0, request_overhead_ms=20.0)
    try:
        pts = synthetic(0.01)
    finally:
        TRUE = saved
    cal = calibrate(pts, gpu="H100-SXM", engine="vllm", cross_validate=False,
                    fit=("overhead", "request"))
    assert cal.request_overhead_ms == pytest.approx(20.0, rel=0.1)
    assert cal.step_overhead_ms == pytest.approx(3.0, rel=0.1)
    plain = calibrate(pts, gpu="H100-SXM", engine="vllm", cross_validate=False,
                      fit=("overhead",))
    assert cal.error_after_pct < 3.0 < plain.error_after_pct
    # the profile round trip keeps it (and older profiles without it load as 0)
    assert Calibration.from_dict(cal.to_dict()).request_overhead_ms == cal.request_overhead_ms
    d = cal.to_dict()
    del d["request_overhead_ms"]
    assert Calibration.from_dict(d).request_overhead_ms == 0.0
