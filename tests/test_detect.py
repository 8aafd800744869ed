"""Label-issue detectors (noisescope.detect): known answers, planted structure, no peeking."""

from __future__ import annotations

import inspect
import sys
from collections import OrderedDict

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score
from spectral_data import spiked_noisy
from torch import nn

import noisescope.detect as detect
from noisescope.data.base import NoisyDataset
from noisescope.detect import (
    LabelIssueDetector,
    MarginRecorder,
    assigned_margin,
    aum_issues,
    aum_score,
    aum_threshold,
    auroc,
    average_precision,
    cross_val_pred_probs,
    disagreement_issues,
    disagreement_score,
    evaluate_scores,
    fine_eigvecs,
    fine_issues,
    fine_score,
    first_fit_epoch_score,
    knn_score,
    make_threshold_samples,
    tail_margin_score,
    truncated_distance_score,
    truncated_margin_score,
)
from noisescope.detect.evaluate import top_k_mask
from noisescope.detect.fine import fine_alignment
from noisescope.models.base import wrap_model
from noisescope.spectral.attribution import MarginAttribution, margin_attribution
from noisescope.spectral.stats import FeatureStats

pytestmark = pytest.mark.usefixtures("one_thread")


def gaussian_classes(n=2000, dim=32, classes=10, rate=0.3, scale=1.0, seed=0):
    """Features around random class means; ``rate`` of the observed labels moved to another class."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(classes, dim, generator=g) * scale
    y_true = torch.randint(0, classes, (n,), generator=g)
    x = centers[y_true] + torch.randn(n, dim, generator=g)
    flip = torch.rand(n, generator=g) < rate
    y_obs = torch.where(flip, (y_true + torch.randint(1, classes, (n,), generator=g)) % classes, y_true)
    return x, y_obs, y_true


def lstsq_head(x, y, classes):
    """Least-squares linear head (with bias) on one-hot labels: fits the tail when it can."""
    x1 = torch.cat([x.double(), torch.ones(len(x), 1, dtype=torch.float64)], 1)
    sol = torch.linalg.lstsq(x1, nn.functional.one_hot(y, classes).double()).solution
    return sol[:-1].T.contiguous(), sol[-1].contiguous()


def identity_model(weight, bias):
    """A TappedModel whose features phi(x) are the inputs and whose head is (weight, bias)."""
    head = nn.Linear(weight.shape[1], weight.shape[0]).double()
    with torch.no_grad():
        head.weight.copy_(weight)
        head.bias.copy_(bias)
    return wrap_model(nn.Sequential(OrderedDict(body=nn.Identity(), head=head)), head="head")


def spectrum(x):
    st = FeatureStats(x.shape[1])
    st.update(x)
    return st.spectrum()


# ---------------------------------------------------------------------------- no peeking
def test_no_public_entry_point_takes_truth():
    """Only the evaluation functions may take a mask; nothing takes true labels."""
    evaluation = {"evaluate_scores", "auroc", "average_precision"}
    for name in detect.__all__:
        obj = getattr(detect, name)
        if not callable(obj):
            continue
        params = inspect.signature(obj.fit if inspect.isclass(obj) and hasattr(obj, "fit") else obj).parameters
        for p in params:
            assert "true" not in p.lower() and "clean" not in p.lower(), (name, p)
            if name not in evaluation:
                assert "mask" not in p.lower(), (name, p)


def _noisy(x, y_obs, y_true, xv, yv, yv_true, classes):
    return NoisyDataset(x_train=x, y_train=y_obs, y_train_true=y_true, x_val=xv, y_val=yv, y_val_true=yv_true,
                        x_test=xv[:5], y_test=yv_true[:5], num_classes=classes, name="blobs")


def test_scrambled_truth_gives_identical_scores():
    x, y, t = gaussian_classes(700, 16, 5, seed=3)
    xv, yv, tv = gaussian_classes(200, 16, 5, seed=4)
    w, b = lstsq_head(x, y, 5)
    model = identity_model(w, b)
    g = torch.Generator().manual_seed(9)
    x, xv = x.double(), xv.double()
    honest = _noisy(x, y, t, xv, yv, tv, 5)
    scrambled = _noisy(x, y, t[torch.randperm(len(t), generator=g)], xv, yv, (tv + 1) % 5, 5)
    assert not torch.equal(honest.noise_mask, scrambled.noise_mask)
    for method in detect.METHODS:
        if method in ("aum", "first_fit"):
            continue
        a = LabelIssueDetector(method, batch_size=128).fit(model, honest)
        b_ = LabelIssueDetector(method, batch_size=128).fit(model, scrambled)
        assert torch.equal(a.score_samples(), b_.score_samples()), method
        assert torch.equal(a.find_issues(), b_.find_issues()), method
    # the dynamics scores see margins only, which come from logits and observed labels
    rec = MarginRecorder(len(y), torch.float32)
    rec.update(1, model(x), honest.y_train)
    s1 = LabelIssueDetector("aum").fit(rec).score_samples()
    rec2 = MarginRecorder(len(y), torch.float32)
    rec2.update(1, model(x), scrambled.y_train)
    assert torch.equal(s1, LabelIssueDetector("aum").fit(rec2).score_samples())


# ---------------------------------------------------------------------------- planted structure
@pytest.mark.parametrize("method", ["truncated_distance", "knn", "fine"])
def test_feature_detectors_find_planted_noise(method):
    x, y, t = gaussian_classes(2000, 32, 10, rate=0.3, seed=0)
    mask = y != t
    det = LabelIssueDetector(method).fit(x, y)
    assert auroc(det.score_samples(), mask) > 0.9
    flags = det.find_issues()
    assert flags.dtype == torch.bool and 0.15 < float(flags.double().mean()) < 0.45
    order = det.rank()
    assert mask[order[: int(mask.sum())]].double().mean() > 0.85
    # random features carry no information about which labels are wrong
    xr = torch.randn(3000, 32, generator=torch.Generator().manual_seed(5))
    yr, tr = y.repeat(2)[:3000], t.repeat(2)[:3000]
    assert abs(auroc(LabelIssueDetector(method).fit(xr, yr).score_samples(), yr != tr) - 0.5) < 0.06


def test_function_entry_points_match_estimator():
    x, y, t = gaussian_classes(1500, 24, 6, seed=1)
    mask = y != t
    sp = spectrum(x)
    assert auroc(truncated_distance_score(x, sp, y, 5), mask) > 0.9
    assert auroc(knn_score(x, y, k=10), mask) > 0.9
    assert auroc(knn_score(x, y, k=10, d=5, spectrum=sp), mask) > 0.9
    assert auroc(fine_score(x, y), mask) > 0.9
    det = LabelIssueDetector("truncated_distance", d=5).fit(x, y)
    assert torch.allclose(det.score_samples(), truncated_distance_score(x, sp, y, 5), atol=1e-10)
    det = LabelIssueDetector("knn", d=None).fit(x, y)
    assert torch.equal(det.score_samples(), knn_score(x, y))


def test_margin_detectors_find_tail_memorization():
    """Spiked features whose noisy rows carry a tail offset keyed to the observed label: a
    least-squares head fits those labels through the tail, which the tail margin exposes."""
    data = spiked_noisy(n=2000, n_val=1000, n_test=10, dim=40, k_star=6, rate=0.3)
    x, y, mask = data.x_train, data.y_train, data.noise_mask
    w, b = lstsq_head(x, y, 10)
    att = margin_attribution(x, spectrum(x), w, b, y)
    assert float((att.margin[mask] > 0).double().mean()) > 0.9  # memorized
    assert auroc(-att.margin, mask) < 0.5  # so the plain margin misses them
    assert auroc(tail_margin_score(att, 6), mask) > 0.95
    assert auroc(truncated_margin_score(att, 6), mask) > 0.95
    d_auto = LabelIssueDetector("tail_margin", d="auto").fit(x, y, head=(w, b), X_val=data.x_val, y_val=data.y_val)
    assert 4 <= d_auto.d_ <= 20, d_auto.d_  # near k* = 6 (the rank-risk valley is flat above it)
    assert auroc(d_auto.score_samples(), mask) > 0.95
    assert torch.allclose(LabelIssueDetector("tail_margin", d=6).fit(x, y, head=(w, b)).score_samples(),
                          tail_margin_score(att, 6), atol=1e-9)


def test_tail_margin_definition():
    # rows: head-supported clean, tail-memorized, unfitted, tail carrying 3/4 of a positive margin
    contrib = torch.tensor([[3.0, 0.0, -0.5], [-1.0, 2.0, 3.0], [-2.0, 0.5, -1.0], [1.0, 1.0, 2.0]],
                           dtype=torch.float64)
    constant = torch.zeros(4, dtype=torch.float64)
    att = MarginAttribution(contrib, constant, torch.zeros(4, dtype=torch.int64), contrib.sum(1))
    # d = 1: h = contrib[:, 0], t = contrib[:, 1:].sum(1)
    assert tail_margin_score(att, 1).tolist() == [-3.0, 6.0, 2.0, 2.0]
    assert truncated_margin_score(att, 1).tolist() == [-3.0, 1.0, 2.0, -1.0]
    assert detect.tail_margin_issues(tail_margin_score(att, 1)).tolist() == [False, True, True, True]


# ---------------------------------------------------------------------------- FINE
@pytest.mark.parametrize("dim", [8, 48])  # dense eigh and ARPACK paths
def test_fine_eigenvector_matches_numpy(dim):
    x, y, _ = gaussian_classes(300, dim, 3, seed=2)
    v = fine_eigvecs(x, y)
    for c in range(3):
        u = x[y == c].double().numpy()
        u = u / np.linalg.norm(u, axis=1, keepdims=True)
        _, vecs = np.linalg.eigh(u.T @ u)
        top = vecs[:, -1] * np.sign(vecs[:, -1] @ u.sum(0))
        np.testing.assert_allclose(v[c].numpy(), top, atol=1e-9)
        cos2 = (u @ top) ** 2
        np.testing.assert_allclose(fine_alignment(x[y == c], y[y == c], v).numpy(), cos2, atol=1e-9)
    np.testing.assert_allclose(fine_score(x, y).numpy(), 1 - fine_alignment(x, y, v).numpy(), atol=1e-12)


def test_fine_split_flags_the_low_alignment_mode():
    g = torch.Generator().manual_seed(0)
    y = torch.zeros(200, dtype=torch.int64)
    align = torch.cat([0.9 + 0.02 * torch.randn(150, generator=g), 0.2 + 0.05 * torch.randn(50, generator=g)])
    flags = fine_issues(1 - align, y, seed=0)
    assert flags[150:].all() and not flags[:150].any()
    assert torch.equal(flags, fine_issues(1 - align, y, seed=0))  # seeded
    assert not fine_issues(torch.full((5,), 0.3), torch.zeros(5, dtype=torch.int64)).any()  # one value


# ---------------------------------------------------------------------------- kNN
def _brute_knn(z, y, k):
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    sim = z @ z.T
    np.fill_diagonal(sim, -np.inf)
    nb = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    return (y[nb] != y[:, None]).mean(1)


def test_knn_equals_brute_force_and_chunks():
    x, y, _ = gaussian_classes(400, 12, 4, seed=6)
    ref = _brute_knn(x.double().numpy(), y.numpy(), 7)
    full = knn_score(x, y, k=7, dtype=torch.float64)
    np.testing.assert_array_equal(full.numpy(), ref)
    chunked = knn_score(x, y, k=7, dtype=torch.float64, max_elems=3 * 400 + 5)  # 3 rows at a time
    assert torch.equal(full, chunked)
    sp = spectrum(x)
    z = ((x.double() - sp.mean) @ sp.eigvecs[:, :3]).numpy()
    np.testing.assert_array_equal(knn_score(x, y, k=5, d=3, spectrum=sp, dtype=torch.float64).numpy(),
                                  _brute_knn(z, y.numpy(), 5))
    with pytest.raises(ValueError, match="k must lie"):
        knn_score(x[:5], y[:5], k=5)


# ---------------------------------------------------------------------------- truncated distance
def test_truncated_distance_by_hand():
    sp = spectrum(torch.randn(50, 3, generator=torch.Generator().manual_seed(0)))
    x = torch.randn(30, 3, generator=torch.Generator().manual_seed(1))
    y = torch.arange(30) % 3
    z = ((x.double() - sp.mean) @ sp.eigvecs[:, :2]).numpy()
    means = np.stack([z[y.numpy() == c].mean(0) for c in range(3)])
    dist = np.linalg.norm(z[:, None] - means[None], axis=2)
    own = dist[np.arange(30), y.numpy()]
    dist[np.arange(30), y.numpy()] = np.inf
    ref = own / (own + dist.min(1))
    np.testing.assert_allclose(truncated_distance_score(x, sp, y, 2).numpy(), ref, atol=1e-12)
    # an empty class is never the nearest other class; a lone class scores 0
    s = truncated_distance_score(x, sp, torch.where(y == 1, 2, y), 2, num_classes=3)
    assert torch.isfinite(s).all()
    assert truncated_distance_score(x, sp, torch.zeros(30, dtype=torch.int64), 2).eq(0).all()


# ---------------------------------------------------------------------------- dynamics
def test_assigned_margin():
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [1.0, 1.0, 1.0]])
    assert assigned_margin(logits, torch.tensor([0, 0, 2])).tolist() == [1.0, -3.0, 0.0]


def test_aum_and_threshold_by_hand():
    margins = torch.tensor([[1.0, -2.0, 0.5, -1.0],
                            [3.0, -1.0, -0.5, 1.0],
                            [5.0, 0.0, 1.5, 3.0]])
    assert aum_score(margins).tolist() == [-3.0, 1.0, -0.5, -1.0]
    # trapezoid time average over epochs 0, 1, 5: ((m0 + m1) / 2 * 1 + (m1 + m2) / 2 * 4) / 5
    s = aum_score(margins, epochs=[0, 1, 5])
    assert torch.allclose(s, -torch.tensor([(2 + 16) / 5, (-1.5 - 2) / 5, (0 + 2) / 5, (0 + 8) / 5],
                                           dtype=torch.float64))
    scores = torch.tensor([-3.0, 1.0, -0.5, -1.0, 2.0, 4.0, 0.0])
    thr_idx = torch.tensor([4, 5, 6])  # their AUMs: -2, -4, 0; 99th percentile alpha = -0.04
    tau = aum_threshold(scores, thr_idx, percentile=99)
    assert tau == pytest.approx(-np.percentile([-2.0, -4.0, 0.0], 99))
    assert aum_issues(scores, tau, exclude=thr_idx).tolist() == [False, True, False, False, False, False, False]
    assert aum_issues(scores).tolist() == [False, True, False, False, True, True, True]
    idx, relabeled = make_threshold_samples(torch.arange(22) % 10, seed=1)
    assert len(idx) == 2 and (relabeled[idx] == 10).all()
    keep = torch.ones(22, dtype=torch.bool)
    keep[idx] = False
    assert torch.equal(relabeled[keep], (torch.arange(22) % 10)[keep])


def test_first_fit_epoch_by_hand():
    margins = torch.tensor([[-1.0, 1.0, 1.0, -1.0, 1.0],
                            [1.0, 1.0, -1.0, -1.0, 1.0],
                            [1.0, 1.0, 1.0, -1.0, 0.0]])
    s = first_fit_epoch_score(margins, epochs=[0, 2, 10])
    assert s.tolist() == [2.0, 0.0, 10.0, float("inf"), float("inf")]
    assert first_fit_epoch_score(margins).tolist() == [1.0, 0.0, 2.0, float("inf"), float("inf")]
    rec = MarginRecorder(5, torch.float32)
    for e, row in zip([0, 2, 10], margins, strict=True):
        rec.update(e, torch.stack([row, torch.zeros(5)], 1), torch.zeros(5, dtype=torch.int64))
    assert torch.equal(first_fit_epoch_score(rec), s)
    assert torch.equal(LabelIssueDetector("first_fit").fit(rec).find_issues(), torch.isinf(s))


def test_margin_recorder_round_trips(tmp_path):
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 4, (10,), generator=g)
    rec = MarginRecorder(10)  # float16
    logits = {e: torch.randn(10, 4, generator=g) for e in (0, 1, 3)}
    rec.update(0, logits[0], labels)
    rec.update(1, logits[1][:6], labels[:6], index=slice(0, 6))  # batch by batch
    rec.update(1, logits[1][6:], labels[6:], index=torch.arange(6, 10))
    rec.update(3, torch.zeros(10, 4), labels)
    rec.update(3, logits[3], labels)  # re-probed epoch (resume): overwritten
    assert rec.margins.dtype == torch.float16 and rec.epochs.tolist() == [0, 1, 3] and rec.complete()
    ref = torch.stack([assigned_margin(logits[e], labels) for e in (0, 1, 3)])
    assert torch.allclose(rec.margins.float(), ref, atol=2e-3)
    again = MarginRecorder(10)
    again.load_state_dict(rec.state_dict())
    assert torch.equal(again.margins, rec.margins) and torch.equal(again.epochs, rec.epochs)
    again.update(5, logits[0], labels)  # keeps growing after a resume
    assert again.epochs.tolist() == [0, 1, 3, 5]
    frame = rec.to_frame()
    assert list(frame.columns) == ["epoch", "index", "margin"] and len(frame) == 30
    back = MarginRecorder.from_frame(frame, 10)
    assert torch.equal(back.margins, rec.margins)
    # one Parquet file per epoch, as a run's records/margins: the same recorder
    files = []
    for e, part in frame.groupby("epoch"):
        files.append(tmp_path / f"epoch_{e:06d}.parquet")
        part.to_parquet(files[-1], index=False)
    parts = MarginRecorder.from_parquet(files, 10)
    assert torch.equal(parts.margins, rec.margins) and torch.equal(parts.epochs, rec.epochs)
    frame.iloc[:10].assign(index=range(5, 15)).to_parquet(tmp_path / "bad.parquet", index=False)
    with pytest.raises(ValueError, match="outside"):
        MarginRecorder.from_parquet([tmp_path / "bad.parquet"], 10)
    with pytest.raises(ValueError, match="comes before"):
        rec.update(2, logits[0], labels)
    with pytest.raises(ValueError, match="n=11"):
        MarginRecorder(11).load_state_dict(rec.state_dict())
    big = MarginRecorder(1)
    big.update(0, torch.tensor([[1e6, 0.0]]), torch.tensor([0]))
    assert float(big.margins[0, 0]) == 65504.0  # clamped, not inf


# ---------------------------------------------------------------------------- disagreement
def test_disagreement_by_hand():
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.5, 0.25, 0.25]])
    y = torch.tensor([0, 2, 1])
    assert torch.allclose(disagreement_score(probs, y), torch.tensor([0.3, 0.7, 0.75], dtype=torch.float64))
    assert disagreement_issues(probs, y).tolist() == [False, True, True]
    logits = probs.log() + 3.0
    assert torch.allclose(disagreement_score(logits, y, kind="logits"), disagreement_score(probs, y))
    assert disagreement_issues(logits, y).tolist() == [False, True, True]


# ---------------------------------------------------------------------------- evaluation
def _pairwise_auroc(s, m):
    pos, neg = s[m], s[~m]
    diff = pos[:, None] - neg[None]
    return ((diff > 0).sum() + 0.5 * (diff == 0).sum()) / (len(pos) * len(neg))


def _ap_by_hand(s, m):
    ap, prev_recall = 0.0, 0.0
    for thr in np.unique(s)[::-1]:  # one step per distinct score value
        sel = s >= thr
        recall = (sel & m).sum() / m.sum()
        ap += (recall - prev_recall) * (sel & m).sum() / sel.sum()
        prev_recall = recall
    return ap


def test_auroc_ap_agree_with_sklearn_and_ties():
    rng = np.random.default_rng(0)
    m = rng.random(500) < 0.3
    for s in (rng.integers(0, 4, 500).astype(float) + m, rng.normal(size=500) + m):  # heavy ties, none
        assert auroc(s, m) == pytest.approx(roc_auc_score(m, s), abs=1e-12)
        assert auroc(s, m) == pytest.approx(_pairwise_auroc(s, m), abs=1e-12)
        assert average_precision(s, m) == pytest.approx(average_precision_score(m, s), abs=1e-12)
        assert average_precision(s, m) == pytest.approx(_ap_by_hand(s, m), abs=1e-12)
    assert auroc(np.ones(10), np.arange(10) < 3) == 0.5  # all tied
    assert np.isnan(auroc(np.arange(4.0), np.zeros(4, bool)))
    s = np.array([1.0, np.inf, 0.0, 2.0])  # never-fitted samples rank on top
    assert auroc(s, np.array([False, True, False, False])) == 1.0



def _delong_by_hand(s, m):
    """DeLong's SE from pairwise placements (O(n^2)), ties counting 1/2."""
    pos, neg = s[m], s[~m]
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    v10, v01 = psi.mean(1), psi.mean(0)
    return np.sqrt(v10.var(ddof=1) / len(pos) + v01.var(ddof=1) / len(neg))


def test_auroc_standard_error_is_delongs_and_matches_the_spread_over_resamples():
    from noisescope.detect.evaluate import auroc_se

    rng = np.random.default_rng(0)
    m = rng.random(400) < 0.3
    for s in (rng.integers(0, 4, 400).astype(float) + m, rng.normal(size=400) + m):  # heavy ties, none
        assert auroc_se(s, m) == pytest.approx(_delong_by_hand(s, m), rel=1e-12)
    # across fresh draws of the same score model the AUROC spreads by about its SE
    draws = []
    for _ in range(400):
        mm = rng.random(400) < 0.3
        draws.append(auroc(rng.normal(size=400) + mm, mm))
    se = np.mean([auroc_se(rng.normal(size=400) + mm, mm) for mm in (rng.random(400) < 0.3 for _ in range(50))])
    assert np.std(draws, ddof=1) == pytest.approx(se, rel=0.15)
    assert np.isnan(auroc_se(np.arange(4.0), np.array([True, False, False, False])))

def test_average_ranks_match_scipy_with_ties_and_infinities():
    from scipy.stats import rankdata

    from noisescope.detect.evaluate import average_ranks

    assert average_ranks(np.array([3.0, 1.0, 3.0, 2.0, np.inf])).tolist() == [3.5, 1.0, 3.5, 2.0, 5.0]
    rng = np.random.default_rng(1)
    for s in (rng.integers(0, 5, 300).astype(float), rng.normal(size=300)):
        np.testing.assert_array_equal(average_ranks(s), rankdata(s, method="average"))
    assert average_ranks(np.zeros(0)).shape == (0,)
    with pytest.raises(ValueError, match="NaN"):
        average_ranks(np.array([0.0, np.nan]))


def test_evaluation_imports_no_scikit_learn():
    import subprocess
    import sys

    code = ("import sys, numpy as np; from noisescope.detect.evaluate import evaluate_scores; "
            "evaluate_scores({'a': np.arange(10.0)}, np.arange(10) > 6); print('sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_evaluate_scores_table():
    m = np.array([True, True, False, False, False, False, False, False, False, True])
    s = {"perfect": m.astype(float), "ties": np.zeros(10), "inverse": -m.astype(float)}
    flags = {"perfect": m, "half": np.array([True] * 5 + [False] * 5)}
    table = evaluate_scores(s, torch.from_numpy(m), flags)
    assert isinstance(table, pd.DataFrame) and list(table["detector"]) == ["perfect", "ties", "inverse", "half"]
    row = table.set_index("detector")
    assert row.loc["perfect", "auroc"] == 1.0 and row.loc["perfect", "f1_at_rate"] == 1.0
    assert row.loc["perfect", "estimated_rate"] == pytest.approx(0.3) and row.loc["perfect", "k"] == 3
    assert row.loc["ties", "auroc"] == 0.5 and row.loc["ties", "precision_at_rate"] == pytest.approx(2 / 3)
    assert row.loc["inverse", "auroc"] == 0.0 and row.loc["inverse", "recall_at_rate"] == 0.0
    assert row.loc["half", "precision_flagged"] == pytest.approx(2 / 5)
    assert row.loc["half", "recall_flagged"] == pytest.approx(2 / 3)
    assert np.isnan(row.loc["half", "auroc"]) and np.isnan(row.loc["ties", "estimated_rate"])
    assert top_k_mask(np.zeros(4), 2).tolist() == [True, True, False, False]  # ties -> lower index


# ---------------------------------------------------------------------------- estimator, model path
@pytest.mark.parametrize("method", ["truncated_distance", "knn", "fine", "tail_margin", "truncated_margin",
                                    "disagreement"])
def test_model_stream_matches_features(method):
    x, y, _ = gaussian_classes(600, 10, 4, seed=7)
    w, b = lstsq_head(x, y, 4)
    model = identity_model(w, b)
    streamed = LabelIssueDetector(method, d=3, batch_size=64).fit(model, y, x=x.double())
    direct = LabelIssueDetector(method, d=3).fit(x.double(), y, head=(w, b))
    assert torch.allclose(streamed.score_samples(), direct.score_samples(), atol=1e-9), method
    assert torch.equal(streamed.find_issues(), direct.find_issues())
    auto_s = LabelIssueDetector(method, batch_size=64).fit(model, y, x=x.double())
    auto_d = LabelIssueDetector(method).fit(x.double(), y, head=(w, b))
    assert auto_s.d_ == auto_d.d_
    assert torch.allclose(auto_s.score_samples(), auto_d.score_samples(), atol=1e-9)


def test_estimator_api_and_errors():
    x, y, t = gaussian_classes(500, 12, 4, seed=8)
    det = LabelIssueDetector("knn", d=None, k=5).fit(x.numpy(), y.numpy())
    s = det.score_samples()
    assert s.shape == (500,) and s.dtype == torch.float64
    assert int(det.find_issues(rate=0.1).sum()) == 50
    assert torch.equal(det.find_issues(threshold=0.6), s >= 0.6)
    r = det.rank()
    assert (s[r][:-1] >= s[r][1:]).all()
    with pytest.raises(ValueError, match="method must be"):
        LabelIssueDetector("oracle")
    with pytest.raises(ValueError, match="needs the linear head"):
        LabelIssueDetector("tail_margin", d=3).fit(x, y)
    with pytest.raises(RuntimeError, match="not fitted"):
        LabelIssueDetector().score_samples()
    with pytest.raises(ValueError, match="d must be"):
        LabelIssueDetector("truncated_distance", d=None)
    with pytest.raises(ValueError, match=r"d must be an int in \[1, 12\]"):
        LabelIssueDetector("truncated_distance", d=40).fit(x, y)


# ---------------------------------------------------------------------------- peer plumbing
def test_cross_val_pred_probs_is_out_of_sample():
    x, y, _ = gaussian_classes(300, 6, 3, seed=4)
    seen = []

    def make_model():
        return {}

    def train_fn(model, x_tr, y_tr):
        seen.append({tuple(r) for r in x_tr.tolist()})
        means = torch.stack([x_tr[y_tr == c].mean(0) for c in range(3)])
        return lambda xs: torch.softmax(-torch.cdist(xs, means), 1)

    cv = cross_val_pred_probs(make_model, train_fn, x, y, k=3, seed=0)
    assert cv.pred_probs.shape == (300, 3)
    assert torch.allclose(cv.pred_probs.sum(1), torch.ones(300, dtype=torch.float64))
    assert sorted(torch.bincount(cv.fold).tolist()) == [100, 100, 100]
    for j in range(3):
        assert not seen[j] & {tuple(r) for r in x[cv.fold == j].tolist()}
    assert cv.fit_seconds.shape == (3,) and cv.seconds >= 0
    cv_np = cross_val_pred_probs(make_model, lambda m, a, b: (lambda z: np.full((len(z), 3), 1 / 3)),
                                 x.numpy(), y.numpy(), k=3)
    assert torch.allclose(cv_np.pred_probs, torch.full((300, 3), 1 / 3, dtype=torch.float64))


def test_cleanlab_missing_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "cleanlab", None)
    monkeypatch.setitem(sys.modules, "cleanlab.filter", None)
    monkeypatch.setitem(sys.modules, "cleanlab.rank", None)
    with pytest.raises(ImportError, match=r"pip install noisescope\[cleanlab\]"):
        detect.cleanlab_scores(torch.tensor([0, 1]), torch.tensor([[0.9, 0.1], [0.2, 0.8]]))
