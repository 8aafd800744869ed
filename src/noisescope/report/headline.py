"""Headline numbers of a run read from its metrics table (no model is reloaded).

* :func:`comparison_rows` -- final model vs early stopping vs spectral truncation, with the
  best tap and the raw-input reference, in the columns of :mod:`noisescope.spectral.compare`
  (method, epoch, tap, d, val_acc, test_acc, and the sample counts n_val, n_test of the
  dynamics ``n`` rows), so :func:`noisescope.spectral.compare.summarize_seeds` gives the spread
  over seeds. Here the truncation is read from the ``spectral`` probe's rows at the probed
  epochs (the ``noisescope truncate`` command recomputes it on saved checkpoints).
* :func:`headline` -- one flat dict per run for the sweep plots and tables.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from noisescope.metrics import dynamics_curve, select
from noisescope.probes.dynamics import best_val_epoch, summarize

COMPARISON_COLUMNS = ["method", "epoch", "tap", "d", "val_acc", "test_acc", "n_val", "n_test"]
INPUT_TAP = "input"  # the spectral probe's raw-input reference (noisescope.taps.INPUT_TAP)


def _rows(m: pd.DataFrame, probe: str, metric: str, tap: str | None = None,
          subset: str | None = None) -> pd.DataFrame:
    return select(m, probe=probe, metric=metric, tap=tap, subset=subset)


def _at(m: pd.DataFrame, probe: str, metric: str, epoch: int, tap: str | None = None,
        subset: str | None = None) -> float:
    sel = _rows(m, probe, metric, tap, subset)
    sel = sel[(sel["epoch"] == epoch) & (sel["index"] == -1)]
    return float(sel["value"].iloc[0]) if len(sel) else float("nan")


def feature_tap(m: pd.DataFrame) -> str | None:
    """The penultimate tap phi: the one the spectral probe truncated (it has ``trunc_acc`` rows)."""
    t = _rows(m, "spectral", "trunc_acc_d_star")
    if len(t):
        return str(t["tap"].iloc[0])
    e = _rows(m, "spectral", "effective_rank")
    e = e[e["tap"] != INPUT_TAP]
    return str(e["tap"].iloc[-1]) if len(e) else None


def comparison_rows(m: pd.DataFrame) -> pd.DataFrame:
    """Per-method accuracies of one run (rows only for what the metrics hold).

    final: the last probed epoch; early_stop: the best noisy-validation epoch;
    truncated_final / truncated_early: the original head on the top-d projection of phi at
    those epochs (d by noisy validation); probe_best_tap: the spectral linear probe at the
    last epoch on the best of *all* probed taps (tap and d chosen on noisy validation, ties ->
    the first tap, as ``spectral.compare.best_tap``); raw_input: the same probe on the raw
    inputs (the spectral probe's epoch-0 reference, tap ``input``): a repair that only matches
    it has not repaired the network. n_val / n_test: the last dynamics ``n`` of val / test.
    """
    rows: list[dict[str, Any]] = []
    test, val = dynamics_curve(m, "test"), dynamics_curve(m, "val")
    if test.empty:
        return pd.DataFrame(columns=COMPARISON_COLUMNS)
    nv, nt = dynamics_curve(m, "val", "n"), dynamics_curve(m, "test", "n")
    n = {"n_val": int(nv.iloc[-1]) if len(nv) else np.nan, "n_test": int(nt.iloc[-1]) if len(nt) else np.nan}
    last = int(test.index.max())
    tap = feature_tap(m) or ""
    rows.append(dict(method="final", epoch=last, tap=tap, d=np.nan,
                     val_acc=float(val.get(last, np.nan)), test_acc=float(test[last])))
    best_val = best_val_epoch(m)
    best = best_val[0] if best_val is not None else None
    if best is not None:
        rows.append(dict(method="early_stop", epoch=best, tap=tap, d=np.nan,
                         val_acc=float(val[best]), test_acc=float(test.get(best, np.nan))))
    if tap:
        for method, epoch in (("truncated_final", last), ("truncated_early", best)):
            if epoch is None:
                continue
            t = _at(m, "spectral", "trunc_acc_d_star", epoch, tap, "test")
            if not math.isnan(t):
                rows.append(dict(method=method, epoch=epoch, tap=tap,
                                 d=_at(m, "spectral", "trunc_d_star", epoch, tap),
                                 val_acc=_at(m, "spectral", "trunc_acc_d_star", epoch, tap, "val"),
                                 test_acc=t))
        pv = _rows(m, "spectral", "probe_acc_d_star", subset="val")
        pv = pv[(pv["epoch"] == last) & (pv["tap"] != INPUT_TAP)]
        if len(pv):
            best_tap = str(pv.loc[pv["value"].idxmax(), "tap"])
            rows.append(dict(method="probe_best_tap", epoch=last, tap=best_tap,
                             d=_at(m, "spectral", "d_star", last, best_tap),
                             val_acc=float(pv["value"].max()),
                             test_acc=_at(m, "spectral", "probe_acc_d_star", last, best_tap, "test")))
    ref = _rows(m, "spectral", "probe_acc_d_star", INPUT_TAP, "val")
    if len(ref):
        e = int(ref["epoch"].max())
        rows.append(dict(method="raw_input", epoch=-1, tap=INPUT_TAP, d=_at(m, "spectral", "d_star", e, INPUT_TAP),
                         val_acc=_at(m, "spectral", "probe_acc_d_star", e, INPUT_TAP, "val"),
                         test_acc=_at(m, "spectral", "probe_acc_d_star", e, INPUT_TAP, "test")))
    return pd.DataFrame([{**r, **n} for r in rows], columns=COMPARISON_COLUMNS)


HEADLINE_LABELS = {
    "final_test_acc": "final clean test acc",
    "early_stop_test_acc": "early-stop clean test acc",
    "truncated_test_acc": "truncated (final) clean test acc",
    "final_noisy_train_obs_acc": "memorized (noisy train, observed label)",
    "dd_gain": "double-descent gain",
    "effective_rank": "effective rank of phi (final)",
    "segregation": "segregation of phi (final)",
    "d_star": "d* of phi (final)",
    "separation_last": "separation, last tap (final)",
    "large_act_ratio": "max/median |a|, largest tap (final)",
}


def headline(m: pd.DataFrame, summary: dict[str, Any] | None = None) -> dict[str, float]:
    """Flat headline numbers of one run (NaN where the metrics lack them); keys in HEADLINE_LABELS."""
    s = summary if summary is not None else summarize(m)
    out: dict[str, float] = {k: float("nan") for k in HEADLINE_LABELS}
    for k in ("final_test_acc", "early_stop_test_acc", "final_noisy_train_obs_acc"):
        if s.get(k) is not None:
            out[k] = float(s[k])
    dd = s.get("double_descent")
    out["dd_gain"] = float(dd["gain"]) if dd else 0.0 if "double_descent" in s else float("nan")
    if m.empty:
        return out
    last = int(m["epoch"].max())
    tap = feature_tap(m)
    if tap:
        out["truncated_test_acc"] = _at(m, "spectral", "trunc_acc_d_star", last, tap, "test")
        out["effective_rank"] = _at(m, "spectral", "effective_rank", last, tap)
        out["segregation"] = _at(m, "spectral", "segregation", last, tap)
        out["d_star"] = _at(m, "spectral", "d_star", last, tap)
    sep = _rows(m, "signals", "separation", subset="by_true")
    sep = sep[(sep["epoch"] == last) & (sep["index"] == -1)]
    if len(sep):
        out["separation_last"] = float(sep["value"].iloc[-1])
    ratio = _rows(m, "signals", "large_act_ratio")
    ratio = ratio[(ratio["epoch"] == last) & np.isfinite(ratio["value"])]
    if len(ratio):
        out["large_act_ratio"] = float(ratio["value"].max())
    return out
