"""Choosing the number d of kept principal components without clean labels.

The spectral linear probe (:mod:`noisescope.spectral.linear_probe`: least squares / ridge on
the top-d principal coordinates, all d at once) is fitted on observed labels and scored on
held-out *observed* labels; d is the argmax of that held-out accuracy (ties -> smaller d), or
the ``"1se"`` rule. Label noise that the probe memorizes through tail components does not
transfer to held-out samples, so the curve peaks near the signal dimension.

Held-out samples are either a given noisy-validation set (:func:`choose_d_validation`), or a
seeded random part of the training set itself (:class:`HoldoutSelector`: ``fraction`` of N, at
most ``max_rows`` rows, whose features are kept in float32 while the rest is reduced on the fly).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from noisescope.spectral.linear_probe import check_grid, choose_d, cumulative_correct, fit_ridge_readout
from noisescope.spectral.stats import FeatureStats, Spectrum


class HoldoutSelector:
    """Streaming d selection on a random held-out part of the training set.

    Args:
        n: training samples N; dim: feature dimension D; num_classes: C.
        fraction: share of N held out (default 0.2), at most ``max_rows`` rows.
        seed: seeds the held-out draw.
        alpha: ridge strength of the probe (0 = least squares).
        rule: ``"argmax"`` or ``"1se"`` (see ``linear_probe.choose_d``).
        d_grid: candidate d values (default every d in 1..D).
    """

    def __init__(self, n: int, dim: int, num_classes: int, fraction: float = 0.2, max_rows: int = 5000,
                 seed: int = 0, alpha: float = 0.0, rule: str = "argmax",
                 d_grid: Iterable[int] | None = None) -> None:
        if not 0 < fraction < 1:
            raise ValueError(f"holdout fraction must lie in (0, 1), got {fraction}")
        m = min(int(round(fraction * n)), int(max_rows))
        if m < 1 or n - m < 2:
            raise ValueError(f"too few samples ({n}) to hold some out for choosing d: pass an int d")
        g = torch.Generator().manual_seed(int(seed))
        self.held = torch.zeros(n, dtype=torch.bool)
        self.held[torch.randperm(n, generator=g)[:m]] = True
        self.stats = FeatureStats(dim, num_classes)
        self.alpha, self.rule = alpha, rule
        self.d_grid = None if d_grid is None else list(d_grid)
        self._x: list[torch.Tensor] = []
        self._y: list[torch.Tensor] = []

    def update(self, index: slice | torch.Tensor, feats: torch.Tensor, labels: torch.Tensor) -> None:
        """Add a batch: ``index`` (slice or int indices) says which training rows it holds."""
        held = self.held[index].to(feats.device)
        if bool((~held).any()):
            self.stats.update(feats[~held], labels[~held])
        if bool(held.any()):
            self._x.append(feats[held].detach().to("cpu", torch.float32))
            self._y.append(labels[held].detach().cpu().long())

    def choose(self) -> tuple[int, np.ndarray, np.ndarray]:
        """(d, grid, held-out accuracy per grid d)."""
        spec = self.stats.spectrum()
        readout = fit_ridge_readout(self.stats, spec, self.alpha)
        return _choose(spec, readout, [(torch.cat(self._x), torch.cat(self._y))], self.d_grid, self.rule)


def choose_d_validation(
    stats: FeatureStats, spectrum: Spectrum, val: Iterable[tuple[torch.Tensor, torch.Tensor]],
    alpha: float = 0.0, rule: str = "argmax", d_grid: Iterable[int] | None = None,
) -> tuple[int, np.ndarray, np.ndarray]:
    """d from a noisy-validation stream of (features, observed labels) batches, with the probe
    fitted on the whole training set (``stats`` updated with observed labels)."""
    readout = fit_ridge_readout(stats, spectrum, alpha)
    return _choose(spectrum, readout, val, d_grid, rule)


def _choose(spec: Spectrum, readout, batches, d_grid, rule: str) -> tuple[int, np.ndarray, np.ndarray]:
    grid = check_grid(None if d_grid is None else list(d_grid), spec.dim)
    correct = torch.zeros(len(grid), dtype=torch.int64)
    n = 0
    for x, y in batches:
        z = spec.project(x, int(grid[-1]))
        correct += cumulative_correct(z, y, readout, grid).cpu()
        n += len(y)
    if n == 0:
        raise ValueError("no held-out samples to choose d on")
    d = choose_d(correct, grid, n, rule)
    return d, grid, correct.numpy() / n
