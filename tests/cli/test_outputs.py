"""Outputs: compare --output writes what its help says; calibrate does not write a profile
that predicts held-out measurements worse (unless asked); JSON is strict (no bare NaN);
several files are written all or nothing; nothing is written into a folder that does not
exist."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from kvopt.errors import InputError
from kvopt.fileio import json_text, write_all

SMALL = ["--model", "Llama-3.1-8B", "--rps", "5", "--input-len", "500", "--output-len", "50",
         "--tp-options", "1", "--precisions", "fp8/fp8", "--batches", "64"]


def test_compare_output_writes_the_rows(run_cli, tmp_path: Path) -> None:
    out = tmp_path / "cmp.json"
    res = run_cli("compare", *SMALL, "--gpus", "H100-SXM,L40S", "--json", "--output", str(out))
    assert res.exit_code == 0, res.output
    assert json.loads(out.read_text()) == json.loads(res.stdout)
    assert [r["gpu"] for r in json.loads(res.stdout)] == ["H100-SXM", "L40S"]


def test_calibrate_refuses_a_profile_that_predicts_worse(run_cli, tmp_path: Path,
                                                         monkeypatch) -> None:
    from kvopt.bench import calibrate as cal_mod
    from kvopt.bench.calibrate import Calibration
    from tests.bench.test_validate import bench

    worse = Calibration(gpu="H100-SXM", engine="vllm", compute_scale=0.9, memory_scale=0.9,
                        step_overhead_ms=3.0, error_before_pct=8.0, error_after_pct=4.0,
                        cv_before_pct=8.0, cv_after_pct=11.0)
    monkeypatch.setattr(cal_mod, "calibrate", lambda *a, **k: worse)
    files = []
    for i, rate in enumerate((1.0, 2.0, 4.0)):
        f = tmp_path / f"b{i}.json"
        f.write_text(json.dumps(bench(load={"mode": "rps", "value": rate})))
        files.append(str(f))
    out = tmp_path / "p.yaml"
    res = run_cli("calibrate", *files, "--gpu", "H100-SXM", "--out", str(out))
    assert res.exit_code == 1 and "held-out error worse (8.0% -> 11.0%)" in res.stderr
    assert not out.exists()
    res = run_cli("calibrate", *files, "--gpu", "H100-SXM", "--out", str(out), "--allow-worse")
    assert res.exit_code == 0 and out.exists() and "warning" in res.stderr


def test_json_is_strict() -> None:
    text = json_text({"a": math.nan, "b": [math.inf, 1.0], "c": (-math.inf,)})
    assert json.loads(text) == {"a": None, "b": [None, 1.0], "c": [None]}
    assert "NaN" not in text and "Infinity" not in text


def test_several_files_all_or_nothing(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("old")
    with pytest.raises(InputError, match="cannot write"):
        write_all([(tmp_path / "a.txt", "new"), (tmp_path / "b.txt", "new"),
                   (tmp_path / "no" / "c.txt", "new")])
    assert (tmp_path / "a.txt").read_text() == "old" and not (tmp_path / "b.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]  # no temporary left
    write_all([(tmp_path / "a.txt", "new"), (tmp_path / "b.txt", b"new")])
    assert (tmp_path / "a.txt").read_text() == (tmp_path / "b.txt").read_text() == "new"


def test_no_folder_is_created_for_an_output(run_cli, tmp_path: Path) -> None:
    out = tmp_path / "missing" / "plan.json"
    res = run_cli("plan", *SMALL, "--gpu", "H100-SXM", "--no-explain", "--output", str(out))
    assert res.exit_code == 1 and "does not exist" in res.stderr
    assert not (tmp_path / "missing").exists()
