"""A rank-constrained training loss: the seeds' remedy (explicit rank constraints) as training."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from noisescope.methods.base import Forward, Method


def tail_share(features: torch.Tensor, k: int) -> torch.Tensor:
    """T_k (docs/definitions.md, "Spectral-tail penalty"; not the spectral probe's per-sample
    tail fraction): the share of the batch's centred feature variance beyond the top ``k``
    directions, ``sum_{i>k} s_i^2 / sum_i s_i^2`` over the singular values s of the centred (B, D)
    features; 0 when the features have rank <= k, in [0, 1]."""
    f = features.float()
    f = f - f.mean(0, keepdim=True)
    s2 = torch.linalg.svdvals(f) ** 2
    return s2[k:].sum() / s2.sum().clamp_min(1e-12)


class SpectralTail(Method):
    """``train.method = "rank_tail"``; options: ``k`` (directions kept; default C, the number of
    classes: a C-class head needs at most C - 1 directions between class means, plus one),
    ``lam`` (1.0: a unit weight on a share in [0, 1]; set a priori, not tuned).

    Loss = ``CE(h(phi(x)), y) + lam * tail_share(phi(x), k)`` on each batch: the penultimate
    features are pushed towards rank k during training (the post-hoc repairs truncate them
    after it). ``lam = 0`` is cross-entropy.
    """

    name = "rank_tail"

    def loss(self, forward: Forward, xb: torch.Tensor, yb: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        lam = float(self.options["lam"])
        feats = self.model.features(xb)
        ce = F.cross_entropy(self.model.head(feats), yb)
        if lam == 0:
            return ce
        return ce + lam * tail_share(feats, int(self.options["k"]))
