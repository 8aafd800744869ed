"""Figures of the internal signals from a run's tidy metrics table (matplotlib, Agg backend).

* :func:`plot_separation_heatmap` -- cos(S_clean, S_noisy) class average, tap x epoch;
* :func:`plot_large_activation` -- max |a| and max/median per tap over epochs;
* :func:`plot_alignment` -- mean test alignment of correct vs wrong predictions over epochs;
* :func:`plot_signals` -- all of them (and the lead's dynamics curves on a log epoch axis).

Tables used by the figures (:func:`signal_table`) are also what reports print.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from noisescope.metrics import save_figure, select  # noqa: E402


def _signals(metrics: pd.DataFrame) -> pd.DataFrame:
    df = select(metrics, probe="signals")
    if df.empty:
        raise ValueError("no 'signals' rows in these metrics; run with probe.probes including "
                         "\"signals\" or replay it with `noisescope probe RUN --probe signals`")
    return df


def tap_order(metrics: pd.DataFrame) -> list[str]:
    """Taps in the order the probe wrote them (shallow to deep)."""
    return list(dict.fromkeys(_signals(metrics)["tap"].tolist()))


def signal_table(metrics: pd.DataFrame, metric: str, subset: str | None = None,
                 index: int = -1) -> pd.DataFrame:
    """One signals metric as a (tap x epoch) table, taps shallow to deep.

    Args:
        metrics: tidy metrics (any probes; only ``probe == "signals"`` rows are read).
        metric: e.g. ``"separation"``, ``"large_act_ratio"``, ``"alignment_wrong"``.
        subset: restrict to one subset (``"by_true"``, ``"by_observed"``, ...).
        index: the ``index`` column to keep (-1 = scalars and class averages).
    """
    df = _signals(metrics)
    sel = select(df, metric=metric, index=index, subset=subset)
    if sel.empty:
        raise ValueError(f"no signals rows for metric={metric!r} subset={subset!r}")
    table = sel.pivot_table(index="tap", columns="epoch", values="value", aggfunc="first")
    return table.reindex([t for t in tap_order(metrics) if t in table.index])


def _log_epochs(epochs: np.ndarray) -> np.ndarray:
    x = epochs.astype(float)
    x[x == 0] = 0.5  # epoch 0 (untrained) stays visible on a log axis
    return x


def plot_separation_heatmap(metrics: pd.DataFrame, path: str | Path, title: str = "") -> Path:
    """Class-averaged separation per tap (rows) and probed epoch (columns), by true and by
    observed label side by side. Darker = clean and noisy means further apart."""
    fig, axes = plt.subplots(1, 2, figsize=(13, 0.5 * len(tap_order(metrics)) + 2.5))
    for ax, subset in zip(axes, ("by_true", "by_observed"), strict=True):
        table = signal_table(metrics, "separation", subset)
        im = ax.imshow(table.to_numpy(), aspect="auto", cmap="viridis",
                       vmin=np.nanmin(table.to_numpy()), vmax=1.0, interpolation="nearest")
        ax.set_yticks(range(len(table.index)), table.index)
        cols = list(table.columns)
        step = max(1, len(cols) // 12)
        ax.set_xticks(range(0, len(cols), step), [str(c) for c in cols[::step]], rotation=60)
        ax.set_xlabel("epoch (probed)")
        ax.set_title(f"cos(S_clean, S_noisy), noisy grouped {subset.replace('_', ' ')}")
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle(title or "clean/noisy separation per layer")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_large_activation(metrics: pd.DataFrame, path: str | Path, title: str = "",
                          threshold: float = 100.0) -> Path:
    """Largest |activation| and its ratio to the median |activation| per tap over epochs."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, metric, label in ((axes[0], "large_act_max", "max |a|"),
                              (axes[1], "large_act_ratio", "max |a| / median |a|")):
        table = signal_table(metrics, metric)
        x = _log_epochs(table.columns.to_numpy())
        for tap, row in table.iterrows():
            ax.plot(x, row.to_numpy(), marker=".", lw=1.5, label=str(tap))
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[1].axhline(threshold, color="k", ls="--", lw=0.8, label=f"threshold {threshold:g}")
    axes[1].legend(fontsize=8)
    fig.suptitle(title or "large activation per layer")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_alignment(metrics: pd.DataFrame, path: str | Path, title: str = "") -> Path:
    """Mean test alignment cos(a, S_clean) - cos(a, S_noisy) over epochs, per tap; solid =
    correctly predicted test samples, dashed = wrong ones."""
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    good = signal_table(metrics, "alignment_correct")
    bad = signal_table(metrics, "alignment_wrong")
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, tap in enumerate(good.index):
        col = colors[i % len(colors)]
        ax.plot(_log_epochs(good.columns.to_numpy()), good.loc[tap].to_numpy(), "-", color=col,
                label=f"{tap} correct")
        ax.plot(_log_epochs(bad.columns.to_numpy()), bad.loc[tap].to_numpy(), "--", color=col,
                label=f"{tap} wrong")
    ax.axhline(0.0, color="k", lw=0.6)
    ax.set_xscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("cos(a, S_clean) - cos(a, S_noisy)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.suptitle(title or "test alignment (solid: correct, dashed: wrong predictions)")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_signals(metrics: pd.DataFrame, out_dir: str | Path, title: str = "",
                 threshold: float = 100.0) -> list[Path]:
    """Every internal-signal figure (and the dynamics curves on a log epoch axis when the
    metrics hold them) into ``out_dir``; returns the written paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [plot_separation_heatmap(metrics, out / "signals_separation.png", title)]
    paths.append(plot_large_activation(metrics, out / "signals_large_activation.png", title,
                                       threshold))
    if not select(metrics, metric="alignment_correct").empty:
        paths.append(plot_alignment(metrics, out / "signals_alignment.png", title))
    if not select(metrics, probe="dynamics").empty:
        from noisescope.report.figures import plot_dynamics

        paths.append(plot_dynamics(metrics, out / "dynamics_log.png", title, log_x=True))
    return paths
