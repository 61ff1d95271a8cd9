"""Per-release engine overheads (models/engine_overheads.yaml, fitted by
benchmarks/fit_engine_overheads.py): applied only when a release is named, the greatest fitted
release at or below it, with the fit's source; a release may fit one figure of the two;
bad versions are one-line input errors."""

from __future__ import annotations

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
    assert overrides("sglang", oldest)[0] == oldest


def test_the_overhead_adds_to_the_first_token_once() -> None:
    """A static batch of one request: TTFT = prefill (+ the request overhead). With the
    release's step overhead set by hand as an engine flag, naming the release adds exactly
    its fitted request overhead to TTFT and leaves the steps (TPOT) as they are."""
    release = versions("sglang")[-1]
    fit = SHIPPED["engines"]["sglang"]["versions"][release]
    ask = dict(model="Llama-3.1-8B", gpu="H100-SXM", engine="sglang", input_len=512,
               output_len=64, batch=1)
    base = api.estimate(**ask, engine_args={"step_overhead_ms": fit["step_overhead_ms"]})
    fitted = api.estimate(**ask, engine_version=release)
    expected = _fitted("sglang", release)  # ms, added once per request
    assert fitted.latency.ttft_ms - base.latency.ttft_ms == pytest.approx(
        expected - load_engine("sglang").request_overhead_ms, abs=1e-6)
    assert fitted.latency.tpot_ms == pytest.approx(base.latency.tpot_ms)
