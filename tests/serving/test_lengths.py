"""Length distributions and loads through the front door."""

from __future__ import annotations

from pathlib import Path

import pytest

from kvopt import InputError, estimate
from kvopt.serving.lengths import parse_dist


def test_csv_histogram_and_trace(tmp_path: Path) -> None:
    hist = tmp_path / "hist.csv"
    hist.write_text("length,count\n100,3\n300,1\n")
    d = parse_dist(f"csv:{hist}")
    assert d.mean == pytest.approx((100 * 3 + 300) / 4)
    trace = tmp_path / "trace.csv"
    trace.write_text("length\n5\n5\n20\n")
    assert parse_dist(f"csv:{trace}").mean == pytest.approx(10)


def test_api_estimate_with_load() -> None:
    e = estimate(model="Llama-3.1-8B", gpu="H100-SXM", output_len=100,
                 input_len_dist="lognormal:mean=500,sigma=0.5", concurrency=4)
    assert e.load.mode == "concurrency" and e.throughput.requests_s > 0
    with pytest.raises(InputError, match="fixed lengths"):
        estimate(model="Llama-3.1-8B", gpu="H100-SXM", input_len_dist="uniform:low=1,high=9",
                 output_len=5, batch=2)
