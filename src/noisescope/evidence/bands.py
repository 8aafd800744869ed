"""The inconclusive band of a threshold rule (docs/definitions.md, "Claims scorecard").

A claim that compares a measured value with a threshold decides only when the value lies
outside ``threshold +- z SE``, SE the value's own standard error (over test samples, or over
classes for class-averaged values); in between it is inconclusive, so a claim does not flip
between seeds on sampling noise.
"""

from __future__ import annotations

import math

#: Width of the band in standard errors (two-sided ~95% for a normal estimate).
Z_BAND = 2.0
ABOVE, BELOW, WITHIN = "above", "below", "within"


def band_side(value: float, threshold: float, se: float, z: float = Z_BAND) -> str:
    """``"above"`` when value > threshold + z se, ``"below"`` when value < threshold - z se,
    ``"within"`` otherwise (also when value or se is NaN; se = 0: no band)."""
    if not (math.isfinite(value) and math.isfinite(se)):
        return WITHIN
    if value > threshold + z * se:
        return ABOVE
    if value < threshold - z * se:
        return BELOW
    return WITHIN


def mean_se(values: list[float]) -> float:
    """Standard error of the mean of ``values`` (sample sd, ddof 1, / sqrt(count)); NaN below
    two finite values."""
    v = [float(x) for x in values if math.isfinite(float(x))]
    if len(v) < 2:
        return float("nan")
    m = sum(v) / len(v)
    return math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1) / len(v))
