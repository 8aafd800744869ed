"""Disagreement of a (typically early-stopped) model with the observed labels.

An early-stopped network has learned the clean majority but not yet memorized the noisy
minority, so it disagrees with wrong labels (Arpit et al. 2017; Kubo et al.'s clean-before-noisy
dynamics). Score: self-confidence 1 - p(observed label) (cleanlab's ``self_confidence`` quality
score, flipped); flag: argmax != observed label.
"""

from __future__ import annotations

import torch

from noisescope.detect._util import Array, as_labels, out

KINDS = ("auto", "probs", "logits")


def as_probs(probs_or_logits: Array, kind: str = "auto") -> torch.Tensor:
    """(N, C) probabilities (float64) from probabilities or logits.

    ``kind="auto"`` reads the input as probabilities when every entry lies in [0, 1] and every
    row sums to 1 within 1e-4, else as logits (softmax). Say ``"probs"`` or ``"logits"`` to skip
    the guess.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    p = torch.as_tensor(probs_or_logits)
    if p.ndim != 2:
        raise ValueError(f"expected (N, C) probabilities or logits, got shape {tuple(p.shape)}")
    p = p.to(torch.float64)
    if kind == "auto":
        is_probs = bool(((p >= 0) & (p <= 1)).all()) and bool(((p.sum(1) - 1).abs() <= 1e-4).all())
        kind = "probs" if is_probs else "logits"
    return p if kind == "probs" else torch.softmax(p, 1)


def disagreement_score(probs_or_logits: Array, labels: Array, kind: str = "auto") -> torch.Tensor:
    """1 - p_i(y_i): one minus the model's probability of the observed label.

    Args:
        probs_or_logits: (N, C) predicted probabilities or logits (see :func:`as_probs`).
        labels: (N,) observed labels.

    Returns:
        (N,) float64 in [0, 1], higher = the model believes the label less.
    """
    p = as_probs(probs_or_logits, kind)
    y = as_labels(labels, len(p)).to(p.device)
    if len(y) and int(y.max()) >= p.shape[1]:
        raise ValueError(f"labels go up to {int(y.max())} but there are {p.shape[1]} classes")
    return out(1.0 - p.gather(1, y[:, None]).squeeze(1))


def disagreement_issues(probs_or_logits: Array, labels: Array) -> torch.Tensor:
    """(N,) bool: the model's top class differs from the observed label (softmax keeps the argmax,
    so probabilities and logits give the same flags; ties go to the lower class index)."""
    p = torch.as_tensor(probs_or_logits)
    if p.ndim != 2:
        raise ValueError(f"expected (N, C) probabilities or logits, got shape {tuple(p.shape)}")
    y = as_labels(labels, len(p)).to(p.device)
    return (p.argmax(1) != y).cpu()
