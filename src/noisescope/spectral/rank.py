"""Spectrum summaries: effective rank, participation ratio, stable rank (one definition each),
and the effective rank's sampling error.

All take the covariance eigenvalues lambda (centred covariance, the docs/definitions.md convention; *not*
RankMe's singular values) as a 1-D tensor or array in any order; negatives are clipped to 0.
An all-zero spectrum has every rank equal to 0.
"""

from __future__ import annotations

import numpy as np
import torch


def _lam(eigvals: torch.Tensor | np.ndarray) -> torch.Tensor:
    lam = torch.as_tensor(eigvals, dtype=torch.float64).reshape(-1)
    if lam.numel() == 0:
        raise ValueError("empty eigenvalue spectrum")
    if not torch.isfinite(lam).all():
        raise ValueError("eigenvalues contain NaN or inf (diverged features?)")
    return lam.clamp_min(0.0)


def _shares(lam: torch.Tensor) -> torch.Tensor | None:
    """The nonzero p_k = lambda_k / sum(lambda); None for an all-zero spectrum."""
    total = lam.sum()
    if total <= 0:
        return None
    p = lam / total
    return p[p > 0]


def effective_rank(eigvals: torch.Tensor | np.ndarray) -> float:
    """exp(-sum_k p_k log p_k) with p_k = lambda_k / sum(lambda) (Roy & Vetterli on the
    covariance eigenvalues). Between 1 and D; D for an isotropic spectrum."""
    p = _shares(_lam(eigvals))
    return 0.0 if p is None else float(torch.exp(-(p * p.log()).sum()))


def participation_ratio(eigvals: torch.Tensor | np.ndarray) -> float:
    """(sum lambda)^2 / sum lambda^2."""
    lam = _lam(eigvals)
    sq = (lam * lam).sum()
    return 0.0 if sq <= 0 else float(lam.sum() ** 2 / sq)


def stable_rank(eigvals: torch.Tensor | np.ndarray) -> float:
    """sum lambda / max lambda."""
    lam = _lam(eigvals)
    top = lam.max()
    return 0.0 if top <= 0 else float(lam.sum() / top)


def effective_rank_rel_se(eigvals: torch.Tensor | np.ndarray, n: int) -> float:
    """Relative standard error of :func:`effective_rank` estimated from ``n`` samples.

    Delta method on r = exp(H), H = -sum_k p_k log p_k, with the sampling variance of a
    covariance eigenvalue of Gaussian features, Var(lambda_k) = 2 lambda_k^2 / n (distinct
    eigenvalues, n >> D) and dH / dlambda_k = -(log p_k + H) / sum(lambda):

        se(r) / r = sqrt(2 / n * sum_k p_k^2 (log p_k + H)^2)

    (0 for an isotropic spectrum, where the first-order term vanishes). Heavier-tailed features
    than Gaussian have a larger error; the band built on it is a floor. NaN when n < 2 or the
    spectrum is all zero.
    """
    p = _shares(_lam(eigvals))
    if p is None or n < 2:
        return float("nan")
    h = -(p * p.log()).sum()
    return float(torch.sqrt(2.0 / n * (p.square() * (p.log() + h).square()).sum()))
