"""Evaluation forward passes: logits, loss and accuracy of a model on a set of inputs.

One definition of each: accuracy is the fraction of samples whose argmax logit equals the
label; loss is the mean softmax cross-entropy in nats. Both are NaN on an empty set.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from noisescope.data.base import NoisyDataset


@torch.no_grad()
def predict_logits(
    model: torch.nn.Module, x: torch.Tensor, batch_size: int = 2048, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Eval-mode logits (N, C) on the CPU, computed in batches; restores the model's mode."""
    was_training = model.training
    model.eval()
    try:
        out = [model(x[i : i + batch_size].to(device)).float().cpu() for i in range(0, len(x), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.empty(0, 0)


def loss_and_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """Mean cross-entropy (nats) and accuracy in [0, 1] of (N, C) logits; NaN for N = 0."""
    if len(labels) == 0:
        return float("nan"), float("nan")
    loss = F.cross_entropy(logits, labels.to(logits.device), reduction="mean").item()
    acc = (logits.argmax(1) == labels.to(logits.device)).float().mean().item()
    return loss, acc


def correct(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 2048,
            device: torch.device | str | None = None) -> torch.Tensor:
    """(N,) bool: the model's prediction equals ``y`` (for paired comparisons on one test set)."""
    device = device or next(model.parameters()).device
    logits = predict_logits(model, x, batch_size, device)
    return logits.argmax(1) == y.cpu() if len(y) else torch.zeros(0, dtype=torch.bool)


@torch.no_grad()
def model_accuracy(
    model: torch.nn.Module, data: NoisyDataset, batch_size: int = 2048, device: torch.device | str | None = None
) -> tuple[float, float]:
    """(noisy-validation accuracy against observed labels, clean test accuracy)."""
    device = device or next(model.parameters()).device
    val = loss_and_accuracy(predict_logits(model, data.x_val, batch_size, device), data.y_val)[1]
    test = loss_and_accuracy(predict_logits(model, data.x_test, batch_size, device), data.y_test)[1]
    return val, test
