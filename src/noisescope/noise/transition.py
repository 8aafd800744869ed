"""Label noise from a row-stochastic transition matrix: the core every matrix model uses.

``P[i, j]`` is the probability that a sample of true class i is observed as class j.
Two sampling modes:

* Bernoulli (default): each label is drawn independently from its row, so realized counts
  are multinomial around ``N_i * P[i, j]``.
* exact: the realized counts are fixed, not drawn. The total number of flips is
  ``K = round(sum_i N_i (1 - P[i, i]))``; K is apportioned to classes in proportion to
  ``N_i (1 - P[i, i])`` and each class's flips to targets in proportion to ``P[i, j]``
  (largest remainder, seeded tie-breaks), so every count is within one of its expectation and
  the total is exactly K. Which samples flip is a seeded uniform choice within each class.
"""

from __future__ import annotations

import numpy as np
import torch

from noisescope.data.splits import apportion
from noisescope.noise.base import NoiseResult


def check_labels(y_true: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Validate (N,) integer labels in [0, C) and return them as int64 on the CPU."""
    y = torch.as_tensor(y_true).detach().cpu()
    if y.dim() != 1:
        raise ValueError(f"labels must be 1-D (N,), got shape {tuple(y.shape)}")
    if y.is_floating_point() or y.dtype == torch.bool:
        raise ValueError(f"labels must be integer class indices, got dtype {y.dtype}")
    y = y.long()
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise ValueError(
            f"labels must lie in [0, {num_classes}), got [{int(y.min())}, {int(y.max())}]"
        )
    return y


def check_transition(matrix, num_classes: int, atol: float = 1e-6) -> torch.Tensor:
    """Validate a C x C row-stochastic matrix; return it as float64 with rows renormalized.

    Raises ValueError naming the offending row when the shape is wrong, an entry is negative
    or not finite, or a row does not sum to 1 (within ``atol``).
    """
    p = torch.as_tensor(np.asarray(matrix, dtype=np.float64))
    if p.shape != (num_classes, num_classes):
        raise ValueError(
            f"transition matrix must be {num_classes} x {num_classes} (num_classes), "
            f"got shape {tuple(p.shape)}"
        )
    if not torch.isfinite(p).all():
        raise ValueError("transition matrix has NaN or infinite entries")
    neg = (p < 0).nonzero()
    if len(neg):
        i, j = (int(v) for v in neg[0])
        raise ValueError(f"transition matrix entry [{i}, {j}] = {float(p[i, j])} is negative")
    sums = p.sum(1)
    bad = ((sums - 1).abs() > atol).nonzero().flatten()
    if len(bad):
        i = int(bad[0])
        raise ValueError(
            f"transition matrix row {i} sums to {float(sums[i]):.6g}, not 1: each row "
            "P[i, :] must be the distribution of observed labels for true class i"
        )
    return p / sums[:, None]


def sample_transition(
    y_true: torch.Tensor, matrix: torch.Tensor, seed: int, exact: bool = False
) -> torch.Tensor:
    """Draw observed labels ``(N,)`` int64 for true labels ``y_true`` from ``matrix`` (C, C).

    See the module docstring for the Bernoulli and exact modes. ``matrix`` must already be
    validated (:func:`check_transition`).
    """
    g = torch.Generator().manual_seed(int(seed))
    c = matrix.shape[0]
    y = y_true.long()
    n = len(y)
    if n == 0:
        return y.clone()
    if not exact:  # inverse CDF: first class whose cumulative probability exceeds u
        cdf = matrix.cumsum(1)
        u = torch.rand(n, 1, generator=g, dtype=cdf.dtype)
        return torch.searchsorted(cdf[y], u, right=True).squeeze(1).clamp_max(c - 1)
    out = y.clone()
    sizes = torch.bincount(y, minlength=c).double()
    stay = matrix.diagonal()
    flip_w = sizes * (1 - stay)
    total = round(float(flip_w.sum()))
    per_class = apportion(flip_w, total, g) if total else torch.zeros(c, dtype=torch.long)
    per_class = torch.minimum(per_class, sizes.long())
    for i in range(c):
        k = int(per_class[i])
        if k == 0:
            continue
        off = matrix[i].clone()
        off[i] = 0.0
        cells = apportion(off, k, g)
        members = (y == i).nonzero().flatten()
        chosen = members[torch.randperm(len(members), generator=g)[:k]]
        out[chosen] = torch.repeat_interleave(torch.arange(c), cells)
    return out


def transition(
    y_true: torch.Tensor,
    num_classes: int,
    matrix,
    seed: int,
    exact: bool = False,
) -> NoiseResult:
    """Noise from any row-stochastic C x C ``matrix`` (nested lists or an array).

    Args:
        y_true: (N,) true labels in [0, C).
        num_classes: C.
        matrix: (C, C), ``matrix[i, j]`` = P(observed j | true i); rows sum to 1.
        seed: random seed.
        exact: realize counts exactly (see module docstring) instead of Bernoulli draws.
    """
    y = check_labels(y_true, num_classes)
    p = check_transition(matrix, num_classes)
    obs = sample_transition(y, p, seed, exact)
    params = {"matrix": p.tolist(), "seed": int(seed), "exact": bool(exact)}
    return NoiseResult.from_labels(y, obs, num_classes, "transition", params)
