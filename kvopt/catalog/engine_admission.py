"""The admission fields of an engine profile (``models/engines/<name>.yaml``): how late the
scheduler may take in or run an arrived prompt (:mod:`kvopt.serving.admission` prices it)."""

from __future__ import annotations

from typing import Any

from kvopt.errors import CatalogError

ADMIT_INTERVAL_MAX = 1_000  # decode passes between polls (SGLang's extend weight is 1000)


def check_admission(p: Any) -> None:
    """Raise ValueError when an engine profile's admission fields are out of range, or set
    on an engine that has no such flag."""
    ranges = (("admit_interval_steps", p.admit_interval_steps, 1, ADMIT_INTERVAL_MAX),
              ("adp_timeout_iters", p.adp_timeout_iters, 1, ADMIT_INTERVAL_MAX),
              ("adp_wait_iters", p.adp_wait_iters, 0, ADMIT_INTERVAL_MAX),
              ("batch_wait_timeout_iters", p.batch_wait_timeout_iters, 0, ADMIT_INTERVAL_MAX),
              ("batch_wait_max_tokens_ratio", p.batch_wait_max_tokens_ratio, 0, 1))
    for name, value, low, high in ranges:
        if not low <= value <= high:
            raise ValueError(f"{name} {value} must be in [{low}, {high}]")
    unsupported = (
        (p.admit_interval_steps > 1 and not p.admit_interval_flag,
         "polls for requests every pass: it has no admission interval (admit_interval_steps "
         "must be 1)"),
        (p.adp_balance and not p.adp_balance_flag,
         "has no attention-DP balancing (adp_balance must be false)"),
        (p.batch_waits and not p.batch_wait_flag,
         "has no batch waiting (batch_wait_timeout_iters and batch_wait_max_tokens_ratio must "
         "be 0)"))
    for bad, what in unsupported:
        if bad:
            raise ValueError(f"{p.name} {what}")


def admit_interval(data: dict[str, Any], origin: str, srcs: dict[str, str]
                    ) -> tuple[int, str]:
    """``admit_interval_steps: {value: N, flag: --..., source: ...}`` of a profile (absent: 1
    and no flag: the engine polls for new requests at every pass)."""
    node = data.get("admit_interval_steps")
    if node is None:
        return 1, ""
    value = node.get("value") if isinstance(node, dict) else None
    if (not isinstance(node, dict) or not node.get("source") or not node.get("flag")
            or isinstance(value, bool) or not isinstance(value, int)):
        raise CatalogError(f"{origin}: field 'admit_interval_steps' must be a mapping with an "
                           "integer 'value', the engine's 'flag' and a non-empty 'source'")
    srcs["admit_interval_steps"] = str(node["source"])
    return value, str(node["flag"])


def adp_balance(data: dict[str, Any], origin: str, srcs: dict[str, str]
                 ) -> dict[str, Any]:
    """``attention_dp_balance: {enable_balance, timeout_iters, batching_wait_iters, flag,
    source}`` of a profile (absent: the engine has no such balancing)."""
    node = data.get("attention_dp_balance")
    if node is None:
        return {}
    keys = ("enable_balance", "timeout_iters", "batching_wait_iters")
    if (not isinstance(node, dict) or not node.get("source") or not node.get("flag")
            or not isinstance(node.get("enable_balance"), bool)
            or not all(isinstance(node.get(k), int) and not isinstance(node.get(k), bool)
                       for k in keys[1:])):
        raise CatalogError(f"{origin}: field 'attention_dp_balance' must be a mapping with "
                           f"{', '.join(keys)} (a boolean and two integers), the engine's "
                           "'flag' and a non-empty 'source'")
    srcs["attention_dp_balance"] = str(node["source"])
    return {"adp_balance": node["enable_balance"], "adp_timeout_iters": node["timeout_iters"],
            "adp_wait_iters": node["batching_wait_iters"], "adp_balance_flag": str(node["flag"])}


def batch_wait(data: dict[str, Any], origin: str, srcs: dict[str, str]) -> dict[str, Any]:
    """``batch_wait: {timeout_iters, max_tokens_ratio, flag, source}`` of a profile (absent:
    the engine has no batch waiting)."""
    node = data.get("batch_wait")
    if node is None:
        return {}
    iters, ratio = (node.get(k) if isinstance(node, dict) else None
                    for k in ("timeout_iters", "max_tokens_ratio"))
    if (not isinstance(node, dict) or not node.get("source") or not node.get("flag")
            or isinstance(iters, bool) or not isinstance(iters, int)
            or isinstance(ratio, bool) or not isinstance(ratio, (int, float))):
        raise CatalogError(f"{origin}: field 'batch_wait' must be a mapping with timeout_iters "
                           "(an integer), max_tokens_ratio (a number), the engine's 'flag' and "
                           "a non-empty 'source'")
    srcs["batch_wait"] = str(node["source"])
    return {"batch_wait_timeout_iters": iters, "batch_wait_max_tokens_ratio": float(ratio),
            "batch_wait_flag": str(node["flag"])}
