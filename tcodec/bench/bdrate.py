"""Bjontegaard deltas: the average rate (BD-rate) or quality (BD-PSNR) difference of two
rate-distortion curves over the quality or rate interval where both are defined.

Two ways to draw a curve through the measured points, both on log-rate:

- ``"pchip"`` (default): piecewise cubic Hermite interpolation with Fritsch-Carlson
  slopes, as in current VCEG/JVET practice (JVET-K0491 era common test conditions,
  VTM's BD-rate sheet). It passes through every point and never overshoots, so it
  works with 2 or more points per curve.
- ``"cubic"``: the original VCEG-M33 / VCEG-AI11 method, a least-squares cubic
  polynomial through the points (needs 4 or more).

The integral is exact in both cases (the curves are cubic pieces). Natural or
base-10 logarithms give the same BD-rate, since it is exp of a mean log difference.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

METHODS = ("pchip", "cubic")


class BjontegaardError(ValueError):
    """The two curves cannot be compared (too few points, no overlap, not monotonic)."""


@dataclass(frozen=True)
class Curve:
    """One codec's rate-distortion points: bits per pixel and a quality in dB."""

    rate: Sequence[float]
    quality: Sequence[float]


def bd_rate(reference: Curve, test: Curve, method: str = "pchip") -> float:
    """Average rate difference of ``test`` against ``reference`` at equal quality, in %.

    Negative means the test codec needs fewer bits. Raises BjontegaardError.
    """
    quality_ref, log_rate_ref = _sorted_points(reference.quality, np.log(_positive(reference.rate)))
    quality_test, log_rate_test = _sorted_points(test.quality, np.log(_positive(test.rate)))
    low, high = _overlap(quality_ref, quality_test)
    area_ref = _integral(quality_ref, log_rate_ref, low, high, method)
    area_test = _integral(quality_test, log_rate_test, low, high, method)
    return 100.0 * (math.exp((area_test - area_ref) / (high - low)) - 1.0)


def bd_quality(reference: Curve, test: Curve, method: str = "pchip") -> float:
    """Average quality difference (e.g. BD-PSNR, in dB) of ``test`` at equal rate.

    Positive means the test codec gives a higher quality. Raises BjontegaardError.
    """
    log_rate_ref, quality_ref = _sorted_points(np.log(_positive(reference.rate)), reference.quality)
    log_rate_test, quality_test = _sorted_points(np.log(_positive(test.rate)), test.quality)
    low, high = _overlap(log_rate_ref, log_rate_test)
    area_ref = _integral(log_rate_ref, quality_ref, low, high, method)
    area_test = _integral(log_rate_test, quality_test, low, high, method)
    return (area_test - area_ref) / (high - low)


def _positive(rate: Sequence[float]) -> np.ndarray:
    values = np.asarray(rate, dtype=float)
    if np.any(~np.isfinite(values)) or np.any(values <= 0):
        raise BjontegaardError("rates must be positive numbers")
    return values


def _sorted_points(x: Sequence[float], y: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Points sorted by x; x must be strictly increasing once sorted (no repeated x)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise BjontegaardError("a curve needs as many rates as qualities")
    if x.size < 2:
        raise BjontegaardError("a curve needs at least 2 points")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise BjontegaardError("a curve has a value that is not finite")
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    if np.any(np.diff(x) <= 0):
        raise BjontegaardError("a curve has two points with the same value")
    return x, y


def _overlap(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    low, high = max(a[0], b[0]), min(a[-1], b[-1])
    if not high > low:
        raise BjontegaardError("the curves do not overlap")
    return float(low), float(high)


def _integral(x: np.ndarray, y: np.ndarray, low: float, high: float, method: str) -> float:
    if method == "pchip":
        return _pchip_integral(x, y, low, high)
    if method == "cubic":
        if x.size < 4:
            raise BjontegaardError("the cubic fit needs at least 4 points per curve")
        antiderivative = np.polyint(np.polyfit(x, y, 3))
        return float(np.polyval(antiderivative, high) - np.polyval(antiderivative, low))
    raise ValueError(f"unknown Bjontegaard method {method!r} (known: {', '.join(METHODS)})")


def pchip_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Slopes at the points of the monotone piecewise cubic Hermite interpolant
    (Fritsch & Carlson 1980; end slopes by the shape-preserving three-point rule of
    Moler, "Numerical Computing with MATLAB", section 3.4)."""
    h = np.diff(x)
    delta = np.diff(y) / h
    if x.size == 2:
        return np.array([delta[0], delta[0]])
    slopes = np.zeros_like(y)
    for k in range(1, x.size - 1):
        if delta[k - 1] * delta[k] > 0:
            # weighted harmonic mean: keeps the interpolant monotone between points
            w1, w2 = 2 * h[k] + h[k - 1], h[k] + 2 * h[k - 1]
            slopes[k] = (w1 + w2) / (w1 / delta[k - 1] + w2 / delta[k])
    slopes[0] = _end_slope(h[0], h[1], delta[0], delta[1])
    slopes[-1] = _end_slope(h[-1], h[-2], delta[-1], delta[-2])
    return slopes


def _end_slope(h0: float, h1: float, delta0: float, delta1: float) -> float:
    slope = ((2 * h0 + h1) * delta0 - h0 * delta1) / (h0 + h1)
    if np.sign(slope) != np.sign(delta0):
        return 0.0
    if np.sign(delta0) != np.sign(delta1) and abs(slope) > abs(3 * delta0):
        return 3 * delta0
    return slope


def _pchip_integral(x: np.ndarray, y: np.ndarray, low: float, high: float) -> float:
    """Exact integral of the PCHIP interpolant over [low, high], inside [x[0], x[-1]]."""
    slopes = pchip_slopes(x, y)
    total = 0.0
    for k in range(x.size - 1):
        start, end = max(low, x[k]), min(high, x[k + 1])
        if end <= start:
            continue
        h = x[k + 1] - x[k]
        secant = (y[k + 1] - y[k]) / h
        # the piece as y[k] + s t + c2 t^2 + c3 t^3 with t = position - x[k]
        s = slopes[k]
        c2 = (3 * secant - 2 * s - slopes[k + 1]) / h
        c3 = (s + slopes[k + 1] - 2 * secant) / h**2

        def antiderivative(t: float) -> float:
            return y[k] * t + s * t**2 / 2 + c2 * t**3 / 3 + c3 * t**4 / 4

        total += antiderivative(end - x[k]) - antiderivative(start - x[k])
    return float(total)
