"""Sweep-level report sections: the runs table, headline metrics against each swept field
(mean and spread over seeds), the truncation table per configuration, and the failures."""

from __future__ import annotations

import html
import json
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from noisescope.report.headline import HEADLINE_LABELS  # noqa: E402
from noisescope.report.html import Figure, Section, png_of, table_html  # noqa: E402
from noisescope.report.sections import NO_RAW, acc_cell, comparison_display  # noqa: E402

#: accuracy column of the runs table -> the summary's sample count it was measured on
ACC_N = {"final_test_acc": "n_test", "early_stop_test_acc": "n_test", "truncated_test_acc": "n_test",
         "final_noisy_train_obs_acc": "n_noisy_train_obs"}


def is_seed(key: str) -> bool:
    """Swept keys that only repeat an experiment (``train.seed``, ``noise.seed``, ``data.seed``)."""
    return key.split(".")[-1] == "seed"


def overview(table: pd.DataFrame, keys: list[str]) -> Section:
    sec = Section("sweep-runs", "Runs", "Every run of the sweep with its swept values, state and headline "
                  "numbers (clean test accuracy at the end and at early stopping, memorization of the "
                  "noisy labels, truncated-model accuracy).")
    cols = ["run", *keys, "state", "epoch", "final_test_acc", "early_stop_test_acc",
            "final_noisy_train_obs_acc", "truncated_test_acc", "effective_rank", "double_descent"]
    t = table[[c for c in cols if c in table.columns]].copy()
    for c, n in ACC_N.items():  # every accuracy with its Wilson interval and n
        if c in t:
            ns = table[n] if n in table else pd.Series(np.nan, index=table.index)
            t[c] = [acc_cell(v, k) for v, k in zip(t[c], ns, strict=True)]
    counts = table["state"].value_counts().to_dict()
    sec.notes.append(", ".join(f"{n} {s}" for s, n in counts.items()) + f" of {len(table)} runs.")
    sec.tables.append(table_html(t))
    return sec


def axis_order(values: list) -> list:
    """Distinct values of a swept field in plotting order: numbers ascending, JSON lists such
    as widths ``"[64,64]"`` by their numbers (not as text), anything else in first-seen order."""
    distinct = list(dict.fromkeys(values))

    def key(v):
        if isinstance(v, str):
            try:
                v = json.loads(v)
            except ValueError:
                return None
        if isinstance(v, bool):
            return None
        if isinstance(v, (int, float)):
            return (float(v),)
        if isinstance(v, list) and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
            return tuple(float(x) for x in v)
        return None

    keys = [key(v) for v in distinct]
    if all(k is not None for k in keys):
        return [v for _, v in sorted(zip(keys, distinct, strict=True), key=lambda kv: kv[0])]
    return distinct


def headline_figure(table: pd.DataFrame, x: str, others: list[str], metrics: list[str]) -> bytes:
    """One panel per headline metric against swept field ``x``; one line per combination of
    the ``others`` swept fields; points are means over seeds, bars their sample std."""
    xs = axis_order(list(pd.unique(table[x])))
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in xs)
    pos = {v: (float(v) if numeric else i) for i, v in enumerate(xs)}
    ncol = min(3, len(metrics))
    nrow = math.ceil(len(metrics) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.3 * ncol, 3.3 * nrow), squeeze=False)
    groups = table.groupby(others, sort=False, dropna=False) if others else [((), table)]
    for ax, metric in zip(axes.flat, metrics, strict=False):
        for gkey, g in groups:
            gkey = gkey if isinstance(gkey, tuple) else (gkey,)
            stats = g.groupby(x, sort=False)[metric].agg(["mean", "std", "count"])
            stats = stats.loc[[v for v in xs if v in stats.index]]
            label = ", ".join(f"{k}={v}" for k, v in zip(others, gkey, strict=True)) or None
            ax.errorbar([pos[v] for v in stats.index], stats["mean"], yerr=stats["std"].fillna(0.0),
                        marker="o", ms=4, capsize=3, lw=1.4, label=label)
        ax.set_title(HEADLINE_LABELS.get(metric, metric), fontsize=10)
        ax.set_xlabel(x)
        if not numeric:
            ax.set_xticks(list(pos.values()), [str(v) for v in xs], rotation=20, fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    if others:
        axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    return png_of(fig)


def headline_vs_params(table: pd.DataFrame, keys: list[str]) -> Section:
    sec = Section("sweep-headline", "Headline metrics against the swept fields",
                  "Each swept field on the x axis (e.g. noise rate, width, architecture), one line per "
                  "combination of the other swept fields; points are means over seeds, bars the sample "
                  "standard deviation.")
    done = table[table["state"] == "complete"]
    axes = [k for k in keys if not is_seed(k) and done[k].nunique() > 1] if len(done) else []
    metrics = [k for k in HEADLINE_LABELS if k in done and done[k].notna().any()]
    if not axes:
        sec.missing = ("no completed runs yet" if done.empty else
                       "the sweep varies no field other than seeds (add a [grid] axis such as noise.rate)")
        return sec
    for x in axes:
        others = [k for k in axes if k != x]
        sec.figures.append(Figure(headline_figure(done, x, others, metrics), f"headline metrics against {x}"))
    return sec


def truncation_by_config(frames: dict[str, pd.DataFrame], table: pd.DataFrame, keys: list[str]) -> Section:
    """Truncation vs early stopping for each configuration, spread over the seed axes."""
    sec = Section("sweep-truncation", "Truncation vs early stopping, over seeds",
                  "For each configuration (the swept fields other than seeds): noisy-validation and clean test "
                  "accuracy of the final model, early stopping, spectral truncation, the best tap's probe and the "
                  "raw-input reference: mean ± sample standard deviation and 95% t-interval over its seeds; "
                  "a configuration with one seed shows each accuracy with its Wilson interval and n (no spread).")
    config_keys = [k for k in keys if not is_seed(k)]
    done = table[table["run"].isin([r for r, f in frames.items() if len(f)])]
    if done.empty:
        sec.missing = "no run has dynamics metrics yet"
        return sec
    groups = done.groupby(config_keys, sort=False, dropna=False) if config_keys else [((), done)]
    for gkey, g in groups:
        gkey = gkey if isinstance(gkey, tuple) else (gkey,)
        label = ", ".join(f"{k}={v}" for k, v in zip(config_keys, gkey, strict=True)) or "all runs"
        t = comparison_display([frames[r] for r in g["run"] if len(frames[r])])
        sec.tables.append(f"<h4>{html.escape(label)}</h4>" + table_html(t))
    if not any("truncated_final" in set(f["method"]) for f in frames.values() if len(f)):
        sec.notes.append('Truncation rows are absent: add "spectral" to probe.probes.')
    elif not any("raw_input" in set(f["method"]) for f in frames.values() if len(f)):
        sec.notes.append(NO_RAW)
    return sec


def failures(table: pd.DataFrame, tracebacks: dict[str, str]) -> Section | None:
    bad = table[table["state"] == "failed"]
    if bad.empty:
        return None
    sec = Section("sweep-failures", "Failed runs", "Runs that raised; run the sweep again to retry them "
                  "(they resume from their last checkpoint).")
    for rec in bad.to_dict("records"):
        tb = tracebacks.get(rec["run"], "") or rec.get("error", "")
        tail = "\n".join(tb.strip().splitlines()[-12:])
        sec.tables.append(f"<h4>{html.escape(rec['run'])}: {html.escape(str(rec.get('error', '')))}</h4>"
                          f"<pre>{html.escape(tail)}</pre>")
    return sec


def numeric_columns(table: pd.DataFrame) -> list[str]:
    return [c for c in table.columns if np.issubdtype(table[c].dtype, np.number)]
