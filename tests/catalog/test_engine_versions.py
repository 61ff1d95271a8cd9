"""Per-release engine overheads (models/engine_overheads.yaml, fitted by
benchmarks/fit_engine_overheads.py): applied only when a release is named, the greatest fitted
release at or below it, with the fit's source; a release may fit one figure of the two;
bad versions are one-line input errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kvopt import api
from kvopt.catalog.engine_versions import overrides, version_key, versions
from kvopt.catalog.engines import load_engine
from kvopt.catalog.paths import models_dir
from kvopt.errors import InputError

SHIPPED = yaml.safe_load((models_dir() / "engine_overheads.yaml").read_text(encoding="utf-8"))


def _fitted(engine: str, release: str) -> float:
    return float(SHIPPED["engines"][engine]["versions"][release]["request_overhead_ms"])


def test_release_numbers() -> None:
    assert version_key("1.2.0rc6.post2") == (1, 2, 0)
    assert version_key("0.5.10.post1") == (0, 5, 10)
    assert version_key("0.19.0") == (0, 19, 0)
    assert version_key("nightly-dev-20260216") == ()


def test_without_a_release_the_profile_keeps_its_own_figures() -> None:
    """The file names no default release: a fit made on one release's MoE runs is not
    applied to every estimate of the engine."""
    for engine, node in SHIPPED["engines"].items():
        assert node["default"] is None
        assert overrides(engine, None) == ("", {})
        eng = load_engine(engine)
        assert not dict(eng.sources).get("request_overhead_ms", "").startswith("fitted:")


def test_a_named_release_takes_the_greatest_fitted_one_at_or_below_it() -> None:
    listed = versions("sglang")
    assert list(listed) == sorted(listed, key=version_key) and len(listed) >= 2
    newest, before = listed[-1], listed[-2]
    eng = load_engine("sglang", None, newest)
    assert eng.request_overhead_ms == _fitted("sglang", newest)
    assert dict(eng.sources)["request_overhead_ms"].startswith(
        f"fitted: benchmarks/fit_engine_overheads.py (sglang {newest}) on ")
    # a later patch of the older release takes the older release's fit
    major, minor, patch = version_key(before)
    later_patch = f"{major}.{minor}.{patch}.post1"
    assert overrides("sglang", later_patch)[0] == before
    # a release past every fit takes the newest
    assert overrides("sglang", f"{major}.{minor + 1}.0")[0] == newest
    # missing numbers are zeros: "0.12" is release 0.12.0, "1" is 1.0.0
    dot_zero = [v for v in versions("vllm") if version_key(v)[2] == 0]
    assert dot_zero
    for fitted in dot_zero:
        a, b, _ = version_key(fitted)
        assert overrides("vllm", f"{a}.{b}")[0] == fitted
    assert overrides("vllm", "1")[0] == versions("vllm")[-1]
    # what the release fits replaces the profile's figure, what it does not fit stays
    node = SHIPPED["engines"]["sglang"]["versions"]
    for rel, fit in node.items():
        e = load_engine("sglang", None, rel)
        for field in ("step_overhead_ms", "request_overhead_ms"):
            want = fit.get(field, getattr(load_engine("sglang"), field))
            assert getattr(e, field) == want, (rel, field)


def test_bad_releases_are_input_errors() -> None:
    oldest = versions("sglang")[0]
    with pytest.raises(InputError, match="older than every fitted sglang version"):
        overrides("sglang", "0.0.1")
    with pytest.raises(InputError, match="not a version number"):
        overrides("sglang", "banana")
    with pytest.raises(InputError, match="the release it was built after"):
        overrides("sglang", "nightly-dev-20260328-a27651d5")
    assert overrides("sglang", oldest)[0] == oldest


def test_the_overhead_adds_to_the_first_token_once() -> None:
    """A static batch of one request: TTFT = prefill (+ the request overhead). With the
    release's step overhead set by hand as an engine flag, naming the release adds exactly
    its fitted request overhead to TTFT and leaves the steps (TPOT) as they are."""
    release = versions("sglang")[-1]
    fit = SHIPPED["engines"]["sglang"]["versions"][release]
    ask = dict(model="Llama-3.1-8B", gpu="H100-SXM", engine="sglang", input_len=512,
               output_len=64, batch=1)
    step_ms = fit.get("step_overhead_ms", load_engine("sglang").step_overhead_ms)
    base = api.estimate(**ask, engine_args={"step_overhead_ms": step_ms})
    fitted = api.estimate(**ask, engine_version=release)
    expected = _fitted("sglang", release)  # ms, added once per request
    assert fitted.latency.ttft_ms - base.latency.ttft_ms == pytest.approx(
        expected - load_engine("sglang").request_overhead_ms, abs=1e-6)
    assert fitted.latency.tpot_ms == pytest.approx(base.latency.tpot_ms)


def test_a_plan_runs_its_candidates_with_the_named_release() -> None:
    """kvopt plan --engine-version: every candidate carries the release's overheads, so the
    plan's predicted TTFT is the one api.capacity gives that replica with the same release,
    and a TTFT SLO the profile meets alone may need more replicas (SGLang 0.5.9's fitted
    request overhead is 183 ms)."""
    ask = dict(model="Llama-3.1-8B", rps=20.0, input_len=1024, output_len=256,
               slo_ttft_p99_ms=250.0, gpus=("H100-SXM",), tp_options=(1,),
               precisions=(("bf16", "bf16"),), engine="sglang", explain=False)
    plain = api.plan(**ask).to_dict()
    named = api.plan(**ask, engine_version="0.5.9").to_dict()
    assert "engine_version" not in plain["inputs"]["space"]
    assert named["inputs"]["space"]["engine_version"] == "0.5.9"
    extra = _fitted("sglang", "0.5.9")
    for d, version in ((plain, None), (named, "0.5.9")):
        [e] = d["fleet"]
        cap = api.capacity(model="Llama-3.1-8B", gpu="H100-SXM", engine="sglang",
                           engine_version=version, input_len=1024, output_len=256,
                           weights="bf16", kv_dtype="bf16", slo_ttft_p99_ms=250.0,
                           engine_args={"max_num_seqs": e["max_batch"]})
        assert e["replicas"] * cap.result.goodput_rps >= 20.0 * (1 - 1e-9)
    # the overhead alone leaves 66 ms for the prompt: fewer requests per replica
    assert named["fleet"][0]["predicted"]["ttft_p99_ms"] > extra
    assert named["totals"]["usd_per_hour"] >= plain["totals"]["usd_per_hour"]
    assert named["fleet"][0]["replicas"] > plain["fleet"][0]["replicas"]


def test_engine_version_in_fleet_files_and_bad_ones(tmp_path: Path) -> None:
    from kvopt.fleet.fleetfile import FleetFileError, load_fleet_file

    doc = {"engine": "sglang", "gpus": ["H100-SXM"],
           "workloads": [{"name": "a", "model": "Llama-3.1-8B", "rate_rps": 3,
                          "input_len": 100, "output_len": 10}]}
    f = tmp_path / "fleet.yaml"
    f.write_text(yaml.safe_dump({**doc, "engine_version": "0.5.10.post1"}))
    space = load_fleet_file(f).space
    assert space.engine_version == "0.5.10.post1"
    _, eng = space.hardware("H100-SXM")
    assert not isinstance(eng, str) and eng.request_overhead_ms == _fitted("sglang", "0.5.10")
    f.write_text(yaml.safe_dump({**doc, "engine_version": "0.4.0"}))
    with pytest.raises(FleetFileError, match=r"engine_version.*older than every fitted"):
        load_fleet_file(f)
    with pytest.raises(InputError, match="not a version number"):
        api.plan(model="Llama-3.1-8B", rps=1.0, input_len=100, output_len=10,
                 gpus=("H100-SXM",), engine="sglang", engine_version="latest")
    with pytest.raises(InputError, match="a calibrated profile carries its own overheads"):
        api.estimate(model="Llama-3.1-8B", gpu="H100-SXM", input_len=100, output_len=10,
                     batch=1, engine_version="0.19.0", profile=str(tmp_path / "any.yaml"))


def test_a_fit_used_for_a_model_it_was_not_fitted_on_says_so() -> None:
    """Each fitted release lists the models of its runs (the ones its fitted_on names);
    an estimate that takes a release's request overhead for another model notes the fit's
    models and its held-out-by-model TTFT error, and says nothing for a model of the fit."""
    data = SHIPPED["engines"]
    for eng, node in data.items():
        for ver, fit in node["versions"].items():
            assert fit["models"], (eng, ver)
            assert all(m in fit["fitted_on"] for m in fit["models"]), (eng, ver)
    fit = data["trtllm"]["versions"]["1.2.0"]
    assert "Llama-3.1-8B" not in fit["models"] and "Qwen3-32B" in fit["models"]
    ask = dict(gpu="H100-SXM", input_len=1024, output_len=128, rps=1.0, engine="trtllm",
               engine_version="1.2.0")
    other = api.estimate(model="Llama-3.1-8B", **ask).to_dict()["notes"]
    [note] = [n for n in other if "request overhead" in n]
    assert f"({fit['request_overhead_ms']:g} ms)" in note and "not Llama-3.1-8B" in note
    assert f"{fit['ttft_median_ape_pct_held_out_by_model']:g}%" in note
    own = api.estimate(model="Qwen3-32B", **ask).to_dict()["notes"]
    assert not [n for n in own if "request overhead" in n]
    # a static batch says it too; no release named: nothing to say
    static = dict(ask, rps=None, batch=2)
    assert [n for n in api.estimate(model="Llama-3.1-8B", **static).to_dict()["notes"]
            if "was fitted on runs of" in n]
    # the user's own request overhead replaces the fit's: nothing to say either
    mine = api.estimate(model="Llama-3.1-8B", **ask,
                        engine_args={"request_overhead_ms": 10}).to_dict()["notes"]
    assert not [n for n in mine if "was fitted on runs of" in n]
    plain = dict(ask, engine_version=None)
    assert not [n for n in api.estimate(model="Llama-3.1-8B", **plain).to_dict()["notes"]
                if "was fitted on runs of" in n]
