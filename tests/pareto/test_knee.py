"""Fronts a reviewer can use: bounded to fleets costing at most a stated multiple of the
cheapest feasible one (and the budget), with the knee a reviewer would pick
(kvopt.pareto.front.KNEE_RULE), both stated in the report."""

from __future__ import annotations

import numpy as np
import pytest

from kvopt import api
from kvopt.pareto.front import KNEE_RULE, knee


def test_knee_rule_by_hand() -> None:
    # cost $/h, TTFT p99 ms, TPOT p99 ms; SLOs 500 ms and 50 ms
    F = np.array([[3.78, 57.9, 10.07], [7.56, 31.2, 6.78], [15.12, 22.4, 5.33]])
    objs = ("cost", "ttft_p99", "tpot_p99")
    # regrets with the SLOs: 0 + 35.5/500 + 4.74/50 = 0.166; 1 + 8.8/500 + 1.45/50 = 1.05;
    # 3 + 0 + 0 = 3 -> the cheapest
    assert knee(F, objectives=objs, slo_ms={"ttft_p99": 500, "tpot_p99": 50}) == 0
    # without SLOs latencies count relative to the best: 0 + 1.585 + 0.889 = 2.47;
    # 1 + 0.393 + 0.272 = 1.66; 3 + 0 + 0 = 3 -> twice the cost for ~1/3 less latency
    assert knee(F, objectives=objs) == 1
    # ties go to the cheaper point
    assert knee(np.array([[2.0, 1.0], [1.0, 2.0]]), objectives=("cost", "gpus")) == 1


@pytest.fixture(scope="module")
def issue_front():
    """The issue's case: Llama-3.1-8B at 20 req/s, TTFT p99 500 ms, TPOT p99 50 ms, on the
    default Pareto space (exact front: no sampling)."""
    return api.pareto(model="Llama-3.1-8B", rps=20, input_len=1024, output_len=256,
                      slo_ttft_p99_ms=500, slo_tpot_p99_ms=50, method="exact")


def test_the_issue_front_is_bounded_and_its_knee_is_one_h100(issue_front) -> None:
    from kvopt.pareto import export

    res = issue_front
    rep = res.report()
    cheapest = rep["cheapest_usd_per_hour"]
    assert cheapest == pytest.approx(3.78)  # one H100 meets the SLOs
    cost = res.front.F[:, res.objectives.index("cost")]
    assert cost.max() <= 4 * cheapest + 1e-9 and rep["cost_cap_usd_per_hour"] == 4 * cheapest
    rows = export.rows(res.front, res.table, res.objectives, res.norm, knee_at=res.knee)
    k = next(r for r in rows if r["knee"])
    assert (k["gpu"], k["tp"], k["replicas"], k["cost"]) == ("H100-SXM", 1, 1,
                                                             pytest.approx(3.78))
    assert rep["knee_rule"] == KNEE_RULE and "4 x the cheapest" in rep["cost_cap_rule"]


def test_the_budget_bounds_the_front_too() -> None:
    res = api.pareto(model="Llama-3.1-8B", rps=20, input_len=1024, output_len=256,
                     slo_ttft_p99_ms=500, slo_tpot_p99_ms=50, method="exact",
                     gpus=("H100-SXM", "L40S"), budget_usd_h=8.0, cost_cap_multiple=None)
    assert res.front.F[:, 0].max() <= 8.0 and res.cost_cap_usd_h == 8.0
