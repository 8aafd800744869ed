"""The peer: cleanlab's confident learning (Northcutt et al. 2021), an optional dependency.

Confident learning needs out-of-sample predicted probabilities; :func:`cross_val_pred_probs`
produces them by K-fold cross-validation around any training callback. :func:`cleanlab_scores`
and :func:`cleanlab_issues` then call cleanlab (``pip install noisescope[cleanlab]``, or
``pip install cleanlab``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from noisescope.detect._util import Array, as_labels, out

INSTALL_HINT = "cleanlab is not installed: pip install noisescope[cleanlab] (or pip install cleanlab)"


def _cleanlab() -> Any:
    try:
        import cleanlab.filter
        import cleanlab.rank
    except ImportError as exc:  # pragma: no cover - exercised only without cleanlab
        raise ImportError(INSTALL_HINT) from exc
    return cleanlab


def _inputs(labels: Array, pred_probs: Array) -> tuple[np.ndarray, np.ndarray]:
    p = torch.as_tensor(pred_probs).detach().to("cpu", torch.float64)
    if p.ndim != 2:
        raise ValueError(f"pred_probs must be (N, C), got shape {tuple(p.shape)}")
    y = as_labels(labels, len(p)).cpu()
    if len(y) and int(y.max()) >= p.shape[1]:
        raise ValueError(f"labels go up to {int(y.max())} but pred_probs has {p.shape[1]} columns")
    return y.numpy(), p.numpy()


def cleanlab_scores(labels: Array, pred_probs: Array, method: str = "self_confidence") -> torch.Tensor:
    """1 - ``cleanlab.rank.get_label_quality_scores(labels, pred_probs, method=method)``.

    Returns:
        (N,) float64, higher = lower label quality = more likely mislabeled.
    """
    cl = _cleanlab()
    y, p = _inputs(labels, pred_probs)
    return out(torch.from_numpy(1.0 - cl.rank.get_label_quality_scores(y, p, method=method)))


def cleanlab_issues(labels: Array, pred_probs: Array, **kwargs: Any) -> torch.Tensor:
    """(N,) bool mask of ``cleanlab.filter.find_label_issues(labels, pred_probs, **kwargs)``
    (default ``filter_by="prune_by_noise_rate"``)."""
    cl = _cleanlab()
    y, p = _inputs(labels, pred_probs)
    kwargs.setdefault("n_jobs", 1)
    return torch.from_numpy(np.asarray(cl.filter.find_label_issues(y, p, **kwargs), dtype=bool))


@dataclass
class CrossValPredictions:
    """Out-of-sample predicted probabilities from K-fold cross-validation.

    Attributes:
        pred_probs: (N, C) float64; row i from the model that did not see sample i.
        fold: (N,) int64 fold of each sample.
        fit_seconds: (K,) wall time of each ``make_model`` + ``train_fn`` call.
        predict_seconds: (K,) wall time of each held-out prediction.
    """

    pred_probs: torch.Tensor
    fold: torch.Tensor
    fit_seconds: np.ndarray
    predict_seconds: np.ndarray

    @property
    def seconds(self) -> float:
        return float(self.fit_seconds.sum() + self.predict_seconds.sum())


def cross_val_pred_probs(
    make_model: Callable[[], Any],
    train_fn: Callable[[Any, Any, Any], Callable[[Any], Array]],
    x: Any,
    y: Array,
    k: int = 5,
    seed: int = 0,
    num_classes: int | None = None,
) -> CrossValPredictions:
    """K-fold (stratified by observed label, shuffled with ``seed``) out-of-sample probabilities.

    For each fold, ``model = make_model()`` then ``predict_proba = train_fn(model, x_tr, y_tr)``
    trains on the other folds and returns a function from inputs to (n, C) probabilities,
    called on the held-out fold. ``x`` is a tensor or numpy array (N, ...); ``y_tr`` is given
    as the same kind (int64). ``y`` holds the (N,) observed labels. Both calls are timed per fold.
    """
    from sklearn.model_selection import StratifiedKFold

    labels = as_labels(y).cpu()
    n = len(labels)
    if len(x) != n:
        raise ValueError(f"x has {len(x)} rows but y has {n}")
    if k < 2:
        raise ValueError(f"k must be >= 2, got {k}")
    c = int(labels.max()) + 1 if num_classes is None else int(num_classes)
    probs = torch.full((n, c), float("nan"), dtype=torch.float64)
    fold = torch.full((n,), -1, dtype=torch.int64)
    fit_s, pred_s = np.zeros(k), np.zeros(k)
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    is_tensor = isinstance(x, torch.Tensor)
    y_all = labels if is_tensor else labels.numpy()
    for j, (tr, te) in enumerate(splitter.split(np.zeros(n), labels.numpy())):
        tr_i, te_i = (torch.from_numpy(tr), torch.from_numpy(te)) if is_tensor else (tr, te)
        t = time.perf_counter()
        predict_proba = train_fn(make_model(), x[tr_i], y_all[tr_i])
        fit_s[j] = time.perf_counter() - t
        t = time.perf_counter()
        p = predict_proba(x[te_i])
        p = (p if isinstance(p, torch.Tensor) else torch.from_numpy(np.asarray(p))).detach().to("cpu", torch.float64)
        pred_s[j] = time.perf_counter() - t
        if p.shape != (len(te), c):
            raise ValueError(f"predict_proba returned shape {tuple(p.shape)}, expected {(len(te), c)}")
        probs[torch.from_numpy(te)] = p
        fold[torch.from_numpy(te)] = j
    return CrossValPredictions(probs, fold, fit_s, pred_s)
