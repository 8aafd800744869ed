"""Label-free choices of the truncation dimension d from a feature spectrum (no labels at all).

Input: the covariance eigenvalues lambda_1 >= lambda_2 >= ... >= lambda_D of a tap's features
(any order is accepted; they are sorted descending). Each rule returns d, the number of leading
directions it counts as signal:

* :func:`eigengap_d`: the largest ratio lambda_k / lambda_{k+1} (equivalently the largest gap
  of ln lambda) over 1 <= k <= k_max, default k_max = floor(P / 2) with P the number of
  eigenvalues above 1e-12 * lambda_1 (the lower half of a Marchenko-Pastur bulk, near its soft
  lower edge, and a rank-deficient null space have large ratios that are not signal).
* :func:`control_edge_d`: the number of eigenvalues above the untrained control's (epoch-0)
  largest eigenvalue rescaled to the trained spectrum: lambda_k > c * max(lambda^0), c = trace
  ratio sum(lambda) / sum(lambda^0) (``scale="trace"``, default), median ratio (``"median"``) or 1
  (``"none"``). The trace ratio is conservative: the signal directions' own variance raises the
  threshold.
* :func:`mp_edge_d`: the number of eigenvalues above the Marchenko-Pastur edge
  sigma^2 (1 + sqrt(gamma))^2 of an N x D matrix of i.i.d. entries of variance sigma^2, gamma =
  D / N, with sigma^2 estimated from the median eigenvalue: sigma^2 = median(lambda) / m(gamma),
  m(gamma) the median of the unit-variance MP law. For gamma > 1 only the N non-zero
  eigenvalues are used; they follow gamma * MP(1 / gamma), so sigma^2 = median / (gamma m(1 / gamma)).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

from noisescope.weights.powerlaw import as_float64

SCALES = ("trace", "median", "none")


def _desc(eigvals: torch.Tensor | np.ndarray | list[float]) -> np.ndarray:
    lam = as_float64(eigvals)
    if lam.size == 0:
        raise ValueError("empty eigenvalue spectrum")
    if not np.isfinite(lam).all():
        raise ValueError("eigenvalues contain NaN or inf")
    return np.sort(np.clip(lam, 0.0, None))[::-1]


def eigengap_d(eigvals: torch.Tensor | np.ndarray | list[float], k_max: int | None = None) -> int:
    """argmax over 1 <= k <= k_max of lambda_k / lambda_{k+1} (ties -> smaller k); see the module
    docstring for the default k_max. Returns 0 for an all-zero spectrum."""
    lam = _desc(eigvals)
    if lam[0] <= 0:
        return 0
    pos = lam[lam > 1e-12 * lam[0]]
    if len(pos) < 2:
        return len(pos)
    k_max = len(pos) // 2 if k_max is None else min(int(k_max), len(pos) - 1)
    if k_max < 1:
        raise ValueError(f"k_max must be at least 1, got {k_max}")
    gaps = np.log(pos[:k_max]) - np.log(pos[1 : k_max + 1])
    return int(np.argmax(gaps)) + 1


def control_edge(eigvals: torch.Tensor | np.ndarray | list[float],
                 control_eigvals: torch.Tensor | np.ndarray | list[float], scale: str = "trace") -> float:
    """The threshold c * max(lambda^0) of :func:`control_edge_d`."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    lam, lam0 = _desc(eigvals), _desc(control_eigvals)
    if len(lam) != len(lam0):
        raise ValueError(f"the control spectrum has {len(lam0)} eigenvalues, the trained one {len(lam)}: "
                         "use the same tap")
    if scale == "trace":
        c = lam.sum() / lam0.sum() if lam0.sum() > 0 else math.inf
    elif scale == "median":
        c = np.median(lam) / np.median(lam0) if np.median(lam0) > 0 else math.inf
    else:
        c = 1.0
    return float(c * lam0[0])


def control_edge_d(eigvals: torch.Tensor | np.ndarray | list[float],
                   control_eigvals: torch.Tensor | np.ndarray | list[float], scale: str = "trace") -> int:
    """Number of eigenvalues above the rescaled largest eigenvalue of the epoch-0 control."""
    return int((_desc(eigvals) > control_edge(eigvals, control_eigvals, scale)).sum())


@lru_cache(maxsize=256)
def mp_median(gamma: float) -> float:
    """Median of the Marchenko-Pastur law with ratio gamma in (0, 1] and variance 1."""
    from scipy.integrate import quad
    from scipy.optimize import brentq

    if not 0 < gamma <= 1:
        raise ValueError(f"gamma must lie in (0, 1], got {gamma}")
    a, b = (1 - math.sqrt(gamma)) ** 2, (1 + math.sqrt(gamma)) ** 2

    # x = a + (b - a) sin^2(t) removes the square-root endpoints:
    # p(x) dx = (b - a)^2 sin^2(t) cos^2(t) / (pi gamma x) dt on t in [0, pi / 2]
    def integrand(t: float) -> float:
        s2 = math.sin(t) ** 2
        x = a + (b - a) * s2
        return 0.0 if x <= 0 else (b - a) ** 2 * s2 * (1 - s2) / (math.pi * gamma * x)

    def cdf_minus_half(t: float) -> float:
        return quad(integrand, 0.0, t, limit=200)[0] - 0.5

    t = brentq(cdf_minus_half, 0.0, math.pi / 2, xtol=1e-12)
    return a + (b - a) * math.sin(t) ** 2


def mp_edge(eigvals: torch.Tensor | np.ndarray | list[float], n_samples: int) -> float:
    """sigma^2 (1 + sqrt(gamma))^2 with sigma^2 from the median eigenvalue (module docstring).

    Args:
        eigvals: the D covariance eigenvalues.
        n_samples: N, the number of samples the covariance was computed from (N - 1 for a
            centred covariance normalised by N - 1 is the more exact choice; it matters little).
    """
    lam = _desc(eigvals)
    d = len(lam)
    if n_samples < 1:
        raise ValueError(f"n_samples must be positive, got {n_samples}")
    gamma = d / n_samples
    if gamma <= 1:
        sigma2 = float(np.median(lam)) / mp_median(gamma)
    else:
        sigma2 = float(np.median(lam[:n_samples])) / (gamma * mp_median(1 / gamma))
    return sigma2 * (1 + math.sqrt(gamma)) ** 2


def mp_edge_d(eigvals: torch.Tensor | np.ndarray | list[float], n_samples: int) -> int:
    """Number of eigenvalues above the Marchenko-Pastur edge (bulk variance from the median)."""
    return int((_desc(eigvals) > mp_edge(eigvals, n_samples)).sum())


def label_free_d(eigvals: torch.Tensor | np.ndarray | list[float], n_samples: int | None = None,
                 control_eigvals: torch.Tensor | np.ndarray | list[float] | None = None) -> dict[str, int]:
    """Every rule that the inputs allow: ``{"eigengap": d, "control_edge": d, "mp_edge": d}``."""
    out = {"eigengap": eigengap_d(eigvals)}
    if control_eigvals is not None:
        out["control_edge"] = control_edge_d(eigvals, control_eigvals)
    if n_samples is not None:
        out["mp_edge"] = mp_edge_d(eigvals, n_samples)
    return out
