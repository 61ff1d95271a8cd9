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
    for gpu, per in shipped["gpus"].items():
        for dtype in ("bf16", "fp8"):
            for key, value in per[dtype].items():
                assert fresh["gpus"][gpu][dtype][key] == pytest.approx(value, rel=0.02, abs=0.05)


def test_fitted_efficiencies_are_physical() -> None:
    for gpu in ("H100-SXM", "H200", "some-unfitted-gpu"):
        for dtype in ("bf16", "fp8"):
            e = efficiency(gpu, dtype)
            assert 0.5 < e.compute < 0.95
            assert 0.5 < e.memory <= e.copy_fraction <= 1.0
    assert efficiency("some-unfitted-gpu", "bf16").fitted_on == "default"
