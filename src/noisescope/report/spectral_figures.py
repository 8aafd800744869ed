"""Malignant Tail figures from a run's metrics table (matplotlib, Agg backend).

* :func:`plot_rank_risk`: probe (and truncation) accuracy against d, one curve per probed
  epoch, on noisy validation and clean test, with d* marked;
* :func:`plot_spectrum`: eigen-spectrum and noise share rho_k over epochs;
* :func:`plot_effective_rank`: effective rank (and participation ratio) per tap over epochs.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from noisescope.metrics import save_figure, select  # noqa: E402

PROBE = "spectral"


def _sel(metrics: pd.DataFrame, metric: str, tap: str | None = None, subset: str | None = None) -> pd.DataFrame:
    m = select(metrics, probe=PROBE, metric=metric, tap=tap, subset=subset)
    return m


def spectral_taps(metrics: pd.DataFrame) -> list[str]:
    """Taps that have spectral rows, in first-seen order."""
    return list(dict.fromkeys(_sel(metrics, "eigval")["tap"]))


def _epochs(frame: pd.DataFrame, max_curves: int) -> list[int]:
    ep = sorted(frame["epoch"].unique())
    if len(ep) <= max_curves:
        return [int(e) for e in ep]
    pick = np.unique(np.round(np.geomspace(1, len(ep), max_curves)).astype(int) - 1)
    return [int(ep[i]) for i in pick]


def _require(frame: pd.DataFrame, what: str) -> None:
    if frame.empty:
        raise ValueError(f"no spectral {what} rows in the metrics: run the 'spectral' probe first")


def plot_rank_risk(metrics: pd.DataFrame, tap: str, path: str | Path, max_curves: int = 12) -> Path:
    """Accuracy vs d over epochs (colour = epoch) for the probe and, if present, truncation."""
    kinds = [k for k in ("probe_acc", "trunc_acc") if not _sel(metrics, k, tap).empty]
    _require(_sel(metrics, "probe_acc", tap), "probe_acc")
    fig, axes = plt.subplots(len(kinds), 2, figsize=(12, 4.2 * len(kinds)), squeeze=False)
    epochs = _epochs(_sel(metrics, "probe_acc", tap), max_curves)
    cmap = plt.get_cmap("viridis")
    for r, kind in enumerate(kinds):
        for c, subset in enumerate(("val", "test")):
            ax = axes[r, c]
            frame = _sel(metrics, kind, tap, subset)
            for i, e in enumerate(epochs):
                cur = frame[frame["epoch"] == e].sort_values("index")
                if cur.empty:
                    continue
                color = cmap(i / max(1, len(epochs) - 1))
                ax.plot(cur["index"], cur["value"], color=color, lw=1.3, label=f"epoch {e}")
                dstar = _sel(metrics, "d_star" if kind == "probe_acc" else "trunc_d_star", tap)
                dstar = dstar[dstar["epoch"] == e]
                if not dstar.empty:
                    d = int(dstar["value"].iloc[0])
                    hit = cur[cur["index"] == d]
                    if not hit.empty:
                        ax.plot([d], [hit["value"].iloc[0]], "o", color=color, ms=4)
            ax.set_xscale("log")
            ax.set_xlabel("d (top principal components kept)")
            ax.set_ylabel("accuracy")
            label = "linear probe" if kind == "probe_acc" else "original head, truncated"
            ax.set_title(f"{tap}: {label} on {'noisy validation' if subset == 'val' else 'clean test'}")
            ax.grid(alpha=0.3)
        axes[r, 0].legend(fontsize=7, ncol=2)
    fig.suptitle("rank-risk curves (dots: d* chosen on noisy validation)")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_spectrum(
    metrics: pd.DataFrame, tap: str, path: str | Path, max_curves: int = 12, rel_floor: float = 1e-6
) -> Path:
    """Eigenvalues lambda_k (log-log) and noise share rho_k over epochs, with the noise rate.

    Components with lambda_k <= rel_floor * lambda_1 are numerically zero (e.g. dead ReLU
    units); they are left out of both panels, where rho_k would be 0/0 noise.
    """
    eig = _sel(metrics, "eigval", tap)
    _require(eig, "eigval")
    share = _sel(metrics, "noise_share", tap)
    fig, axes = plt.subplots(1, 2 if not share.empty else 1, figsize=(12, 4.5), squeeze=False)
    epochs = _epochs(eig, max_curves)
    cmap = plt.get_cmap("viridis")
    for i, e in enumerate(epochs):
        color = cmap(i / max(1, len(epochs) - 1))
        cur = eig[eig["epoch"] == e].sort_values("index")
        pos = cur[cur["value"] > rel_floor * cur["value"].max()]
        axes[0, 0].plot(pos["index"], pos["value"], color=color, lw=1.2, label=f"epoch {e}")
        if not share.empty:
            s = share[share["epoch"] == e].sort_values("index")
            s = s[s["index"].isin(pos["index"])]
            axes[0, 1].plot(s["index"], s["value"], color=color, lw=1.0)
    axes[0, 0].set(xscale="log", yscale="log", xlabel="component k", ylabel="eigenvalue lambda_k",
                   title=f"{tap}: eigen-spectrum")
    axes[0, 0].legend(fontsize=7, ncol=2)
    axes[0, 0].grid(alpha=0.3)
    if not share.empty:
        rate = _sel(metrics, "noise_rate", tap)
        if not rate.empty:
            axes[0, 1].axhline(float(rate["value"].iloc[-1]), color="k", ls="--", lw=0.8, label="noise rate")
            axes[0, 1].legend(fontsize=8)
        axes[0, 1].set(xscale="log", xlabel="component k", ylabel="noise share rho_k",
                       title=f"{tap}: share of each component's variance from noisy samples")
        axes[0, 1].set_ylim(-0.02, 1.02)
        axes[0, 1].grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_effective_rank(metrics: pd.DataFrame, path: str | Path) -> Path:
    """Effective rank and participation ratio of every tap over epochs."""
    er = _sel(metrics, "effective_rank")
    _require(er, "effective_rank")
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for metric, ax in zip(("effective_rank", "participation_ratio"), axes, strict=True):
        for tap in spectral_taps(metrics):
            cur = _sel(metrics, metric, tap).sort_values("epoch")
            ax.plot(cur["epoch"], cur["value"], marker=".", lw=1.3, label=tap)
        ax.set(xlabel="epoch", ylabel=metric.replace("_", " "))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("feature rank over training (covariance eigenvalues)")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_all(metrics: pd.DataFrame, out_dir: str | Path) -> list[Path]:
    """Every spectral figure for every tap into ``out_dir``; returns the written paths."""
    out_dir = Path(out_dir)
    paths = [plot_effective_rank(metrics, out_dir / "spectral_effective_rank.png")]
    for tap in spectral_taps(metrics):
        paths.append(plot_rank_risk(metrics, tap, out_dir / f"spectral_rank_risk_{tap}.png"))
        paths.append(plot_spectrum(metrics, tap, out_dir / f"spectral_spectrum_{tap}.png"))
    return paths
