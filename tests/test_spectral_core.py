"""Known-answer tests for the spectral core: statistics, ranks, the all-d probe, segregation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from spectral_data import spiked_noisy

from noisescope.spectral.analysis import analyse
from noisescope.spectral.linear_probe import (
    check_grid,
    choose_d,
    cumulative_correct,
    fit_ridge_readout,
    head_readout,
    logistic_probe_accuracy,
)
from noisescope.spectral.rank import effective_rank, participation_ratio, stable_rank
from noisescope.spectral.stats import FeatureStats


def _rel(a: torch.Tensor, b: np.ndarray) -> float:
    a = a.cpu().numpy()
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


# ---------------------------------------------------------------- ranks
def test_effective_rank_isotropic_gaussian_is_close_to_dim():
    g = torch.Generator().manual_seed(0)
    dim = 50
    x = torch.randn(40_000, dim, generator=g, dtype=torch.float64)
    st = FeatureStats(dim)
    st.update(x)
    er = effective_rank(st.spectrum().eigvals)
    assert abs(er - dim) / dim < 0.02


def test_effective_rank_of_equal_spikes_is_close_to_their_number():
    g = torch.Generator().manual_seed(1)
    dim, r = 60, 7
    basis, _ = torch.linalg.qr(torch.randn(dim, r, generator=g, dtype=torch.float64))
    x = torch.randn(30_000, r, generator=g, dtype=torch.float64) @ basis.T * 3.0
    x += 1e-3 * torch.randn(30_000, dim, generator=g, dtype=torch.float64)
    st = FeatureStats(dim)
    st.update(x)
    er = effective_rank(st.spectrum().eigvals)
    assert abs(er - r) / r < 0.05


def test_rank_formulas_on_exact_spectra():
    lam = torch.tensor([4.0, 2.0, 1.0, 1.0])
    p = lam / lam.sum()
    assert effective_rank(lam) == pytest.approx(float(torch.exp(-(p * p.log()).sum())))
    assert participation_ratio(lam) == pytest.approx(64.0 / 22.0)
    assert stable_rank(lam) == pytest.approx(2.0)
    assert effective_rank(np.ones(5)) == pytest.approx(5.0)
    assert participation_ratio(np.ones(5)) == pytest.approx(5.0)
    assert effective_rank(torch.zeros(3)) == 0.0
    with pytest.raises(ValueError, match="NaN"):
        effective_rank(torch.tensor([1.0, float("nan")]))


# ---------------------------------------------------------------- streaming statistics
def test_streaming_statistics_equal_full_batch():
    g = torch.Generator().manual_seed(2)
    n, dim, c = 3001, 17, 4
    x = (torch.randn(n, dim, generator=g) * torch.linspace(0.1, 5, dim) + 1000.0).float()
    y_true = torch.randint(0, c, (n,), generator=g)
    y_obs = torch.where(torch.rand(n, generator=g) < 0.3, torch.randint(0, c, (n,), generator=g), y_true)
    st = FeatureStats(dim, c, noisy_second_moment=True)
    for s in range(0, n, 256):
        st.update(x[s : s + 256], y_obs[s : s + 256], y_true[s : s + 256])

    f = x.double().numpy()
    mu = f.mean(0)
    cen = f - mu
    cov = cen.T @ cen / n
    assert st.n == n
    assert _rel(st.mean(), mu) < 1e-6
    assert _rel(st.covariance(), cov) < 1e-6
    yo, yt = y_obs.numpy(), y_true.numpy()
    sums, counts = st.centered_class_sums()
    assert _rel(sums, np.stack([cen[yo == k].sum(0) for k in range(c)])) < 1e-6
    assert np.array_equal(counts.numpy(), np.bincount(yo, minlength=c))
    noisy = yo != yt
    assert st.noisy_count == noisy.sum()
    assert _rel(st.noisy_centered_second_moment(), cen[noisy].T @ cen[noisy]) < 1e-6
    clean_means = np.stack([f[(yt == k) & ~noisy].mean(0) for k in range(c)])
    assert _rel(st.clean_class_means(), clean_means) < 1e-6
    spec = st.spectrum()
    assert _rel(spec.eigvals, np.linalg.eigvalsh(cov)[::-1].copy()) < 1e-6


def test_statistics_reject_bad_input():
    st = FeatureStats(3, 2)
    with pytest.raises(ValueError, match="no features"):
        st.mean()
    with pytest.raises(ValueError, match=r"shape \(B, 3\)"):
        st.update(torch.zeros(4, 5))
    with pytest.raises(ValueError, match="lie in"):
        st.update(torch.zeros(4, 3), torch.tensor([0, 1, 2, 0]))
    with pytest.raises(ValueError, match="num_classes"):
        FeatureStats(3).update(torch.zeros(2, 3), torch.tensor([0, 1]))


# ---------------------------------------------------------------- the probe
def _numpy_probe_acc(data, d: int, alpha: float = 0.0) -> dict[str, float]:
    """Independent fit: PCA by numpy SVD, then least squares / ridge with intercept."""
    f = data.x_train.double().numpy()
    mu = f.mean(0)
    _, _, vt = np.linalg.svd(f - mu, full_matrices=False)
    v = vt[:d].T
    z = (f - mu) @ v
    y = np.eye(data.num_classes)[data.y_train.numpy()]
    if alpha == 0:
        a = np.hstack([z, np.ones((len(z), 1))])
        w, *_ = np.linalg.lstsq(a, y, rcond=None)
        coef, icpt = w[:-1], w[-1]
    else:
        from sklearn.linear_model import Ridge

        r = Ridge(alpha=alpha).fit(z, y)
        coef, icpt = r.coef_.T, r.intercept_
    out = {}
    for name, x, t in (("val", data.x_val, data.y_val), ("test", data.x_test, data.y_test)):
        s = ((x.double().numpy() - mu) @ v) @ coef + icpt
        out[name] = float((s.argmax(1) == t.numpy()).mean())
    return out


@pytest.mark.parametrize("alpha", [0.0, 50.0])
def test_closed_form_probe_equals_independent_fit(alpha):
    data = spiked_noisy(n=3000, n_val=1500, n_test=1500, seed=5)
    res = analyse(None, data, segregation=False, alpha=alpha)["input"]
    for d in (1, 3, 6, 11, 25, 40):
        ref = _numpy_probe_acc(data, d, alpha)
        j = res.at(d)
        for subset in ("val", "test"):
            # equal up to at most one near-tied sample
            assert abs(res.probe_acc(subset)[j] - ref[subset]) <= 1.0 / res.n_eval[subset] + 1e-12


def test_probe_matches_sklearn_pca_ridge_classifier():
    from sklearn.decomposition import PCA
    from sklearn.linear_model import RidgeClassifier

    data = spiked_noisy(n=2000, n_val=1000, n_test=1000, seed=6)
    res = analyse(None, data, segregation=False, alpha=10.0)["input"]
    for d in (2, 6, 17):
        pca = PCA(n_components=d, svd_solver="full").fit(data.x_train.double().numpy())
        clf = RidgeClassifier(alpha=10.0).fit(pca.transform(data.x_train.double().numpy()), data.y_train)
        acc = clf.score(pca.transform(data.x_test.double().numpy()), data.y_test)
        assert abs(res.probe_acc("test")[res.at(d)] - acc) <= 1.0 / 1000 + 1e-12


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_d_star_finds_planted_signal_dimension(seed):
    data = spiked_noisy(seed=seed)
    res = analyse(None, data, segregation=False)["input"]
    assert abs(res.d_star - data.noise["k_star"]) <= 2
    # the valley: truncation at d* beats the full read-out on the clean test set
    assert res.probe_acc("test")[res.at(res.d_star)] > res.probe_acc("test")[-1] + 0.01


def test_analysis_is_deterministic():
    data = spiked_noisy(n=1500, n_val=500, n_test=500, seed=9)
    a = analyse(None, data)["input"]
    b = analyse(None, data)["input"]
    assert torch.equal(a.probe_correct["test"], b.probe_correct["test"])
    assert torch.equal(a.spectrum.eigvals, b.spectrum.eigvals)
    assert np.array_equal(a.tail_noisy, b.tail_noisy)


def test_choose_d_breaks_ties_towards_smaller_d():
    grid = check_grid([2, 4, 8, 16], 16)
    assert choose_d(torch.tensor([5, 9, 9, 3]), grid, rule="argmax") == 4
    with pytest.raises(ValueError, match=r"\[1, 16\]"):
        check_grid([0, 4], 16)
    with pytest.raises(ValueError, match=r"\[1, 16\]"):
        check_grid([17], 16)


def test_original_head_readout_at_full_d_reproduces_the_head():
    g = torch.Generator().manual_seed(3)
    f = torch.randn(500, 12, generator=g) * 3 + 1
    y = torch.randint(0, 5, (500,), generator=g)
    lin = torch.nn.Linear(12, 5)
    st = FeatureStats(12, 5)
    st.update(f, y)
    spec = st.spectrum()
    ro = head_readout(spec, lin.weight, lin.bias)
    full = ro.scores(spec.project(f), 12)
    assert torch.allclose(full, lin(f).double(), atol=1e-5)
    correct = cumulative_correct(spec.project(f), y, ro, check_grid(None, 12))
    assert int(correct[-1]) == int((lin(f).argmax(1) == y).sum())


def test_noise_share_and_segregation_find_the_tail():
    data = spiked_noisy(seed=0)
    res = analyse(None, data, segregation=True)["input"]
    k = data.noise["k_star"]
    rate = float(data.noise_mask.double().mean())
    rho = res.noise_share.numpy()
    # signal components hold noisy samples in proportion to the rate; tail ones are all noise
    assert np.all(np.abs(rho[:k] - rate) < 0.05)
    assert rho[k : k + 8].min() > 0.8
    # independent computation of rho from materialised coordinates
    z = res.spectrum.project(data.x_train).numpy()
    mask = data.noise_mask.numpy()
    ref = (z[mask] ** 2).sum(0) / (z**2).sum(0)
    assert np.allclose(rho, ref, atol=1e-8)
    j = res.at(res.d_star)
    assert res.tail_noisy[j] - res.tail_clean[j] > 0.3


def test_logistic_cross_check_agrees_with_closed_form():
    data = spiked_noisy(n=3000, n_val=1000, n_test=1000, seed=4)
    res = analyse(None, data, segregation=False)["input"]
    ztr = res.spectrum.project(data.x_train).numpy()
    zte = res.spectrum.project(data.x_test).numpy()
    grid = np.array([6])
    acc = logistic_probe_accuracy(ztr, data.y_train.numpy(), {"test": (zte, data.y_test.numpy())}, grid)
    assert abs(acc["test"][0] - res.probe_acc("test")[res.at(6)]) < 0.03


def test_fit_ridge_rejects_negative_alpha():
    st = FeatureStats(2, 2)
    st.update(torch.randn(10, 2), torch.tensor([0, 1] * 5))
    with pytest.raises(ValueError, match="alpha"):
        fit_ridge_readout(st, st.spectrum(), alpha=-1.0)


@pytest.mark.parametrize("seed", [0, 1])
def test_one_se_rule_finds_k_star_on_the_flat_topped_generator(seed):
    """noisescope.data.synthetic has no malignant tail: accuracy is flat beyond k*, where the
    plain argmax wanders on validation noise; the documented 1se rule stays at k*."""
    from noisescope.data.noisy import make_noisy_dataset
    from noisescope.data.synthetic import make_spiked

    ds = make_spiked(n_train=5000, n_test=1000, dim=100, k_star=9, seed=seed)
    nd = make_noisy_dataset(ds, "symmetric", 0.4, val_fraction=0.3, seed=seed)
    res = analyse(None, nd, segregation=False, d_rule="1se")["input"]
    assert abs(res.d_star - 9) <= 2


def test_choose_d_one_se_rule():
    grid = np.arange(1, 6)
    # accuracies .50 .70 .79 .80 .80 on 400 samples: se(.8) = .02 -> smallest d with >= .78 is 3
    counts = np.array([200, 280, 316, 320, 320])
    assert choose_d(counts, grid, 400, "1se") == 3
    assert choose_d(counts, grid, 400, "argmax") == 4
    with pytest.raises(ValueError, match="n_val"):
        choose_d(counts, grid, None, "1se")
    with pytest.raises(ValueError, match="unknown d rule"):
        choose_d(counts, grid, 400, "best")


def test_inputs_are_never_modified():
    x = torch.randn(64, 5, dtype=torch.float64)
    keep = x.clone()
    st = FeatureStats(5)
    st.update(x)
    st.spectrum().project(x)
    assert torch.equal(x, keep)
