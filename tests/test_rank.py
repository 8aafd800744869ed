"""The effective rank's standard error (spectral.rank.effective_rank_rel_se) against simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from noisescope.spectral.rank import effective_rank, effective_rank_rel_se


def simulated_rel_sd(lam: np.ndarray, n: int, draws: int, seed: int = 0) -> float:
    """Relative SD of the effective rank over ``draws`` Gaussian samples of size n with
    covariance diag(lam)."""
    rng = np.random.default_rng(seed)
    ranks = []
    for _ in range(draws):
        x = rng.standard_normal((n, len(lam))) * np.sqrt(lam)
        ranks.append(effective_rank(np.linalg.eigvalsh(np.cov(x, rowvar=False, bias=True))))
    return float(np.std(ranks, ddof=1) / np.mean(ranks))


@pytest.mark.parametrize("lam", [np.linspace(5.0, 0.1, 20), 3.0 * 0.8 ** np.arange(30)])
def test_the_delta_method_error_matches_the_spread_over_gaussian_draws(lam):
    n = 4000
    predicted = effective_rank_rel_se(lam, n)
    simulated = simulated_rel_sd(lam, n, draws=300)
    # 300 draws estimate an SD to ~4% (1 / sqrt(2 * 299)); the delta method is first order
    assert predicted == pytest.approx(simulated, rel=0.2)


def test_the_error_shrinks_as_one_over_root_n():
    lam = np.linspace(5.0, 0.1, 20)
    assert effective_rank_rel_se(lam, 400) == pytest.approx(2 * effective_rank_rel_se(lam, 1600), rel=1e-12)


def test_an_isotropic_spectrum_has_no_first_order_error_and_too_few_samples_none():
    assert effective_rank_rel_se(np.ones(10), 100) == pytest.approx(0.0, abs=1e-12)
    assert math.isnan(effective_rank_rel_se(np.ones(10), 1))
    assert math.isnan(effective_rank_rel_se(np.zeros(10), 100))
