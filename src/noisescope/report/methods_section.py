"""The report section that puts training methods (``[train] method``, ``noisescope.methods``)
side by side: where each one keeps the noise, from what each run recorded (no model is loaded).

One figure, one line per method (the mean over its seeds at the epochs they share):

* memorization: the dynamics probe's accuracy on the noisy training samples against their
  observed (wrong) labels, over epochs;
* clean test accuracy over epochs;
* where the spectral probe ran: the mean tail fraction beyond d* of the noisy training samples
  (solid) and of the clean ones (dotted) at the deepest analysed tap (``probes.spectral``'s
  ``tail_fraction``): how much of the noise the method holds in the spectrum's tail.

One row of panels per noise setting. In a sweep whose runs use more than one ``train.method``
(:func:`sweep_methods_section`), the section comes after the runs table.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from noisescope.metrics import dynamics_curve, save_figure, select
from noisescope.report.html import Figure, Section

BLURB = ("Training methods side by side, from what each run recorded: how fast each fits the noisy "
         "training samples to their wrong labels (memorization), its clean test accuracy, and, where the "
         "spectral probe ran, how much of the noisy samples' feature energy lies in the tail beyond d* "
         "compared with the clean samples'. One line per method: the mean over its seeds.")


def _mean(curves: list[pd.Series]) -> pd.Series:
    """The mean of epoch-indexed curves at the epochs every one of them has."""
    curves = [c.dropna() for c in curves if len(c.dropna())]
    if not curves:
        return pd.Series(dtype=float)
    return pd.concat(curves, axis=1, join="inner").mean(axis=1).sort_index()


def tail_curve(m: pd.DataFrame, subset: str) -> pd.Series:
    """Epoch-indexed ``tail_fraction`` of ``subset`` (``clean_train`` / ``noisy_train_true``) at
    the deepest tap with that metric (the last in the run's tap order); empty without it."""
    sel = select(m, probe="spectral", metric="tail_fraction", subset=subset)
    if sel.empty:
        return pd.Series(dtype=float)
    taps = list(dict.fromkeys(select(m, probe="spectral", metric="tail_fraction")["tap"]))
    sel = sel[sel["tap"] == taps[-1]]
    return sel.groupby("epoch")["value"].mean().sort_index()


def method_curves(runs: Mapping[tuple[str, str], list[pd.DataFrame]]) -> pd.DataFrame:
    """Long table (method, noise, curve, epoch, value, n_runs) of the mean curves per (method,
    noise) key of ``runs`` (noise ``""``: shared by every noise, e.g. the oracle); ``curve``:
    ``memorized`` / ``test`` / ``tail_noisy`` / ``tail_clean``."""
    rows = []
    getters = {"memorized": lambda m: dynamics_curve(m, "noisy_train_obs"), "test": lambda m: dynamics_curve(m, "test"),
               "tail_noisy": lambda m: tail_curve(m, "noisy_train_true"),
               "tail_clean": lambda m: tail_curve(m, "clean_train")}
    for (method, noise), ms in runs.items():
        for name, get in getters.items():
            c = _mean([get(m) for m in ms])
            rows += [{"method": method, "noise": noise, "curve": name, "epoch": int(e), "value": float(v),
                      "n_runs": len(ms)} for e, v in c.items()]
    return pd.DataFrame(rows, columns=["method", "noise", "curve", "epoch", "value", "n_runs"])


def plot_methods(curves: pd.DataFrame, path: str | Path) -> Path:
    """The section's figure (module docstring) from :func:`method_curves`' table: one row of
    panels per noise (the ``""`` noise drawn in every row), one colour per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    has_tail = curves["curve"].isin(["tail_noisy", "tail_clean"]).any()
    noises = [n for n in dict.fromkeys(curves["noise"]) if n] or [""]
    ncol = 3 if has_tail else 2
    fig, axes = plt.subplots(len(noises), ncol, figsize=(5 * ncol, 3.8 * len(noises)), squeeze=False)
    methods = list(dict.fromkeys(curves["method"]))
    colors = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(methods)}
    styles = {m: "-" if i < 10 else "--" for i, m in enumerate(methods)}
    panels = [("memorized", "noisy train fit of observed labels"), ("test", "clean test accuracy")]
    for row, noise in zip(axes, noises, strict=True):
        here = curves[(curves["noise"] == noise) | (curves["noise"] == "")]
        for ax, (name, ylabel) in zip(row, panels, strict=False):
            for m in methods:
                c = here[(here["method"] == m) & (here["curve"] == name)]
                if len(c):
                    n = int(c["n_runs"].iloc[0])
                    ax.plot(c["epoch"], c["value"], styles[m], color=colors[m], lw=1.6,
                            label=f"{m} ({n} run{'s' if n > 1 else ''})")
            ax.set_ylabel(ylabel)
            ax.set_ylim(-0.02, 1.02)
        if has_tail:
            for m in methods:
                for name, style in (("tail_noisy", "-"), ("tail_clean", ":")):
                    c = here[(here["method"] == m) & (here["curve"] == name)]
                    if len(c):
                        row[2].plot(c["epoch"], c["value"], style, color=colors[m], lw=1.4)
            row[2].set_ylabel("tail fraction beyond d* (noisy -, clean :)")
        for ax in row:
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
            if noise:
                ax.set_title(f"{noise} noise", fontsize=10)
    # once, on the first test panel: every method has a test curve (the oracle no memorization)
    axes[0][1].legend(fontsize=7, loc="lower right")
    fig.suptitle("where each method keeps the noise")
    fig.tight_layout()
    return save_figure(fig, path)


def methods_section(runs: Mapping[tuple[str, str], list[pd.DataFrame]], scratch: Path,
                    n_test: int | None = None) -> Section:
    """The section for ``runs``: (method, noise) -> the metrics tables of its runs (seeds); noise
    ``""`` for runs shared by every noise (the oracle) or when there is one noise.
    ``n_test``: the clean test set's size, for the caption."""
    sec = Section("methods", "Training methods side by side", BLURB)
    curves = method_curves(runs)
    if curves.empty or not (curves["curve"] == "memorized").any():
        sec.missing = ("no memorization curve recorded: the runs need the dynamics probe "
                       "(probe.probes includes \"dynamics\") and noisy training samples")
        return sec
    path = plot_methods(curves, Path(scratch) / "methods.png")
    n = f", n={n_test} test samples" if n_test else ""
    cap = (f"Mean over each method's runs at the epochs they share{n}. Memorization: accuracy on the noisy "
           "training samples against their observed labels.")
    if (curves["curve"] == "tail_noisy").any():
        cap += " Right: tail fraction beyond d* at the deepest analysed tap (spectral probe)."
    else:
        cap += " No run had the spectral probe: no tail panel."
    sec.figures.append(Figure(Path(path).read_bytes(), cap))
    return sec


def sweep_methods_section(path: str | Path, runs: list[str], metrics: Mapping[str, pd.DataFrame],
                          scratch: Path) -> Section | None:
    """:func:`methods_section` over a sweep's runs when they use more than one ``train.method``
    (None otherwise). ``runs``: run ids; ``metrics``: run id -> metrics table."""
    from noisescope.metrics import curve
    from noisescope.runs.store import RunStore
    from noisescope.sweep.runner import run_dir

    info = {}
    for run_id in runs:
        if run_id not in metrics:
            continue
        cfg = RunStore(run_dir(path, run_id)).read_json("config.json") or {}
        train, noise = cfg.get("train", {}), cfg.get("noise", {})
        info[run_id] = (train.get("method", "ce"), f"{noise.get('model', '?')} {noise.get('rate', 0):g}")
    if len({m for m, _ in info.values()}) < 2:
        return None
    several_noises = len({nz for _, nz in info.values()}) > 1
    groups: dict[tuple[str, str], list[pd.DataFrame]] = {}
    for run_id, (method, noise) in info.items():
        groups.setdefault((method, noise if several_noises else ""), []).append(metrics[run_id])
    n = curve(next(iter(metrics.values())), "dynamics", "n", subset="test").dropna()
    return methods_section(groups, scratch, int(n.iloc[-1]) if len(n) else None)
