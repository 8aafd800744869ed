"""mixup (Zhang et al. 2018): train on convex combinations of pairs of samples and labels."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from noisescope.methods.base import Forward, Method
from noisescope.models.base import TappedModel


class Mixup(Method):
    """``train.method = "mixup"``; options: ``alpha`` (8.0: the paper's corrupted-label
    experiment, CIFAR-10, Table 2), ``seed`` (the mixing draws; default ``train.seed``).

    Per batch: ``lam ~ Beta(alpha, alpha)``, a random permutation pi of the batch,
    ``x~ = lam x + (1 - lam) x[pi]`` and loss ``lam CE(f(x~), y) + (1 - lam) CE(f(x~), y[pi])``.
    ``alpha -> 0`` gives ``lam`` in {0, 1}: cross-entropy on the batch (or on its permutation,
    the same mean).
    """

    name = "mixup"

    def __init__(self, model: TappedModel, n_train: int, num_classes: int, options: dict) -> None:
        super().__init__(model, n_train, num_classes, options)
        self.rng = np.random.default_rng(int(options["seed"]))

    def loss(self, forward: Forward, xb: torch.Tensor, yb: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        alpha = float(self.options["alpha"])
        lam = float(self.rng.beta(alpha, alpha))
        perm = torch.from_numpy(self.rng.permutation(len(yb))).to(yb.device)
        x = xb.float()
        logits = forward(lam * x + (1 - lam) * x[perm])
        return lam * F.cross_entropy(logits, yb) + (1 - lam) * F.cross_entropy(logits, yb[perm])
