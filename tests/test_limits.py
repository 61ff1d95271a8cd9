"""kvopt.limits: the ranges every number is checked against, and the file schemas that
document them (a schema's bounds are the reader's: fleet.yaml and study.yaml)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from kvopt import limits
from kvopt.errors import InputError
from kvopt.schemas import load_schema

# fleet.yaml schema node (a path of keys; "*" = additionalProperties, "[]" = items) -> range
FLEET: dict[tuple[str, ...], limits.Range] = {
    ("budget_usd_h",): limits.BUDGET_USD_H, ("power_cap_kw",): limits.POWER_KW,
    ("tps", "[]"): limits.TP, ("batches", "[]"): limits.SEQS,
    ("availability", "*"): limits.GPU_COUNT, ("prices_usd_h", "*"): limits.PRICE_USD_H,
    ("regions", "*", "prices_usd_h", "*"): limits.PRICE_USD_H,
    ("regions", "*", "availability", "*"): limits.GPU_COUNT,
    ("workloads", "[]", "rate_rps"): limits.RPS, ("workloads", "[]", "input_len"): limits.TOKENS,
    ("workloads", "[]", "output_len"): limits.TOKENS,
    ("workloads", "[]", "slo", "ttft_p99_ms"): limits.SLO_MS,
    ("workloads", "[]", "slo", "tpot_p99_ms"): limits.SLO_MS,
    ("workloads", "[]", "slo", "e2e_p99_ms"): limits.SLO_MS,
    ("workloads", "[]", "redundancy"): limits.REDUNDANCY,
    ("workloads", "[]", "max_quality_loss_pct"): limits.QUALITY_PCT,
}


def _node(schema: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    node: Any = schema
    for step in path:
        node = node.get("properties", node)
        node = (node["additionalProperties"] if step == "*" else node["items"] if step == "[]"
                else node[step])
    return dict(node)


def _bounds(node: dict[str, Any]) -> tuple[Any, Any, Any]:
    return node.get("minimum"), node.get("exclusiveMinimum"), node.get("maximum")


def _expected(rng: limits.Range) -> tuple[Any, Any, Any]:
    return (None, rng.lo, rng.hi) if rng.lo_open else (rng.lo, None, rng.hi)


def test_the_fleet_schema_states_the_readers_ranges() -> None:
    schema = load_schema("fleet")
    for path, rng in FLEET.items():
        assert _bounds(_node(schema, path)) == _expected(rng), path


def test_the_study_schema_states_the_readers_ranges() -> None:
    from kvopt.study.fields import RANGES

    keys = load_schema("study")["$defs"]["key"]
    for name, rng in RANGES.items():
        node = keys[name]
        inner = node.get("items") or node.get("additionalProperties")
        target = inner if isinstance(inner, dict) and "type" in inner else node
        assert _bounds(target) == _expected(rng), name


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, True, "3", None, 0.0001,
                                   2e6])
def test_a_range_refuses_what_is_not_a_finite_number_inside_it(value: Any) -> None:
    with pytest.raises(InputError, match=r"rps=.*must be a finite number with 0\.001 <= value"):
        limits.RPS.check("rps", value)


def test_a_range_keeps_what_is_inside() -> None:
    assert limits.RPS.check("rps", 5) == 5.0 and isinstance(limits.SEQS.check("b", 64.0), int)
    with pytest.raises(InputError, match="an integer"):
        limits.SEQS.check("batch", 2.5)
    with pytest.raises(InputError, match="0 < value"):
        limits.SLO_MS.check("slo", 0)
