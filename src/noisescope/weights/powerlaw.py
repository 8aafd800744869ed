"""Power-law fit of an eigenvalue tail, cutoff by Kolmogorov-Smirnov distance (Clauset, Shalizi
and Newman 2009, "Power-law distributions in empirical data", SIAM Review 51(4)).

For a continuous power law p(x) = (alpha - 1) / x_min * (x / x_min)^(-alpha) on x >= x_min:

* for each candidate cutoff x_min (each distinct value except the largest, with at least
  ``min_tail`` values at or above it), the maximum-likelihood exponent on the tail
  x_1..x_n >= x_min is ``alpha = 1 + n / sum_i ln(x_i / x_min)``;
* the fitted CDF is ``F(x) = 1 - (x / x_min)^(1 - alpha)``, and the Kolmogorov-Smirnov distance
  of the tail is ``D = max_i |F(x_(i)) - E_i|`` over the sorted tail values, with the empirical
  CDF taken as E_i = (number of tail values strictly below x_(i)) / n (``ks="left"``, the
  convention of the ``powerlaw`` package and of WeightWatcher) or the full supremum over x,
  max(|F - E_i|, |F - E_i^+|) with E_i^+ = (number <= x_(i)) / n (``ks="sup"``);
* the chosen x_min minimises D (ties -> the smaller x_min, i.e. the longer tail);
* the standard error of alpha is (alpha - 1) / sqrt(n).

The scan is vectorised: one sort, suffix sums of ln x for every alpha at once, and the KS
distances in row blocks of a (candidates x values) array, so a 1024-value spectrum fits in a few
milliseconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

KS_MODES = ("left", "sup")
_BLOCK_ELEMS = 1 << 22  # values per KS block (32 MiB of float64)


@dataclass(frozen=True)
class PowerLawFit:
    """Result of :func:`fit_powerlaw`; every field is NaN (n_tail 0) when no fit was possible.

    Attributes:
        alpha: the MLE exponent on the tail.
        xmin: the chosen lower cutoff (one of the data values).
        ks: the Kolmogorov-Smirnov distance D of the tail at that cutoff.
        n_tail: number of values >= xmin.
        se: the standard error (alpha - 1) / sqrt(n_tail).
        n: number of positive values the fit saw.
    """

    alpha: float
    xmin: float
    ks: float
    n_tail: int
    se: float
    n: int

    @property
    def ok(self) -> bool:
        return self.n_tail > 0


def as_float64(values: torch.Tensor | np.ndarray | list[float]) -> np.ndarray:
    """Any 1-D-able tensor, array or list -> a flat float64 numpy array (a copy for tensors)."""
    if isinstance(values, torch.Tensor):
        return values.detach().to("cpu", torch.float64).reshape(-1).numpy()
    return np.asarray(values, dtype=np.float64).reshape(-1)


def _no_fit(n: int) -> PowerLawFit:
    nan = float("nan")
    return PowerLawFit(alpha=nan, xmin=nan, ks=nan, n_tail=0, se=nan, n=n)


def fit_powerlaw(
    values: torch.Tensor | np.ndarray | list[float],
    min_tail: int = 10,
    ks: str = "left",
    xmin: float | None = None,
) -> PowerLawFit:
    """Continuous power-law fit of the upper tail of ``values`` (eigenvalues, any order).

    Args:
        values: the data; non-positive and non-finite values are dropped first.
        min_tail: the smallest tail a candidate x_min may leave (at least 2). The default 10
            keeps the KS scan away from a handful of top eigenvalues whose small-sample KS
            distance can be small by chance; ``min_tail=2`` scans every distinct value but the
            largest, as the ``powerlaw`` package and WeightWatcher do.
        ks: ``"left"`` (the packages' convention) or ``"sup"``; see the module docstring.
        xmin: a fixed cutoff instead of the KS scan (the smallest value >= xmin is used).

    Returns:
        A :class:`PowerLawFit`; its fields are NaN when fewer than ``min_tail`` positive values
        remain, or when every candidate tail is constant.
    """
    if ks not in KS_MODES:
        raise ValueError(f"ks must be one of {KS_MODES}, got {ks!r}")
    if min_tail < 2:
        raise ValueError(f"min_tail must be at least 2, got {min_tail}")
    x = as_float64(values)
    x = np.sort(x[np.isfinite(x) & (x > 0)])
    n_all = len(x)
    if n_all < min_tail:
        return _no_fit(n_all)
    lx = np.log(x)
    # E_i numerators: first index of each value (ties share it) and one past its last index.
    left = np.searchsorted(x, x, side="left")
    right = np.searchsorted(x, x, side="right")
    # candidate cutoffs: first occurrence of each distinct value, not the largest value,
    # leaving at least min_tail values.
    cand = np.flatnonzero(left == np.arange(n_all))
    cand = cand[(x[cand] < x[-1]) & (n_all - cand >= min_tail)]
    if xmin is not None:
        i = int(np.searchsorted(x, float(xmin), side="left"))
        cand = np.array([i]) if i < n_all and x[i] < x[-1] and n_all - i >= 2 else np.array([], dtype=int)
    if len(cand) == 0:
        return _no_fit(n_all)
    suffix = np.concatenate([np.cumsum(lx[::-1])[::-1], [0.0]])  # suffix[i] = sum_{j>=i} ln x_j
    n_tail = (n_all - cand).astype(np.float64)
    log_sum = suffix[cand] - n_tail * lx[cand]  # sum over the tail of ln(x / xmin) > 0
    alpha = 1.0 + n_tail / log_sum
    dist = _ks_distances(x, lx, left, right, cand, alpha, ks)
    best = int(np.argmin(dist))  # first minimum: the smallest xmin among ties
    a, n = float(alpha[best]), int(n_tail[best])
    return PowerLawFit(
        alpha=a, xmin=float(x[cand[best]]), ks=float(dist[best]), n_tail=n,
        se=(a - 1.0) / math.sqrt(n), n=n_all,
    )


def _ks_distances(x: np.ndarray, lx: np.ndarray, left: np.ndarray, right: np.ndarray,
                  cand: np.ndarray, alpha: np.ndarray, ks: str) -> np.ndarray:
    """KS distance of the tail for every candidate cutoff (ascending), in row blocks.

    A block of candidates only looks at the values from its smallest cutoff on; values below a
    row's own cutoff get a clipped log-ratio of 0 (fitted CDF 0) and an empirical CDF of 0, so
    they add nothing to the maximum. float64 torch ops, in place (torch's exp is the fast one).
    """
    n_all = len(x)
    out = np.empty(len(cand))
    block = int(min(256, max(1, _BLOCK_ELEMS // n_all)))
    tlx = torch.from_numpy(lx)
    tleft = torch.from_numpy(left).double()
    tright = torch.from_numpy(right).double()
    tcand = torch.from_numpy(cand)
    talpha = torch.from_numpy(alpha)
    for s in range(0, len(cand), block):
        c = tcand[s : s + block]
        lo = int(c[0])
        c_col = c[:, None].double()
        inv_n = 1.0 / (n_all - c_col)
        # 1 - (x / xmin)^(1 - alpha) on the tail, 0 below the cutoff
        fitted = (tlx[None, lo:] - tlx[c][:, None]).clamp_(min=0.0)
        fitted.mul_(1.0 - talpha[s : s + block, None]).exp_().neg_().add_(1.0)
        emp = (tleft[None, lo:] - c_col).clamp_(min=0.0).mul_(inv_n)
        dist = emp.sub_(fitted).abs_().amax(dim=1)
        if ks == "sup":
            # below a row's cutoff the upper empirical CDF is 0 as well (right <= cutoff there)
            emp_hi = (tright[None, lo:] - c_col).clamp_(min=0.0).mul_(inv_n)
            dist = torch.maximum(dist, emp_hi.sub_(fitted).abs_().amax(dim=1))
        out[s : s + block] = dist.numpy()
    return out


def sample_powerlaw(n: int, alpha: float, xmin: float = 1.0,
                    generator: np.random.Generator | int | None = None) -> np.ndarray:
    """n draws from the continuous power law with exponent alpha > 1 above xmin (inverse CDF)."""
    if alpha <= 1:
        raise ValueError(f"alpha must exceed 1, got {alpha}")
    rng = np.random.default_rng(generator)
    u = rng.random(n)
    return xmin * (1.0 - u) ** (-1.0 / (alpha - 1.0))
