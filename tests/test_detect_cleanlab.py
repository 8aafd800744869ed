"""The cleanlab peer (optional dependency): same numbers as cleanlab, and a tiny comparison."""

from __future__ import annotations

import numpy as np
import pytest
import torch

cleanlab = pytest.importorskip(
    "cleanlab", reason="cleanlab not installed (optional peer: pip install noisescope[cleanlab])"
)

from cleanlab.filter import find_label_issues  # noqa: E402
from cleanlab.rank import get_label_quality_scores  # noqa: E402
from test_detect import gaussian_classes  # noqa: E402

from noisescope.detect import (  # noqa: E402
    LabelIssueDetector,
    auroc,
    cleanlab_issues,
    cleanlab_scores,
    cross_val_pred_probs,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _nearest_mean(model, x_tr, y_tr):
    """A tiny classifier: softmax of minus the squared distances to the training class means."""
    means = torch.stack([x_tr[y_tr == c].mean(0) for c in range(int(y_tr.max()) + 1)])
    return lambda xs: torch.softmax(-torch.cdist(xs, means) ** 2 / 2, 1)


def test_peer_matches_cleanlab_and_compares():
    x, y, t = gaussian_classes(900, 16, 5, rate=0.3, seed=11)
    mask = y != t
    cv = cross_val_pred_probs(dict, _nearest_mean, x, y, k=3, seed=0)
    probs = cv.pred_probs
    np.testing.assert_allclose(cleanlab_scores(y, probs).numpy(),
                               1 - get_label_quality_scores(y.numpy(), probs.numpy()), atol=1e-12)
    flags = cleanlab_issues(y, probs)
    assert torch.equal(flags, torch.from_numpy(find_label_issues(y.numpy(), probs.numpy())))
    peer = auroc(cleanlab_scores(y, probs), mask)
    ours = auroc(LabelIssueDetector("truncated_distance").fit(x, y).score_samples(), mask)
    assert peer > 0.9 and ours > peer - 0.05
    assert 0.15 < float(flags.double().mean()) < 0.45  # confident learning's own noise-rate estimate
