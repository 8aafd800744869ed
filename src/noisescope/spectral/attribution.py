"""Margin attribution: where in the spectrum a sample's margin for its observed label lives.

For a linear head h(f) = W f + b on tap features f with spectrum (mu, V), the logits are

    h(f) = (W mu + b) + sum_k z_k (W v_k),   z = (f - mu) V,

so the margin of observed label y over the strongest competitor c (the highest other logit),
m = h_y - h_c, is exactly a constant plus one term per principal component:

    m = (W mu + b)_y - (W mu + b)_c + sum_k z_k (w_y - w_c) . v_k.

``contrib[i, k]`` is component k's term for sample i; ``contrib.sum(1) + constant == margin``.
A memorized noisy label whose positive margin is carried by tail components (large k) is
removed by truncation; one carried by the top components is not.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from noisescope.spectral.stats import Spectrum


@dataclass
class MarginAttribution:
    """Per-sample margin split over principal components (all float64 on the CPU).

    Attributes:
        contrib: (N, D) term of component k (eigenvalues descending) in sample i's margin.
        constant: (N,) (W mu + b)_y - (W mu + b)_c.
        competitor: (N,) int64 strongest other class c.
        margin: (N,) h_y - h_c (logit units).
    """

    contrib: torch.Tensor
    constant: torch.Tensor
    competitor: torch.Tensor
    margin: torch.Tensor

    def tail_margin(self, d: int) -> torch.Tensor:
        """(N,) the part of the margin carried by components d+1..D."""
        return self.contrib[:, d:].sum(1)

    def head_margin(self, d: int) -> torch.Tensor:
        """(N,) constant plus the part carried by components 1..d (the margin after truncation
        to d, measured against the same competitor)."""
        return self.constant + self.contrib[:, :d].sum(1)


@torch.no_grad()
def margin_attribution(
    feats: torch.Tensor,
    spectrum: Spectrum,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    labels: torch.Tensor,
    z: torch.Tensor | None = None,
) -> MarginAttribution:
    """Split each sample's margin for ``labels`` over the principal components of ``spectrum``.

    Args:
        feats: (N, D) tap features (the head's input).
        spectrum: mean (D,) and eigenvectors (D, D) of the training features.
        weight: (C, D) head weight; bias: (C,) or None.
        labels: (N,) int64 labels whose margin is attributed (observed labels for memorization).
        z: the float64 principal coordinates ``spectrum.project(feats)`` when already computed.
    """
    if feats.ndim != 2 or feats.shape[1] != spectrum.dim:
        raise ValueError(f"feats must be (N, {spectrum.dim}), got {tuple(feats.shape)}")
    if z is not None and (z.shape != feats.shape or z.dtype != torch.float64):
        raise ValueError(f"z must be the (N, {spectrum.dim}) float64 projection of feats")
    dev = spectrum.eigvecs.device
    w = weight.detach().to(dev, torch.float64)
    b = torch.zeros(w.shape[0], dtype=torch.float64, device=dev) if bias is None else \
        bias.detach().to(dev, torch.float64)
    if w.shape[1] != spectrum.dim:
        raise ValueError(f"weight must be (C, {spectrum.dim}), got {tuple(w.shape)}")
    y = labels.to(dev).long().reshape(-1)
    if len(y) != len(feats):
        raise ValueError(f"labels has {len(y)} entries for {len(feats)} samples")
    z = spectrum.project(feats, dtype=torch.float64) if z is None else z.to(dev)  # (N, D)
    wv = w @ spectrum.eigvecs  # (C, D): row c = (w_c . v_k)_k
    const = w @ spectrum.mean + b  # (C,)
    logits = const + z @ wv.T
    rival = logits.clone()
    rival[torch.arange(len(y), device=dev), y] = -torch.inf
    comp = rival.argmax(1)
    diff = wv[y] - wv[comp]  # (N, D)
    contrib = z * diff
    constant = const[y] - const[comp]
    margin = logits.gather(1, y[:, None]).squeeze(1) - logits.gather(1, comp[:, None]).squeeze(1)
    return MarginAttribution(contrib.cpu(), constant.cpu(), comp.cpu(), margin.cpu())
