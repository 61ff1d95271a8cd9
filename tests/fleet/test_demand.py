"""Demand over time: CSV profiles, request traces (the Azure LLM inference trace columns as
they are, CSV and JSONL), fleet-file demand and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from kvopt import InputError
from kvopt.fleet.demand import profile_from, rates_for, read_demand_csv, read_trace, week_labels
from kvopt.fleet.fleetfile import load_fleet_file


def test_week_labels_count_hours_from_monday() -> None:
    labels = week_labels((1.0,) * 168)
    assert labels[0] == "Mon 00:00" and labels[13] == "Mon 13:00" and labels[-1] == "Sun 23:00"
    assert week_labels((0.5, 0.5, 1.0)) == ("Mon 00:00", "Mon 00:30", "Mon 01:00")


def test_demand_csv_one_and_many_workloads(tmp_path: Path) -> None:
    one = tmp_path / "d.csv"
    one.write_text("period,hours,rps\n0,1,2.5\n1,1,4\n2,2,1\n")
    p = read_demand_csv(one, ("chat",))
    assert p.hours == (1.0, 1.0, 2.0) and p.labels == ("Mon 00:00", "Mon 01:00", "Mon 02:00")
    assert rates_for(p, "chat", 99.0) == (2.5, 4.0, 1.0)
    many = tmp_path / "m.csv"
    many.write_text("period,hours,workload,rps\nweekday,16,a,3\nweekday,16,b,1\n"
                    "weekend,8,a,1\n")
    p = read_demand_csv(many, ("a", "b"))
    assert p.labels == ("weekday", "weekend") and rates_for(p, "b", 5.0) == (1.0, 0.0)
    with pytest.raises(InputError, match="add a 'workload' column"):
        read_demand_csv(one, ("a", "b"))
    bad = tmp_path / "bad.csv"
    bad.write_text("period,hours,rps\n0,1,x\n")
    with pytest.raises(InputError, match=r"bad\.csv:2.*must be numbers"):
        read_demand_csv(bad, ("chat",))


def test_azure_trace_bins_rates_and_lengths(tmp_path: Path) -> None:
    rows = ["TIMESTAMP,ContextTokens,GeneratedTokens"]
    rng = np.random.default_rng(0)
    counts = (30, 90, 60)  # requests in each hour
    for h, n in enumerate(counts):
        for s in np.sort(rng.uniform(0, 3600, n)):
            m, sec = divmod(s, 60)
            rows.append(f"2023-11-16 {10 + h:02d}:{int(m):02d}:{sec:010.7f},"
                        f"{int(rng.integers(100, 4000))},{int(rng.integers(10, 500))}")
    f = tmp_path / "AzureLLMInferenceTrace_conv.csv"
    f.write_text("\n".join(rows) + "\n")
    tr = read_trace(f, period_hours=1.0, name="chat")
    rates = dict(tr.profile.rps)["chat"]
    assert tr.requests == sum(counts) and len(rates) == 3
    assert rates[1] == pytest.approx(counts[1] / 3600, rel=0.05)
    assert tr.profile.labels[0] == "Thu 10:00"  # 2023-11-16 was a Thursday
    assert 100 <= tr.input_dist.mean <= 4000 and tr.output_dist.max < 500
    jl = tmp_path / "t.jsonl"
    jl.write_text("\n".join(json.dumps({"timestamp": t, "input_len": 100, "output_len": 10})
                            for t in (0, 10, 1800, 3700)) + "\n")
    tr = read_trace(jl, period_hours=0.5, name="w")
    assert dict(tr.profile.rps)["w"] == pytest.approx((2 / 1800, 1 / 1800, 1 / 1800))
    bad = tmp_path / "bad.csv"
    bad.write_text("time,prompt\n1,2\n")
    with pytest.raises(InputError, match="TIMESTAMP,ContextTokens,GeneratedTokens"):
        read_trace(bad)


def test_fleet_file_demand_and_errors(tmp_path: Path) -> None:
    doc = {"gpus": ["H100-SXM"], "regions": {"us": {"owned_gpus": {"H100-SXM": 4}}},
           "demand": {"hours": 1, "scale": [0.5, 1.0], "rps": {"b": [1, 2]}},
           "payments": ["on_demand", "spot"], "spot_rule": {"max_share": 0.5},
           "workloads": [{"name": "a", "model": "Llama-3.1-8B", "rate_rps": 4,
                          "input_len": 100, "output_len": 10, "regions": ["us"]},
                         {"name": "b", "model": "Llama-3.1-8B", "rate_rps": 4,
                          "input_len": 100, "output_len": 10}]}
    f = tmp_path / "fleet.yaml"
    f.write_text(yaml.safe_dump(doc, sort_keys=False))
    p = load_fleet_file(f)
    hz = p.horizon
    assert hz is not None and hz.payments == ("on_demand", "spot")
    assert rates_for(hz.profile, "a", 4.0) == (2.0, 4.0)
    assert rates_for(hz.profile, "b", 4.0) == (1.0, 2.0)
    assert hz.owned_gpus == (("us:H100-SXM", 4),) and p.workloads[0].regions == ("us",)
    doc["demand"] = {"hours": 1, "rps": {"c": [1, 2]}}
    f.write_text(yaml.safe_dump(doc, sort_keys=False))
    with pytest.raises(InputError, match=r"fleet\.yaml:\d+: demand: 'c': names no workload"):
        load_fleet_file(f)
    doc["demand"] = {"hours": 1, "scale": [1.0]}
    doc["workloads"][0]["regions"] = ["eu"]
    f.write_text(yaml.safe_dump(doc, sort_keys=False))
    with pytest.raises(InputError, match="names no region of the fleet; allowed: us"):
        load_fleet_file(f)
    with pytest.raises(InputError, match="give rps"):
        profile_from({"hours": 1}, ("a",))
