"""Scoring detectors where the noise mask is known (synthetic noise, the analysis side only).

For each detector: AUROC with DeLong's standard error (``auroc_se``) and average precision of
its scores against the mask (the same numbers as scikit-learn's ``roc_auc_score`` /
``average_precision_score``, computed here in numpy so that no scikit-learn import is paid: tied
scores count 1/2 in the AUROC, and AP steps over distinct score values, so tie order never
matters); precision, recall and F1 of the top round(rate * N) scores, rate the realized noise
rate (the oracle budget; ties broken by lower sample index; at k = the number of noisy samples,
precision and recall are the same number, TP / k); and, when the detector flags samples itself,
precision / recall / F1 of its flags and its implied noise-rate estimate (the flagged fraction)
next to the realized one.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import torch

from noisescope.detect._util import Array

COLUMNS = [
    "detector", "n", "noise_rate", "auroc", "auroc_se", "ap",
    "k", "precision_at_rate", "recall_at_rate", "f1_at_rate",
    "n_flagged", "estimated_rate", "precision_flagged", "recall_flagged", "f1_flagged",
]


def _vec(a: Array, name: str) -> np.ndarray:
    v = torch.as_tensor(a).detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    if v.ndim != 1:
        raise ValueError(f"{name} must be 1-D (N,), got shape {v.shape}")
    return v


def finite_scores(scores: Array) -> np.ndarray:
    """float64 copy with +inf -> max finite + 1 and -inf -> min finite - 1 (order kept, so
    first-fit epochs of never-fitted samples stay on top); NaN is an error."""
    s = _vec(scores, "scores").astype(np.float64)
    if np.isnan(s).any():
        raise ValueError("scores contain NaN")
    fin = s[np.isfinite(s)]
    hi = fin.max() + 1 if len(fin) else 1.0
    lo = fin.min() - 1 if len(fin) else -1.0
    return np.where(s == np.inf, hi, np.where(s == -np.inf, lo, s))


def top_k_mask(scores: Array, k: int) -> np.ndarray:
    """(N,) bool: the k highest scores (ties -> lower index first)."""
    s = finite_scores(scores)
    order = np.argsort(-s, kind="stable")
    out = np.zeros(len(s), dtype=bool)
    out[order[: max(0, int(k))]] = True
    return out


def precision_recall_f1(flagged: np.ndarray, mask: np.ndarray) -> tuple[float, float, float]:
    """Precision, recall, F1 of a flagged set against the true mask (NaN where undefined)."""
    tp = float(np.sum(flagged & mask))
    nf, nm = float(flagged.sum()), float(mask.sum())
    p = tp / nf if nf else float("nan")
    r = tp / nm if nm else float("nan")
    f = 2 * tp / (nf + nm) if nf + nm else float("nan")
    return p, r, f


def average_ranks(scores: Array) -> np.ndarray:
    """(N,) float64 ranks 1..N of the scores, ascending, tied scores sharing their mean rank
    (scipy's ``rankdata(method="average")``); +-inf kept in order, NaN an error."""
    s = finite_scores(scores)
    n = len(s)
    if n == 0:
        return np.zeros(0)
    order = np.argsort(s, kind="stable")
    ss = s[order]
    starts = np.r_[0, np.flatnonzero(ss[1:] != ss[:-1]) + 1]  # first position of each tie group
    ends = np.r_[starts[1:], n]
    mean_rank = (starts + ends + 1) / 2.0  # mean of the 1-based positions starts+1 .. ends
    out = np.empty(n)
    out[order] = np.repeat(mean_rank, ends - starts)
    return out


def auroc(scores: Array, mask: Array) -> float:
    """Area under the ROC curve of scores for the mask (NaN when one class is absent): the
    Mann-Whitney U of the average ranks over n_pos * n_neg (a tie counts 1/2)."""
    m = _vec(mask, "mask").astype(bool)
    if m.all() or not m.any():
        return float("nan")
    r = average_ranks(scores)
    if len(r) != len(m):
        raise ValueError(f"scores have {len(r)} entries for a mask of {len(m)}")
    n1 = float(m.sum())
    n0 = float(len(m)) - n1
    return float((r[m].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def auroc_se(scores: Array, mask: Array) -> float:
    """DeLong's standard error of :func:`auroc` (DeLong, DeLong & Clarke-Pearson 1988).

    Placement values from the average ranks: each positive's share of negatives scored below
    it, V10_i = (rank_i - rank of i among the positives) / n_neg, and each negative's share of
    positives scored above it, V01_j = 1 - (rank_j - rank of j among the negatives) / n_pos
    (a tie counts 1/2, as in the AUROC); Var = var(V10) / n_pos + var(V01) / n_neg (sample
    variances, ddof 1). NaN when a class has fewer than two samples."""
    m = _vec(mask, "mask").astype(bool)
    n1, n0 = int(m.sum()), int((~m).sum())
    if n1 < 2 or n0 < 2:
        return float("nan")
    r = average_ranks(scores)
    if len(r) != len(m):
        raise ValueError(f"scores have {len(r)} entries for a mask of {len(m)}")
    s = finite_scores(scores)
    v10 = (r[m] - average_ranks(s[m])) / n0
    v01 = 1.0 - (r[~m] - average_ranks(s[~m])) / n1
    return float(np.sqrt(v10.var(ddof=1) / n1 + v01.var(ddof=1) / n0))


def average_precision(scores: Array, mask: Array) -> float:
    """Average precision of scores for the mask (NaN without positives): sum over the distinct
    score values, highest first, of (recall gain) x precision at that value."""
    m = _vec(mask, "mask").astype(bool)
    if not m.any():
        return float("nan")
    s = finite_scores(scores)
    if len(s) != len(m):
        raise ValueError(f"scores have {len(s)} entries for a mask of {len(m)}")
    order = np.argsort(-s, kind="stable")
    ss, mm = s[order], m[order]
    last = np.r_[np.flatnonzero(ss[1:] != ss[:-1]), len(ss) - 1]  # last position of each value
    tp = np.cumsum(mm)[last].astype(np.float64)
    precision = tp / (last + 1)
    recall_gain = np.diff(np.r_[0.0, tp]) / tp[-1]
    return float(np.sum(recall_gain * precision))


def evaluate_scores(
    scores: Mapping[str, Array],
    mask: Array,
    flagged: Mapping[str, Array] | None = None,
) -> pd.DataFrame:
    """One row per detector: ``COLUMNS`` (see the module doc).

    Args:
        scores: detector name -> (N,) scores (higher = more suspicious; +-inf allowed).
        mask: (N,) bool, True = the observed label is wrong.
        flagged: detector name -> (N,) bool flags; detectors without flags (or not named
            here) get NaN in the ``*_flagged`` and ``estimated_rate`` columns. A name in
            ``flagged`` but not in ``scores`` gets a row with only the flag columns.
    """
    m = _vec(mask, "mask").astype(bool)
    n = len(m)
    rate = float(m.mean()) if n else float("nan")
    k = int(round(rate * n))
    flagged = dict(flagged or {})
    rows = []
    for name in list(scores) + [f for f in flagged if f not in scores]:
        row = {"detector": name, "n": n, "noise_rate": rate, "k": k}
        if name in scores:
            s = finite_scores(scores[name])
            if len(s) != n:
                raise ValueError(f"scores[{name!r}] has {len(s)} entries for a mask of {n}")
            p, r, f = precision_recall_f1(top_k_mask(s, k), m)
            row.update(auroc=auroc(s, m), auroc_se=auroc_se(s, m), ap=average_precision(s, m),
                       precision_at_rate=p, recall_at_rate=r, f1_at_rate=f)
        if name in flagged:
            fl = _vec(flagged[name], f"flagged[{name!r}]").astype(bool)
            if len(fl) != n:
                raise ValueError(f"flagged[{name!r}] has {len(fl)} entries for a mask of {n}")
            p, r, f = precision_recall_f1(fl, m)
            row.update(n_flagged=int(fl.sum()), estimated_rate=float(fl.mean()) if n else float("nan"),
                       precision_flagged=p, recall_flagged=r, f1_flagged=f)
        rows.append(row)
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame["n_flagged"] = frame["n_flagged"].astype("Int64")
    return frame
