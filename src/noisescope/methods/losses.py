"""Robust losses and label-correcting targets: GCE, symmetric cross-entropy, bootstrapping, ELR.

Every loss is a mean over the batch of a per-sample loss of logits ``z`` (B, C) and observed
labels ``y`` (B,); ``p = softmax(z)``. Definitions and papers: docs/definitions.md, "Noisy-label
training methods".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from noisescope.methods.base import Forward, Method
from noisescope.models.base import TappedModel


def _full(logits: torch.Tensor) -> torch.Tensor:
    """Logits in at least float32 (bf16 autocast outputs are upcast; float64 stays)."""
    return logits if logits.dtype == torch.float64 else logits.float()


def gce_loss(logits: torch.Tensor, y: torch.Tensor, q: float) -> torch.Tensor:
    """Generalized cross-entropy (Zhang & Sabuncu 2018): mean of ``(1 - p_y^q) / q``;
    ``q -> 0`` is cross-entropy, ``q = 1`` the mean absolute error (up to a factor 2)."""
    logp_y = F.log_softmax(_full(logits), 1).gather(1, y[:, None]).squeeze(1)
    # (1 - exp(q log p)) / q = -expm1(q log p) / q: exact as q -> 0 (-> -log p)
    return (-torch.expm1(q * logp_y) / q).mean()


def sce_loss(logits: torch.Tensor, y: torch.Tensor, alpha: float, beta: float,
             log_zero: float = -4.0) -> torch.Tensor:
    """Symmetric cross-entropy (Wang et al. 2019): ``alpha CE + beta RCE``, the reverse
    cross-entropy ``RCE = -sum_k p_k log q_k`` with ``log 0`` clamped to ``A = log_zero``, i.e.
    ``RCE = -A (1 - p_y)``."""
    ce = F.cross_entropy(_full(logits), y)
    p_y = F.softmax(_full(logits), 1).gather(1, y[:, None]).squeeze(1)
    return alpha * ce + beta * (-log_zero * (1 - p_y)).mean()


def bootstrap_loss(logits: torch.Tensor, y: torch.Tensor, beta: float, hard: bool) -> torch.Tensor:
    """Bootstrapping (Reed et al. 2015): cross-entropy against ``beta * onehot(y) + (1 - beta)
    * t`` with ``t = p`` (soft; not detached, as in the paper: an entropy term) or ``t =
    onehot(argmax p)`` (hard). ``beta = 1`` is cross-entropy."""
    logp = F.log_softmax(_full(logits), 1)
    onehot = F.one_hot(y, logits.shape[1]).to(logp.dtype)
    t = F.one_hot(logp.argmax(1), logits.shape[1]).to(logp.dtype) if hard else logp.exp()
    return -((beta * onehot + (1 - beta) * t) * logp).sum(1).mean()


class _LossMethod(Method):
    """A method whose batch loss is ``fn(logits, y, **options)`` (options cast to float), plus
    any fixed keyword ``fixed``."""

    fn = staticmethod(gce_loss)
    fixed: dict = {}

    def per_batch(self, logits: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return self.fn(logits, y, **{k: float(v) for k, v in self.options.items()}, **self.fixed)

    def loss(self, forward: Forward, xb: torch.Tensor, yb: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return self.per_batch(forward(xb), yb, idx)


class GCE(_LossMethod):
    """``train.method = "gce"``; options: ``q`` (0.7)."""

    name, fn = "gce", staticmethod(gce_loss)


class SCE(_LossMethod):
    """``train.method = "sce"``; options: ``alpha`` (0.1), ``beta`` (1.0), ``log_zero`` (-4)."""

    name, fn = "sce", staticmethod(sce_loss)


class BootstrapSoft(_LossMethod):
    """``train.method = "bootstrap_soft"``; options: ``beta`` (0.95)."""

    name, fn, fixed = "bootstrap_soft", staticmethod(bootstrap_loss), {"hard": False}


class BootstrapHard(_LossMethod):
    """``train.method = "bootstrap_hard"``; options: ``beta`` (0.8)."""

    name, fn, fixed = "bootstrap_hard", staticmethod(bootstrap_loss), {"hard": True}


class ELR(_LossMethod):
    """Early-learning regularization (Liu et al. 2020), ``train.method = "elr"``; options:
    ``lam`` (3.0) and ``beta`` (0.7), the paper's CIFAR-10 values.

    Each training row i keeps a target ``t_i`` (C,), a running average of the model's
    predictions: ``t_i <- beta t_i + (1 - beta) p_i / sum(p_i)`` (p clamped to [1e-4, 1 - 1e-4],
    detached) each time i is in a batch; loss = ``CE + lam * mean_i log(1 - <p_i, t_i>)``.
    ``lam = 0`` is cross-entropy. The targets live in memory only (a resumed run restarts them
    from zero).
    """

    name = "elr"

    def __init__(self, model: TappedModel, n_train: int, num_classes: int, options: dict) -> None:
        super().__init__(model, n_train, num_classes, options)
        self.targets = torch.zeros(n_train, num_classes)

    def per_batch(self, logits: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        lam, beta = float(self.options["lam"]), float(self.options["beta"])
        ce = F.cross_entropy(_full(logits), y)
        if lam == 0:
            return ce
        if self.targets.device != logits.device:
            self.targets = self.targets.to(logits.device)
        p = F.softmax(_full(logits), 1).clamp(1e-4, 1 - 1e-4)
        pd = p.detach()
        self.targets[idx] = beta * self.targets[idx] + (1 - beta) * pd / pd.sum(1, keepdim=True)
        reg = torch.log(1 - (self.targets[idx] * p).sum(1)).mean()
        return ce + lam * reg
