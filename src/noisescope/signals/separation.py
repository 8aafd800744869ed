"""Separation of clean and noisy class means: cos(S_clean,c, S_noisy,c).

1 means the noisy samples of class c look, on average, exactly like the clean ones at this
tap; lower values mean the tap separates them (Kubo et al.: separation grows, i.e. the
cosine falls, in the outer layers as the noisy labels are memorized).
"""

from __future__ import annotations

import torch


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise cosine similarity along the last dim, in float64, clipped to [-1, 1].

    Args:
        a, b: (..., F) broadcastable tensors.

    Returns:
        (...) cosines; NaN where either vector is zero or NaN (undefined, not silently 0).
    """
    a = a.to(torch.float64)
    b = b.to(torch.float64)
    num = (a * b).sum(-1)
    den = a.norm(dim=-1) * b.norm(dim=-1)
    out = num / den
    out = torch.where(den > 0, out, torch.full_like(out, float("nan")))
    return out.clamp(-1.0, 1.0)


def separation(
    clean_means: torch.Tensor,
    noisy_means: torch.Tensor,
    clean_counts: torch.Tensor,
    noisy_counts: torch.Tensor,
    min_noisy: int = 10,
) -> tuple[torch.Tensor, float]:
    """Per-class and class-averaged cos(S_clean,c, S_noisy,c).

    Args:
        clean_means: (C, F) clean class means S_clean,c.
        noisy_means: (C, F) noisy class means S_noisy,c (grouped by true or observed label).
        clean_counts: (C,) clean samples per class.
        noisy_counts: (C,) noisy samples per class (same grouping as ``noisy_means``).
        min_noisy: a class enters the average only with at least this many noisy samples
            (and at least one clean sample).

    Returns:
        ``(per_class (C,) float64, average)``: per-class cosines (NaN for a class with no
        clean or no noisy sample) and their mean over eligible classes (NaN if none is).
    """
    if clean_means.shape != noisy_means.shape or clean_means.dim() != 2:
        raise ValueError(f"class means must both be (C, F), got {tuple(clean_means.shape)} "
                         f"and {tuple(noisy_means.shape)}")
    if min_noisy < 1:
        raise ValueError(f"min_noisy must be >= 1, got {min_noisy}")
    per_class = cosine(clean_means, noisy_means)
    has_both = (clean_counts > 0) & (noisy_counts > 0)
    per_class = torch.where(has_both.to(per_class.device), per_class,
                            torch.full_like(per_class, float("nan")))
    eligible = (has_both & (noisy_counts >= min_noisy)).to(per_class.device)
    eligible &= ~per_class.isnan()
    avg = float(per_class[eligible].mean()) if bool(eligible.any()) else float("nan")
    return per_class, avg
