"""Clean/noisy learning dynamics, early stopping and epoch-wise double descent
(docs/definitions.md, "Dynamics").

Metrics per subset: ``loss`` (mean cross-entropy, nats), ``loss_sd`` (its per-sample standard
deviation), ``acc`` and ``n``.

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

from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from noisescope.data.base import NoisyDataset
from noisescope.detect.margins import assigned_margin
from noisescope.evaluate import loss_and_accuracy
from noisescope.evidence.descent import Z_CLEAR, descent_triple, test_curves
from noisescope.metrics import Row, dynamics_curve
from noisescope.models.base import TappedModel
from noisescope.probes.base import SPLITS, ProbeContext
from noisescope.probes.engine import run_probes

SUBSETS = ("clean_train", "noisy_train_obs", "noisy_train_true", "train", "val", "test")


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


class DynamicsProbe:
    """Loss, accuracy and sample count on every subset of the module docstring, at each
    probed epoch, from the shared pass's logits (no taps).

    Args:
        margins: also record every training sample's assigned-label margin
            h_y~ - max_{c != y~} h_c (observed labels; float32) as the per-sample record
            ``margins`` (columns epoch, index, margin): the training dynamics that AUM and
            first-fit label-issue scores read.
    """

    name = "dynamics"

    def __init__(self, margins: bool = True) -> None:
        self.margins = bool(margins)

    def start(self, model: TappedModel, data: NoisyDataset, ctx: ProbeContext) -> _DynamicsSession:
        return _DynamicsSession(self.name, data, ctx, self.margins)

    def __call__(self, model: TappedModel, data: NoisyDataset, ctx: ProbeContext) -> list[Row]:
        return run_probes([self], model, data, ctx)


class _DynamicsSession:
    taps: list[str] = []
    splits = SPLITS

    def __init__(self, name: str, data: NoisyDataset, ctx: ProbeContext, margins: bool) -> None:
        self.name, self.data, self.ctx, self.epoch, self.margins = name, data, ctx, ctx.epoch, margins
        self.parts: dict[str, list[torch.Tensor]] = {s: [] for s in SPLITS}

    def consume(self, split: str, sl: slice, logits: torch.Tensor | None, acts: dict) -> None:
        self.parts[split].append(logits.float().cpu())

    def end(self, split: str) -> None:
        pass

    def rows(self) -> list[Row]:
        logits = {s: torch.cat(p) if p else torch.empty(0, self.data.num_classes) for s, p in self.parts.items()}
        rows: list[Row] = []
        for subset, (lg, y) in subset_logits_labels(self.data, logits["train"], logits["val"], logits["test"]).items():
            loss, acc = loss_and_accuracy(lg, y)
            rows.append(Row(self.epoch, self.name, "loss", loss, subset=subset))
            rows.append(Row(self.epoch, self.name, "loss_sd", loss_sd(lg, y), subset=subset))
            rows.append(Row(self.epoch, self.name, "acc", acc, subset=subset))
            rows.append(Row(self.epoch, self.name, "n", len(y), subset=subset))
        if self.margins and len(logits["train"]):
            m = assigned_margin(logits["train"], self.data.y_train.cpu()).float().numpy()
            self.ctx.records["margins"] = pd.DataFrame({
                "epoch": np.full(len(m), self.epoch, dtype=np.int32),
                "index": np.arange(len(m), dtype=np.int32), "margin": m})
        return rows


def loss_sd(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Standard deviation (nats, ddof 1) of the per-sample cross-entropy of (N, C) logits; NaN
    for N < 2. With the mean loss it gives the loss's standard error sd / sqrt(N)."""
    if len(labels) < 2:
        return float("nan")
    return float(F.cross_entropy(logits.float(), labels.to(logits.device), reduction="none").std().item())


def detect_double_descent(
    epochs: np.ndarray | list[int],
    test_error: np.ndarray | list[float],
    threshold: float = 0.03,
    smooth: int = 5,
    se: np.ndarray | list[float] | None = None,
    z: float = 0.0,
    name: str = "error",
    first_descent: bool = False,
    hold: bool = False,
) -> dict[str, float] | None:
    """Epoch-wise double descent: a minimum, a later peak, and a later minimum lower than the
    peak, both dips at least ``threshold`` (curve units, e.g. 0.03 = 3 points of error) below
    the peak, and, when per-point standard errors ``se`` are given, at least ``z`` standard
    errors of that dip (:func:`noisescope.evidence.descent.descent_triple`, the one rule).

    The curve is first smoothed with a centered moving average over ``smooth`` probe points, so
    epoch-to-epoch jitter of a few points is not mistaken for a descent (``smooth=1``: raw).
    Among all peaks that qualify, the one with the largest smaller-side dip is reported.

    Returns:
        None, or {"first_min_epoch", "peak_epoch", "second_min_epoch", "first_min_<name>",
        "peak_<name>", "second_min_<name>", "gain"} (``name`` = "error" or "loss"): values of
        the smoothed curve, and gain = peak - second minimum (the re-generalization gain);
        with ``se`` also "drop", "rise", "drop_se", "rise_se", "fall_se". ``first_descent``:
        the curve must also descend from its first point (the untrained model) to the first
        minimum by as much; ``hold``: the fall from the peak to the last point must qualify
        too (``read_descent``'s rule uses both).
    """
    t = descent_triple(epochs, test_error, smooth, se, threshold, z, first_descent, hold)
    if t is None:
        return None
    out: dict[str, float] = {k: t[k] for k in ("first_min_epoch", "peak_epoch", "second_min_epoch")}
    for k in ("first_min", "peak", "second_min"):
        out[f"{k}_{name}"] = t[k]
    out["gain"] = t["fall"]
    if se is not None:
        out.update({k: t[k] for k in ("drop", "rise", "drop_se", "rise_se", "fall_se")})
    return out


def early_stop_update(best: tuple[int, float] | None, epoch: int, val_acc: float) -> tuple[int, float] | None:
    """Early stopping, the one rule: the epoch of the best noisy-validation accuracy, ties ->
    the earlier epoch. Returns the new best (epoch, accuracy) after seeing ``epoch``; NaN
    accuracies never win. Epochs must be seen in increasing order."""
    if np.isnan(val_acc):
        return best
    if best is None or val_acc > best[1]:
        return (int(epoch), float(val_acc))
    return best


def best_val_epoch(metrics: pd.DataFrame) -> tuple[int, float] | None:
    """Early stopping on a metrics table: (epoch, accuracy) of :func:`early_stop_update` over
    the dynamics probe's ``val`` accuracies; None when the dynamics probe has not run."""
    best = None
    for epoch, acc in dynamics_curve(metrics, "val").items():
        best = early_stop_update(best, int(epoch), float(acc))
    return best


def summarize(metrics: pd.DataFrame, threshold: float = 0.03, smooth: int = 5) -> dict[str, Any]:
    """Headline numbers of a run from its metrics table.

    final_*: accuracies at the last probed epoch; best_val_epoch: early-stopping epoch
    (:func:`best_val_epoch`); early_stop_test_acc: clean test accuracy there; n_test: test
    samples; double_descent / double_descent_loss: the clear double descents
    (:func:`noisescope.evidence.descent.read_descent`: drop, rise and fall >= max(``threshold``,
    2 SE))
    of the clean test error and of the clean test loss, in :func:`detect_double_descent`'s
    form, None when there is none (loss: absent when the run has no ``loss_sd`` rows).
    """
    out: dict[str, Any] = {}
    test = dynamics_curve(metrics, "test")
    if test.empty:
        return out
    last = int(test.index.max())
    out["epochs"] = last
    for subset in ("clean_train", "noisy_train_obs", "noisy_train_true", "val", "test"):
        curve = dynamics_curve(metrics, subset)
        if not curve.empty:
            out[f"final_{subset}_acc"] = float(curve.iloc[-1])
        n = dynamics_curve(metrics, subset, "n")
        if not n.empty:
            out[f"n_{subset}"] = int(n.iloc[-1])
    best = best_val_epoch(metrics)
    if best is not None:
        out["best_val_epoch"] = best[0]
        out["early_stop_test_acc"] = float(test.get(best[0], np.nan))
    out["best_test_acc"] = float(test.max())
    curves = test_curves(metrics)
    if "error" in curves:
        e, v, se = curves["error"]
        out["double_descent"] = detect_double_descent(e, v, threshold, smooth, se, Z_CLEAR, "error", True, True)
    else:  # no n rows: the fixed threshold alone
        out["double_descent"] = detect_double_descent(test.index.to_numpy(), 1 - test.to_numpy(), threshold, smooth)
    if "loss" in curves:
        e, v, se = curves["loss"]
        out["double_descent_loss"] = detect_double_descent(e, v, threshold, smooth, se, Z_CLEAR, "loss", True, True)
    return out
