"""Calibrate a GPU x engine profile on measurements: least squares (scipy) on log errors
of TTFT, ITL and throughput, with leave-one-out cross-validation.

Fitted parameters: a compute-efficiency scale and a memory-efficiency scale (multipliers on
the kernel-fitted efficiencies of ``models/efficiency.yaml``, bounded by the hardware and
held toward 1 by a weak prior), the engine's per-step overhead in ms and its per-request
overhead in ms (time outside the engine steps: HTTP, tokenization, admission; it adds to
TTFT and end-to-end latency only); ``fit`` picks which of them move. A profile YAML records
the values, what they were fitted on, and the error
before and after (in sample and held out).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from kvopt.catalog.engines import EngineProfile, load_engine
from kvopt.catalog.gpus import GpuSpec, load_gpu
from kvopt.errors import InputError, KvoptError
from kvopt.fileio import write_atomic
from kvopt.serving.estimate import estimate
from kvopt.serving.load import Load

SCHEMA = "kvopt.profile/1"
# compute scale, memory scale, step overhead ms, request overhead ms. The scales stop where
# the efficiency would pass the hardware (fitted compute ~0.77 of peak, memory ~0.9 of spec
# bandwidth).
BOUNDS = ((0.2, 0.2, 0.0, 0.0), (1.25, 1.1, 50.0, 2000.0))
# a weak prior that the kernel-fitted efficiencies are right: residual weight per log-scale
PRIOR = 0.25


@dataclass(frozen=True, kw_only=True)
class Point:
    """One measured configuration (bench file or published row)."""

    label: str
    model: str
    tp: int
    weights: str
    kv_dtype: str | None
    load: Load
    input_len: int
    output_len: int
    measured: dict[str, float]  # ttft_mean_ms, itl_mean_ms, output_tok_s (any subset)


@dataclass(frozen=True, kw_only=True)
class Calibration:
    gpu: str
    engine: str
    compute_scale: float
    memory_scale: float
    step_overhead_ms: float
    request_overhead_ms: float = 0.0
    fitted_on: tuple[str, ...] = ()
    error_before_pct: float = math.nan
    error_after_pct: float = math.nan
    cv_before_pct: float = math.nan
    cv_after_pct: float = math.nan

    def to_dict(self) -> dict[str, Any]:
        """The fitted values, as recorded in a plan's ``inputs.space.calibrations``."""
        return {"gpu": self.gpu, "engine": self.engine, "compute_scale": self.compute_scale,
                "memory_scale": self.memory_scale, "step_overhead_ms": self.step_overhead_ms,
                "request_overhead_ms": self.request_overhead_ms,
                "fitted_on": list(self.fitted_on)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibration:
        return cls(gpu=str(d["gpu"]), engine=str(d["engine"]),
                   compute_scale=float(d["compute_scale"]),
                   memory_scale=float(d["memory_scale"]),
                   step_overhead_ms=float(d["step_overhead_ms"]),
                   request_overhead_ms=float(d.get("request_overhead_ms", 0.0)),
                   fitted_on=tuple(str(x) for x in d.get("fitted_on") or ()))

    def apply(self) -> tuple[GpuSpec, EngineProfile]:
        g = load_gpu(self.gpu)
        eng = load_engine(self.engine, g)
        return (replace(g, efficiency_scale=(self.compute_scale, self.memory_scale)),
                replace(eng, step_overhead_ms=self.step_overhead_ms,
                        request_overhead_ms=self.request_overhead_ms))


def plan_calibration(plan: dict[str, Any], gpu: str, engine: str, *, field: str,
                     value: object) -> tuple[GpuSpec, EngineProfile] | None:
    """The (GPU, engine) cards of the plan's calibration of ``gpu`` and ``engine``
    (``inputs.space.calibrations``: the plan was made with that profile); None when it has
    none. A malformed entry is an :class:`InputError` on ``field`` = ``value``."""
    for c in plan.get("inputs", {}).get("space", {}).get("calibrations") or []:
        if c.get("gpu") == gpu and c.get("engine") == engine:
            try:
                return Calibration.from_dict(c).apply()
            except (KeyError, TypeError, ValueError):
                raise InputError(field, value, "inputs.space.calibrations has a malformed "
                                 "entry", "re-export the plan with kvopt plan --output") from None
    return None


def predict(p: Point, gpu: GpuSpec, eng: EngineProfile) -> dict[str, float]:
    e = estimate(model=p.model, gpu=gpu, tp=p.tp, weights=p.weights, kv_dtype=p.kv_dtype,
                 engine=eng, input_len=p.input_len, output_len=p.output_len,
                 load=p.load if p.load.mode != "batch" else None,
                 batch=int(p.load.value) if p.load.mode == "batch" else None)
    return {"ttft_mean_ms": e.latency.ttft_ms, "itl_mean_ms": e.latency.tpot_ms,
            "output_tok_s": e.throughput.output_tok_s}


def _residuals(x: np.ndarray, points: list[Point], gpu: str, engine: str) -> np.ndarray:
    cal = Calibration(gpu=gpu, engine=engine, compute_scale=float(x[0]),
                      memory_scale=float(x[1]), step_overhead_ms=float(x[2]),
                      request_overhead_ms=float(x[3]))
    g, eng = cal.apply()
    out = []
    for p in points:
        try:
            pred = predict(p, g, eng)
        except KvoptError:
            out += [3.0] * sum(1 for m in p.measured.values() if math.isfinite(m) and m > 0)
            continue
        for k, meas in p.measured.items():
            if not (math.isfinite(meas) and meas > 0):
                continue  # nothing was measured (e.g. a saturated run)
            v = pred.get(k)
            out.append(math.log(v / meas) if v and math.isfinite(v) and v > 0 else 3.0)
    return np.asarray(out)


def _objective(x: np.ndarray, points: list[Point], gpu: str, engine: str) -> np.ndarray:
    """Residuals plus the prior pulling both scales toward 1."""
    return np.concatenate([_residuals(x, points, gpu, engine),
                           PRIOR * np.log(np.asarray(x[:2], dtype=np.float64))])


def _mape(x: np.ndarray, points: list[Point], gpu: str, engine: str) -> float:
    r = _residuals(x, points, gpu, engine)
    return float(np.mean(np.abs(np.exp(r) - 1.0)) * 100.0)


PARAMS = ("compute", "memory", "overhead", "request")


def _fit_x(points: list[Point], gpu: str, engine: str, x0: np.ndarray,
           fit: tuple[str, ...] = PARAMS) -> np.ndarray:
    from scipy.optimize import least_squares

    lo, hi = np.array(BOUNDS[0], dtype=np.float64), np.array(BOUNDS[1], dtype=np.float64)
    for i, name in enumerate(PARAMS):
        if name not in fit:  # held at its starting value
            lo[i], hi[i] = x0[i], x0[i] + 1e-9
    res = least_squares(_objective, np.clip(x0, lo, hi), bounds=(lo, hi),
                        args=(points, gpu, engine),
                        x_scale=np.array([0.5, 0.5, 5.0, 10.0]), diff_step=1e-3,
                        max_nfev=80)
    return np.asarray(res.x)


DEFAULT_FIT = ("compute", "memory", "overhead")


def calibrate(points: list[Point], *, gpu: str, engine: str, cross_validate: bool = True,
              fit: tuple[str, ...] = DEFAULT_FIT) -> Calibration:
    """Fit ``fit`` (any of compute, memory, overhead; the others stay at the shipped
    values); leave-one-out CV needs at least 3 points."""
    unknown = [f for f in fit if f not in PARAMS]
    if unknown or not fit:
        raise InputError("--fit", ",".join(fit), f"choose from {', '.join(PARAMS)}")
    if len(points) < 2:
        raise InputError("measurements", len(points), "calibration needs at least 2 points",
                         "benchmark more loads or models")
    g = load_gpu(gpu)
    eng0 = load_engine(engine, g)
    base = np.array([1.0, 1.0, eng0.step_overhead_ms, eng0.request_overhead_ms])
    x = _fit_x(points, g.id, engine, base, fit)
    cv_before = cv_after = math.nan
    if cross_validate and len(points) >= 3:
        before, after = [], []
        for i in range(len(points)):
            train = points[:i] + points[i + 1:]
            xi = _fit_x(train, g.id, engine, base, fit)
            before.append(_mape(base, [points[i]], g.id, engine))
            after.append(_mape(xi, [points[i]], g.id, engine))
        cv_before, cv_after = float(np.mean(before)), float(np.mean(after))
    return Calibration(gpu=g.id, engine=engine, compute_scale=float(x[0]),
                       memory_scale=float(x[1]), step_overhead_ms=float(x[2]),
                       request_overhead_ms=float(x[3]),
                       fitted_on=tuple(p.label for p in points),
                       error_before_pct=_mape(base, points, g.id, engine),
                       error_after_pct=_mape(x, points, g.id, engine),
                       cv_before_pct=cv_before, cv_after_pct=cv_after)


def save_profile(cal: Calibration, path: str | Path) -> None:
    src = "measured: " + ", ".join(cal.fitted_on)
    doc = {"schema": SCHEMA, "gpu": cal.gpu, "engine": cal.engine,
           "compute_efficiency_scale": {"value": cal.compute_scale, "source": src},
           "memory_efficiency_scale": {"value": cal.memory_scale, "source": src},
           "step_overhead_ms": {"value": cal.step_overhead_ms, "source": src},
           "request_overhead_ms": {"value": cal.request_overhead_ms, "source": src},
           "fitted_on": list(cal.fitted_on),
           "error_pct": {"before": cal.error_before_pct, "after": cal.error_after_pct,
                         "held_out_before": cal.cv_before_pct,
                         "held_out_after": cal.cv_after_pct}}
    write_atomic(path, yaml.safe_dump(doc, sort_keys=False))


def load_profile(path: str | Path) -> Calibration:
    from kvopt.fileio import read_text_input

    p = Path(path)
    text = read_text_input(p, "--profile")
    try:
        doc: Any = yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError) as exc:
        raise InputError("--profile", str(p), f"not valid YAML ({type(exc).__name__})"
                         ) from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise InputError("--profile", str(p), f"not a {SCHEMA} file",
                         "write one with kvopt calibrate --out")
    try:
        for key, lo, hi in (("compute_efficiency_scale", BOUNDS[0][0], BOUNDS[1][0]),
                            ("memory_efficiency_scale", BOUNDS[0][1], BOUNDS[1][1]),
                            ("step_overhead_ms", BOUNDS[0][2], BOUNDS[1][2]),
                            ("request_overhead_ms", BOUNDS[0][3], BOUNDS[1][3])):
            node = doc.get(key)
            v = node.get("value") if isinstance(node, dict) else None
            if node is None and key == "request_overhead_ms":
                continue
            if isinstance(v, bool) or not isinstance(v, int | float) \
                    or not lo <= v <= hi:  # NaN fails too
                raise InputError("--profile", str(p), f"{key}={v!r}: must be a number from "
                                 f"{lo:g} to {hi:g} (the range calibrate fits in)",
                                 "re-fit it with kvopt calibrate --out")
        return Calibration(gpu=str(doc["gpu"]), engine=str(doc["engine"]),
                           compute_scale=float(doc["compute_efficiency_scale"]["value"]),
                           memory_scale=float(doc["memory_efficiency_scale"]["value"]),
                           step_overhead_ms=float(doc["step_overhead_ms"]["value"]),
                           request_overhead_ms=float(
                               (doc.get("request_overhead_ms") or {"value": 0.0})["value"]),
                           fitted_on=tuple(str(x) for x in doc.get("fitted_on") or ()))
    except InputError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError):
        raise InputError("--profile", str(p), "missing or malformed fields") from None


def distinct_points(files: list[tuple[str, Point]]) -> list[Point]:
    """The points of several bench files, refusing two that hold the same measurement (a
    file given twice, or a copy): a duplicate would count one measurement twice."""
    seen: dict[tuple[object, ...], str] = {}
    for name, p in files:
        key = (p.model, p.tp, p.weights, p.kv_dtype, p.load, p.input_len, p.output_len,
               tuple(sorted(p.measured.items())))
        if key in seen:
            raise InputError("calibrate", name, f"holds the same measurement as {seen[key]}",
                             "give each measurement once")
        seen[key] = name
    return [p for _, p in files]


def point_from_bench(bench: dict[str, Any], label: str, *, model: str | None = None) -> Point:
    """A calibration point from a bench result; ``model`` overrides the served model name
    (a catalog name or config.json path for kvopt to model it with)."""
    from kvopt.bench.result import measured_lengths, per_token_block

    input_len, output_len = measured_lengths(bench)
    # "itl_mean_ms" is the time per output token kvopt predicts as TPOT: the bench's
    # per-request TPOT when it has one, else its chunk gaps
    _, per_token = per_token_block(bench)
    return Point(label=label, model=model or str(bench["model"]), tp=int(bench.get("tp", 1)),
                 weights=str(bench.get("weights", "bf16")), kv_dtype=bench.get("kv_dtype"),
                 load=Load(mode=bench["load"]["mode"], value=float(bench["load"]["value"])),
                 input_len=input_len, output_len=output_len,
                 measured={"ttft_mean_ms": float(bench["ttft_ms"]["mean"]),
                           "itl_mean_ms": per_token["mean"],
                           "output_tok_s": float(bench["output_tok_s"])})
