"""Dynamics figures (matplotlib, Agg backend: works without a display)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from noisescope.metrics import (
    dynamics_curve,  # noqa: E402
    save_figure,  # noqa: E402
)
from noisescope.probes.dynamics import summarize  # noqa: E402

CURVES = [
    ("clean_train", "clean train", "tab:blue", "-"),
    ("noisy_train_obs", "noisy train vs observed label (memorization)", "tab:red", "-"),
    ("noisy_train_true", "noisy train vs true label", "tab:orange", "--"),
    ("val", "noisy validation", "tab:gray", ":"),
    ("test", "clean test", "tab:green", "-"),
]


def plot_dynamics(metrics: pd.DataFrame, path: str | Path, title: str = "", log_x: bool = False) -> Path:
    """Accuracy and loss per subset over epochs; marks early stopping and double descent.

    Args:
        metrics: a run's tidy metrics table.
        path: output PNG.
        log_x: log epoch axis (epoch 0 is drawn at 0.5 so it stays visible).
    """
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for metric, ax in zip(("acc", "loss"), axes, strict=True):
        for subset, label, color, style in CURVES:
            c = dynamics_curve(metrics, subset, metric)
            if c.empty:
                continue
            x = c.index.to_numpy().astype(float)
            if log_x:
                x[x == 0] = 0.5
            ax.plot(x, c.to_numpy(), style, color=color, label=label, lw=1.8)
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy" if metric == "acc" else "cross-entropy (nats)")
        if log_x:
            ax.set_xscale("log")
        ax.grid(alpha=0.3)
    s = summarize(metrics)
    if "best_val_epoch" in s:
        axes[0].axvline(max(s["best_val_epoch"], 0.5 if log_x else 0), color="k", lw=0.8, ls="--",
                        label=f"early stop (best val, epoch {s['best_val_epoch']})")
    dd = s.get("double_descent")
    if dd:
        axes[0].axvspan(dd["peak_epoch"], dd["second_min_epoch"], color="tab:green", alpha=0.08,
                        label=f"re-generalization (+{dd['gain']:.3f})")
    axes[0].set_ylim(-0.02, 1.02)
    axes[0].legend(fontsize=8, loc="lower right" if not log_x else "best")
    fig.suptitle(title or "clean vs noisy learning dynamics")
    fig.tight_layout()
    return save_figure(fig, path)
