"""Distance to the observed class's mean in the truncated spectrum.

In the top-d principal coordinates z = (f - mu) V_d (the signal subspace that spectral
truncation keeps, where label noise has not been memorized), a correctly labelled sample lies
near its class's mean; a mislabeled one lies near another class's mean. With m_c the mean of z
over the samples whose observed label is c,

    a_i = ||z_i - m_{y_i}||,   b_i = min_{c != y_i, n_c > 0} ||z_i - m_c||,
    s_i = a_i / (a_i + b_i)   in [0, 1]  (1/2 when a_i = b_i = 0; 0 when no other class exists),

so s_i > 1/2 exactly when the sample is closer to another class's mean than to its own.
"""

from __future__ import annotations

import torch

from noisescope.detect._util import Array, as_features, as_labels, check_d, num_classes_of, out, spectrum_of
from noisescope.spectral.stats import Spectrum


def class_means(z: torch.Tensor, labels: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(C, F) float64 mean of the rows of each observed class and (C,) counts (mean 0 when empty)."""
    y = labels.to(z.device).long()
    sums = torch.zeros(num_classes, z.shape[1], dtype=torch.float64, device=z.device)
    sums.index_add_(0, y, z.to(torch.float64))
    counts = torch.bincount(y, minlength=num_classes).to(torch.float64)
    return sums / counts.clamp_min(1)[:, None], counts


def distance_ratio(z: torch.Tensor, labels: torch.Tensor, means: torch.Tensor,
                   counts: torch.Tensor) -> torch.Tensor:
    """(B,) a / (a + b) for rows z (B, F) against class means (C, F) (see the module doc)."""
    z = z.to(torch.float64)
    means = means.to(z.device, torch.float64)
    y = labels.to(z.device).long()
    dist = torch.cdist(z, means)  # (B, C)
    own = dist.gather(1, y[:, None]).squeeze(1)
    other = dist.clone()
    other[:, counts.to(z.device) == 0] = torch.inf
    other.scatter_(1, y[:, None], torch.inf)
    near = other.min(1).values
    total = own + near
    ratio = torch.where(total > 0, own / total, torch.full_like(own, 0.5))
    return torch.where(torch.isinf(near), torch.zeros_like(own), ratio)


def truncated_distance_score(
    feats: Array,
    spectrum: Spectrum | None,
    labels: Array,
    d: int,
    num_classes: int | None = None,
) -> torch.Tensor:
    """a_i / (a_i + b_i): own-class versus nearest-other-class mean distance in the top-d spectrum.

    Args:
        feats: (N, D) features.
        spectrum: the features' spectrum (e.g. ``FeatureStats(...).spectrum()``); None computes
            it from ``feats`` (label-free).
        labels: (N,) observed labels (define the class means).
        d: principal components kept, 1 <= d <= D.

    Returns:
        (N,) float64 in [0, 1], higher = relatively closer to another class = more suspicious.
    """
    x = as_features(feats)
    y = as_labels(labels, len(x))
    spectrum = spectrum if spectrum is not None else spectrum_of(x)
    z = spectrum.project(x, check_d(d, spectrum.dim))
    means, counts = class_means(z, y, num_classes_of(y, num_classes))
    return out(distance_ratio(z, y, means, counts))


def truncated_distance_issues(scores: Array) -> torch.Tensor:
    """(N,) bool: closer to another class's mean than to its own (score > 1/2)."""
    return torch.as_tensor(scores).to("cpu", torch.float64).reshape(-1) > 0.5
