"""Test alignment: does a test sample's activation look like the clean or the noisy signal
of the class it is predicted as?

For a test sample x with prediction y_hat at one tap (docs/definitions.md, "Internal signals"):
``score(x) = cos(a(x), S_clean,y_hat) - cos(a(x), S_noisy,y_hat)`` with the noisy means grouped
by *observed* label. Positive: aligned with the clean training signal; negative: with the
noisy one. Kubo et al.: correct predictions score positive, wrong ones negative.
"""

from __future__ import annotations

import torch


def unit_rows(means: torch.Tensor) -> torch.Tensor:
    """(C, F) means -> rows scaled to unit norm (NaN rows where a mean is zero or NaN)."""
    means = means.to(torch.float64)
    norm = means.norm(dim=1, keepdim=True)
    return torch.where(norm > 0, means / norm, torch.full_like(means, float("nan")))


def alignment_scores(
    acts: torch.Tensor,
    pred: torch.Tensor,
    clean_means: torch.Tensor,
    noisy_obs_means: torch.Tensor,
) -> torch.Tensor:
    """Per-sample alignment (one (B, F) x (F, 2C) product; float32, cosine error ~1e-6).

    Args:
        acts: (B, F) activations of test samples at one tap.
        pred: (B,) int64 predicted classes.
        clean_means: (C, F) S_clean,c.
        noisy_obs_means: (C, F) S_noisy,c grouped by observed label.

    Returns:
        (B,) float64 scores; NaN where a mean is undefined (no clean or no noisy training
        sample observed as that class) or the activation is all zero.
    """
    if acts.dim() != 2 or pred.shape != (acts.shape[0],):
        raise ValueError(f"need acts (B, F) and pred (B,), got {tuple(acts.shape)}, "
                         f"{tuple(pred.shape)}")
    c = clean_means.shape[0]
    a = acts.detach().float()
    units = torch.cat([unit_rows(clean_means), unit_rows(noisy_obs_means)]).to(a.device, a.dtype)
    dots = a @ units.T  # (B, 2C): |a| cos(a, S)
    pred = pred.to(a.device).unsqueeze(1)
    diff = (dots.gather(1, pred) - dots.gather(1, pred + c)).squeeze(1).double()
    norm = a.norm(dim=1).double()
    return torch.where(norm > 0, diff / norm, torch.full_like(diff, float("nan")))


def summarize_alignment(scores: torch.Tensor, correct: torch.Tensor) -> dict[str, float]:
    """Mean score over correct and over wrong predictions (NaN scores ignored).

    Args:
        scores: (N,) from :func:`alignment_scores`.
        correct: (N,) bool, prediction == test label.

    Returns:
        ``{"correct": mean, "wrong": mean, "n_correct": count, "n_wrong": count, "sd_correct":
        sd, "sd_wrong": sd}`` (counts of samples with a defined score; a mean over no sample is
        NaN; sd: sample standard deviation (ddof 1), NaN below 2 samples; the mean's standard
        error is sd / sqrt(count)).
    """
    scores = scores.to(torch.float64)
    correct = correct.to(scores.device).bool()
    ok = ~scores.isnan()
    out: dict[str, float] = {}
    for key, sel in (("correct", correct & ok), ("wrong", ~correct & ok)):
        n = int(sel.sum())
        out[key] = float(scores[sel].mean()) if n else float("nan")
        out[f"n_{key}"] = float(n)
        out[f"sd_{key}"] = float(scores[sel].std()) if n >= 2 else float("nan")
    return out
