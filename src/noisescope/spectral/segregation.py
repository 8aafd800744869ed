"""Segregation of label noise in the feature spectrum (docs/definitions.md, "Segregation").

* Noise share per component: rho_k = sum_{noisy i} z_ik^2 / sum_i z_ik^2 (from the noisy second
  moment, no projection of the training samples), to compare with the noise rate (rho_k above
  the rate: component k is dominated by noisy samples).
* Tail fraction of a sample: ||P_tail delta_i||^2 / ||delta_i||^2 with delta_i = f_i minus the
  clean mean of its *true* class and P_tail the projector onto v_{d+1..D}; averaged over the
  clean and over the noisy training samples, for every d of a grid in one streaming pass over
  the top max(grid) coordinates (1 - ||P_head delta_i||^2 / ||delta_i||^2 lies in [0, 1];
  summed without clipping, so a rounding residue of ~1e-16, or ~1e-7 from float32
  coordinates, is kept rather than cut).
* Segregation index = noisy tail fraction - clean tail fraction (at d*).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from noisescope.spectral.stats import FeatureStats, Spectrum


def resolved(eigvals: torch.Tensor) -> torch.Tensor:
    """(D,) bool: the components with variance, lambda_k > D eps lambda_1 (eps = float64
    resolution). Below that the eigendecomposition cannot tell lambda_k from 0 and v_k is any
    direction of the numerical null space, so a noise share there would be rounding noise."""
    eps = torch.finfo(torch.float64).eps
    return eigvals > len(eigvals) * eps * float(eigvals.max().clamp_min(0.0))


def _share(num: torch.Tensor, den: torch.Tensor, eigvals: torch.Tensor) -> torch.Tensor:
    ok = resolved(eigvals) & (den > 0)
    return torch.where(ok, num / den.clamp_min(1e-300), torch.zeros_like(den)).clamp(0.0, 1.0)


def noise_share(stats: FeatureStats, spectrum: Spectrum) -> torch.Tensor:
    """(D,) float64 rho_k = v_k' S_noisy v_k / (N lambda_k) (= sum_{noisy i} z_ik^2 / sum_i z_ik^2);
    0 where the component has no variance (see :func:`resolved`). One (D, D) x (D, D) product.

    ``stats`` needs ``noisy_second_moment=True`` and both label kinds in ``update``. S_noisy is
    summed in float64 whatever ``gram_dtype`` is (it is part of the Gram matrix: the noisy rows'
    product), so with float32 products only the clean rows' part of the covariance, and
    through it v_k and lambda_k, carries single-precision rounding.
    """
    s_noisy = stats.noisy_centered_second_moment()
    v = spectrum.eigvecs
    num = ((s_noisy @ v) * v).sum(0)
    return _share(num, stats.n * spectrum.eigvals, spectrum.eigvals)


class TailFractionAccumulator:
    """Streams training features and accumulates mean tail fractions for every d of a grid.

    |delta_i|^2 = |f_i - m_t|^2 is summed from the features in float64 (all D components);
    the head part sum_{k<=d} c_ik^2 needs only the first max(d_grid) principal coordinates:
    in the eigenbasis c_i = delta_i V = z_i - (m_t - mu) V with z_i = (f_i - mu) V, so a caller
    that already projected the batch (the analysis does) passes ``z`` and no second
    (B, D) x (D, d) product is taken.

    Args:
        spectrum: the training-feature spectrum (gives V).
        clean_means: (C, D) clean class means by true label (:meth:`FeatureStats.clean_class_means`).
        d_grid: sorted d values in [1, D].
    """

    def __init__(self, spectrum: Spectrum, clean_means: torch.Tensor, d_grid: np.ndarray) -> None:
        self.v = spectrum.eigvecs
        self.mean = spectrum.mean
        self.means = clean_means.to(self.v.device, torch.float64)
        self.d_max = int(np.max(d_grid))  # only the first d_max coordinates enter a tail fraction
        self.v_top = self.v[:, :self.d_max].contiguous()  # (D, d_max)
        self.z_means = (self.means - self.mean) @ self.v_top  # (C, d_max) class means' coordinates
        self.idx = torch.as_tensor(np.asarray(d_grid) - 1, device=self.v.device)
        g = len(d_grid)
        self.sum_clean = torch.zeros(g, dtype=torch.float64, device=self.v.device)
        self.sum_noisy = torch.zeros_like(self.sum_clean)
        self.n_clean = 0
        self.n_noisy = 0

    @torch.no_grad()
    def update(self, feats: torch.Tensor, labels: torch.Tensor, true_labels: torch.Tensor,
               z: torch.Tensor | None = None) -> None:
        """feats (B, D); labels (B,) observed; true_labels (B,); z (B, d) the batch's principal
        coordinates ``spectrum.project(feats, d)`` when already computed, d >= the grid's largest
        (any float dtype: float32 coordinates move a tail fraction by ~1e-7)."""
        dev = self.v.device
        t = true_labels.to(dev).long()
        noisy = labels.to(dev).long() != t
        k = self.d_max
        if z is not None and z.shape[1] < k:
            raise ValueError(f"z has {z.shape[1]} coordinates; the d grid needs {k}")
        delta = feats.to(dev, torch.float64) - self.means[t]
        norm2 = (delta * delta).sum(1)
        coords = delta @ self.v_top if z is None else z[:, :k].to(dev, torch.float64) - self.z_means[t]
        sq = coords.square_()
        keep = norm2 > 0  # a sample sitting on its class mean has no tail fraction
        inv = torch.where(keep, 1.0 / norm2.clamp_min(1e-300), 0.0)
        # the mean of 1 - sum_{k<=d} c_ik^2 / |delta_i|^2 over a group is linear in the samples:
        # weight each sample's squared coordinates by 1 / |delta_i|^2, sum the group, then take
        # the cumulative sum over k once per group instead of once per sample
        masks = torch.stack([noisy & keep, ~noisy & keep])  # (2, B)
        head = ((masks.to(torch.float64) * inv) @ sq).cumsum(1).index_select(1, self.idx)  # (2, G)
        n_noisy, n_clean = (int(m) for m in masks.sum(1))
        self.sum_noisy += n_noisy - head[0]
        self.sum_clean += n_clean - head[1]
        self.n_noisy += n_noisy
        self.n_clean += n_clean

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
