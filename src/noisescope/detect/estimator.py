"""``LabelIssueDetector``: every detector behind one scikit-learn style estimator.

    det = LabelIssueDetector(method="knn", d="auto", k=10).fit(features, labels)
    det.score_samples()   # (N,) float64, higher = more likely mislabeled
    det.find_issues()     # (N,) bool, the method's own rule (or rate= / threshold=)
    det.rank()            # (N,) sample indices, most suspicious first

``fit`` takes (N, D) features (numpy or torch) with observed labels, plus a linear head for the
margin methods; or a :class:`~noisescope.models.base.TappedModel` with its inputs (or a
:class:`~noisescope.data.base.NoisyDataset`, of which only ``x_train``, ``y_train``, ``x_val``
and ``y_val`` are read), streamed through ``noisescope.taps.iter_taps`` so that only per-class /
per-component statistics and (N,)-sized results are kept (kNN keeps the (N, d) float32
truncated coordinates, or (N, D) with ``d=None``); or a :class:`MarginRecorder` / (E, N) margins
for the training-dynamics methods. True labels and noise masks are never read.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch import nn

from noisescope.data.base import NoisyDataset
from noisescope.detect._util import as_features, as_labels, check_d, num_classes_of, spectrum_of
from noisescope.detect.dimension import HoldoutSelector, choose_d_validation
from noisescope.detect.disagreement import disagreement_issues, disagreement_score
from noisescope.detect.dynamics import aum_issues, aum_score, first_fit_epoch_score
from noisescope.detect.evaluate import finite_scores, top_k_mask
from noisescope.detect.fine import ClassGram, fine_alignment, fine_issues, fine_score
from noisescope.detect.knn import knn_disagreement, knn_issues, knn_space
from noisescope.detect.margins import MarginRecorder
from noisescope.detect.tail import margin_split, tail_margin_from_split, tail_margin_issues
from noisescope.detect.truncated import distance_ratio, truncated_distance_issues, truncated_distance_score
from noisescope.models.base import TappedModel
from noisescope.spectral.stats import FeatureStats

METHODS = ("truncated_distance", "knn", "fine", "tail_margin", "truncated_margin", "disagreement",
           "aum", "first_fit")
USES_D = ("truncated_distance", "knn", "tail_margin", "truncated_margin")
NEEDS_HEAD = ("tail_margin", "truncated_margin", "disagreement")
DYNAMICS = ("aum", "first_fit")

Batches = Callable[[], Iterator[tuple[slice, torch.Tensor, torch.Tensor | None]]]


def _head(head: object) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """nn.Linear, (weight, bias) or a bare (C, D) weight -> (weight, bias)."""
    if head is None:
        return None
    if isinstance(head, nn.Linear):
        return head.weight.detach(), None if head.bias is None else head.bias.detach()
    if isinstance(head, (tuple, list)) and len(head) == 2:
        w, b = head
        return torch.as_tensor(w).detach(), None if b is None else torch.as_tensor(b).detach()
    w = torch.as_tensor(head)
    if w.ndim != 2:
        raise ValueError("head must be an nn.Linear, a (weight, bias) pair or a (C, D) weight")
    return w.detach(), None


def _logits(feats: torch.Tensor, wb: tuple[torch.Tensor, torch.Tensor | None]) -> torch.Tensor:
    w, b = wb
    z = feats.to(torch.float64) @ w.to(feats.device, torch.float64).T
    return z if b is None else z + b.to(feats.device, torch.float64)


class LabelIssueDetector:
    """Per-sample label-issue scores on a training set, one method at a time.

    Args:
        method: one of ``METHODS``: ``"truncated_distance"``, ``"knn"``, ``"fine"`` (features
            only); ``"tail_margin"``, ``"truncated_margin"``, ``"disagreement"`` (features and a
            linear head, or a model); ``"aum"``, ``"first_fit"`` (recorded margins).
        d: principal components kept (methods in ``USES_D``): an int, ``"auto"`` (the held-out
            accuracy of the spectral linear probe on *observed* labels, see
            :mod:`noisescope.detect.dimension`) or, for ``"knn"`` only, None (raw features).
        k: neighbours for ``"knn"``.
        num_classes: C (default: max label + 1, or the head's outputs).
        holdout, max_holdout: share of the training set (at most this many rows) held out for
            ``d="auto"`` when no validation set is given.
        d_rule: ``"1se"`` (default: the smallest d within one binomial standard error of the best
            held-out accuracy; a flat plateau then does not drift into the tail) or ``"argmax"``.
        alpha: ridge strength of the probe; d_grid: candidate d values (default 1..D).
        seed: seeds the held-out draw and FINE's Gaussian mixture.
        p_threshold: FINE's clean-posterior cut-off.
        batch_size: rows per streamed batch; tap: the model tap to read (default its features
            phi); device: where the model runs (default: its parameters' device).

    Fitted attributes: ``scores_`` (N,), ``flags_`` (N,) bool (the method's own rule), ``d_``,
    ``d_grid_`` and ``d_acc_`` (held-out accuracy per grid d, when d was chosen), ``spectrum_``,
    ``fit_seconds_``.
    """

    def __init__(
        self,
        method: str = "truncated_distance",
        d: int | str | None = "auto",
        k: int = 10,
        *,
        num_classes: int | None = None,
        holdout: float = 0.2,
        max_holdout: int = 5000,
        d_rule: str = "1se",
        alpha: float = 0.0,
        d_grid: list[int] | None = None,
        seed: int = 0,
        p_threshold: float = 0.5,
        batch_size: int = 4096,
        tap: str | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        if method in USES_D:
            ok_int = isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 1
            if not (d == "auto" or ok_int or (d is None and method == "knn")):
                raise ValueError(f"d must be 'auto' or a positive int{' or None' if method == 'knn' else ''}, "
                                 f"got {d!r}")
        self.method, self.d, self.k = method, d, k
        self.num_classes = num_classes
        self.holdout, self.max_holdout = holdout, max_holdout
        self.d_rule, self.alpha, self.d_grid = d_rule, alpha, d_grid
        self.seed, self.p_threshold = seed, p_threshold
        self.batch_size, self.tap, self.device = batch_size, tap, device

    # ------------------------------------------------------------------ fit
    def fit(
        self,
        X: object,
        y: object = None,
        *,
        x: torch.Tensor | None = None,
        head: object = None,
        X_val: object = None,
        y_val: object = None,
        epochs: object = None,
    ) -> LabelIssueDetector:
        """Score the training set.

        Args:
            X: (N, D) features; or a TappedModel; or a MarginRecorder / (E, N) margins (for
                ``"aum"`` / ``"first_fit"``).
            y: (N,) observed labels; with a model also a NoisyDataset (its ``x_train``,
                ``y_train`` and, for ``d="auto"``, ``x_val`` / ``y_val``). Unused by the
                dynamics methods.
            x: the model's (N, ...) training inputs (when ``y`` is a label tensor).
            head: for features: ``nn.Linear``, ``(weight, bias)`` or a (C, D) weight (margin
                methods); a model uses its own head.
            X_val, y_val: noisy validation (features, or inputs for a model) to choose d on
                instead of a held-out part of the training set.
            epochs: (E,) epochs of bare margins (first-fit; a recorder knows its own).
        """
        t0 = time.perf_counter()
        for attr in ("d_", "d_grid_", "d_acc_", "spectrum_"):
            setattr(self, attr, None)
        if self.method in DYNAMICS:
            self._fit_dynamics(X, epochs)
        elif isinstance(X, TappedModel):
            self._fit_model(X, y, x, X_val, y_val)
        else:
            if isinstance(y, NoisyDataset):
                raise TypeError("a NoisyDataset goes with a model; with features pass the observed labels")
            self._fit_features(as_features(X), y, head, X_val, y_val)
        self.fit_seconds_ = time.perf_counter() - t0
        return self

    def _fit_dynamics(self, margins: object, epochs: object) -> None:
        if not isinstance(margins, (MarginRecorder, torch.Tensor, np.ndarray)):
            raise TypeError(f"method {self.method!r} takes a MarginRecorder or (E, N) margins")
        if self.method == "aum":
            self.scores_ = aum_score(margins)
            self.flags_ = aum_issues(self.scores_)
        else:
            self.scores_ = first_fit_epoch_score(margins, epochs)
            self.flags_ = torch.isinf(self.scores_)

    def _classes(self, labels: torch.Tensor, wb: tuple | None) -> int:
        c = self.num_classes
        if c is None and wb is not None:
            c = int(wb[0].shape[0])
        return num_classes_of(labels, c)

    def _need_head(self, wb: object) -> None:
        if self.method in NEEDS_HEAD and wb is None:
            raise ValueError(f"method {self.method!r} needs the linear head: pass head=model.head "
                             "(an nn.Linear) or head=(weight, bias)")

    def _choose_d(self, dim: int, c: int, labels: torch.Tensor, train: Batches, val: Batches | None,
                  stats: FeatureStats | None, spectrum: object) -> None:
        if self.d != "auto":
            self.d_ = None if self.d is None else check_d(self.d, dim)
            return
        if val is not None:
            if stats is None:
                stats = FeatureStats(dim, c)
                for sl, f, _ in train():
                    stats.update(f, labels[sl])
            self.d_, self.d_grid_, self.d_acc_ = choose_d_validation(
                stats, spectrum, ((f, yv) for _, f, yv in val()), self.alpha, self.d_rule, self.d_grid)
            return
        sel = HoldoutSelector(len(labels), dim, c, self.holdout, self.max_holdout, self.seed, self.alpha,
                              self.d_rule, self.d_grid)
        for sl, f, _ in train():
            sel.update(sl, f, labels[sl].to(f.device))
        self.d_, self.d_grid_, self.d_acc_ = sel.choose()

    # ------------------------------------------------------------------ features in memory
    def _fit_features(self, X: torch.Tensor, y: object, head: object, X_val: object, y_val: object) -> None:
        labels = as_labels(y, len(X))
        wb = _head(head)
        self._need_head(wb)
        c = self._classes(labels, wb)
        self.labels_ = labels
        m, bs = self.method, self.batch_size

        def train() -> Iterator:
            for s in range(0, len(X), bs):
                yield slice(s, s + bs), X[s : s + bs], None

        val = None
        if X_val is not None:
            xv = as_features(X_val, "X_val")
            yv = as_labels(y_val, len(xv), "y_val")
            val = lambda: ((slice(s, s + bs), xv[s : s + bs], yv[s : s + bs])  # noqa: E731
                           for s in range(0, len(xv), bs))
        if m == "disagreement":
            logits = _logits(X, wb)
            self.scores_ = disagreement_score(logits, labels, kind="logits")
            self.flags_ = disagreement_issues(logits, labels)
            return
        if m == "fine":
            self.scores_ = fine_score(X, labels, c)
            self.flags_ = fine_issues(self.scores_, labels, self.p_threshold, self.seed)
            return
        stats = None
        if self.d == "auto" and val is not None:
            stats = FeatureStats(X.shape[1], c)
            for sl, f, _ in train():
                stats.update(f, labels[sl])
            self.spectrum_ = stats.spectrum()
        elif self.d is not None or m != "knn":
            self.spectrum_ = spectrum_of(X, bs)
        self._choose_d(X.shape[1], c, labels, train, val, stats, self.spectrum_)
        if m == "knn":
            self.scores_ = knn_disagreement(knn_space(X, self.d_, self.spectrum_), labels, self.k)
            self.flags_ = knn_issues(self.scores_)
        elif m == "truncated_distance":
            self.scores_ = truncated_distance_score(X, self.spectrum_, labels, self.d_, c)
            self.flags_ = truncated_distance_issues(self.scores_)
        else:
            h, t = margin_split(X, self.spectrum_, wb[0], wb[1], labels, self.d_, bs)
            self.scores_ = tail_margin_from_split(h, t) if m == "tail_margin" else (-h).double()
            self.flags_ = tail_margin_issues(self.scores_)

    # ------------------------------------------------------------------ streamed from a model
    def _fit_model(self, model: TappedModel, y: object, x: torch.Tensor | None, X_val: object,
                   y_val: object) -> None:
        from noisescope.taps import iter_taps

        if isinstance(y, NoisyDataset):
            data = y
            x, y = data.x_train, data.y_train
            if X_val is None and len(data.x_val):
                X_val, y_val = data.x_val, data.y_val
        if x is None:
            raise ValueError("with a model, pass its training inputs: fit(model, labels, x=inputs) "
                             "or fit(model, noisy_dataset)")
        labels = as_labels(y, len(x))
        tap = self.tap or model.feature_tap
        on_phi = tap == model.feature_tap
        wb = _head(model.head) if on_phi else None
        if self.method in ("tail_margin", "truncated_margin") and not on_phi:
            raise ValueError(f"method {self.method!r} reads the head's input, tap {model.feature_tap!r}, "
                             f"not {tap!r}")
        c = self._classes(labels, _head(model.head))
        self.labels_ = labels
        bs, dev = self.batch_size, self.device

        def stream(inputs: torch.Tensor) -> Iterator:
            for sl, logits, acts in iter_taps(model, inputs, [tap], bs, dev):
                yield sl, acts[tap], logits

        def train() -> Iterator:
            return stream(x)

        val = None
        if X_val is not None and self.method in USES_D and self.d == "auto":
            yv = as_labels(y_val, len(X_val), "y_val")
            val = lambda: ((sl, f, yv[sl].to(f.device)) for sl, f, _ in stream(X_val))  # noqa: E731
        m, n = self.method, len(labels)
        # pass 1: statistics (and disagreement, which needs nothing more)
        stats = gram = sel = None
        dim = None
        scores = torch.empty(n, dtype=torch.float64)
        flags = torch.zeros(n, dtype=torch.bool)
        for sl, f, logits in train():
            yb = labels[sl].to(f.device)
            if dim is None:
                dim = f.shape[1]
                if m in USES_D and (self.d is not None or m != "knn"):
                    stats = FeatureStats(dim, c)
                if m == "fine":
                    gram = ClassGram(dim, c)
                if m in USES_D and self.d == "auto" and val is None:
                    sel = HoldoutSelector(n, dim, c, self.holdout, self.max_holdout, self.seed, self.alpha,
                                          self.d_rule, self.d_grid)
            if stats is not None:
                stats.update(f, yb)
            if gram is not None:
                gram.update(f, yb)
            if sel is not None:
                sel.update(sl, f, yb)
            if m == "disagreement":
                scores[sl] = disagreement_score(logits, yb, kind="logits")
                flags[sl] = disagreement_issues(logits, yb)
        if dim is None:
            raise ValueError("no training inputs")
        if m == "disagreement":
            self.scores_, self.flags_ = scores, flags
            return
        if stats is not None:
            self.spectrum_ = stats.spectrum()
        if m in USES_D:
            if sel is not None:
                self.d_, self.d_grid_, self.d_acc_ = sel.choose()
            else:
                self._choose_d(dim, c, labels, train, val, stats, self.spectrum_)
        # pass 2: scores
        if m == "fine":
            v = gram.eigvecs()
            for sl, f, _ in train():
                scores[sl] = 1.0 - fine_alignment(f, labels[sl], v)
            self.scores_ = scores
            self.flags_ = fine_issues(scores, labels, self.p_threshold, self.seed)
            return
        if m == "knn":
            space = None
            for sl, f, _ in train():
                z = f.to(torch.float64) if self.d_ is None else self.spectrum_.project(f, self.d_)
                z = (z / z.norm(dim=1, keepdim=True).clamp_min(1e-12)).float().cpu()
                if space is None:
                    space = torch.empty(n, z.shape[1], dtype=torch.float32)
                space[sl] = z
            self.scores_ = knn_disagreement(space, labels, self.k).cpu()
            self.flags_ = knn_issues(self.scores_)
            return
        if m == "truncated_distance":
            sums, counts = stats.centered_class_sums()
            v = self.spectrum_.eigvecs[:, : self.d_]
            means = (sums / counts.clamp_min(1)[:, None]) @ v
            for sl, f, _ in train():
                scores[sl] = distance_ratio(self.spectrum_.project(f, self.d_), labels[sl], means, counts).cpu()
            self.scores_ = scores
            self.flags_ = truncated_distance_issues(scores)
            return
        for sl, f, _ in train():  # tail_margin / truncated_margin
            h, t = margin_split(f, self.spectrum_, wb[0], wb[1], labels[sl].to(f.device), self.d_, len(f))
            scores[sl] = tail_margin_from_split(h, t) if m == "tail_margin" else -h
        self.scores_ = scores
        self.flags_ = tail_margin_issues(scores)

    # ------------------------------------------------------------------ read-out
    def _check(self) -> None:
        if not hasattr(self, "scores_"):
            raise RuntimeError("this LabelIssueDetector is not fitted yet: call fit() first")

    def score_samples(self) -> torch.Tensor:
        """(N,) float64 scores of the fitted training samples, higher = more likely mislabeled."""
        self._check()
        return self.scores_

    def find_issues(self, rate: float | None = None, threshold: float | None = None) -> torch.Tensor:
        """(N,) bool flags: the top round(rate * N) scores (ties -> lower index), or
        score >= threshold, or (neither given) the method's own rule (see docs/label_issues.md)."""
        self._check()
        if rate is not None and threshold is not None:
            raise ValueError("give rate or threshold, not both")
        if rate is not None:
            if not 0 <= rate <= 1:
                raise ValueError(f"rate must lie in [0, 1], got {rate}")
            return torch.from_numpy(top_k_mask(self.scores_, int(round(rate * len(self.scores_)))))
        if threshold is not None:
            return self.scores_ >= threshold
        return self.flags_.clone()

    def rank(self) -> torch.Tensor:
        """(N,) int64 sample indices sorted by decreasing suspicion (ties -> lower index first)."""
        self._check()
        return torch.from_numpy(np.argsort(-finite_scores(self.scores_), kind="stable"))
