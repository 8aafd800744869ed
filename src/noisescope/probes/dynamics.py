"""Clean/noisy learning dynamics (MISSION.md "Dynamics") and epoch-wise double descent.

Subsets, all evaluated in eval mode:

================== ======================================= ===============
subset             samples                                 labels
================== ======================================= ===============
clean_train        training samples with m_i = 0           observed (= true)
noisy_train_obs    training samples with m_i = 1           observed (memorization)
noisy_train_true   training samples with m_i = 1           true
train              all training samples                    observed
val                noisy validation                        observed
test               clean test                              true
================== ======================================= ===============
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from noisescope.data.base import NoisyDataset
from noisescope.models.base import TappedModel
from noisescope.probes.base import ProbeContext, Row

SUBSETS = ("clean_train", "noisy_train_obs", "noisy_train_true", "train", "val", "test")


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
    """Mean cross-entropy (nats) and accuracy in [0, 1]; NaN for an empty subset."""
    if len(labels) == 0:
        return float("nan"), float("nan")
    loss = F.cross_entropy(logits, labels.to(logits.device), reduction="mean").item()
    acc = (logits.argmax(1) == labels.to(logits.device)).float().mean().item()
    return loss, acc


def subset_logits_labels(
    data: NoisyDataset, train_logits: torch.Tensor, val_logits: torch.Tensor, test_logits: torch.Tensor
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Subset name -> (logits, labels) per the table in the module docstring."""
    mask = data.noise_mask.cpu()
    y_obs, y_true = data.y_train.cpu(), data.y_train_true.cpu()
    return {
        "clean_train": (train_logits[~mask], y_obs[~mask]),
        "noisy_train_obs": (train_logits[mask], y_obs[mask]),
        "noisy_train_true": (train_logits[mask], y_true[mask]),
        "train": (train_logits, y_obs),
        "val": (val_logits, data.y_val.cpu()),
        "test": (test_logits, data.y_test.cpu()),
    }


@dataclass
class DynamicsProbe:
    """Loss and accuracy on every subset of the module docstring, at each probed epoch."""

    name: str = "dynamics"

    def __call__(self, model: TappedModel, data: NoisyDataset, ctx: ProbeContext) -> list[Row]:
        bs, dev = ctx.batch_size, ctx.device
        logits = {
            "train": predict_logits(model, data.x_train, bs, dev),
            "val": predict_logits(model, data.x_val, bs, dev),
            "test": predict_logits(model, data.x_test, bs, dev),
        }
        rows: list[Row] = []
        for subset, (lg, y) in subset_logits_labels(data, logits["train"], logits["val"], logits["test"]).items():
            loss, acc = loss_and_accuracy(lg, y)
            rows.append(Row(ctx.epoch, self.name, "loss", loss, subset=subset))
            rows.append(Row(ctx.epoch, self.name, "acc", acc, subset=subset))
        return rows


def smooth_curve(values: np.ndarray, window: int) -> np.ndarray:
    """Centered moving average over ``window`` points (shrinking at the ends); 1 = unchanged."""
    v = np.asarray(values, dtype=float)
    if window <= 1 or len(v) < 2:
        return v.copy()
    half = window // 2
    out = np.empty_like(v)
    for i in range(len(v)):
        out[i] = np.nanmean(v[max(0, i - half) : i + half + 1])
    return out


def detect_double_descent(
    epochs: np.ndarray | list[int],
    test_error: np.ndarray | list[float],
    threshold: float = 0.03,
    smooth: int = 5,
) -> dict[str, float] | None:
    """Epoch-wise double descent: a minimum, a later peak, and a later minimum lower than the
    peak, both dips at least ``threshold`` (error units, e.g. 0.03 = 3 points) below the peak.

    The curve is first smoothed with a centered moving average over ``smooth`` probe points, so
    epoch-to-epoch jitter of a few points is not mistaken for a descent (``smooth=1``: raw).
    Among all peaks that qualify, the one with the largest smaller-side dip is reported.

    Returns:
        None, or {"first_min_epoch", "peak_epoch", "second_min_epoch", "first_min_error",
        "peak_error", "second_min_error", "gain"}: errors of the smoothed curve, and
        gain = peak error - second minimum error (the re-generalization gain).
    """
    e = np.asarray(epochs)
    order = np.argsort(e)
    e = e[order]
    err = smooth_curve(np.asarray(test_error, dtype=float)[order], smooth)
    n = len(err)
    if n < 3:
        return None
    best: tuple[float, int, int, int] | None = None
    for j in range(1, n - 1):
        i = int(np.argmin(err[:j]))
        k = j + 1 + int(np.argmin(err[j + 1 :]))
        rise, fall = err[j] - err[i], err[j] - err[k]
        score = min(rise, fall)
        if rise >= threshold and fall >= threshold and (best is None or score > best[0]):
            best = (score, i, j, k)
    if best is None:
        return None
    _, i, j, k = best
    return {
        "first_min_epoch": int(e[i]),
        "peak_epoch": int(e[j]),
        "second_min_epoch": int(e[k]),
        "first_min_error": float(err[i]),
        "peak_error": float(err[j]),
        "second_min_error": float(err[k]),
        "gain": float(err[j] - err[k]),
    }
