"""Paired comparison of two classifiers on one test set: McNemar's exact test and the
difference of their accuracies with its standard error and interval.

Inputs are two boolean correctness vectors over the *same* samples: a_i (model A right on
sample i) and b_i. Counts: n01 = #(A right, B wrong) (called ``b`` below, McNemar's
convention), n10 = #(A wrong, B right) (``c``), n = number of samples.

* **McNemar exact test** (two-sided): under H0 (A and B equally accurate) the discordant
  pairs split as Binomial(b + c, 1/2); p = ``scipy.stats.binomtest(b, b + c, 0.5).pvalue``
  (= min(1, 2 P[X <= min(b, c)]), as ``statsmodels ... mcnemar(table, exact=True)``); p = 1
  when b + c = 0. Mid-p: 2 (P[X <= min(b, c)] - P[X = min(b, c)] / 2), capped at 1.
* **Paired difference** acc_A - acc_B = (b - c)/n, standard error (Wald on the per-sample
  differences d_i = a_i - b_i in {-1, 0, 1}, plug-in variance with divisor n):

      se = sqrt(b + c - (b - c)^2 / n) / n

  and the Wald interval diff +- z_{1 - alpha/2} se, clipped to [-1, 1]. (With no discordant
  pair the se is 0 and the interval is the single point 0: no evidence of a difference.)
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from noisescope.evidence._arrays import as_numpy


def _pair(correct_a: np.ndarray | Iterable[bool], correct_b: np.ndarray | Iterable[bool]) -> tuple[int, int, int]:
    a, b = as_numpy(correct_a), as_numpy(correct_b)
    if a.shape != b.shape:
        raise ValueError(f"paired correctness vectors must have the same length, got {a.size} and {b.size}")
    for name, v in (("correct_a", a), ("correct_b", b)):
        if v.dtype != bool and not np.isin(v, (0, 1)).all():
            raise ValueError(f"{name} must be boolean (or 0/1) per-sample correctness")
    a, b = a.astype(bool), b.astype(bool)
    return int((a & ~b).sum()), int((~a & b).sum()), int(a.size)


@dataclass(frozen=True)
class McNemar:
    """McNemar's exact test (module docstring).

    Attributes:
        b: samples A gets right and B wrong; c: samples A gets wrong and B right; n: samples.
        p_value: two-sided exact p; mid_p: the mid-p variant.
    """

    b: int
    c: int
    n: int
    p_value: float
    mid_p: float

    @property
    def difference(self) -> float:
        """acc_A - acc_B = (b - c) / n."""
        return (self.b - self.c) / self.n if self.n else float("nan")

    def __str__(self) -> str:
        return f"McNemar exact: b={self.b}, c={self.c} of n={self.n}, p={self.p_value:.3g}"


def mcnemar_counts(b: int, c: int, n: int | None = None) -> McNemar:
    """McNemar's exact test from the discordant counts (``n`` defaults to b + c)."""
    if b < 0 or c < 0 or int(b) != b or int(c) != c:
        raise ValueError(f"discordant counts must be non-negative integers, got b={b}, c={c}")
    b, c = int(b), int(c)
    n = b + c if n is None else int(n)
    if n < b + c:
        raise ValueError(f"n={n} is smaller than the discordant pairs b + c = {b + c}")
    m = b + c
    if m == 0:
        return McNemar(b, c, n, 1.0, 1.0)
    from scipy import stats  # lazy: keeps `import noisescope.spectral` light

    p = float(stats.binomtest(b, m, 0.5).pvalue)
    lo = min(b, c)
    mid = 2.0 * (float(stats.binom.cdf(lo, m, 0.5)) - 0.5 * float(stats.binom.pmf(lo, m, 0.5)))
    return McNemar(b, c, n, min(1.0, p), min(1.0, mid))


def mcnemar(correct_a: np.ndarray | Iterable[bool], correct_b: np.ndarray | Iterable[bool]) -> McNemar:
    """McNemar's exact test on two paired per-sample correctness vectors."""
    b, c, n = _pair(correct_a, correct_b)
    return mcnemar_counts(b, c, n)


@dataclass(frozen=True)
class PairedDifference:
    """acc_A - acc_B on one sample set, with the paired Wald standard error and interval.

    Attributes:
        diff: (b - c) / n; se: sqrt(b + c - (b - c)^2 / n) / n; low, high: Wald interval;
        b, c, n: the counts (module docstring); method: ``"wald-paired"``.
    """

    diff: float
    se: float
    low: float
    high: float
    b: int
    c: int
    n: int
    confidence: float = 0.95
    method: str = "wald-paired"

    def __str__(self) -> str:
        return (f"{100 * self.diff:+.1f} points (se {100 * self.se:.1f}; "
                f"[{100 * self.low:+.1f}, {100 * self.high:+.1f}]) n={self.n}")


def paired_se(b: int, c: int, n: int) -> float:
    """Standard error of (b - c)/n for paired correctness: sqrt(b + c - (b - c)^2/n) / n."""
    if n <= 0:
        return float("nan")
    return math.sqrt(max(0.0, b + c - (b - c) ** 2 / n)) / n


def paired_difference_counts(b: int, c: int, n: int, confidence: float = 0.95) -> PairedDifference:
    """:class:`PairedDifference` from the discordant counts."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    if b < 0 or c < 0 or b + c > n:
        raise ValueError(f"need 0 <= b, c and b + c <= n, got b={b}, c={c}, n={n}")
    if n == 0:
        nan = float("nan")
        return PairedDifference(nan, nan, nan, nan, 0, 0, 0, confidence)
    from scipy import stats

    diff = (b - c) / n
    se = paired_se(b, c, n)
    z = float(stats.norm.isf((1.0 - confidence) / 2.0))
    return PairedDifference(diff, se, max(-1.0, diff - z * se), min(1.0, diff + z * se), int(b), int(c), int(n),
                            confidence)


def paired_difference(correct_a: np.ndarray | Iterable[bool], correct_b: np.ndarray | Iterable[bool],
                      confidence: float = 0.95) -> PairedDifference:
    """acc_A - acc_B with the paired Wald interval (module docstring)."""
    b, c, n = _pair(correct_a, correct_b)
    return paired_difference_counts(b, c, n, confidence)


def p_value(p: float, digits: int = 2, below: int = -300) -> str:
    """A p-value as printed everywhere (CLI and report): ``-`` when not computed, ``<1e{below}`` under
    ``10**below`` (or when it underflowed to 0), else ``digits`` significant digits."""
    if p != p:
        return "-"
    return f"<1e{below}" if p < 10.0 ** below or p == 0 else f"{p:.{digits}g}"
