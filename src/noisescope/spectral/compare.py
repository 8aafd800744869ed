"""The comparison users need: final vs early stopping vs spectral truncation, with references.

For one trained run (one seed) :func:`compare_truncation` returns one row per method:

================= ===================================================================
method            what
================= ===================================================================
final             the converged model as trained
truncated_final   final model, original head on the top-d projection of phi, d by noisy val
early_stop        the checkpoint with the best noisy-validation accuracy (if given)
truncated_early   the early-stopped model truncated the same way (if given)
probe:<tap>       spectral linear probe (refit ridge head) on that tap of the final model,
                  d by noisy validation
probe_best_tap    the probe with (tap, d) chosen jointly by noisy validation
raw_input         the same probe on the raw inputs: no network at all; a repair that only
                  matches it has not repaired the network
================= ===================================================================

Columns: method, epoch, tap, d, val_acc (noisy validation, observed labels) with its 95% Wilson
interval [val_low, val_high] on n_val samples, test_acc (clean) with [test_low, test_high] on
n_test samples. Only noisy validation chooses anything. :func:`summarize_seeds` gives mean and
spread over seeds (a single seed shows no spread: its standard deviation is NaN).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from noisescope.data.base import NoisyDataset
from noisescope.evaluate import model_accuracy
from noisescope.evidence.intervals import wilson_interval
from noisescope.models.base import TappedModel
from noisescope.spectral.analysis import TapAnalysis, analyse
from noisescope.taps import INPUT_TAP

COLUMNS = ["method", "epoch", "tap", "d", "val_acc", "val_low", "val_high", "n_val",
           "test_acc", "test_low", "test_high", "n_test"]


def interval_columns(acc: float, n: int) -> tuple[float, float]:
    """95% Wilson interval of an accuracy ``acc`` on ``n`` samples (NaN when unknown)."""
    if not n or acc != acc:
        return float("nan"), float("nan")
    return wilson_interval(int(round(float(acc) * n)), int(n))


def _row(method: str, epoch: int | None, tap: str, d: int, val: float, test: float,
         n: tuple[int, int] = (0, 0)) -> dict:
    (vl, vh), (tl, th) = interval_columns(val, n[0]), interval_columns(test, n[1])
    return {"method": method, "epoch": -1 if epoch is None else int(epoch), "tap": tap,
            "d": int(d), "val_acc": float(val), "val_low": vl, "val_high": vh, "n_val": int(n[0]),
            "test_acc": float(test), "test_low": tl, "test_high": th, "n_test": int(n[1])}


def _truncated_row(method: str, epoch: int | None, res: TapAnalysis) -> dict:
    j = res.at(res.head_d_star)
    return _row(method, epoch, res.tap, res.head_d_star, res.head_acc("val")[j], res.head_acc("test")[j],
                (res.n_eval.get("val", 0), res.n_eval.get("test", 0)))


def _probe_row(method: str, epoch: int | None, res: TapAnalysis) -> dict:
    j = res.at(res.d_star)
    return _row(method, epoch, res.tap, res.d_star, res.probe_acc("val")[j], res.probe_acc("test")[j],
                (res.n_eval.get("val", 0), res.n_eval.get("test", 0)))


def best_tap(results: dict[str, TapAnalysis]) -> TapAnalysis:
    """The best tap, over *all* analysed taps: the one whose probe reaches the best
    noisy-validation accuracy at its d* (ties: shallower); the report reads it the same way."""
    best, best_val = None, -1.0
    for res in results.values():
        v = res.probe_acc("val")[res.at(res.d_star)]
        if v > best_val:
            best, best_val = res, v
    return best


@dataclass
class Comparison:
    """What :func:`compare` measured: the table and the analyses behind it (reuse them, e.g.
    ``SpectralTruncation(...).fit_analysis(c.final[model.feature_tap])``, instead of analysing
    the same tap again)."""

    table: pd.DataFrame
    final: dict[str, TapAnalysis] = field(default_factory=dict)
    early: TapAnalysis | None = None
    raw: TapAnalysis | None = None


def compare_truncation(final: TappedModel, data: NoisyDataset, early: TappedModel | None = None,
                       **kwargs: object) -> pd.DataFrame:
    """The table of :func:`compare` (same arguments)."""
    return compare(final, data, early, **kwargs).table


def compare(
    final: TappedModel,
    data: NoisyDataset,
    early: TappedModel | None = None,
    *,
    final_epoch: int | None = None,
    early_epoch: int | None = None,
    taps: str | list[str] = "auto",
    raw_input: bool = True,
    d_grid: list[int] | np.ndarray | None = None,
    alpha: float = 0.0,
    d_rule: str = "1se",
    batch_size: int = 2048,
    device: torch.device | str | None = None,
) -> Comparison:
    """Every method of the module docstring on one run: a DataFrame with COLUMNS, and the
    analyses it came from.

    Args:
        final: the converged model. early: the best-noisy-validation checkpoint, if any.
        taps: taps of ``final`` probed for the ``probe:<tap>`` rows (``"auto"`` = all).
        raw_input: add the raw-input reference.
        d_grid, alpha, d_rule: the probe's grid, ridge strength and rule for d*.
    """
    if len(data.x_val) == 0:
        raise ValueError("the comparison chooses d by noisy validation: data has no validation split")
    rows = []
    feat_dim = final.feature_dim
    n = (len(data.y_val), len(data.y_test))
    v, t = model_accuracy(final, data, batch_size, device)
    rows.append(_row("final", final_epoch, final.feature_tap, feat_dim, v, t, n))
    res = analyse(final, data, taps, d_grid=d_grid, alpha=alpha, d_rule=d_rule, segregation=False,
                  batch_size=batch_size, device=device)
    if final.feature_tap not in res:
        res.update(analyse(final, data, "feature", d_grid=d_grid, alpha=alpha, d_rule=d_rule, segregation=False,
                           batch_size=batch_size, device=device))
    rows.append(_truncated_row("truncated_final", final_epoch, res[final.feature_tap]))
    er = raw = None
    if early is not None:
        v, t = model_accuracy(early, data, batch_size, device)
        rows.append(_row("early_stop", early_epoch, early.feature_tap, early.feature_dim, v, t, n))
        er = analyse(early, data, "feature", d_grid=d_grid, alpha=alpha, d_rule=d_rule, segregation=False,
                     batch_size=batch_size, device=device)[early.feature_tap]
        rows.append(_truncated_row("truncated_early", early_epoch, er))
    for name, r in res.items():
        rows.append(_probe_row(f"probe:{name}", final_epoch, r))
    rows.append(_probe_row("probe_best_tap", final_epoch, best_tap(res)))
    if raw_input:
        raw = analyse(None, data, d_grid=d_grid, alpha=alpha, d_rule=d_rule, segregation=False,
                      batch_size=batch_size, device=device)[INPUT_TAP]
        rows.append(_probe_row("raw_input", None, raw))
    return Comparison(pd.DataFrame(rows, columns=COLUMNS), res, er, raw)


def summarize_seeds(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Mean and spread (sample std; NaN for one seed: a single seed shows no spread) of each
    method's accuracies over seeds.

    Returns one row per method (first-seen order) with columns method, n_seeds,
    test_acc_mean, test_acc_std, val_acc_mean, d_mean.
    """
    if not frames:
        raise ValueError("no comparison frames to summarize")
    df = pd.concat(frames, ignore_index=True)
    order = list(dict.fromkeys(df["method"]))
    g = df.groupby("method", sort=False)
    out = pd.DataFrame({
        "n_seeds": g.size(),
        "test_acc_mean": g["test_acc"].mean(),
        "test_acc_std": g["test_acc"].std(ddof=1),
        "val_acc_mean": g["val_acc"].mean(),
        "d_mean": g["d"].mean(),
    }).loc[order].reset_index()
    return out
