"""The fitting machinery of ``fit_efficiency.py``: curve problems, least squares on log time,
deterministic subsamples, fits scored per GPU, and the rows kept as test samples
(``benchmarks/data/aic_sample_*.csv``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aic_tables as aic
import numpy as np
import pandas as pd
from scipy.optimize import least_squares

FIT_ROWS = {"gemm": 1200, "attention": 1500, "moe": 2000, "allreduce": 1000, "linear": 1500,
            "elementwise": 800}
# rows shipped for the tests (benchmarks/data/aic_sample_*.csv): the fit rows of these
# curves (the refit test) and decode-sized rows of a same-die GPU (the transfer test)
SAMPLE_FIT = {("hopper", "trtllm", "gemm", "bf16")}
SAMPLE_HELD = {("H200", "trtllm", "gemm", "bf16"), ("H200", "trtllm", "gemm", "fp8"),
               ("H100-SXM", "vllm", "attention", "generation_bf16"),
               ("H200", "vllm", "attention", "generation_bf16")}
SAMPLE_HELD_ROWS = 150

Predictor = Callable[[dict[str, float]], np.ndarray]


@dataclass
class Fit:
    """One fitted curve: where it sits in the file, its parameters and what it was fitted on."""

    path: tuple[str, ...]  # (family, engine, section, name) | (gpu, impl, "allreduce", n)
    params: dict[str, float]
    meta: dict[str, Any]
    predict: Predictor = field(repr=False)  # params -> times of every row of the curve
    measured: np.ndarray = field(repr=False)
    gpus: np.ndarray = field(repr=False)  # the card of each row


@dataclass(frozen=True)
class Problem:
    """How one kind of curve is fitted: parameter names, bounds, starts, and a predictor
    factory over row data."""

    names: tuple[str, ...]
    lo: tuple[float, ...]
    hi: tuple[float, ...]
    starts: tuple[tuple[float, ...], ...]
    predictor: Callable[[Any], Predictor]


def lsq(pred: Predictor, prob: Problem, t: np.ndarray) -> dict[str, float]:
    """Least squares on log time from each start (the best one wins; deterministic)."""
    lt = np.log(t)
    lo, hi = np.asarray(prob.lo), np.asarray(prob.hi)
    best: Any = None

    def resid(v: np.ndarray) -> np.ndarray:
        return np.log(np.maximum(pred(dict(zip(prob.names, v, strict=True))), 1e-12)) - lt

    for x0 in prob.starts:
        x = np.clip(np.asarray(x0, float), lo + 1e-9 * (hi - lo), hi - 1e-9 * (hi - lo))
        r = least_squares(resid, x, bounds=(lo, hi), x_scale="jac", max_nfev=400)
        if best is None or r.cost < best.cost:
            best = r
    return {k: float(f"{v:.4g}") for k, v in zip(prob.names, best.x, strict=True)}


def subsample(n: int, size: int) -> np.ndarray:
    """``size`` of ``n`` row positions, seed 0, sorted (all of them when fewer)."""
    if n <= size:
        return np.arange(n)
    return np.sort(np.random.default_rng(0).choice(n, size, replace=False))


Part = tuple[aic.Table, pd.DataFrame]  # a table and its rows of the curve


def fit_parts(path: tuple[str, ...], prob: Problem, parts: list[Part],
              rows_of: Callable[[pd.DataFrame], Any], kind: str) -> Fit:
    """Fit ``prob`` on an equal subsample of each part (one per GPU of the family), score
    it on every row, overall and per GPU."""
    size = FIT_ROWS[kind] // len(parts)
    picks = [f.iloc[subsample(len(f), size)] for _, f in parts]
    sub = rows_of(pd.concat(picks, ignore_index=True))
    params = lsq(prob.predictor(sub), prob, sub.t)
    frame = pd.concat([f for _, f in parts], ignore_index=True)
    every = rows_of(frame)
    predict = prob.predictor(every)
    pred = predict(params)
    med, p90 = aic.ape(pred, every.t)
    gpus = frame["gpu"].to_numpy()
    versions = sorted({t.version for t, _ in parts})
    meta: dict[str, Any] = {
        "rows": int(sum(len(p) for p in picks)), "evaluated_rows": len(frame),
        "median_ape_pct": med, "p90_ape_pct": p90,
        "per_gpu": {str(g): list(aic.ape(pred[gpus == g], every.t[gpus == g]))
                    for g in dict.fromkeys(gpus)},
        "engine_version": versions[0] if len(versions) == 1 else versions,
        "tables": [t.path for t, _ in parts]}
    if path in SAMPLE_FIT:
        for (t, _), pick in zip(parts, picks, strict=True):
            SAMPLE_ROWS.append(pick.assign(curve="/".join(path), role="fit", table=t.path,
                                           engine_version=t.version))
    for t, f in parts:
        if (t.gpu, *path[1:]) in SAMPLE_HELD:
            small = f[_decode_sized(f)]
            pick = small.iloc[subsample(len(small), SAMPLE_HELD_ROWS)]
            SAMPLE_ROWS.append(pick.assign(curve="/".join(path), role="held_aside",
                                           table=t.path, engine_version=t.version))
    return Fit(path, params, meta, predict, every.t, gpus)


SAMPLE_ROWS: list[pd.DataFrame] = []


def _decode_sized(frame: pd.DataFrame) -> np.ndarray:
    if "m" in frame:
        return np.asarray(frame["m"] <= 64)
    return np.asarray(frame["batch_size"] <= 64)


def family_tables(family: str, op: str, engine: str, table: str,
                  columns: list[str] | None = None,
                  members: tuple[str, ...] | None = None) -> list[aic.Table]:
    """The family's tables (``members``: only these systems, for leave-one-out)."""
    systems = aic.FAMILIES[family] if members is None else members
    found = (aic.read_table(s, op, engine, table, columns) for s in systems)
    return [t for t in found if t is not None]
