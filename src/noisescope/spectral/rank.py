"""Spectrum summaries: effective rank, participation ratio, stable rank (one definition each).

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


def effective_rank(eigvals: torch.Tensor | np.ndarray) -> float:
    """exp(-sum_k p_k log p_k) with p_k = lambda_k / sum(lambda) (Roy & Vetterli on the
    covariance eigenvalues). Between 1 and D; D for an isotropic spectrum."""
    lam = _lam(eigvals)
    total = lam.sum()
    if total <= 0:
        return 0.0
    p = lam / total
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


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
