"""The sections of one run's report, built from its metrics table alone.

Each builder takes the run's tidy metrics (``m``), writes its figures with the plotting
functions of the part that owns the metric (``noisescope.figures``, ``noisescope.report.signals_figures``,
``noisescope.report.spectral_figures``) into a scratch directory, and returns a :class:`Section`. When the
metrics lack a section's rows the section says so and how to get them, rather than vanishing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from noisescope.metrics import select
from noisescope.report.headline import comparison_rows
from noisescope.report.html import Figure, Section, table_html

NO_SIGNALS = ('no "signals" rows in this run\'s metrics: add "signals" to probe.probes, or compute them '
              "on the saved checkpoints with `noisescope probe RUN --probe signals`")
NO_SPECTRAL = ('no "spectral" rows in this run\'s metrics: add "spectral" to probe.probes, or compute '
               "them on the saved checkpoints with `noisescope probe RUN --probe spectral`")
NO_DYNAMICS = 'no "dynamics" rows in this run\'s metrics: add "dynamics" to probe.probes'


def acc_cell(value: float | None, n: float | None) -> str:
    """An accuracy with its 95% Wilson interval and n: ``0.712 [0.680, 0.742] n=840``."""
    from noisescope.evidence.intervals import Accuracy

    if value is None or pd.isna(value):
        return "-"
    if n is None or pd.isna(n) or int(n) <= 0:
        return f"{float(value):.3f} (n unknown)"
    a = Accuracy.from_value(min(1.0, max(0.0, float(value))), int(n))
    return f"{value:.3f} [{a.low:.3f}, {a.high:.3f}] n={int(n)}"


def n_of(m: pd.DataFrame, subset: str) -> int | None:
    """The dynamics probe's sample count n of ``subset`` (its last ``n`` row)."""
    from noisescope.metrics import dynamics_curve

    n = dynamics_curve(m, subset, "n").dropna()
    return int(n.iloc[-1]) if len(n) else None


def _has(m: pd.DataFrame, probe: str, metric: str | None = None) -> bool:
    return not select(m, probe=probe, metric=metric).empty


def _noise_note(m: pd.DataFrame) -> str:
    rate = select(m, probe="spectral", metric="noise_rate")["value"]
    return f"realized noise rate {float(rate.iloc[-1]):.3f}" if len(rate) else "no realized noise rate recorded"


def _fig(plot: Callable[[Path], Path], scratch: Path, name: str, caption: str) -> Figure:
    path = plot(scratch / f"{name}.png")
    return Figure(Path(path).read_bytes(), caption)


def dynamics(m: pd.DataFrame, summary: dict[str, Any], scratch: Path, title: str = "") -> Section:
    from noisescope.report.figures import plot_dynamics

    sec = Section("dynamics", "Learning dynamics and double descent",
                  "Accuracy and loss of clean training samples, noisy training samples against their "
                  "observed labels (memorization) and their true labels, noisy validation and clean test.")
    if not _has(m, "dynamics"):
        sec.missing = NO_DYNAMICS
        return sec
    last = int(m["epoch"].max())
    sec.figures.append(_fig(lambda p: plot_dynamics(m, p, title), scratch, "dynamics",
                            "four-subset dynamics (dashed line: early stopping on noisy validation)"))
    if last >= 50:
        sec.figures.append(_fig(lambda p: plot_dynamics(m, p, title, log_x=True), scratch, "dynamics_log",
                                "the same on a log epoch axis"))
    dd = summary.get("double_descent")
    if dd:
        sec.notes.append(
            f"Epoch-wise double descent detected: test error minimum at epoch {dd['first_min_epoch']} "
            f"({dd['first_min_error']:.3f}), peak at epoch {dd['peak_epoch']} ({dd['peak_error']:.3f}), "
            f"second minimum at epoch {dd['second_min_epoch']} ({dd['second_min_error']:.3f}): "
            f"re-generalization gain {dd['gain']:.3f}.")
    else:
        sec.notes.append("No epoch-wise double descent detected in the clean test error "
                         "(minimum, later peak, later lower minimum by more than the threshold).")
    keys = [("final_clean_train_acc", "final clean train acc", "clean_train"),
            ("final_noisy_train_obs_acc", "final memorization (noisy train vs observed label)", "noisy_train_obs"),
            ("final_val_acc", "final noisy validation acc", "val"),
            ("final_test_acc", "final clean test acc", "test"), ("best_val_epoch", "early-stopping epoch", None),
            ("early_stop_test_acc", "clean test acc at early stopping", "test"),
            ("best_test_acc", "best clean test acc (chosen on the test set: for reference only)", "test")]
    rows = []
    for k, label, subset in keys:
        v = summary.get(k)
        if v is None:
            continue
        if subset is None:
            rows.append((label, str(v)))
        else:
            n = summary.get(f"n_{subset}") or n_of(m, subset)
            rows.append((label, acc_cell(float(v), n)))
    if rows:
        sec.notes.append("Accuracies with their 95% Wilson interval and sample count n.")
        sec.tables.append(table_html(pd.DataFrame(rows, columns=["headline", "value"])))
    return sec


def _wide_table(table: pd.DataFrame, max_cols: int = 10) -> pd.DataFrame:
    """Keep at most ``max_cols`` epoch columns (evenly spaced, always the first and the last)."""
    cols = list(table.columns)
    if len(cols) > max_cols:
        keep = sorted(set(np.linspace(0, len(cols) - 1, max_cols).round().astype(int)))
        table = table[[cols[i] for i in keep]]
    out = table.copy()
    out.columns = [f"epoch {c}" for c in out.columns]
    return out.reset_index()


def separation(m: pd.DataFrame, scratch: Path, title: str = "") -> Section:
    sec = Section("separation", "Clean/noisy separation per layer",
                  "cos(S_clean,c, S_noisy,c) averaged over classes, per tap (rows) and probed epoch "
                  "(columns): lower = the noisy samples' mean activation has moved away from the clean one.")
    if not _has(m, "signals", "separation"):
        sec.missing = NO_SIGNALS
        return sec
    from noisescope.report.signals_figures import plot_separation_heatmap, signal_table

    sig = select(m, probe="signals")
    sep = select(sig, metric="separation", index=-1)
    if not np.isfinite(sep["value"].to_numpy()).any():
        sec.missing = (f"undefined: no class has enough noisy training samples ({_noise_note(m)}); "
                       "separation compares clean with noisy samples")
        return sec
    m = sig
    sec.figures.append(_fig(lambda p: plot_separation_heatmap(m, p, title), scratch, "separation",
                            "separation heatmap, noisy samples grouped by true (left) and observed (right) label"))
    sec.tables.append(table_html(_wide_table(signal_table(m, "separation", "by_true"))))
    return sec


def large_activation(m: pd.DataFrame, scratch: Path, title: str = "", threshold: float = 100.0) -> Section:
    sec = Section("large-activation", "Large activations",
                  "Per tap: the largest |activation| over the probe set and its ratio to the median "
                  "|activation| (flagged 'large' past the relative threshold), and whether that neuron "
                  "follows the input (held-out R² from input PCs) or the label (η²).")
    if not _has(m, "signals", "large_act_max"):
        sec.missing = NO_SIGNALS
        return sec
    from noisescope.evidence.rules import large_activation_flag, neuron_follows
    from noisescope.report.signals_figures import plot_large_activation

    m = select(m, probe="signals")

    sec.figures.append(_fig(lambda p: plot_large_activation(m, p, title), scratch, "large_activation",
                            "largest |activation| and max/median ratio per tap over epochs"))
    last = int(m["epoch"].max())
    metrics = ["large_act_max", "large_act_neuron", "large_act_median", "large_act_ratio", "large_act_flag",
               "large_act_tracked_neuron", "eta2_true", "eta2_obs", "r2_input"]
    cur = select(m, epoch=last, index=-1, metric=metrics)
    if len(cur):
        taps = list(dict.fromkeys(cur["tap"]))
        t = cur.pivot_table(index="tap", columns="metric", values="value", aggfunc="first").reindex(taps)
        t = t[[c for c in metrics if c in t.columns]].reset_index()
        t.columns.name = None
        for c in ("large_act_neuron", "large_act_tracked_neuron"):
            if c in t:
                t[c] = t[c].map(lambda v: "-" if v != v else str(int(v)))
        if "large_act_ratio" in t:
            # the ratio must clear the threshold by more than the median's error (evidence.rules)
            t["large_act_flag"] = t["large_act_ratio"].map(lambda r: large_activation_flag(float(r), threshold))
        if {"r2_input", "eta2_true"} <= set(t.columns):
            t["follows"] = [neuron_follows(r.r2_input, r.eta2_true, getattr(r, "eta2_obs", float("nan")))
                            for r in t.itertuples(index=False)]
        sec.notes.append(f"At the last probed epoch ({last}); 'large' when max/median clears {threshold:g} by more "
                         "than the median's relative error (2^-8), 'undecided' within it; the neuron follows the "
                         "input (R² ≥ η²), the label (η² > R²) or neither (both < 0.1).")
        sec.tables.append(table_html(t))
        big = t.loc[t["large_act_ratio"].replace(np.inf, np.nan).fillna(np.inf).idxmax()]
        if "follows" in t.columns:
            what = {"input": "the input", "label": "the label", "neither": "neither the input nor the label",
                    "undecided": "nothing measurable (undecided)"}[big["follows"]]
            sec.notes.append(f"Largest ratio at tap {big['tap']} (neuron {big['large_act_neuron']}, ratio "
                             f"{big['large_act_ratio']:.1f}, {big['large_act_flag']}); it follows {what}: "
                             f"R²(input) {big['r2_input']:.3f} vs η²(true) {big['eta2_true']:.3f}, "
                             f"η²(observed) {big.get('eta2_obs', float('nan')):.3f}.")
    return sec


def alignment(m: pd.DataFrame, scratch: Path, title: str = "") -> Section:
    sec = Section("alignment", "Test alignment",
                  "Mean cos(a(x), S_clean,ŷ) - cos(a(x), S_noisy,ŷ) over correctly and wrongly predicted "
                  "test samples: positive = aligned with the clean training signal.")
    if not _has(m, "signals", "alignment_correct"):
        sec.missing = NO_SIGNALS
        return sec
    from noisescope.report.signals_figures import plot_alignment

    sig = select(m, probe="signals")
    al = select(sig, metric=["alignment_correct", "alignment_wrong"])
    if not np.isfinite(al["value"].to_numpy()).any():
        sec.missing = (f"undefined: no noisy training samples to form S_noisy ({_noise_note(m)})")
        return sec
    m = sig

    sec.figures.append(_fig(lambda p: plot_alignment(m, p, title), scratch, "alignment",
                            "test alignment per tap (solid: correct, dashed: wrong predictions)"))
    return sec


def spectrum(m: pd.DataFrame, scratch: Path, early_stop: int | None = None) -> Section:
    sec = Section("spectrum", "Spectrum and effective rank",
                  "Covariance eigenvalues of each tap's training features over epochs, the share of each "
                  "component's variance that comes from noisy samples, and the effective rank "
                  "exp(entropy of λ/Σλ) (covariance eigenvalues, centred).")
    if not _has(m, "spectral", "eigval"):
        sec.missing = NO_SPECTRAL
        return sec
    from noisescope.report.spectral_figures import plot_effective_rank, plot_spectrum, spectral_taps

    m = select(m, probe="spectral")  # the plots filter repeatedly: hand them only their rows
    if _has(m, "spectral", "effective_rank"):
        sec.figures.append(_fig(lambda p: plot_effective_rank(m, p), scratch, "effective_rank",
                                "effective rank and participation ratio per tap over epochs"))
    for i, tap in enumerate(spectral_taps(m)):
        mt = select(m, tap=tap)
        sec.figures.append(_fig(lambda p, t=tap, mt=mt: plot_spectrum(mt, t, p), scratch, f"spectrum_{i}",
                                f"{tap}: eigen-spectrum and noise share over epochs"))
    table = rank_table(m, early_stop)
    if len(table):
        sec.notes.append("At initialization (epoch 0), at early stopping (the spectral epoch nearest the best "
                         "noisy-validation epoch) and at the final epoch.")
        sec.tables.append(table_html(table))
    return sec


def rank_table(m: pd.DataFrame, early_stop: int | None) -> pd.DataFrame:
    """Per tap and metric (effective rank, participation ratio, stable rank, segregation): the value
    at initialization, at early stopping and at the final spectral epoch (epochs in the headers)."""
    rows = []
    sel = select(m, probe="spectral", metric=["effective_rank", "participation_ratio", "stable_rank", "segregation"],
                 index=-1)
    epochs = sorted(int(e) for e in sel["epoch"].unique())
    if not epochs:
        return pd.DataFrame()
    first, last = epochs[0], epochs[-1]
    es = None if early_stop is None else min(epochs, key=lambda e: (abs(e - early_stop), e))
    cols = [(f"init (epoch {first})" if first == 0 else f"first (epoch {first})", first)]
    if es is not None:
        cols.append((f"early stopping (epoch {es})", es))
    cols.append((f"final (epoch {last})", last))
    for (metric, tap), g in sel.groupby(["metric", "tap"], sort=False):
        by = g.groupby("epoch")["value"].last()
        rows.append({"tap": tap, "metric": metric, **{name: float(by.get(e, np.nan)) for name, e in cols}})
    return pd.DataFrame(rows).sort_values(["metric", "tap"], kind="stable").reset_index(drop=True)


def rank_risk(m: pd.DataFrame, scratch: Path) -> Section:
    sec = Section("rank-risk", "Rank-risk curves",
                  "Accuracy of a linear read-out on the top-d principal directions (and of the original "
                  "head on the top-d projection) against d, per probed epoch, on noisy validation and "
                  "clean test; dots mark d* chosen on noisy validation.")
    if not _has(m, "spectral", "probe_acc"):
        sec.missing = NO_SPECTRAL
        return sec
    from noisescope.report.spectral_figures import plot_rank_risk, spectral_taps

    m = select(m, probe="spectral")
    taps = [t for t in spectral_taps(m) if _has(select(m, tap=t), "spectral", "probe_acc")]
    for i, tap in enumerate(taps):
        mt = select(m, tap=tap)
        sec.figures.append(_fig(lambda p, t=tap, mt=mt: plot_rank_risk(mt, t, p), scratch, f"rank_risk_{i}",
                                f"{tap}: rank-risk curves over epochs"))
    return sec


METHOD_LABELS = {
    "final": "final model",
    "early_stop": "early stopping (best noisy val)",
    "truncated_final": "truncated final model",
    "truncated_early": "truncated early-stopped model",
    "probe_best_tap": "spectral probe, best of all taps (tap and d on noisy val)",
    "raw_input": "raw-input reference (the probe on the inputs: no network)",
}
NO_RAW = ("The raw-input reference is not measured: the spectral probe adds it at epoch 0 "
          "(`noisescope probe RUN --epochs 0`), `noisescope truncate RUN` prints it.")


D_FORMAT = {"d_mean": "{:.1f}", "n_seeds": "{:.0f}"}


def comparison_table(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Mean and spread over seeds of each method (see spectral.compare.summarize_seeds)."""
    from noisescope.spectral.compare import summarize_seeds

    t = summarize_seeds(frames)
    t.insert(1, "what", [METHOD_LABELS.get(x, x) for x in t["method"]])
    return t


def comparison_display(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """The truncation table as text: with one seed each accuracy with its 95% Wilson interval and
    n (no spread: a single seed shows none); with several, mean ± sample standard deviation and
    the 95% t-interval of the mean over seeds (``evidence.aggregate_seeds``)."""
    from noisescope.evidence.intervals import UNIT, aggregate_seeds

    df = pd.concat(frames, ignore_index=True)
    out = []
    for method, g in df.groupby("method", sort=False):
        row: dict[str, object] = {"method": method, "what": METHOD_LABELS.get(method, method)}
        k = len(g)
        if k == 1:
            r = g.iloc[0]
            row.update(epoch="-" if r["epoch"] != r["epoch"] or int(r["epoch"]) < 0 else str(int(r["epoch"])),
                       d="-" if r["d"] != r["d"] else f"{r['d']:.0f}",
                       **{"noisy val acc": acc_cell(r["val_acc"], r.get("n_val")),
                          "clean test acc": acc_cell(r["test_acc"], r.get("n_test"))})
        else:
            row.update(seeds=str(k), d="-" if g["d"].isna().all() else f"{g['d'].mean():.1f}")
            for col, name in (("val_acc", "noisy val acc"), ("test_acc", "clean test acc")):
                s = aggregate_seeds(g[col].to_numpy(float), domain=UNIT)
                row[name] = "-" if s.n_seeds == 0 else (
                    f"{s.mean:.3f} (1 seed: no spread)" if s.n_seeds == 1 else
                    f"{s.mean:.3f} ± {s.std:.3f} (sd, {s.n_seeds} seeds; 95% t [{s.low:.3f}, {s.high:.3f}])")
        out.append(row)
    return pd.DataFrame(out).fillna("-")


def truncation(frames: list[pd.DataFrame], note: str = "") -> Section:
    """The truncation vs early stopping table for one run (one frame) or a group of seeds."""
    sec = Section("truncation", "Truncation vs early stopping",
                  "Noisy-validation and clean test accuracy of the final model, of early stopping, of explicit "
                  "spectral truncation (original head on the top-d projection of φ, d chosen on noisy validation), "
                  "of the spectral probe on the best tap, and of the raw-input reference; one run: each accuracy "
                  "with its 95% Wilson interval and n; several seeds: mean ± sample standard deviation.")
    frames = [f for f in frames if len(f)]
    if not frames:
        sec.missing = NO_DYNAMICS
        return sec
    methods = set(pd.concat(frames)["method"])
    if "truncated_final" not in methods:
        sec.notes.append("Truncation rows are absent: " + NO_SPECTRAL + ".")
    if "raw_input" not in methods:
        sec.notes.append(NO_RAW)
    if note:
        sec.notes.append(note)
    sec.tables.append(table_html(comparison_display(frames)))
    return sec


def run_sections(m: pd.DataFrame, summary: dict[str, Any], scratch: Path, title: str = "",
                 progress: Callable[[str], None] | None = None, claims: list | None = None,
                 claims_source: str = "") -> list[Section]:
    """Every section of one run, in report order: the claims scorecard first (when ``claims``
    are given, see ``report.scorecard_section``)."""
    from noisescope.probes.dynamics import best_val_epoch

    scratch.mkdir(parents=True, exist_ok=True)
    best = best_val_epoch(m)
    steps: list[tuple[str, Callable[[], Section]]] = []
    if claims is not None:
        from noisescope.report.scorecard_section import run_scorecard

        steps.append(("scorecard", lambda: run_scorecard(claims, claims_source)))
    steps += [
        ("dynamics", lambda: dynamics(m, summary, scratch, title)),
        ("separation", lambda: separation(m, scratch, title)),
        ("large activations", lambda: large_activation(m, scratch, title)),
        ("test alignment", lambda: alignment(m, scratch, title)),
        ("spectrum", lambda: spectrum(m, scratch, None if best is None else best[0])),
        ("rank-risk", lambda: rank_risk(m, scratch)),
        ("truncation", lambda: truncation([comparison_rows(m)],
                                          "One run: a single seed shows no spread; the spread over seeds needs "
                                          "a sweep over train.seed.")),
    ]
    out = []
    for name, build in steps:
        try:
            out.append(build())
        except Exception as exc:  # a figure that cannot be drawn must not sink the whole report
            out.append(Section(name.replace(" ", "-"), name.capitalize(),
                               missing=f"could not be built: {type(exc).__name__}: {exc}"))
        if progress:
            progress(name)
    return out


def finite(v: float) -> bool:
    return v is not None and not (isinstance(v, float) and (math.isnan(v) or math.isinf(v)))
