"""Symmetric (stochastic) label noise.

With probability ``rate`` a label is replaced by a uniformly random *other* class
(``include_true=False``, Nakkiran et al.), or by a uniformly random class out of all C
(``include_true=True``, the DivideMix convention; a resampled label keeps its class with
probability 1/C, so the realized flip rate is ``rate * (C - 1) / C``).

``exact=True`` realizes the counts exactly instead of drawing them: with ``include_true=False``
exactly ``round(rate * N)`` samples flip, spread over the classes and the C - 1 targets as evenly
as integers allow (see :mod:`noisescope.noise.transition`); with ``include_true=True`` exactly
``round(rate * (C - 1) / C * N)`` do.
"""

from __future__ import annotations

import torch

from noisescope.noise.base import NoiseResult
from noisescope.noise.transition import check_labels, sample_transition


def symmetric_matrix(num_classes: int, rate: float, include_true: bool = False) -> torch.Tensor:
    """The (C, C) float64 transition matrix of symmetric noise."""
    c = num_classes
    if include_true:
        return (1 - rate) * torch.eye(c, dtype=torch.float64) + rate / c
    if c < 2:
        raise ValueError("symmetric noise to other classes needs num_classes >= 2")
    off = torch.full((c, c), rate / (c - 1), dtype=torch.float64)
    off.fill_diagonal_(1 - rate)
    return off


def symmetric(
    y_true: torch.Tensor,
    num_classes: int,
    rate: float,
    seed: int,
    include_true: bool = False,
    exact: bool = False,
) -> NoiseResult:
    """Symmetric noise (see module docstring).

    Args:
        y_true: (N,) true labels in [0, C).
        num_classes: C.
        rate: η in [0, 1): probability that a label is resampled.
        seed: random seed.
        include_true: draw the new label from all C classes (else from the C - 1 others).
        exact: flip an exact number of samples instead of Bernoulli draws.
    """
    y = check_labels(y_true, num_classes)
    obs = sample_transition(y, symmetric_matrix(num_classes, rate, include_true), seed, exact)
    params = {"rate": float(rate), "seed": int(seed), "include_true": bool(include_true),
              "exact": bool(exact)}
    return NoiseResult.from_labels(y, obs, num_classes, "symmetric", params)
