"""Request length distributions: fixed, lognormal, uniform, or a CSV histogram/trace.

Spec strings (CLI ``--input-len-dist`` / ``--output-len-dist``):

* ``lognormal:mean=1024,sigma=0.6`` — lognormal with that mean (tokens) and log-sd;
* ``uniform:low=128,high=2048`` — integers uniform on [low, high];
* ``csv:PATH`` — a CSV with a ``length`` column (a trace: one request per row) and an
  optional ``count`` or ``weight`` column (a histogram).

Every distribution has a finite support: lognormal is represented by 64 equal-probability
quantile points, its top at the 99.9th percentile, which is also what the context check uses;
a uniform over more than 65,536 integers by 65,536 equal-probability points. Lengths are at
most ``kvopt.limits.TOKENS`` (each model's own context is checked where it is used).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from kvopt.errors import InputError
from kvopt.limits import TOKENS

Array = npt.NDArray[np.float64]
_LOGNORMAL_POINTS = 64
_LOGNORMAL_TOP_Q = 0.999
# a uniform over more integers than this is represented by this many equal-probability
# points (its mean exact): the work per distribution stays bounded
_UNIFORM_POINTS = 65_536


@dataclass(frozen=True)
class LengthDist:
    """A discrete length distribution: ``values`` (tokens, >= 1) with ``probs`` (sum 1)."""

    kind: str
    values: Array
    probs: Array
    label: str

    def __post_init__(self) -> None:
        if self.values.size == 0 or np.any(self.values < 1):
            raise ValueError("lengths must be >= 1")
        if abs(float(self.probs.sum()) - 1.0) > 1e-9:
            raise ValueError("probabilities must sum to 1")

    @property
    def mean(self) -> float:
        return float(np.dot(self.values, self.probs))

    @property
    def second_moment(self) -> float:
        return float(np.dot(self.values**2, self.probs))

    @property
    def max(self) -> int:
        return int(self.values.max())

    def quantile(self, q: float) -> float:
        order = np.argsort(self.values)
        cdf = np.cumsum(self.probs[order])
        idx = int(np.searchsorted(cdf, q - 1e-12))
        return float(self.values[order][min(idx, order.size - 1)])

    def sample(self, n: int, rng: np.random.Generator) -> npt.NDArray[np.int64]:
        return np.asarray(rng.choice(self.values, size=n, p=self.probs), dtype=np.int64)

    @property
    def is_fixed(self) -> bool:
        return self.values.size == 1


def fixed(n: int) -> LengthDist:
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= TOKENS.hi:
        raise InputError("length", n, f"must be an integer from 1 to {int(TOKENS.hi)}")
    return LengthDist("fixed", np.array([float(n)]), np.array([1.0]), str(n))


def _params(text: str, field: str, allowed: tuple[str, ...], spec: str = ""
            ) -> dict[str, float]:
    out: dict[str, float] = {}
    text_in, text = text, spec or text
    for part in filter(None, text_in.split(",")):
        key, _, value = part.partition("=")
        key = key.strip()
        if key not in allowed:
            raise InputError(field, text, f"unknown parameter '{key}'; allowed: "
                             + ", ".join(allowed))
        try:
            out[key] = float(value)
        except ValueError:
            raise InputError(field, text, f"parameter '{key}' needs a number") from None
        if not math.isfinite(out[key]):
            raise InputError(field, text, f"parameter '{key}' must be a finite number")
    missing = [k for k in allowed if k not in out]
    if missing:
        raise InputError(field, text, "missing parameters: " + ", ".join(missing))
    return out


def parse_dist(spec: str, *, field: str = "length distribution") -> LengthDist:
    """Parse a distribution spec string (see module docstring)."""
    kind, _, rest = spec.partition(":")
    kind = kind.strip().lower()
    if kind == "lognormal":
        p = _params(rest, field, ("mean", "sigma"), spec)
        if p["mean"] < 1 or p["mean"] > TOKENS.hi or p["sigma"] <= 0 or p["sigma"] > 3:
            raise InputError(field, spec, f"needs 1 <= mean <= {int(TOKENS.hi)} and "
                             "0 < sigma <= 3")
        mu = math.log(p["mean"]) - p["sigma"] ** 2 / 2
        qs = (np.arange(_LOGNORMAL_POINTS) + 0.5) / _LOGNORMAL_POINTS * _LOGNORMAL_TOP_Q
        from kvopt.serving.special import ndtri

        # scipy.stats.lognorm.ppf(qs, s=sigma, scale=exp(mu)), as scipy computes it
        vals = np.maximum(1.0, np.round(np.exp(p["sigma"] * ndtri(qs)) * math.exp(mu)))
        probs = np.full(vals.size, 1.0 / vals.size)
        return LengthDist("lognormal", vals, probs, spec)
    if kind == "uniform":
        p = _params(rest, field, ("low", "high"), spec)
        if not (p["low"].is_integer() and p["high"].is_integer()
                and 1 <= p["low"] <= p["high"] <= TOKENS.hi):
            raise InputError(field, spec, f"needs integers 1 <= low <= high <= "
                             f"{int(TOKENS.hi)}")
        lo, hi = int(p["low"]), int(p["high"])
        if hi - lo + 1 <= _UNIFORM_POINTS:
            vals = np.arange(lo, hi + 1, dtype=np.float64)
        else:  # equal-probability points, the mean kept exactly
            vals = lo + (np.arange(_UNIFORM_POINTS) + 0.5) / _UNIFORM_POINTS * (hi - lo)
        return LengthDist("uniform", vals, np.full(vals.size, 1.0 / vals.size), spec)
    if kind == "csv":
        return _from_csv(Path(rest), field)
    if kind == "fixed":
        try:
            n = int(rest)
        except ValueError:
            raise InputError(field, spec, "fixed:N needs an integer") from None
        return fixed(TOKENS.check(field, n))
    raise InputError(field, spec, "unknown distribution; use lognormal:mean=M,sigma=S, "
                     "uniform:low=L,high=H, fixed:N or csv:PATH")


def _from_csv(path: Path, field: str) -> LengthDist:
    import io

    from kvopt.fileio import read_text_input

    text = read_text_input(path, field)
    try:
        rows = list(csv.DictReader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise InputError(field, str(path), f"not CSV ({exc})",
                         "give a CSV with a 'length' column") from None
    if not rows or "length" not in rows[0]:
        raise InputError(field, str(path), "the CSV needs a 'length' column (and optionally "
                         "'count' or 'weight')")
    weight_col = "count" if "count" in rows[0] else "weight" if "weight" in rows[0] else None
    lengths: list[float] = []
    weights: list[float] = []
    for i, row in enumerate(rows, start=2):
        try:
            n = float(row["length"])
            w = float(row[weight_col]) if weight_col else 1.0
        except (TypeError, ValueError):
            raise InputError(field, str(path), f"line {i}: length/weight must be numbers") from None
        if not (1 <= n <= TOKENS.hi and n.is_integer() and 0 <= w < math.inf):
            raise InputError(field, str(path), f"line {i}: length must be an integer from 1 "
                             f"to {int(TOKENS.hi)} and weights finite and >= 0")
        lengths.append(n)
        weights.append(w)
    vals = np.array(lengths)
    wts = np.array(weights)
    if wts.sum() <= 0:
        raise InputError(field, str(path), "weights sum to zero")
    uniq, inv = np.unique(vals, return_inverse=True)
    probs = np.bincount(inv, weights=wts) / wts.sum()
    return LengthDist("csv", uniq, probs, f"csv:{path}")
