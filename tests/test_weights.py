"""noisescope.weights: spectra, power-law fits, weight truncation, label-free d, LOO R^2, rows."""

from __future__ import annotations

import logging
import math
import time
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from noisescope.metrics import Row, rows_to_frame
from noisescope.weights import (
    choose_ranks,
    control_edge_d,
    eigengap_d,
    fit_powerlaw,
    fixed_share_ranks,
    fraction_ranks,
    label_free_d,
    layer_spectra,
    loo_r2,
    low_rank,
    mp_edge_d,
    mp_median,
    sample_powerlaw,
    truncate_weights,
    weight_rows,
)

SIZES = (64, 256, 512, 1024)
ALPHAS = (2.0, 3.0, 4.0)


def _mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(30, 40), nn.ReLU(), nn.Linear(40, 20), nn.ReLU(), nn.Linear(20, 5))


def _convnet(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 6, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(24, 4),
    )


def _heavy_tailed_linear(seed: int = 0) -> nn.Sequential:
    """Two Linear layers with Student-t entries: a heavy-tailed eigenvalue spectrum."""
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Linear(300, 200), nn.ReLU(), nn.Linear(200, 100))
    t = torch.distributions.StudentT(3.0)
    with torch.no_grad():
        m[0].weight.copy_(t.sample((200, 300)) / 10)
        m[2].weight.copy_(t.sample((100, 200)) / 10)
    return m


# ---------------------------------------------------------------------------------- spectra
def test_layer_spectra_linear_matches_svd_and_definitions():
    m = _mlp()
    spec = layer_spectra(m)
    assert list(spec) == ["0", "2", "4"]
    for name, s in spec.items():
        w = m.get_submodule(name).weight.detach().double()
        sv = torch.linalg.svdvals(w)
        assert torch.allclose(s.sv, sv, rtol=1e-10, atol=1e-12 * float(sv[0]))
        assert bool((s.sv[:-1] >= s.sv[1:]).all())
        assert s.n == max(w.shape) and s.matrix_shape == tuple(w.shape)
        assert torch.allclose(s.eigvals, sv**2 / max(w.shape))
        assert s.spectral_norm == pytest.approx(float(torch.linalg.matrix_norm(w, ord=2)), rel=1e-10)
        assert s.frobenius_norm == pytest.approx(float(torch.linalg.matrix_norm(w)), rel=1e-10)
        assert s.stable_rank == pytest.approx(float((sv**2).sum() / sv[0] ** 2), rel=1e-10)
        p = sv**2 / (sv**2).sum()
        assert s.effective_rank == pytest.approx(float(torch.exp(-(p * p.log()).sum())), rel=1e-10)


def test_conv_is_reshaped_to_out_by_fan_in():
    m = _convnet()
    spec = layer_spectra(m)
    assert list(spec) == ["0", "2", "6"]
    conv = m[2].weight.detach().double()  # (6, 8, 3, 3)
    s = spec["2"]
    assert s.kind == "Conv2d" and s.shape == (6, 8, 3, 3) and s.matrix_shape == (6, 72)
    assert torch.allclose(s.sv, torch.linalg.svdvals(conv.reshape(6, 72)))
    assert s.n == 72 and len(s.sv) == 6


def test_orthogonal_matrix_ranks_are_full():
    m = nn.Linear(16, 16, bias=False)
    with torch.no_grad():
        m.weight.copy_(torch.linalg.qr(torch.randn(16, 16, generator=torch.Generator().manual_seed(0)))[0])
    s = layer_spectra(m)[""]  # a bare layer is its own (unnamed) layer
    assert s.stable_rank == pytest.approx(16.0) and s.effective_rank == pytest.approx(16.0)
    assert s.spectral_norm == pytest.approx(1.0)


def test_layer_spectra_on_a_wrapped_model_and_bad_names():
    from noisescope.models.base import wrap_model

    wrapped = wrap_model(_mlp(), head="4")
    assert list(layer_spectra(wrapped)) == ["model.0", "model.2", "model.4"]  # the head once
    assert list(layer_spectra(wrapped, layers=["model.2"])) == ["model.2"]
    with pytest.raises(ValueError, match="not weight layers"):
        layer_spectra(wrapped, layers=["model.1"])


# ---------------------------------------------------------------------------------- power law
@pytest.mark.parametrize("n", SIZES)
def test_alpha_recovery_mean_over_seeds(n):
    """The mean of 20 fits lies within 0.1 of alpha (n = 64: alpha = 2 only; see docs/weights.md).

    A single fit's error is mostly sampling noise: (alpha_hat - 1) / (alpha - 1) does not depend
    on alpha for a given set of uniforms, so the error grows with alpha - 1, and even with a known
    x_min one n = 1024, alpha = 4 fit is within 0.1 only three times in four.
    """
    for alpha in ALPHAS if n > 64 else (2.0,):
        fits = [fit_powerlaw(sample_powerlaw(n, alpha, generator=int(100 * alpha) + s)) for s in range(20)]
        est = np.array([f.alpha for f in fits])
        assert abs(est.mean() - alpha) < 0.1, (n, alpha, est.mean())
        # every single fit is within 4 of its own standard errors
        z = np.abs(est - alpha) / np.array([f.se for f in fits])
        assert z.max() < 4, (n, alpha, z.max())
        assert all(f.n_tail >= 10 and f.n == n for f in fits)


def test_alpha_finds_the_tail_above_a_bulk():
    rng = np.random.default_rng(0)
    tail = sample_powerlaw(400, 3.0, xmin=5.0, generator=1)
    bulk = rng.uniform(0.5, 4.0, size=600)  # not a power law: x_min must move above it
    f = fit_powerlaw(np.concatenate([bulk, tail]))
    assert f.xmin >= 4.0
    assert abs(f.alpha - 3.0) < 3 * f.se


def test_alpha_is_scale_invariant_and_small_inputs():
    x = sample_powerlaw(300, 2.5, generator=3)
    a, b = fit_powerlaw(x), fit_powerlaw(7.0 * x)
    assert b.alpha == pytest.approx(a.alpha, rel=1e-10) and b.xmin == pytest.approx(7.0 * a.xmin, rel=1e-12)
    assert b.ks == pytest.approx(a.ks, abs=1e-12) and b.n_tail == a.n_tail
    assert a.se == pytest.approx((a.alpha - 1) / math.sqrt(a.n_tail))
    assert not fit_powerlaw(x[:9]).ok and math.isnan(fit_powerlaw(x[:9]).alpha)
    assert fit_powerlaw(np.concatenate([x[:20], [0.0, -1.0, np.nan]])).n == 20
    assert not fit_powerlaw(np.ones(50)).ok  # no candidate below the largest value


def test_ks_sup_and_fixed_xmin():
    x = sample_powerlaw(500, 3.0, generator=4)
    left = fit_powerlaw(x, xmin=float(np.sort(x)[50]))
    sup = fit_powerlaw(x, xmin=float(np.sort(x)[50]), ks="sup")
    assert left.n_tail == sup.n_tail == 450 and sup.alpha == left.alpha
    assert sup.ks >= left.ks
    tail = np.sort(x)[50:]
    assert left.alpha == pytest.approx(1 + len(tail) / np.log(tail / tail[0]).sum(), rel=1e-12)
    with pytest.raises(ValueError, match="ks must be"):
        fit_powerlaw(x, ks="two")


def test_ties_are_handled_like_the_powerlaw_package_convention():
    x = np.round(sample_powerlaw(400, 2.5, generator=5), 1)  # many repeated values
    f = fit_powerlaw(x, min_tail=2)
    xs = np.sort(x)
    tail = xs[xs >= f.xmin]
    assert f.n_tail == len(tail) and np.isclose(f.alpha, 1 + len(tail) / np.log(tail / f.xmin).sum())
    emp = np.searchsorted(tail, tail, side="left") / len(tail)
    fitted = 1 - (tail / f.xmin) ** (1 - f.alpha)
    assert f.ks == pytest.approx(np.abs(fitted - emp).max(), rel=1e-10)


def test_fit_is_fast():
    x = sample_powerlaw(1024, 3.0, generator=6)
    fit_powerlaw(x)
    t0 = time.perf_counter()
    for _ in range(5):
        fit_powerlaw(x)
    assert (time.perf_counter() - t0) / 5 < 0.25  # ~7 ms on one idle core


def test_agrees_with_the_powerlaw_package():
    powerlaw = pytest.importorskip("powerlaw", reason="pip install powerlaw for the cross-check")
    for n, alpha, seed in [(64, 2.0, 0), (64, 4.0, 1), (256, 3.0, 0), (512, 2.0, 1)]:  # the package is slow
        x = sample_powerlaw(n, alpha, generator=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # powerlaw 2.0 bounds alpha to [0, 3] by default (Power_Law.DEFAULT_PARAMETER_RANGES),
            # which caps every steeper tail at 3; lift the bound to compare the MLE.
            ref = powerlaw.Fit(x, discrete=False, verbose=False, parameter_ranges={"alpha": [1, 50]})
        ours = fit_powerlaw(x, min_tail=2)  # the package scans every distinct value but the largest
        assert ours.xmin == ref.xmin, (n, alpha, seed)
        assert ours.alpha == pytest.approx(ref.alpha, abs=1e-6)
        assert ours.ks == pytest.approx(ref.D, abs=1e-9)


def test_agrees_with_weightwatcher():
    ww = pytest.importorskip("weightwatcher", reason="pip install weightwatcher for the cross-check")
    from weightwatcher.WW_powerlaw import WWFit

    for n, alpha, seed in [(256, 4.0, 0), (1024, 3.0, 1)]:
        x = sample_powerlaw(n, alpha, generator=seed)
        ref, ours = WWFit(x), fit_powerlaw(x, min_tail=2)
        assert ours.xmin == ref.xmin and ours.alpha == pytest.approx(ref.alpha, rel=1e-12)
        assert ours.ks == pytest.approx(ref.D, abs=1e-12)
    # whole-layer analysis: WeightWatcher fits s^2, we fit s^2 / N; alpha and D agree, x_min * N
    model = _heavy_tailed_linear()
    logging.getLogger("weightwatcher").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        df = ww.WeightWatcher(model=model).analyze(randomize=False, mp_fit=False, plot=False)
    spec = layer_spectra(model)
    for _, row in df.iterrows():
        s = spec[str(row["name"])]
        f = fit_powerlaw(s.eigvals, min_tail=2)
        assert f.alpha == pytest.approx(row["alpha"], rel=1e-9)
        assert f.xmin * s.n == pytest.approx(row["xmin"], rel=1e-9)
        assert f.ks == pytest.approx(row["D"], abs=1e-9)


# ---------------------------------------------------------------------------------- truncation
def test_full_rank_truncation_is_exact_and_the_original_untouched():
    m = _convnet().eval()
    x = torch.randn(7, 3, 6, 6, generator=torch.Generator().manual_seed(0))
    before = {k: v.clone() for k, v in m.state_dict().items()}
    full = truncate_weights(m, {"0": 8, "2": 6, "6": 4})
    assert torch.equal(full(x), m(x))
    big = truncate_weights(m, {"0": 10_000})
    assert torch.equal(big(x), m(x))
    cut = truncate_weights(m, {"2": 2})
    assert not torch.equal(cut(x), m(x))
    for k, v in m.state_dict().items():
        assert torch.equal(v, before[k])
    assert cut[2].weight.data_ptr() != m[2].weight.data_ptr()
    assert torch.equal(cut[0].weight, m[0].weight) and torch.equal(cut[2].bias, m[2].bias)


def test_low_rank_is_the_eckart_young_approximation():
    w = torch.randn(12, 4, 3, 3, generator=torch.Generator().manual_seed(1))  # (12, 36) matrix
    sv = torch.linalg.svdvals(w.reshape(12, -1).double())
    for r in (1, 3, 7):
        wr = low_rank(w, r)
        assert wr.shape == w.shape and wr.dtype == w.dtype
        assert int(torch.linalg.matrix_rank(wr.reshape(12, -1))) == r
        err = torch.linalg.matrix_norm((w - wr).reshape(12, -1).double())
        assert float(err) == pytest.approx(float(sv[r:].pow(2).sum().sqrt()), rel=1e-5)
    assert low_rank(w, 12) is w
    with pytest.raises(ValueError):
        low_rank(w, 0)
    with pytest.raises(ValueError, match="not weight layers"):
        truncate_weights(_mlp(), {"1": 3})


def test_fixed_share_and_fraction_ranks():
    m = _convnet()  # full ranks: conv0 (8, 27) -> 8, conv2 (6, 72) -> 6, linear (4, 24) -> 4
    assert fixed_share_ranks(m) == {"0": 6, "2": 4, "6": 3}  # int(0.8 * M)
    assert fixed_share_ranks(m, 0.1) == {"0": 1, "2": 1, "6": 1}
    assert fraction_ranks(m, 0.5) == {"0": 4, "2": 3, "6": 2}
    assert fraction_ranks(m, 0.3, layers=["2"]) == {"2": 2}
    with pytest.raises(ValueError):
        fixed_share_ranks(m, 1.5)


def _rank_of(layer: nn.Module) -> int:
    return int(torch.linalg.matrix_rank(layer.weight.detach().reshape(layer.weight.shape[0], -1)))


def test_choose_ranks_shared_uses_the_1se_rule():
    m = nn.Sequential(nn.Linear(20, 20), nn.ReLU(), nn.Linear(20, 5))
    table = {20: 800, 10: 805, 4: 795, 2: 700}  # correct counts by the first layer's rank
    seen = []

    def score(model: nn.Module) -> int:
        seen.append((_rank_of(model[0]), _rank_of(model[2])))
        return table[_rank_of(model[0])]

    choice = choose_ranks(m, score, n_val=1000, fractions=(0.1, 0.2, 0.5), strategy="shared")
    # SE at the best (805 / 1000) = 0.0125: 795 is within, 700 is not -> the smallest within is 0.2
    assert choice.fraction == 0.2 and choice.ranks == {"0": 4, "2": 1}
    assert choice.correct == 795 and choice.best_correct == 805 and choice.accuracy == 0.795
    assert seen == [(2, 1), (4, 1), (10, 3), (20, 5)] and len(choice.trials) == 4


def test_choose_ranks_greedy_stays_within_one_se_of_the_best():
    m = nn.Sequential(nn.Linear(20, 20), nn.ReLU(), nn.Linear(20, 5))

    def score(model: nn.Module) -> int:  # layer 0 wants rank >= 4, layer 2 does not matter
        r0, r2 = _rank_of(model[0]), _rank_of(model[2])
        return (900 if r0 >= 4 else 600) - (20 - r0) // 4 + (r2 == 5)

    choice = choose_ranks(m, score, n_val=1000, fractions=(0.1, 0.2, 0.5), strategy="greedy")
    assert choice.ranks == {"0": 4, "2": 1}
    assert choice.correct == score(truncate_weights(m, choice.ranks))
    p = choice.best_correct / 1000
    assert choice.correct / 1000 >= p - math.sqrt(p * (1 - p) / 1000)
    assert len(choice.trials) == 1 + 3 + 2  # full model, 3 ranks of layer 0, 2 of layer 2
    with pytest.raises(ValueError, match="strategy"):
        choose_ranks(m, score, n_val=10, strategy="random")


def test_weight_truncation_repairs_a_noisy_low_rank_layer():
    """A rank-3 teacher plus noise: truncating the student to a low rank recovers the teacher's
    labels better than the full-rank student; the 1se choice finds a low rank."""
    g = torch.Generator().manual_seed(0)
    u, v = torch.randn(10, 3, generator=g), torch.randn(3, 50, generator=g)
    teacher = u @ v
    student = nn.Sequential(nn.Linear(50, 10, bias=False))
    with torch.no_grad():
        student[0].weight.copy_(teacher + 2.5 * torch.randn(10, 50, generator=g))
    x = torch.randn(2000, 50, generator=g)
    y = (x @ teacher.T).argmax(1)

    def score(model: nn.Module) -> int:
        with torch.no_grad():
            return int((model(x).argmax(1) == y).sum())

    choice = choose_ranks(student, score, n_val=len(x), fractions=(0.1, 0.2, 0.3, 0.5, 0.7, 1.0))
    assert choice.ranks["0"] <= 5
    assert choice.correct > score(student)


# ---------------------------------------------------------------------------------- label-free d
def _spiked_spectrum(k: int, n: int, d: int, seed: int, sigma2: float = 1.0, strengths=(5.0, 8.0)):
    rng = np.random.default_rng(seed)
    pop = np.full(d, sigma2)
    pop[:k] = sigma2 * (1 + rng.uniform(*strengths, size=k))
    x = rng.standard_normal((n, d)) * np.sqrt(pop)
    return np.sort(np.linalg.eigvalsh(x.T @ x / n))[::-1]


@pytest.mark.parametrize("k", [1, 5, 12])
def test_label_free_rules_recover_planted_spikes(k):
    n, d = 2000, 256
    lam = _spiked_spectrum(k, n, d, seed=k)
    control = _spiked_spectrum(0, n, d, seed=100 + k, sigma2=3.0)  # the untrained net: bulk only
    assert abs(eigengap_d(lam) - k) <= 1
    assert abs(control_edge_d(lam, control) - k) <= 1
    assert abs(control_edge_d(lam, control, scale="median") - k) <= 1
    assert abs(mp_edge_d(lam, n) - k) <= 1
    assert label_free_d(lam, n_samples=n, control_eigvals=control).keys() == {"eigengap", "control_edge", "mp_edge"}


def test_mp_edge_with_more_dimensions_than_samples():
    n, d, k = 300, 500, 4  # gamma = 5/3: D - N zero eigenvalues
    lam = _spiked_spectrum(k, n, d, seed=7, strengths=(15.0, 25.0))
    assert abs(mp_edge_d(lam, n) - k) <= 1
    assert abs(eigengap_d(lam) - k) <= 1


def test_mp_median_matches_simulation():
    rng = np.random.default_rng(0)
    for n, d in [(1000, 1000), (2000, 500)]:
        x = rng.standard_normal((n, d))
        sim = np.median(np.linalg.eigvalsh(x.T @ x / n))
        assert mp_median(d / n) == pytest.approx(sim, rel=0.02)
    assert mp_median(1.0) == pytest.approx(0.6528, abs=5e-4)
    with pytest.raises(ValueError):
        mp_median(1.5)


def test_label_free_edge_cases():
    assert eigengap_d(np.zeros(5)) == 0
    assert eigengap_d([4.0, 1.0, 0.0, 0.0]) == 1  # zeros are ignored, not an infinite gap
    assert eigengap_d([10.0, 9.0, 1.0, 0.9, 0.8, 0.7]) == 2
    with pytest.raises(ValueError, match="same tap"):
        control_edge_d(np.ones(4), np.ones(5))


# ---------------------------------------------------------------------------------- LOO R^2 and rows
def test_loo_r2_matches_sklearn():
    from sklearn.linear_model import LinearRegression
    from sklearn.metrics import r2_score
    from sklearn.model_selection import LeaveOneOut, cross_val_predict

    rng = np.random.default_rng(0)
    for n, noise in [(5, 0.1), (12, 1.0), (30, 5.0)]:
        x = rng.normal(size=n)
        y = 2 * x + 1 + noise * rng.normal(size=n)
        ref = r2_score(y, cross_val_predict(LinearRegression(), x[:, None], y, cv=LeaveOneOut()))
        assert loo_r2(x, y) == pytest.approx(ref, rel=1e-9, abs=1e-12)
    assert loo_r2([1, 2, 3, 4], [2, 4, 6, 8]) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        loo_r2([1, 1, 1], [1, 2, 3])
    with pytest.raises(ValueError):
        loo_r2([1, 2], [1, 2])


def test_weight_rows_schema():
    model = nn.Sequential(nn.Linear(64, 48), nn.ReLU(), nn.Linear(48, 5))
    rows = weight_rows(model, epoch=3)
    assert all(isinstance(r, Row) and r.probe == "weights" and r.subset == "" and r.epoch == 3 for r in rows)
    frame = rows_to_frame(rows)
    hidden = frame[frame["tap"] == "0"]
    assert set(hidden["metric"]) == {"sv", "alpha", "alpha_xmin", "alpha_ks", "alpha_n_tail", "alpha_se",
                                     "stable_rank", "spectral_norm", "frobenius_norm", "effective_rank"}
    sv = hidden[hidden["metric"] == "sv"].sort_values("index")
    assert list(sv["index"]) == list(range(48))
    assert np.allclose(sv["value"], torch.linalg.svdvals(model[0].weight.detach().double()).numpy())
    scalars = hidden[hidden["metric"] != "sv"]
    assert (scalars["index"] == -1).all() and len(scalars) == 9
    head = frame[frame["tap"] == "2"]  # 5 eigenvalues: no power-law rows
    assert not head["metric"].str.startswith("alpha").any()
    assert (head["metric"] == "sv").sum() == 5
    capped = rows_to_frame(weight_rows(model, epoch=0, max_sv=3, layers=["0"]))
    assert set(capped["tap"]) == {"0"} and (capped["metric"] == "sv").sum() == 3
