"""Margin split over the spectrum: is a sample's label carried by the top components or the tail?

From :mod:`noisescope.spectral.attribution`: with a linear head on features whose spectrum is
(mu, V), the margin of the observed label y over the full model's strongest competitor c splits
exactly into

    m_i = h_i(d) + t_i(d),   h_i(d) = (W mu + b)_y - (W mu + b)_c + sum_{k<=d} contrib_ik,
                             t_i(d) = sum_{k>d} contrib_ik,

h the margin that survives truncation to the top d components (against the same competitor)
and t the part carried by the tail d+1..D. Memorized noisy labels are fitted through the tail
(t > 0) while the top components reject them (h <= 0).

* tail margin score   s_i = max(t_i, 0) - h_i   (logit units).
  When both parts are positive, s_i = m_i (2 rho_i - 1) with rho_i = t_i / m_i the tail's
  share of the positive margin: s_i > 0 iff the tail carries more than half of it. When
  h_i <= 0 the top-d components do not support the label and s_i >= |h_i|, larger still when
  the tail makes up for it (memorization). Flag: s_i > 0.
* truncated margin score   s_i = -h_i: minus the margin after truncation to d. Flag: h_i < 0.
"""

from __future__ import annotations

import torch

from noisescope.detect._util import Array, as_features, as_labels, check_d, out
from noisescope.spectral.attribution import MarginAttribution, margin_attribution
from noisescope.spectral.stats import Spectrum


def _tail(head: torch.Tensor, tail: torch.Tensor) -> torch.Tensor:
    return tail.clamp_min(0.0) - head


def tail_margin_score(attribution: MarginAttribution, d: int) -> torch.Tensor:
    """max(t_i(d), 0) - h_i(d) from a :class:`MarginAttribution` (see the module doc).

    Returns:
        (N,) float64 logit units, higher = label carried by the tail rather than the top d
        components (or not supported by them) = more likely mislabeled.
    """
    d = check_d(d, attribution.contrib.shape[1])
    return out(_tail(attribution.head_margin(d), attribution.tail_margin(d)))


def truncated_margin_score(attribution: MarginAttribution, d: int) -> torch.Tensor:
    """-h_i(d): minus the observed label's margin after truncation to the top d components."""
    d = check_d(d, attribution.contrib.shape[1])
    return out(-attribution.head_margin(d))


def margin_split(
    feats: Array,
    spectrum: Spectrum,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    labels: Array,
    d: int,
    batch_size: int = 4096,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(h(d), t(d)), each (N,) float64, computed batch by batch: the same numbers as
    ``margin_attribution(...).head_margin(d)`` / ``.tail_margin(d)`` without holding the
    (N, D) contributions."""
    x = as_features(feats)
    y = as_labels(labels, len(x))
    d = check_d(d, spectrum.dim)
    heads, tails = [], []
    for s in range(0, len(x), batch_size):
        att = margin_attribution(x[s : s + batch_size], spectrum, weight, bias, y[s : s + batch_size])
        heads.append(att.head_margin(d))
        tails.append(att.tail_margin(d))
    return torch.cat(heads), torch.cat(tails)


def tail_margin_from_split(head: torch.Tensor, tail: torch.Tensor) -> torch.Tensor:
    """The tail margin score from :func:`margin_split`'s (h, t)."""
    return out(_tail(head, tail))


def tail_margin_issues(scores: Array) -> torch.Tensor:
    """(N,) bool: tail margin score > 0 (or truncated margin score > 0, i.e. h < 0)."""
    return torch.as_tensor(scores).to("cpu", torch.float64).reshape(-1) > 0
