"""Segregation of label noise in the feature spectrum (docs/definitions.md, "Segregation").

* Noise share per component: rho_k = sum_{noisy i} z_ik^2 / sum_i z_ik^2, to compare with the
  noise rate (rho_k above the rate: component k is dominated by noisy samples).
* Tail fraction of a sample: ||P_tail delta_i||^2 / ||delta_i||^2 with delta_i = f_i minus the
  clean mean of its *true* class and P_tail the projector onto v_{d+1..D}; averaged over the
  clean and over the noisy training samples, for every d of a grid in one streaming pass.
* Segregation index = noisy tail fraction - clean tail fraction (at d*).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from noisescope.spectral.stats import FeatureStats, Spectrum


def noise_share(stats: FeatureStats, spectrum: Spectrum) -> torch.Tensor:
    """(D,) float64 rho_k; 0 where the component has no variance.

    ``stats`` needs ``noisy_second_moment=True`` and both label kinds in ``update``.
    """
    s_noisy = stats.noisy_centered_second_moment()
    v = spectrum.eigvecs
    num = ((s_noisy @ v) * v).sum(0)
    den = stats.n * spectrum.eigvals
    return torch.where(den > 0, num / den.clamp_min(1e-300), torch.zeros_like(den)).clamp(0.0, 1.0)


class TailFractionAccumulator:
    """Streams training features and accumulates mean tail fractions for every d of a grid.

    In the eigenbasis, delta_i V = z_i - (m_t - mu) V with z_i = (f_i - mu) V the sample's
    principal coordinates, so a caller that already projected the batch (the analysis does,
    once per tap) passes ``z`` and no second (B, D) x (D, D) product is taken.

    Args:
        spectrum: the training-feature spectrum (gives V).
        clean_means: (C, D) clean class means by true label (:meth:`FeatureStats.clean_class_means`).
        d_grid: sorted d values in [1, D].
    """

    def __init__(self, spectrum: Spectrum, clean_means: torch.Tensor, d_grid: np.ndarray) -> None:
        self.v = spectrum.eigvecs
        self.mean = spectrum.mean
        self.means = clean_means.to(self.v.device, torch.float64)
        self.z_means = (self.means - self.mean) @ self.v  # (C, D) class means' principal coordinates
        self.idx = torch.as_tensor(np.asarray(d_grid) - 1, device=self.v.device)
        self.d_max = int(np.max(d_grid))  # only the first d_max coordinates enter a tail fraction
        g = len(d_grid)
        self.sum_clean = torch.zeros(g, dtype=torch.float64, device=self.v.device)
        self.sum_noisy = torch.zeros_like(self.sum_clean)
        self.n_clean = 0
        self.n_noisy = 0

    @torch.no_grad()
    def update(self, feats: torch.Tensor, labels: torch.Tensor, true_labels: torch.Tensor,
               z: torch.Tensor | None = None) -> None:
        """feats (B, D); labels (B,) observed; true_labels (B,); z (B, D) the batch's principal
        coordinates ``spectrum.project(feats, d)`` (d >= the grid's largest) when already computed
        (any float dtype: float32 coordinates move a tail fraction by ~1e-7)."""
        dev = self.v.device
        t = true_labels.to(dev).long()
        noisy = labels.to(dev).long() != t
        delta = feats.to(dev, torch.float64) - self.means[t]
        norm2 = (delta * delta).sum(1)
        keep = norm2 > 0
        k = self.d_max
        if z is None:
            coords = delta[keep] @ self.v[:, :k]
        else:
            if z.shape[1] < k:
                raise ValueError(f"z has {z.shape[1]} coordinates; the d grid needs {k}")
            coords = z[keep, :k].to(dev, torch.float64) - self.z_means[t[keep], :k]
        norm2, noisy = norm2[keep], noisy[keep]
        head = coords.square_().cumsum(1).index_select(1, self.idx)  # (B, G)
        frac = (1.0 - head / norm2[:, None]).clamp(0.0, 1.0)
        self.sum_noisy += frac[noisy].sum(0)
        self.sum_clean += frac[~noisy].sum(0)
        self.n_noisy += int(noisy.sum())
        self.n_clean += int((~noisy).sum())

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """(clean, noisy) mean tail fraction per grid d; NaN for an empty group."""
        c = self.sum_clean.cpu().numpy() / self.n_clean if self.n_clean else np.full(len(self.idx), np.nan)
        n = self.sum_noisy.cpu().numpy() / self.n_noisy if self.n_noisy else np.full(len(self.idx), np.nan)
        return c, n


@dataclass
class Segregation:
    """Tail fractions at one d and their difference."""

    d: int
    clean_tail: float
    noisy_tail: float

    @property
    def index(self) -> float:
        return self.noisy_tail - self.clean_tail
