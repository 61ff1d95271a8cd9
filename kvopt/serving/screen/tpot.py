"""TPOT of many replicas at many rates without draws (the screening model).

The analytic model (:meth:`kvopt.serving.steady.SteadyModel.rows`) draws a request's TPOT
from 1,024 fixed quadrature points per rate. Here the same composition is a normal law
per output-length stratum: a request's mean step over its life is the step at the
decoders it sees, linearized (with curvature) around their mean, ``per + per' (others -
n)``, plus its steps' own noise (prompt bursts, an AR(1) over its ``O - 1`` steps); the
others and the noise are correlated as in the analytic model, a Cornish-Fisher term carries
the Poisson skew of the others, and the mean is the solved step time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from kvopt.serving.lengths import LengthDist
from kvopt.serving.screen.steps import Mix, StackedSteps, step_moments
from kvopt.serving.special import ndtr

Array = npt.NDArray[np.float64]
Index = npt.NDArray[np.intp]
# strata of probability: prompts resolve the long tail, outputs the short end (a short
# request averages few steps, so its TPOT varies most)
PROMPT_EDGES = np.array([0, .3, .6, .8, .9, .95, .975, .99, .995, .998, .9995, 1.0])
OUTPUT_EDGES = np.array([0, .0005, .002, .005, .01, .02, .05, .1, .2, .4, .6, .8, .9, .96, .99,
                          .997, 1.0])


def strata(dist: LengthDist, edges: Array) -> tuple[Array, Array]:
    """(lengths, weights): the distribution itself when it has few values, else the
    quantile at the middle of each probability stratum (weight: the stratum's width)."""
    if dist.values.size <= edges.size - 1:
        return dist.values.astype(np.float64), dist.probs.astype(np.float64)
    mids = (edges[:-1] + edges[1:]) / 2
    return np.array([dist.quantile(float(q)) for q in mids]), np.diff(edges)


@dataclass(frozen=True)
class Lengths:
    """The strata of the prompt and output lengths (shared by every replica)."""

    prompt: Array
    prompt_w: Array
    out: Array  # output tokens after the first
    out_w: Array

    @classmethod
    def of(cls, input_dist: LengthDist, output_dist: LengthDist) -> Lengths:
        i, iw = strata(input_dist, PROMPT_EDGES)
        o, ow = strata(output_dist, OUTPUT_EDGES)
        return cls(prompt=i, prompt_w=iw, out=np.maximum(o - 1.0, 0.0), out_w=ow)


@dataclass(frozen=True)
class TpotLaw:
    """Per (row, output stratum): mean and sd of a request's TPOT, and the skewness."""

    mean: Array  # (rows, J)
    sd: Array
    skew: Array
    weight: Array  # (J,)

    def survival(self, x: Array) -> Array:
        """P(TPOT > x) per row (``x`` (rows,)): per stratum the Cornish-Fisher quantile
        ``mean + sd (z + g (z^2 - 1) / 6)`` inverted exactly (its increasing branch)."""
        u = (x[:, None] - self.mean) / np.maximum(self.sd, 1e-300)
        return np.asarray(np.sum(self.weight * ndtr(-cornish_fisher_z(u, self.skew)),
                                 axis=-1))

    def p99(self) -> Array:
        """The 99th percentile per row (bisection on the mixture's survival)."""
        lo = np.min(self.mean, axis=1)
        hi = np.max(self.mean + 6.0 * self.sd * (1.0 + np.abs(self.skew)), axis=1) + 1e-12
        for _ in range(40):
            mid = (lo + hi) / 2
            above = self.survival(mid) > 0.01
            lo, hi = np.where(above, mid, lo), np.where(above, hi, mid)
        return np.asarray((lo + hi) / 2)


def cornish_fisher_z(u: Array, g: Array) -> Array:
    """The normal score ``z`` whose Cornish-Fisher quantile ``z + g (z^2 - 1) / 6`` is
    ``u`` (standard units), on its increasing branch: ``u`` itself without skew; beyond the
    branch's top (negative skew) the value is never reached (``z`` = +inf), below its
    bottom (positive skew) always exceeded (``z`` = -inf)."""
    a = np.asarray(g, dtype=np.float64) / 6.0
    small = np.abs(a) < 1e-9
    a_safe = np.where(small, 1.0, a)
    disc = 1.0 + 4.0 * a_safe * (a_safe + u)
    root = (-1.0 + np.sqrt(np.maximum(disc, 0.0))) / (2.0 * a_safe)
    beyond = np.where(a_safe > 0, -np.inf, np.inf)
    return np.asarray(np.where(small, u, np.where(disc >= 0, root, beyond)))


def tpot_law(st: StackedSteps, mix: Mix, r: Index, lam: Array, t: Array, e: Array,
             lengths: Lengths) -> TpotLaw:
    """A request's TPOT at rates ``lam`` (rows; step times ``t``, curve elasticities ``e``),
    as :meth:`SteadyModel.rows` composes it (see the module docstring)."""
    dec = mix.dec[r]
    n = lam * dec * t
    decode = st.step(r, 1.0 + n, 0.0)
    rho_p = np.clip(1.0 - decode / np.maximum(t, 1e-12), 0.0, 1.0)
    f = 1.0 + rho_p + rho_p**2 * (1.0 + mix.i_cv2[r]) / 2.0
    b = f * (1.0 + 1.5 * e)
    var_o = 2.0 * n * b / 3.0  # others over its life: b (K / 2 + sqrt(K / 12) z1)
    sd_o = np.sqrt(var_o)
    # the step it sees at others o, around their mean: quadratic through three points
    h = np.maximum(2.0 * sd_o, 1.0)
    o3 = np.stack([np.maximum(n - h, 0.0), n, n + h], axis=-1)
    m3, v3 = step_moments(st, mix, np.repeat(r[:, None], 3, 1), np.repeat(lam[:, None], 3, 1),
                          np.repeat(t[:, None], 3, 1), others=o3)
    lo_o, hi_o = o3[:, 0], o3[:, 2]
    slope = (m3[:, 2] - m3[:, 0]) / np.maximum(hi_o - lo_o, 1e-12)
    curv = 2.0 * ((m3[:, 2] - m3[:, 1]) / np.maximum(hi_o - n, 1e-12)
                  - (m3[:, 1] - m3[:, 0]) / np.maximum(n - lo_o, 1e-12)) / np.maximum(
                      hi_o - lo_o, 1e-12)
    curv = np.where(n - lo_o > 1e-12, curv, 0.0)
    per = m3[:, 1]
    var_step = v3[:, 1]
    # the AR(1) factor of a request's steps (:meth:`SteadyModel._ar1_factor`)
    phi = np.clip(e / (1.0 + e), 0.0, 0.99)
    steps = np.maximum(dec, 1.0)
    ar1 = (1.0 / (1.0 - phi**2)) * ((1.0 + phi) / (1.0 - phi) - 2.0 * phi * (
        1.0 - phi**steps) / (steps * (1.0 - phi) ** 2))
    steps_me = np.maximum(lengths.out, 1.0)[None, :]
    sig = np.sqrt(var_step * ar1)[:, None] / np.sqrt(steps_me)
    rho = math.sqrt(3.0 / 8.0) / np.sqrt(1.0 + mix.i_cv2[r])[:, None]
    # others ~ n + sqrt(n b / 2) z_K + sqrt(n b / 6) z1; the noise rho z_K + ... z2
    a = (slope * np.sqrt(n * b / 2.0))[:, None] + sig * rho
    bb = (slope * np.sqrt(n * b / 6.0))[:, None]
    c = sig * np.sqrt(1.0 - rho**2)
    sd = np.sqrt(a * a + bb * bb + c * c)
    # skewness: the count of others is Poisson with mean 2n / b (skew 1 / sqrt(mean)),
    # carried by its share of the variance (the K term's cube), plus the curvature's
    k_mean = np.maximum(2.0 * n / np.maximum(b, 1e-12), 1e-12)
    third = (slope * np.sqrt(n * b / 2.0))[:, None] ** 3 / np.sqrt(k_mean)[:, None] + \
        3.0 * curv[:, None] * var_o[:, None] * a * a
    skew = np.clip(third / np.maximum(sd, 1e-300) ** 3, -1.0, 1.0)
    mean_req = per + 0.5 * curv * var_o
    scale = t / np.maximum(mean_req, 1e-12)  # the solved mean step, per token
    mu = (mean_req * scale)[:, None] * np.ones_like(sd)
    return TpotLaw(mean=mu, sd=sd * scale[:, None], skew=skew, weight=lengths.out_w)


