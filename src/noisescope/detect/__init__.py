"""Which labels are wrong: per-sample label-issue scores on the training set.

Every score is a function on tensors of the inputs' features, the *observed* labels and the
model(s) or their training dynamics; none reads true labels or a noise mask. Convention:
(N,) float64, **higher = more likely mislabeled**; each ``*_issues`` function turns scores into
the detector's own boolean flags. See docs/label_issues.md for the definitions.

Modules (one concept each):

* ``margins``: assigned-label margins, ``MarginRecorder`` (E, N) over probed epochs.
* ``dynamics``: AUM (+ threshold samples), first-fit epoch.
* ``disagreement``: an (early-stopped) model's self-confidence and argmax disagreement.
* ``tail``: the margin split over the spectrum (tail margin, truncated margin).
* ``truncated``: distance to the observed class's mean in the top-d spectrum.
* ``fine``: FINE's eigenvector alignment and Gaussian-mixture split.
* ``knn``: k-nearest-neighbour label disagreement (chunked, never N x N).
* ``dimension``: choosing d from held-out observed labels.
* ``peer``: cleanlab's confident learning (optional), K-fold out-of-sample probabilities.
* ``evaluate``: AUROC / AP / precision-recall-F1 where the mask is known.
* ``estimator``: ``LabelIssueDetector``.
"""

from __future__ import annotations

from noisescope.detect.disagreement import disagreement_issues, disagreement_score
from noisescope.detect.dynamics import (
    aum_issues,
    aum_score,
    aum_threshold,
    first_fit_epoch_score,
    first_fit_issues,
    make_threshold_samples,
)
from noisescope.detect.estimator import METHODS, LabelIssueDetector
from noisescope.detect.evaluate import auroc, average_precision, evaluate_scores
from noisescope.detect.fine import fine_eigvecs, fine_issues, fine_score
from noisescope.detect.knn import knn_issues, knn_score
from noisescope.detect.margins import MarginRecorder, assigned_margin
from noisescope.detect.peer import cleanlab_issues, cleanlab_scores, cross_val_pred_probs
from noisescope.detect.tail import margin_split, tail_margin_issues, tail_margin_score, truncated_margin_score
from noisescope.detect.truncated import truncated_distance_issues, truncated_distance_score

__all__ = [
    "METHODS",
    "LabelIssueDetector",
    "MarginRecorder",
    "assigned_margin",
    "aum_issues",
    "aum_score",
    "aum_threshold",
    "auroc",
    "average_precision",
    "cleanlab_issues",
    "cleanlab_scores",
    "cross_val_pred_probs",
    "disagreement_issues",
    "disagreement_score",
    "evaluate_scores",
    "fine_eigvecs",
    "fine_issues",
    "fine_score",
    "first_fit_epoch_score",
    "first_fit_issues",
    "knn_issues",
    "knn_score",
    "make_threshold_samples",
    "margin_split",
    "tail_margin_issues",
    "tail_margin_score",
    "truncated_distance_issues",
    "truncated_distance_score",
    "truncated_margin_score",
]
