"""Functional cores of noisescope.signals against independent numpy / scikit-learn answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA
from sklearn.linear_model import LinearRegression
from sklearn.metrics import r2_score

from noisescope.models.mlp import MLP
from noisescope.signals.alignment import alignment_scores, summarize_alignment
from noisescope.signals.groups import ClassSums, class_means, group_onehot
from noisescope.signals.large_activation import (
    MEDIAN_REL_ERROR,
    AbsHistogram,
    NeuronMax,
    abs_keys_counts,
    correlation_ratio,
    heldout_r2,
    input_components,
)
from noisescope.signals.separation import cosine, separation


def _noisy_labels(n: int, c: int, rate: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y_true = torch.randint(0, c, (n,), generator=g)
    flip = torch.rand(n, generator=g) < rate
    y_obs = y_true.clone()
    y_obs[flip] = (y_true[flip] + torch.randint(1, c, (int(flip.sum()),), generator=g)) % c
    return y_true, y_obs


def test_group_onehot_counts_noisy_rows_twice() -> None:
    y_true = torch.tensor([0, 1, 2, 1])
    y_obs = torch.tensor([0, 2, 2, 0])  # rows 1 and 3 noisy
    onehot = group_onehot(y_true, y_obs, 3)
    rows, cells = onehot.nonzero(as_tuple=True)
    assert list(zip(rows.tolist(), cells.tolist(), strict=True)) == [
        (0, 0), (1, 3 + 1), (1, 6 + 2), (2, 2), (3, 3 + 1), (3, 6 + 0)]
    assert onehot.sum().item() == 6.0


def test_streaming_class_means_equal_full_batch_means() -> None:
    torch.manual_seed(0)
    n, c = 257, 4
    model = MLP(12, [9, 7], c)
    x = torch.randn(n, 12)
    y_true, y_obs = _noisy_labels(n, c, 0.4, seed=1)
    streamed = class_means(model, x, y_true, y_obs, batch_size=19)
    with torch.no_grad():
        h1 = model.blocks.layer1(x).double()
        full = {"layer1": h1, "layer2": model.blocks.layer2(h1.float()).double()}
    noisy = y_obs != y_true
    for tap, acts in full.items():
        means = streamed[tap].means()
        counts = streamed[tap].group_counts()
        for k in range(c):
            for group, sel in (("clean", ~noisy & (y_true == k)),
                               ("noisy_true", noisy & (y_true == k)),
                               ("noisy_obs", noisy & (y_obs == k))):
                assert int(counts[group][k]) == int(sel.sum())
                torch.testing.assert_close(means[group][k], acts[sel].mean(0), rtol=1e-6, atol=1e-7)


def test_class_sums_rejects_wrong_width() -> None:
    sums = ClassSums(3, 5)
    with pytest.raises(ValueError, match=r"\(B, 5\)"):
        sums.update(torch.zeros(4, 6), torch.zeros(4, dtype=torch.long), torch.zeros(4, dtype=torch.long))


def test_separation_exactly_one_when_groups_hold_same_samples() -> None:
    """Every sample appears once as clean and once as noisy (by true label): S_clean == S_noisy."""
    torch.manual_seed(0)
    n, c = 300, 5
    model = MLP(8, [16, 16], c)
    x = torch.randn(n, 8)
    y = torch.randint(0, c, (n,))
    xx = torch.cat([x, x])
    y_true = torch.cat([y, y])
    y_obs = torch.cat([y, (y + 1) % c])  # second copy: same samples, all noisy
    sums = class_means(model, xx, y_true, y_obs, batch_size=64)
    for tap in ("layer1", "layer2"):
        m, cnt = sums[tap].means(), sums[tap].group_counts()
        per_class, avg = separation(m["clean"], m["noisy_true"], cnt["clean"], cnt["noisy_true"])
        assert torch.allclose(per_class, torch.ones(c, dtype=torch.float64), atol=1e-12, rtol=0)
        assert avg == pytest.approx(1.0, abs=1e-12)
        # grouped by observed label the noisy class-c mean is the clean class-(c-1) mean
        per_obs, _ = separation(m["clean"], m["noisy_obs"], cnt["clean"], cnt["noisy_obs"])
        expect = cosine(m["clean"], m["clean"].roll(1, dims=0))
        torch.testing.assert_close(per_obs, expect)


def test_separation_average_uses_only_classes_with_enough_noisy_samples() -> None:
    clean = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    noisy = torch.tensor([[1.0, 1.0], [0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
    per_class, avg = separation(clean, noisy, torch.tensor([5, 5, 5]), torch.tensor([10, 10, 3]),
                                min_noisy=10)
    np.testing.assert_allclose(per_class.numpy(), [2 ** -0.5, 0.0, 1.0], atol=1e-15)
    assert avg == pytest.approx((2 ** -0.5 + 0.0) / 2)
    per_class, _ = separation(clean, noisy, torch.tensor([0, 5, 5]), torch.tensor([10, 10, 0]))
    assert torch.isnan(per_class[[0, 2]]).all()
    with pytest.raises(ValueError, match="min_noisy"):
        separation(clean, noisy, torch.ones(3), torch.ones(3), min_noisy=0)


def test_cosine_of_zero_vector_is_nan() -> None:
    out = cosine(torch.zeros(2, 3), torch.ones(2, 3))
    assert torch.isnan(out).all()


@pytest.mark.parametrize("nonzero", [False, True])
def test_histogram_median_within_stated_bound(nonzero: bool) -> None:
    g = torch.Generator().manual_seed(3)
    a = torch.relu(torch.randn(1001, 37, generator=g)) * 10 ** torch.rand(1001, 37, generator=g)
    hist = AbsHistogram()
    for chunk in a.split(100):
        hist.update(chunk)
    vals = a.abs().flatten()
    if nonzero:
        vals = vals[vals > 0]
    exact = float(vals.median())  # torch's lower median, as documented
    got = hist.median(nonzero=nonzero)
    assert abs(got - exact) <= MEDIAN_REL_ERROR * exact
    assert hist.count == a.numel()
    assert hist.zero_fraction() == pytest.approx(float((a == 0).float().mean()))


def test_histogram_median_zero_and_empty() -> None:
    hist = AbsHistogram()
    assert np.isnan(hist.median())
    hist.update(torch.tensor([0.0, 0.0, 5.0]))
    assert hist.median() == 0.0
    assert abs(hist.median(nonzero=True) - 5.0) <= 5.0 * MEDIAN_REL_ERROR


def test_neuron_max_tracks_value_neuron_and_row() -> None:
    a = torch.randn(50, 8)
    a[37, 5] = -40.0  # largest magnitude, negative sign
    nm = NeuronMax(8)
    for start in range(0, 50, 16):
        nm.update(a[start:start + 16], offset=start)
    assert nm.top() == (40.0, 5, 37)


def test_correlation_ratio_matches_numpy() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 500)
    values = rng.normal(size=500) + labels * 0.7
    grand = values.mean()
    between = sum((labels == k).sum() * (values[labels == k].mean() - grand) ** 2 for k in range(4))
    expect = between / ((values - grand) ** 2).sum()
    got = correlation_ratio(torch.tensor(values), torch.tensor(labels), num_classes=6)
    assert got == pytest.approx(expect, rel=1e-12)
    assert 0.0 < got < 1.0
    assert np.isnan(correlation_ratio(torch.ones(5), torch.arange(5), 5))  # constant: undefined
    exact = torch.tensor([1.0, 1.0, 3.0, 3.0])
    assert correlation_ratio(exact, torch.tensor([0, 0, 1, 1]), 2) == pytest.approx(1.0)


def test_heldout_r2_matches_sklearn() -> None:
    rng = np.random.default_rng(1)
    z = rng.normal(size=(400, 6))
    v = z @ rng.normal(size=6) + 0.5 * rng.normal(size=400) + 3.0
    fit = np.zeros(400, dtype=bool)
    fit[rng.permutation(400)[:200]] = True
    expect = r2_score(v[~fit], LinearRegression().fit(z[fit], v[fit]).predict(z[~fit]))
    got = heldout_r2(torch.tensor(z), torch.tensor(v), torch.tensor(fit))
    assert got == pytest.approx(expect, rel=1e-9)
    with pytest.raises(ValueError, match="held-out"):
        heldout_r2(torch.tensor(z), torch.tensor(v), torch.ones(400, dtype=torch.bool))


def test_input_components_span_sklearn_pca() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(120, 3, 4)) @ np.diag([5.0, 2.0, 1.0, 0.5])
    mean, comps = input_components(torch.tensor(x), k=3)
    pca = PCA(n_components=3).fit(x.reshape(120, -1))
    np.testing.assert_allclose(mean.numpy(), pca.mean_)
    # same directions up to sign
    np.testing.assert_allclose(np.abs(comps.numpy().T @ pca.components_.T), np.eye(3), atol=1e-8)
    with pytest.raises(ValueError, match="k"):
        input_components(torch.tensor(x), k=0)


def test_input_components_wide_inputs_use_gram_matrix() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(40, 100)) * np.linspace(3.0, 0.1, 100)  # N < D
    mean, comps = input_components(torch.tensor(x), k=5)
    pca = PCA(n_components=5).fit(x)
    np.testing.assert_allclose(comps.numpy().T @ comps.numpy(), np.eye(5), atol=1e-10)
    np.testing.assert_allclose(np.abs(comps.numpy().T @ pca.components_.T), np.eye(5), atol=1e-8)


def test_alignment_scores_known_answer() -> None:
    clean = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    noisy = torch.tensor([[0.0, 1.0], [1.0, 1.0]], dtype=torch.float64)
    acts = torch.tensor([[2.0, 0.0], [0.0, 3.0], [1.0, 0.0], [0.0, 0.0]])
    pred = torch.tensor([0, 0, 1, 1])
    s = alignment_scores(acts, pred, clean, noisy)
    np.testing.assert_allclose(s[:3].numpy(), [1.0, -1.0, -(2 ** -0.5)], atol=1e-6)
    assert torch.isnan(s[3])  # zero activation: undefined
    summary = summarize_alignment(s, torch.tensor([True, False, False, True]))
    assert summary["correct"] == pytest.approx(1.0, abs=1e-6)
    assert summary["wrong"] == pytest.approx((-1.0 - 2 ** -0.5) / 2, abs=1e-6)
    assert (summary["n_correct"], summary["n_wrong"]) == (1.0, 2.0)
    assert np.isnan(summary["sd_correct"])  # one sample: no spread
    assert summary["sd_wrong"] == pytest.approx(abs(-1.0 + 2 ** -0.5) / 2 ** 0.5, abs=1e-6)


def test_alignment_matches_direct_cosines() -> None:
    g = torch.Generator().manual_seed(5)
    acts = torch.relu(torch.randn(64, 20, generator=g))
    clean, noisy = torch.rand(4, 20, generator=g), torch.rand(4, 20, generator=g)
    noisy[2] = float("nan")  # class 2 has no noisy sample
    pred = torch.randint(0, 4, (64,), generator=g)
    expect = cosine(acts, clean[pred]) - cosine(acts, noisy[pred])
    got = alignment_scores(acts, pred, clean, noisy)
    assert torch.equal(got.isnan(), expect.isnan()) and bool((pred == 2).any())
    ok = ~expect.isnan()
    torch.testing.assert_close(got[ok], expect[ok], rtol=0, atol=1e-6)


def test_histogram_counts_match_numpy_bit_binning() -> None:
    g = torch.Generator().manual_seed(4)
    a = torch.randn(300, 17, generator=g) * 10 ** (4 * torch.rand(300, 17, generator=g) - 2)
    a[::7] = 0.0
    a[3, 3] = -0.0
    counts = abs_keys_counts(a)
    keys = (np.abs(a.numpy()).view(np.uint32) >> 16).ravel()
    np.testing.assert_array_equal(counts.numpy(), np.bincount(keys, minlength=1 << 15))
    assert int(counts[0]) == int((a == 0).sum())
    assert torch.equal(abs_keys_counts(-a), counts)  # |a|: the sign does not matter
