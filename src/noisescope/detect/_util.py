"""Input checks shared by the detectors: features, labels, class counts, chunk sizes."""

from __future__ import annotations

import numpy as np
import torch

Array = torch.Tensor | np.ndarray


def as_features(feats: Array, name: str = "feats") -> torch.Tensor:
    """(N, D) floating tensor (numpy arrays are wrapped without a copy where possible)."""
    t = torch.as_tensor(feats)
    if t.ndim != 2:
        raise ValueError(f"{name} must be 2-D (N, D), got shape {tuple(t.shape)}")
    if not t.is_floating_point():
        t = t.float()
    return t


def as_labels(labels: Array, n: int | None = None, name: str = "labels") -> torch.Tensor:
    """(N,) int64 labels >= 0, checked against the expected length ``n``."""
    y = torch.as_tensor(labels)
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D (N,), got shape {tuple(y.shape)}")
    if y.is_floating_point() or y.dtype == torch.bool:
        raise ValueError(f"{name} must hold integer class indices, got dtype {y.dtype}")
    y = y.long()
    if n is not None and len(y) != n:
        raise ValueError(f"{name} has {len(y)} entries for {n} samples")
    if len(y) and int(y.min()) < 0:
        raise ValueError(f"{name} must be >= 0 (class indices), got min {int(y.min())}")
    return y


def num_classes_of(labels: torch.Tensor, num_classes: int | None = None) -> int:
    """C: the given count (checked to cover the labels) or max(label) + 1."""
    top = int(labels.max()) + 1 if len(labels) else 0
    if num_classes is None:
        return max(top, 1)
    if top > num_classes:
        raise ValueError(f"labels go up to {top - 1} but num_classes={num_classes}")
    return int(num_classes)


def rows_per_chunk(width: int, max_elems: int) -> int:
    """Rows of a (rows, width) block holding at most ``max_elems`` elements (at least 1)."""
    return max(1, int(max_elems) // max(1, int(width)))


def out(scores: torch.Tensor) -> torch.Tensor:
    """Detector output convention: (N,) float64 on the CPU."""
    return scores.detach().to("cpu", torch.float64).contiguous()


def spectrum_of(feats: torch.Tensor, batch_size: int = 8192):
    """The label-free :class:`~noisescope.spectral.stats.Spectrum` of (N, D) features (streamed
    through :class:`~noisescope.spectral.stats.FeatureStats` in float64)."""
    from noisescope.spectral.stats import FeatureStats

    stats = FeatureStats(feats.shape[1])
    for s in range(0, len(feats), batch_size):
        stats.update(feats[s : s + batch_size])
    return stats.spectrum()


def check_d(d: int, dim: int) -> int:
    """A number of kept components: an int in [1, dim]."""
    if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or not 1 <= int(d) <= dim:
        raise ValueError(f"d must be an int in [1, {dim}] (the feature dimension), got {d!r}")
    return int(d)
