"""Explicit spectral truncation: f_d(x) = h(mu + V_d V_d^T (phi(x) - mu)), d from noisy validation.

:class:`SpectralTruncation` is a scikit-learn style estimator on features (``fit`` / ``predict``
/ ``score``), with a streaming ``fit_model`` for a network's tap. ``to_module(model)`` turns it
into an ordinary ``nn.Module``, :class:`~noisescope.spectral.export.TruncatedModel` (saved and
loaded by :mod:`noisescope.spectral.export`).

Heads:
* ``"original"``: the trained head on the projected features, folded into one linear map of the
  d coordinates: weight W V_d (C, d), bias W mu + b.
* ``"refit"``: a new least-squares / ridge head on the d coordinates fitted on observed training
  labels (the spectral linear probe at d); its scores are regression scores, not log-odds.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from noisescope.data.base import NoisyDataset
from noisescope.models.base import TappedModel
from noisescope.spectral.analysis import TapAnalysis, analyse, score_batch
from noisescope.spectral.export import SpectralHead, TruncatedModel
from noisescope.spectral.linear_probe import (
    D_RULES,
    Readout,
    check_grid,
    choose_d,
    fit_ridge_readout,
    head_readout,
)
from noisescope.spectral.stats import FeatureStats, Spectrum

HEADS = ("original", "refit")


def _as_tensor(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    t = torch.as_tensor(x)
    if t.ndim != 2:
        raise ValueError(f"features must be 2-D (N, D), got shape {tuple(t.shape)}")
    return t


class SpectralTruncation:
    """Scikit-learn style spectral truncation on (N, D) features.

    Args:
        d: number of principal components kept, or ``"auto"``: chosen on noisy-validation
            accuracy over ``d_grid`` by ``d_rule``.
        head: ``"original"`` (project, then the trained head given as ``original_head``) or
            ``"refit"`` (ridge head on the d coordinates, fitted on observed labels).
        alpha: ridge strength of the refit head (0 = least squares).
        d_grid: candidate d values for ``d="auto"`` (default every d from 1 to D).
        original_head: the trained ``nn.Linear`` (C x D) for ``head="original"``.
        d_rule: ``"1se"`` (default: the smallest d within one binomial standard error of the
            best) or ``"argmax"`` (ties -> smaller d), see :func:`noisescope.evidence.rules.choose_d`.

    Attributes after fitting: ``spectrum_``, ``d_``, ``readout_``, ``d_grid_``, ``val_acc_``
    (accuracy per grid d on the noisy validation set, when one was given), ``tap_``.
    """

    def __init__(
        self,
        d: int | str = "auto",
        head: str = "original",
        alpha: float = 0.0,
        d_grid: list[int] | np.ndarray | None = None,
        original_head: nn.Linear | None = None,
        d_rule: str = "1se",
    ) -> None:
        if head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {head!r}")
        if not (d == "auto" or (isinstance(d, (int, np.integer)) and d >= 1)):
            raise ValueError(f"d must be 'auto' or a positive int, got {d!r}")
        self.d = d
        self.head = head
        self.alpha = alpha
        self.d_grid = d_grid
        self.original_head = original_head
        if d_rule not in D_RULES:
            raise ValueError(f"d_rule must be one of {D_RULES}, got {d_rule!r}")
        self.d_rule = d_rule

    # ------------------------------------------------------------------ fitting
    def _readout(self, stats: FeatureStats, spec: Spectrum, linear: nn.Linear | None) -> Readout:
        if self.head == "refit":
            return fit_ridge_readout(stats, spec, self.alpha)
        if linear is None:
            raise ValueError("head='original' needs the trained head: pass original_head=model.head")
        return head_readout(spec, linear.weight, linear.bias)

    def _finish(self, val_correct: torch.Tensor | None, n_val: int) -> None:
        dim = self.spectrum_.dim
        if self.d == "auto":
            if val_correct is None:
                raise ValueError("d='auto' needs noisy-validation data (X_val, y_val)")
            self.d_ = choose_d(val_correct, self.d_grid_, n_val, self.d_rule)
        else:
            if int(self.d) > dim:
                raise ValueError(f"d={self.d} exceeds the feature dimension {dim}")
            self.d_ = int(self.d)
        self.val_acc_ = None if val_correct is None else val_correct.cpu().numpy() / max(1, n_val)

    def fit(
        self,
        X: torch.Tensor | np.ndarray,
        y: torch.Tensor | np.ndarray,
        X_val: torch.Tensor | np.ndarray | None = None,
        y_val: torch.Tensor | np.ndarray | None = None,
        batch_size: int = 8192,
    ) -> SpectralTruncation:
        """Fit on (N, D) training features with observed labels; pick d on (V, D) validation."""
        X, y = _as_tensor(X), torch.as_tensor(y).long()
        if len(X) != len(y):
            raise ValueError(f"X has {len(X)} rows but y has {len(y)}")
        if len(X) < 2:
            raise ValueError("need at least 2 training samples")
        c = int(y.max()) + 1
        if self.original_head is not None:
            c = max(c, self.original_head.out_features)
        stats = FeatureStats(X.shape[1], c)
        for s in range(0, len(X), batch_size):
            stats.update(X[s : s + batch_size], y[s : s + batch_size])
        self.spectrum_ = stats.spectrum()
        self.readout_ = self._readout(stats, self.spectrum_, self.original_head)
        self.d_grid_ = check_grid(self.d_grid, self.spectrum_.dim)
        self.tap_ = None
        val_correct, n_val = None, 0
        if X_val is not None:
            if y_val is None:
                raise ValueError("X_val given without y_val")
            Xv, yv = _as_tensor(X_val), torch.as_tensor(y_val).long()
            val_correct = torch.zeros(len(self.d_grid_), dtype=torch.int64)
            for s in range(0, len(Xv), batch_size):
                val_correct += score_batch(self.spectrum_, [self.readout_], self.d_grid_, Xv[s : s + batch_size],
                                           yv[s : s + batch_size], torch.float64)[0]
            n_val = len(Xv)
        self._finish(val_correct, n_val)
        return self

    def fit_model(
        self,
        model: TappedModel,
        data: NoisyDataset,
        tap: str | None = None,
        batch_size: int = 2048,
        device: torch.device | str | None = None,
    ) -> SpectralTruncation:
        """Streaming fit on a network's tap (default its penultimate features phi).

        Uses the training inputs with observed labels and the noisy validation split of
        ``data``; ``head="original"`` uses ``model.head`` and needs the penultimate tap.
        """
        tap = tap or model.feature_tap
        if self.head == "original" and tap != model.feature_tap:
            raise ValueError(
                f"head='original' projects the head's input, tap {model.feature_tap!r}; "
                f"use head='refit' for tap {tap!r}"
            )
        res = analyse(
            model, data, [tap], d_grid=self.d_grid, alpha=self.alpha, d_rule=self.d_rule,
            segregation=False,
            head=self.head == "original", batch_size=batch_size, device=device,
        )[tap]
        return self.fit_analysis(res)

    def fit_analysis(self, res: TapAnalysis) -> SpectralTruncation:
        """Fit from a finished :class:`TapAnalysis` of the tap (no new pass over the data):
        e.g. the one :func:`~noisescope.spectral.compare.compare` computed. ``head="original"``
        needs the analysis of the penultimate tap with its head read-out."""
        if self.head == "original" and res.head is None:
            raise ValueError(f"head='original' needs the analysis of the penultimate tap with its head; "
                             f"tap {res.tap!r} has none (use head='refit')")
        tap = res.tap
        self.spectrum_ = res.spectrum
        self.d_grid_ = res.d_grid
        self.readout_ = res.head if self.head == "original" else res.probe
        self.tap_ = tap
        correct = res.head_correct if self.head == "original" else res.probe_correct
        self._finish(correct.get("val"), res.n_eval.get("val", 0))
        self.test_acc_ = (
            correct["test"].cpu().numpy() / max(1, res.n_eval["test"]) if "test" in correct else None
        )
        return self

    # ------------------------------------------------------------------ inference
    def _check_fitted(self) -> None:
        if not hasattr(self, "d_"):
            raise RuntimeError("this SpectralTruncation is not fitted yet: call fit() first")

    def transform(self, X: torch.Tensor | np.ndarray) -> torch.Tensor:
        """(N, D) features -> (N, d) float64 principal coordinates."""
        self._check_fitted()
        return self.spectrum_.project(_as_tensor(X), self.d_)

    def decision_function(self, X: torch.Tensor | np.ndarray) -> torch.Tensor:
        """(N, D) features -> (N, C) scores of the truncated model (float64)."""
        self._check_fitted()
        return self.readout_.scores(self.transform(X), self.d_)

    def predict(self, X: torch.Tensor | np.ndarray) -> torch.Tensor:
        """(N, D) features -> (N,) predicted classes."""
        return self.decision_function(X).argmax(1).cpu()

    def score(self, X: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray) -> float:
        """Accuracy of :meth:`predict` against ``y``."""
        return float((self.predict(X) == torch.as_tensor(y).long().cpu()).double().mean())

    def spectral_head(self) -> SpectralHead:
        """The fitted projection + linear map as a standalone module on tap features."""
        self._check_fitted()
        return SpectralHead.from_readout(self.spectrum_, self.readout_, self.d_)

    def to_module(self, model: TappedModel, tap: str | None = None) -> TruncatedModel:
        """The truncated network: ``model``'s tap output -> projection -> linear map.

        The result shares ``model``'s parameters (no copy); save it with :func:`save_truncated`.
        """
        tap = tap or self.tap_ or model.feature_tap
        try:
            device = next(model.parameters()).device
        except StopIteration:
            device = torch.device("cpu")
        return TruncatedModel(model, tap, self.spectral_head().to(device)).eval()
