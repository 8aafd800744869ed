"""noisescope.evidence: intervals, paired tests, decision rules, the tail rule (known answers)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from noisescope.data.base import NoisyDataset
from noisescope.evidence.intervals import Accuracy, aggregate_seeds, wilson_interval
from noisescope.evidence.paired import mcnemar, mcnemar_counts, paired_difference, paired_se
from noisescope.evidence.rules import (
    choose_d,
    large_activation_flag,
    neuron_follows,
    repair_verdict,
    resolution_warning,
)
from noisescope.evidence.tail import (
    TailMarginAccumulator,
    margin_fit,
    noise_position,
    noise_position_words,
    tail_margin_share,
    tail_verdict,
    tail_verdict_from_fit,
    truncated_fit,
)
from noisescope.spectral.attribution import margin_attribution
from noisescope.spectral.linear_probe import choose_d as probe_choose_d
from noisescope.spectral.linear_probe import cumulative_correct, head_readout
from noisescope.spectral.stats import FeatureStats

CASES = [(0, 1), (1, 1), (0, 10), (3, 10), (10, 10), (818, 1000), (8180, 10000), (1, 10000), (9999, 10000),
         (37, 512)]


# ----------------------------------------------------------------------------- intervals
def _wilson_by_hand(k, n, conf):
    z = stats.norm.ppf(1 - (1 - conf) / 2)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


@pytest.mark.parametrize("conf", [0.95, 0.9, 0.99])
def test_wilson_matches_hand_formula(conf):
    for k, n in CASES:
        assert wilson_interval(k, n, conf) == pytest.approx(_wilson_by_hand(k, n, conf), abs=1e-12)


@pytest.mark.parametrize("conf", [0.95, 0.8])
def test_wilson_matches_statsmodels(conf):
    proportion = pytest.importorskip("statsmodels.stats.proportion",
                                     reason="statsmodels not installed (pip install statsmodels)")
    for k, n in CASES:
        lo, hi = proportion.proportion_confint(k, n, alpha=1 - conf, method="wilson")
        assert wilson_interval(k, n, conf) == pytest.approx((lo, hi), abs=1e-12)


def test_wilson_edge_cases_and_errors():
    assert all(math.isnan(v) for v in wilson_interval(0, 0))
    lo, hi = wilson_interval(0, 20)
    assert lo == 0.0 and 0 < hi < 0.2
    with pytest.raises(ValueError, match="0 <= k <= n"):
        wilson_interval(5, 3)
    with pytest.raises(ValueError, match="confidence"):
        wilson_interval(1, 3, confidence=95)


def test_accuracy_record_and_string():
    a = Accuracy.from_counts(8180, 10000)
    assert str(a) == "0.818 [0.810, 0.825] n=10000"
    assert a.value == 0.818 and a.low < a.value < a.high and a.width == pytest.approx(a.high - a.low)
    assert a.se == pytest.approx(math.sqrt(0.818 * 0.182 / 10000))
    assert Accuracy.from_value(0.818, 10000) == a
    assert Accuracy.from_correct(np.r_[np.ones(3, bool), np.zeros(7, bool)]).k == 3


def test_aggregate_seeds_t_interval():
    vals = [0.81, 0.83, 0.80, 0.82]
    s = aggregate_seeds(vals)
    m, sem = np.mean(vals), stats.sem(vals)
    lo, hi = stats.t.interval(0.95, len(vals) - 1, loc=m, scale=sem)
    assert (s.mean, s.std, s.n_seeds) == (pytest.approx(m), pytest.approx(np.std(vals, ddof=1)), 4)
    assert (s.low, s.high) == (pytest.approx(lo, abs=1e-12), pytest.approx(hi, abs=1e-12))
    assert "4 seeds" in str(s) and s.note == ""


def test_aggregate_single_seed_shows_no_spread():
    s = aggregate_seeds([0.8, float("nan")])
    assert s.n_seeds == 1 and s.n_dropped == 1 and s.mean == 0.8
    assert math.isnan(s.std) and math.isnan(s.low) and math.isnan(s.high)
    assert s.note == "a single seed shows no spread" and "single seed" in str(s)
    assert aggregate_seeds([]).n_seeds == 0


# ----------------------------------------------------------------------------- paired
def _vectors(seed, n=300, pa=0.8, pb=0.75):
    rng = np.random.default_rng(seed)
    return rng.random(n) < pa, rng.random(n) < pb


@pytest.mark.parametrize("seed", range(6))
def test_mcnemar_matches_statsmodels_and_binomtest(seed):
    ct = pytest.importorskip("statsmodels.stats.contingency_tables",
                             reason="statsmodels not installed (pip install statsmodels)")
    a, b = _vectors(seed, n=40 + 50 * seed)
    res = mcnemar(a, b)
    table = [[int((a & b).sum()), int((a & ~b).sum())], [int((~a & b).sum()), int((~a & ~b).sum())]]
    assert (res.b, res.c) == (table[0][1], table[1][0])
    assert res.p_value == pytest.approx(ct.mcnemar(table, exact=True).pvalue, abs=1e-12)
    assert res.p_value == pytest.approx(stats.binomtest(res.b, res.b + res.c, 0.5).pvalue, abs=1e-12)


def test_mcnemar_known_values_and_mid_p():
    r = mcnemar_counts(2, 10)  # P[X <= 2 | 12, 1/2] = 79 / 4096
    assert r.p_value == pytest.approx(2 * 79 / 4096, abs=1e-15)
    assert r.mid_p == pytest.approx(2 * (79 - 66 / 2) / 4096, abs=1e-15)
    same = mcnemar_counts(5, 5)
    assert same.p_value == 1.0 and same.mid_p == pytest.approx(1.0)
    none = mcnemar(np.ones(5, bool), np.ones(5, bool))
    assert (none.b, none.c, none.p_value, none.difference) == (0, 0, 1.0, 0.0)
    with pytest.raises(ValueError, match="same length"):
        mcnemar(np.ones(3, bool), np.ones(4, bool))


def test_paired_difference_is_wald_on_per_sample_differences():
    a, b = _vectors(3, n=500)
    pd_ = paired_difference(a, b)
    d = a.astype(float) - b.astype(float)
    assert pd_.diff == pytest.approx(d.mean(), abs=1e-15)
    assert pd_.se == pytest.approx(d.std(ddof=0) / math.sqrt(len(d)), abs=1e-15)
    assert pd_.se == pytest.approx(paired_se(pd_.b, pd_.c, pd_.n))
    z = stats.norm.ppf(0.975)
    assert (pd_.low, pd_.high) == (pytest.approx(d.mean() - z * pd_.se), pytest.approx(d.mean() + z * pd_.se))
    assert "points" in str(pd_)


# ----------------------------------------------------------------------------- choice of d
def test_choose_d_matches_the_probe_rule_and_known_answer():
    grid = np.arange(1, 6)
    counts = np.array([200, 280, 316, 320, 320])  # se(.8) on 400 = .02: smallest d with >= .78 is 3
    assert choose_d(counts, grid, 400) == 3
    assert choose_d(counts, grid, 400, "argmax") == 4
    rng = np.random.default_rng(0)
    for _ in range(50):
        g = np.unique(rng.integers(1, 200, size=30))
        c = rng.integers(100, 400, size=len(g))
        for rule in ("1se", "argmax"):
            assert choose_d(c, g, 400, rule) == probe_choose_d(c, g, 400, rule)
    with pytest.raises(ValueError, match="needs n"):
        choose_d(counts, grid, None)
    with pytest.raises(ValueError, match="unknown d rule"):
        choose_d(counts, grid, 400, "best")
    with pytest.raises(ValueError, match="ascending"):
        choose_d(counts, grid[::-1], 400)


@pytest.mark.parametrize("signal", [1.0, 1.5])
def test_one_se_rule_finds_planted_k_star(signal):
    """noisescope.data.synthetic: k* = 9 planted spikes; the 1se rule on the noisy-validation
    curve of the spectral probe (raw data) lands within 2 of k* for 5 generator seeds."""
    from noisescope.data.noisy import make_noisy_dataset
    from noisescope.data.synthetic import make_spiked
    from noisescope.spectral.analysis import analyse

    for seed in range(5):
        ds = make_spiked(n_train=4000, n_test=100, dim=80, k_star=9, signal=signal, seed=seed)
        nd = make_noisy_dataset(ds, "symmetric", 0.4, val_fraction=0.3, seed=seed)
        res = analyse(None, nd, segregation=False)["input"]
        d = choose_d(res.probe_correct["val"], res.d_grid, res.n_eval["val"], "1se")
        assert abs(d - 9) <= 2, (signal, seed, d)


# ----------------------------------------------------------------------------- repair verdict
def _paired(b, c, n):
    """Correctness vectors with b = (repaired right, original wrong), c = the reverse."""
    rep, orig = np.zeros(n, bool), np.zeros(n, bool)
    rep[:b] = True
    orig[b:b + c] = True
    both = n // 2
    rep[b + c:b + c + both] = orig[b + c:b + c + both] = True
    return rep, orig


def test_repair_verdict_paired_rule():
    rep, orig = _paired(40, 10, 1000)  # gain 3 points, se sqrt(51 - 0.961)/1000 = 0.71 points
    v = repair_verdict(rep, orig)
    assert v.recommended and v.method == "paired" and (v.b, v.c, v.n) == (40, 10, 1000)
    assert v.gain == pytest.approx(0.03) and v.se == pytest.approx(math.sqrt(51 - 31**2 / 1000) / 1000)
    assert v.reason == "repair: validation gain +3.0 points exceeds one standard error (0.7 points)"
    assert v.p_value == pytest.approx(mcnemar(rep, orig).p_value)
    rep, orig = _paired(14, 9, 300)  # gain 1.7, se 1.6 -> recommended; 13 vs 9: 1.3 < 1.6 -> not
    assert repair_verdict(rep, orig).recommended
    rep, orig = _paired(13, 9, 300)
    v = repair_verdict(rep, orig)
    assert not v.recommended
    assert v.reason == "no repair: validation gain +1.3 points is within one standard error (1.6 points)"
    v = repair_verdict(*_paired(0, 0, 100))
    assert not v.recommended and v.gain == 0 and "does not improve" in v.reason


def test_a_single_discordant_validation_sample_never_recommends_a_repair():
    v = repair_verdict(*_paired(1, 0, 80))  # gain 1.25 points; the plain Wald se would be 1.24
    assert not v.recommended and v.se > v.gain
    assert repair_verdict(*_paired(6, 0, 80)).recommended


def test_repair_verdict_unpaired_counts():
    v = repair_verdict(412, 401, n_val=1000, name="truncation d=10")
    se = math.sqrt(0.412 * 0.588 / 1000 + 0.401 * 0.599 / 1000)
    assert v.method == "unpaired" and v.se == pytest.approx(se) and not v.recommended
    assert v.reason.startswith("no repair (truncation d=10): validation gain +1.1 points")
    with pytest.raises(ValueError, match="n_val"):
        repair_verdict(412, 401)
    # choosing among candidates is evidence.rules.recommend (tests/test_recommend.py)


def test_resolution_warning_rule():
    assert resolution_warning(10000, 0.5, 0.02) is None  # se 0.5 points < 1
    msg = resolution_warning(1000, 0.45, 0.02)  # se 1.57 points > 1
    assert msg is not None and "1000 samples" in msg and "about 2475 samples" in msg
    assert resolution_warning(50, 0.5, 0.5).startswith("noisy validation has only 50 samples")
    assert resolution_warning(1000, 0.45, 0.0) is None


# ----------------------------------------------------------------------------- signals rules
def test_large_activation_flag_respects_median_error():
    e = 2.0**-8
    assert large_activation_flag(500.0) == "large"
    assert large_activation_flag(float("inf")) == "large"
    assert large_activation_flag(50.0) == "not large"
    assert large_activation_flag(100.0) == "undecided"  # 100 (1 - e) < 100 <= 100 (1 + e)
    assert large_activation_flag(100.0 / (1 - e)) == "large"
    assert large_activation_flag(100.0 / (1 + e) * 0.9999) == "not large"
    assert large_activation_flag(100.0 / (1 + e) * 1.0001) == "undecided"
    assert large_activation_flag(float("nan")) == "undecided"
    assert large_activation_flag(30.0, threshold=20.0, rel_err=0.0) == "large"


def test_neuron_follows_rule():
    assert neuron_follows(0.6, 0.05, 0.02) == "input"
    assert neuron_follows(0.05, 0.02, 0.4) == "label"
    assert neuron_follows(0.05, 0.09, 0.02) == "neither"
    assert neuron_follows(-0.3, 0.2, float("nan")) == "label"
    assert neuron_follows(float("nan"), 0.2, 0.3) == "undecided"
    assert neuron_follows(0.3, float("nan"), float("nan")) == "undecided"


# ----------------------------------------------------------------------------- attribution + fits
def _random_setup(seed=0, n=300, dim=12, c=4):
    g = torch.Generator().manual_seed(seed)
    f = torch.randn(n, dim, generator=g, dtype=torch.float64) * torch.linspace(3, 0.2, dim, dtype=torch.float64) + 1
    y = torch.randint(0, c, (n,), generator=g)
    st = FeatureStats(dim, c)
    st.update(f, y)
    w = torch.randn(c, dim, generator=g, dtype=torch.float64)
    b = torch.randn(c, generator=g, dtype=torch.float64)
    return f, y, st.spectrum(), w, b


def test_margin_attribution_sums_to_the_margin():
    f, y, spec, w, b = _random_setup()
    attr = margin_attribution(f.float(), spec, w.float(), b.float(), y)
    logits = (f @ w.T + b).double()
    rival = logits.clone()
    rival[torch.arange(len(y)), y] = -torch.inf
    margin = logits[torch.arange(len(y)), y] - rival.max(1).values
    assert torch.allclose(attr.contrib.sum(1) + attr.constant, attr.margin, atol=1e-5, rtol=0)
    assert torch.allclose(attr.margin, margin, atol=1e-4, rtol=0)
    assert torch.equal(attr.competitor, rival.argmax(1))
    d = 5
    assert torch.allclose(attr.head_margin(d) + attr.tail_margin(d), attr.margin, atol=1e-5, rtol=0)


def test_truncated_fit_matches_brute_force_and_margin_bound():
    f, y, spec, w, b = _random_setup(seed=1)
    noisy = torch.rand(len(y), generator=torch.Generator().manual_seed(2)) < 0.3
    readout = head_readout(spec, w, b)
    z = spec.project(f)
    grid = np.array([1, 2, 4, 7, 12])
    fit = truncated_fit(z, readout, y, noisy, grid)
    for j, d in enumerate(grid):
        v = spec.eigvecs[:, :d]
        logits = (spec.mean + (f - spec.mean) @ v @ v.T) @ w.T + b
        ok = logits.argmax(1) == y
        assert fit.clean_correct[j] == int(ok[~noisy].sum()) and fit.noisy_correct[j] == int(ok[noisy].sum())
    assert (fit.n_clean, fit.n_noisy) == (int((~noisy).sum()), int(noisy.sum()))
    attr = margin_attribution(f, spec, w, b, y)
    bound = margin_fit(attr, noisy, grid)
    assert (bound.clean_correct >= fit.clean_correct).all() and (bound.noisy_correct >= fit.noisy_correct).all()
    assert bound.clean_correct[-1] == fit.clean_correct[-1]  # d = D: the full model
    assert np.array_equal(fit.clean_correct, cumulative_correct(z[~noisy], y[~noisy], readout, grid).numpy())


# ----------------------------------------------------------------------------- noise position
def test_noise_position_words():
    dim = 512
    lam = np.linspace(10.0, 0.01, dim)
    share = np.full(dim, 0.4)
    share[475:] = 0.9  # k = 476..512
    pos = noise_position(share, lam, 0.4)
    expect_share = lam[475:].sum() / lam.sum()
    assert pos.count == 37 and pos.threshold == pytest.approx(0.7)
    assert pos.variance_share == pytest.approx(expect_share)
    assert pos.words == ("components with noise share >= 0.70 (halfway from the noise rate 0.40 to 1): 37 of 512, "
                         f"at k = 476..512 (the smallest-variance end), holding {100 * expect_share:.1f}% of the "
                         "variance")
    share2 = np.full(10, 0.1)
    share2[[0, 2]] = 0.5
    words = noise_position_words(share2, np.arange(10, 0, -1.0), 0.2)
    assert words.startswith("components with noise share >= 0.40 (2x the noise rate 0.20): 2 of 10, spread over "
                            "k = 1..3 (the largest-variance end)")
    assert noise_position_words(share2, np.arange(10, 0, -1.0), 0.2, d_star=2).endswith("; 1 beyond d* = 2")
    assert noise_position(share, lam, 0.4, d_star=10).words.endswith("; all beyond d* = 10")
    assert noise_position_words(np.full(4, 0.2), np.ones(4), 0.2).startswith("no component has noise share >= 0.40")
    assert "no noisy" in noise_position_words(np.zeros(3), np.ones(3), 0.0)


# ----------------------------------------------------------------------------- tail verdict
def test_tail_verdict_rule_on_numbers():
    ok = tail_verdict(1.0, 0.96, 0.97, 0.10, 5400, 3600, 10)
    assert ok.status == "supported" and ok.numbers["noisy_at_d_high"] < 0.48
    assert tail_verdict(1.0, 0.96, 0.99, 0.90, 5400, 3600, 10).status == "not supported"  # survives
    assert tail_verdict(1.0, 0.96, 0.60, 0.05, 5400, 3600, 10).status == "not supported"  # clean fit lost
    assert tail_verdict(1.0, 0.30, 0.99, 0.05, 5400, 3600, 10).status == "inconclusive"  # nothing memorized
    assert tail_verdict(1.0, 0.96, 0.99, 0.48, 5400, 100, 10).status == "inconclusive"  # straddles 0.48
    assert tail_verdict(1.0, 0.96, 0.99, 0.1, 5400, 0, 10).status == "inconclusive"


def _planted_network(memorize_in_tail: bool, seed: int = 0, n: int = 3000, dim: int = 24, k: int = 5,
                     c: int = 6, rate: float = 0.4):
    """A linear body (a random rotation) and head on inputs whose first k coordinates carry the
    class means. memorize_in_tail: noisy training samples carry a small offset on the tail
    coordinate of their observed class, which the head weighs heavily (a low-variance tail that
    memorizes); else noisy training samples sit at their observed class's mean (memorized in the
    top components)."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(c, c, generator=g, dtype=torch.float64))
    means = 10.0 * q[:, :k]  # (C, k)
    rot, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=torch.float64))

    def draw(m, memorized):
        y = torch.randint(0, c, (m,), generator=g)
        flip = torch.rand(m, generator=g) < rate
        y_obs = torch.where(flip, (y + torch.randint(1, c, (m,), generator=g)) % c, y)
        # memorized in the top components: noisy samples sit at their observed class's mean
        centre = means[y_obs] if memorized and not memorize_in_tail else means[y]
        x = torch.zeros(m, dim, dtype=torch.float64)
        x[:, :k] = centre + torch.randn(m, k, generator=g, dtype=torch.float64)
        x[:, k:] = 0.05 * torch.randn(m, dim - k, generator=g, dtype=torch.float64)
        if memorized and memorize_in_tail:
            x[torch.arange(m), k + y_obs] += flip.double()
        return x.float(), y_obs, y

    x, y_obs, y = draw(n, True)
    xv, yv_obs, yv = draw(n // 2, False)
    xt, _, yt = draw(n // 2, False)
    w = torch.zeros(c, dim, dtype=torch.float64)
    w[:, :k] = means
    if memorize_in_tail:
        w[torch.arange(c), k + torch.arange(c)] = 300.0
    body = torch.nn.Linear(dim, dim, bias=False)
    head = torch.nn.Linear(dim, c)
    with torch.no_grad():
        body.weight.copy_(rot.float())
        head.weight.copy_((w @ rot.T).float())
        head.bias.zero_()
    net = torch.nn.Sequential()
    net.add_module("body", body)
    net.add_module("head", head)
    data = NoisyDataset(x_train=x, y_train=y_obs, y_train_true=y, x_val=xv, y_val=yv_obs, y_val_true=yv,
                        x_test=xt, y_test=yt, num_classes=c, name="planted")
    return net, data


@pytest.mark.parametrize("in_tail, expected", [(True, "supported"), (False, "not supported")])
def test_tail_verdict_on_planted_networks(in_tail, expected):
    from noisescope.models.base import wrap_model
    from noisescope.spectral.analysis import analyse

    net, data = _planted_network(in_tail)
    model = wrap_model(net, head="head", taps=["body"])
    res = analyse(model, data, taps="feature", segregation=False)[model.feature_tap]
    d_star = choose_d(res.head_correct["val"], res.d_grid, res.n_eval["val"], "1se")
    assert abs(d_star - 5) <= 1
    with torch.no_grad():
        feats = model.features(data.x_train)
        full = model(data.x_train).argmax(1) == data.y_train
    noisy = data.noise_mask
    fit = truncated_fit(res.spectrum.project(feats), res.head, data.y_train, noisy, res.d_grid)
    assert fit.noisy_acc[-1] == pytest.approx(float(full[noisy].float().mean()))
    assert fit.noisy_acc[-1] > 0.95 and fit.clean_acc[-1] > 0.95  # memorized
    verdict = tail_verdict_from_fit(fit, d_star)
    assert verdict.status == expected, verdict.reason
    attr = margin_attribution(feats, res.spectrum, model.head.weight, model.head.bias, data.y_train)
    acc = TailMarginAccumulator(d_star)
    for s in range(0, len(feats), 1000):
        sl = slice(s, s + 1000)
        acc.update(margin_attribution(feats[sl], res.spectrum, model.head.weight, model.head.bias,
                                      data.y_train[sl]), noisy[sl])
    shares = acc.result()
    assert shares["noisy_train_obs"] == pytest.approx(tail_margin_share(attr, d_star, noisy), rel=1e-9)
    assert shares["clean_train"] == pytest.approx(tail_margin_share(attr, d_star, ~noisy), rel=1e-9)
    if in_tail:
        assert shares["noisy_train_obs"] > 0.5 and abs(shares["clean_train"]) < 0.1
    else:
        assert abs(shares["noisy_train_obs"]) < 0.1
