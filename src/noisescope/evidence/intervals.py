"""Uncertainty of one accuracy (Wilson score interval) and of a mean over seeds (t-interval).

Definitions (one each; ``docs/definitions.md`` quotes them):

* **Wilson score interval** of k successes in n trials at confidence 1 - alpha, with
  z = Phi^-1(1 - alpha/2), p = k/n:

      centre = (p + z^2 / (2n)) / (1 + z^2/n)
      half   = z sqrt(p (1 - p)/n + z^2 / (4 n^2)) / (1 + z^2/n)
      [low, high] = [centre - half, centre + half], clipped to [0, 1]

  (the same numbers as ``statsmodels.stats.proportion.proportion_confint(method="wilson")``).
  n = 0 gives NaN bounds.
* **Binomial standard error** of an accuracy p on n samples: sqrt(p (1 - p) / n).
* **Seeds**: for finite values x_1..x_m (one per seed), mean = sum x / m, sample standard
  deviation s (divisor m - 1), and the t-interval of the mean
  mean +- t_{1 - alpha/2, m - 1} s / sqrt(m). With one seed s and the interval are NaN: a single
  seed shows no spread. Non-finite values (a failed or missing run) are dropped and counted in
  ``n_dropped``. A quantity with a bounded domain (a ratio or a count is >= 0, an accuracy or a
  share lies in [0, 1]) passes it as ``domain``: the interval is clipped to it (the mean of values
  in the domain lies in it; the symmetric t-interval may not), and the summary says it was clipped.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

SINGLE_SEED = "a single seed shows no spread"
#: domains of bounded quantities (``aggregate_seeds(..., domain=...)``)
REAL = (-math.inf, math.inf)
NON_NEGATIVE = (0.0, math.inf)
UNIT = (0.0, 1.0)


def fmt(x: float, digits: int = 3) -> str:
    """``x`` to ``digits`` decimals, never ``-0.000`` (a negative that rounds to zero prints as
    ``0.000``)."""
    s = f"{x:.{digits}f}"
    return s[1:] if s.startswith("-") and float(s) == 0 else s


def _check_confidence(confidence: float) -> float:
    c = float(confidence)
    if not 0.0 < c < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), e.g. 0.95; got {confidence}")
    return c


def _check_counts(k: int | float, n: int | float) -> tuple[int, int]:
    if n < 0 or k < 0 or k > n or int(k) != k or int(n) != n:
        raise ValueError(f"need integer counts 0 <= k <= n, got k={k}, n={n}")
    return int(k), int(n)


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval (low, high) for ``k`` successes of ``n`` (module docstring)."""
    k, n = _check_counts(k, n)
    alpha = 1.0 - _check_confidence(confidence)
    if n == 0:
        return float("nan"), float("nan")
    from scipy import stats  # lazy: keeps `import noisescope.spectral` light

    p = k / n
    crit = stats.norm.isf(alpha / 2.0)
    crit2 = crit**2
    denom = 1 + crit2 / n
    centre = (p + crit2 / (2 * n)) / denom
    half = crit * np.sqrt(p * (1.0 - p) / n + crit2 / (4.0 * n**2)) / denom
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def binomial_se(p: float, n: int) -> float:
    """sqrt(p (1 - p) / n); NaN for n <= 0."""
    return math.sqrt(p * (1.0 - p) / n) if n > 0 else float("nan")


@dataclass(frozen=True)
class Accuracy:
    """An accuracy with its Wilson interval.

    Attributes:
        k: correct predictions; n: scored samples; value: k / n (NaN for n = 0);
        low, high: Wilson bounds at ``confidence``.
    """

    k: int
    n: int
    value: float
    low: float
    high: float
    confidence: float = 0.95

    @classmethod
    def from_counts(cls, k: int, n: int, confidence: float = 0.95) -> Accuracy:
        k, n = _check_counts(k, n)
        low, high = wilson_interval(k, n, confidence)
        return cls(k, n, k / n if n else float("nan"), low, high, confidence)

    @classmethod
    def from_value(cls, value: float, n: int, confidence: float = 0.95) -> Accuracy:
        """From an accuracy in [0, 1] and its sample count (k = round(value * n))."""
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"accuracy must lie in [0, 1], got {value}")
        return cls.from_counts(int(round(value * n)), int(n), confidence)

    @classmethod
    def from_correct(cls, correct: np.ndarray | Iterable[bool], confidence: float = 0.95) -> Accuracy:
        """From a per-sample correctness vector."""
        c = np.asarray(correct, dtype=bool).reshape(-1)
        return cls.from_counts(int(c.sum()), int(c.size), confidence)

    @property
    def se(self) -> float:
        """Binomial standard error sqrt(p (1 - p) / n)."""
        return binomial_se(self.value, self.n)

    @property
    def width(self) -> float:
        """high - low."""
        return self.high - self.low

    def __str__(self) -> str:
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}] n={self.n}"


def accuracy(k: int, n: int, confidence: float = 0.95) -> Accuracy:
    """Shorthand for :meth:`Accuracy.from_counts`."""
    return Accuracy.from_counts(k, n, confidence)


@dataclass(frozen=True)
class SeedSummary:
    """Mean and spread of one number over seeds (module docstring).

    Attributes:
        mean: mean over the finite values (NaN if none).
        std: sample standard deviation (ddof = 1); NaN for fewer than two seeds.
        n_seeds: number of finite values used.
        low, high: t-interval of the mean at ``confidence``; NaN for fewer than two seeds.
        n_dropped: non-finite values left out.
        note: ``"a single seed shows no spread"`` for one seed, else "".
        clipped: the t-interval reached beyond the quantity's domain and was clipped to it.
    """

    mean: float
    std: float
    n_seeds: int
    low: float
    high: float
    confidence: float = 0.95
    n_dropped: int = 0
    note: str = ""
    clipped: bool = False

    def __str__(self) -> str:
        if self.n_seeds == 0:
            return "no seed"
        if self.n_seeds == 1:
            return f"{fmt(self.mean)} (1 seed; {SINGLE_SEED})"
        pct = f"{100 * self.confidence:g}%"
        clip = ", clipped to the domain" if self.clipped else ""
        return (f"{fmt(self.mean)} +- {fmt(self.std)} (sd, {self.n_seeds} seeds; "
                f"{pct} t-interval [{fmt(self.low)}, {fmt(self.high)}]{clip})")


    def short(self) -> str:
        """``mean +- sd [low, high]`` (the t-interval), ``mean (1 seed)`` for one seed."""
        if self.n_seeds == 0:
            return "no seed"
        if self.n_seeds == 1:
            return f"{fmt(self.mean)} (1 seed)"
        return f"{fmt(self.mean)} +- {fmt(self.std)} [{fmt(self.low)}, {fmt(self.high)}]"


def aggregate_seeds(values: Iterable[float], confidence: float = 0.95,
                    domain: tuple[float, float] = REAL) -> SeedSummary:
    """Mean, sample std and t-interval of the mean over seeds (module docstring), the interval
    clipped to ``domain`` (e.g. :data:`NON_NEGATIVE` for a ratio, :data:`UNIT` for an accuracy;
    the values themselves are not changed)."""
    conf = _check_confidence(confidence)
    lo_dom, hi_dom = float(domain[0]), float(domain[1])
    if not lo_dom < hi_dom:
        raise ValueError(f"domain must be (low, high) with low < high, got {domain}")
    v = np.asarray(list(values), dtype=float).reshape(-1)
    finite = v[np.isfinite(v)]
    dropped = int(v.size - finite.size)
    m = int(finite.size)
    nan = float("nan")
    if m == 0:
        return SeedSummary(nan, nan, 0, nan, nan, conf, dropped, "no finite value")
    mean = float(finite.mean())
    if m == 1:
        return SeedSummary(mean, nan, 1, nan, nan, conf, dropped, SINGLE_SEED)
    from scipy import stats

    sd = float(finite.std(ddof=1))
    half = float(stats.t.ppf(1.0 - (1.0 - conf) / 2.0, m - 1)) * sd / math.sqrt(m)
    low, high = max(lo_dom, mean - half), min(hi_dom, mean + half)
    return SeedSummary(mean, sd, m, low, high, conf, dropped, "", (low, high) != (mean - half, mean + half))
