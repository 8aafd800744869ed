"""The fast spectral probe (issue 20) against the float64 implementation it replaced.

``tests/spectral_fast_reference.csv`` holds the spectral probe's rows on a small fixed run
(``tests/spectral_fast_record.py``), recorded with the implementation of main b3e4eff: noise
shares from a float64 noisy Gram matrix, tail fractions from a second float64 projection and
clipped per sample, argmax scoring. Now: noise shares from the noisy rows' Gram matrix (the
batch Gram product split into clean rows, in the probe's ``gram`` precision, and noisy rows, in
float64), tail
fractions from the top-d* coordinates of f - m_y (float64; on the head's tap from its float64
projection) and |f - m_y|^2 from the features, class-major scoring (same counts).
Stated tolerances (also in benchmarks/README.md, "The shared probe pass"):

* counts (accuracies at every d, d*, noise-dominated count): equal, or an accuracy moved by one
  sample in n at a near-tie;
* eigenvalues: 1e-6 of the tap's largest (float64 moments as before: in fact unchanged; the
  margin is for ``FeatureStats(gram_dtype=torch.float32)``, which rounds each batch's Gram
  product once to float32);
* effective / participation / stable rank: relative 1e-5;
* noise share rho_k: 1e-5 + 1e-6 lambda_1 / gap_k, gap_k the distance from lambda_k to its
  nearest neighbour (an eigenvector inside a near-degenerate pair rotates freely: Davis-Kahan);
* tail fractions, segregation, variance share, tail margin share: 1e-6 absolute.

Checked twice: against the file (on another CPU the float32 forward pass itself moves the
features by ~1e-6, so there every tolerance is widened CPU_FACTOR times and an accuracy may move
by two samples), and in the same process against the old numerics (float64 Gram products, every
curve at every d, a fresh float64 projection for the tail fractions at every d) with the
tolerances as stated.

The report grid (issue 20, second step): test and truncated-fit curves scored only at
``report_grid`` points by segment sums (``grid_correct``: the same counts as
``cumulative_correct`` there), d* chosen when validation ends, tail fractions at d* only, the
batch Gram products in float32 (summed in float64). Checked below on random read-outs and on a
model whose taps are wider than 64 (so the grid is thinned): every row the report grid writes
equals the every-d row.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from spectral_data import spiked_noisy  # noqa: E402
from spectral_fast_record import REFERENCE, probe_rows  # noqa: E402

from noisescope import load_config  # noqa: E402
from noisescope.metrics import rows_to_frame  # noqa: E402
from noisescope.models.mlp import build_mlp  # noqa: E402
from noisescope.probes import ProbeContext, make_probe  # noqa: E402
from noisescope.schedule import probe_epochs  # noqa: E402
from noisescope.spectral.linear_probe import Readout, cumulative_correct, grid_correct, report_grid  # noqa: E402
from noisescope.spectral.segregation import TailFractionAccumulator, noise_share, resolved  # noqa: E402
from noisescope.spectral.stats import FeatureStats  # noqa: E402

KEY = ["epoch", "probe", "tap", "subset", "metric", "index"]
COUNTS = {"probe_acc", "probe_acc_d_star", "trunc_acc", "trunc_acc_d_star", "fit_acc"}
EXACT = {"d_star", "trunc_d_star", "noise_dominated_count", "noise_rate"}
RANKS = {"effective_rank", "participation_ratio", "stable_rank"}
FRACTIONS = {"tail_fraction", "segregation", "noise_dominated_variance_share", "tail_margin_share"}


CPU_FACTOR = 20.0


def old_numerics_rows(monkeypatch: pytest.MonkeyPatch) -> pd.DataFrame:
    """The probe's rows with float64 Gram products, every curve at every d and tail fractions
    from a fresh float64 projection (b3e4eff's way)."""
    update = TailFractionAccumulator.update
    with monkeypatch.context() as mp:
        mp.setattr(TailFractionAccumulator, "update", lambda self, f, y, t, z=None: update(self, f, y, t))
        return probe_rows(eval_grid="all", gram="float64")


def merge(gold: pd.DataFrame, now: pd.DataFrame) -> pd.DataFrame:
    return gold.merge(now, on=KEY, how="outer", suffixes=("_ref", "_now"), indicator=True)


@pytest.fixture(scope="module")
def now() -> pd.DataFrame:
    return probe_rows()


def tolerance(m: pd.DataFrame, factor: float = 1.0) -> np.ndarray:
    """Per-row tolerance of the module docstring, widened ``factor`` times (counts: one sample
    per unit of ``factor`` above 1, at most two)."""
    tol = np.full(len(m), np.nan)
    for i, (tap, metric, idx) in enumerate(zip(m["tap"], m["metric"], m["index"], strict=True)):
        if metric in COUNTS:  # n = 600 val / test, >= 700 train
            tol[i] = (1.0 if factor == 1 else 2.0) * (1.0 / 600 if metric != "fit_acc" else 1.0 / 700) + 1e-12
        elif metric in EXACT:
            tol[i] = 0.0
        elif metric in RANKS:
            tol[i] = 1e-5 * abs(m["value_ref"].iloc[i])
        elif metric in FRACTIONS:
            tol[i] = 1e-6
        elif metric in ("eigval", "noise_share"):
            lam = m[(m.tap == tap) & (m.metric == "eigval")].sort_values("index")["value_ref"].to_numpy()
            if metric == "eigval":
                tol[i] = 1e-6 * lam[0]
            else:
                k = int(idx) - 1
                gaps = [lam[k - 1] - lam[k]] if k > 0 else []
                gaps += [lam[k] - lam[k + 1]] if k + 1 < len(lam) else []
                tol[i] = min(1.0, 1e-5 + 1e-6 * lam[0] / max(min(gaps), 1e-300))
    if factor != 1:
        counts = m["metric"].isin(COUNTS).to_numpy()
        tol[~counts] *= factor
    return tol


def check(merged: pd.DataFrame, factor: float) -> None:
    assert (merged["_merge"] == "both").all(), merged[merged["_merge"] != "both"][KEY].head()
    tol = tolerance(merged, factor)
    assert not np.isnan(tol).any(), set(merged["metric"][np.isnan(tol)])
    a, b = merged["value_ref"].to_numpy(float), merged["value_now"].to_numpy(float)
    ok = (np.abs(a - b) <= tol) | (np.isnan(a) & np.isnan(b))
    bad = merged.assign(tol=tol)[~ok]
    assert bad.empty, bad[[*KEY, "value_ref", "value_now", "tol"]].head().to_string()


def test_every_recorded_row_is_written_within_its_tolerance_across_cpus(now):
    gold = pd.read_csv(REFERENCE, keep_default_na=False, na_values=[""])
    check(merge(gold, now), CPU_FACTOR)


def test_the_fast_numerics_keep_every_row_within_its_stated_tolerance(now, monkeypatch):
    m = merge(old_numerics_rows(monkeypatch), now)
    check(m, 1.0)
    same = m["metric"].isin(COUNTS | EXACT)  # no count, d* or noise-dominated count moved here
    assert np.array_equal(m["value_ref"][same].to_numpy(), m["value_now"][same].to_numpy())
    assert not np.array_equal(m["value_ref"].to_numpy(), m["value_now"].to_numpy())  # the fast path ran


def naive_correct(z: torch.Tensor, y: torch.Tensor, r: Readout, grid: np.ndarray) -> torch.Tensor:
    """The definition: argmax of the full float64 scores at each d (first maximum wins)."""
    return torch.tensor([int((r.scores(z.double(), int(d)).argmax(1) == y).sum()) for d in grid])


@pytest.mark.parametrize("grid", [np.arange(1, 41), np.array([1, 3, 7, 20, 40])])
def test_class_major_scoring_counts_what_argmax_counts(grid):
    g = torch.Generator().manual_seed(1)
    z = torch.randn(300, 40, generator=g) * torch.linspace(3, 0.1, 40)
    y = torch.randint(0, 5, (300,), generator=g)
    r = Readout(torch.randn(5, generator=g, dtype=torch.float64), torch.randn(40, 5, generator=g, dtype=torch.float64))
    assert torch.equal(cumulative_correct(z, y, r, grid, max_elems=1000), naive_correct(z, y, r, grid))


def test_ties_go_to_the_first_class_as_with_argmax():
    z = torch.randn(50, 6, generator=torch.Generator().manual_seed(2))
    y = torch.arange(50) % 4
    w = torch.zeros(6, 4, dtype=torch.float64)
    w[3:, 2] = 1.0  # class 2 takes over from d = 4 on where z_4.. > 0
    for icpt in ([0.0, 0.0, 0.0, 0.0], [0.0, 1.0, 1.0, 0.0], [0.5, 0.5, 0.5, 0.5]):
        r = Readout(torch.tensor(icpt, dtype=torch.float64), w)
        got = cumulative_correct(z, y, r, np.arange(1, 7))
        assert torch.equal(got, naive_correct(z, y, r, np.arange(1, 7)))
    r = Readout(torch.tensor([0.0, 1.0, 1.0, 0.0], dtype=torch.float64), torch.zeros(6, 4, dtype=torch.float64))
    assert cumulative_correct(z, y, r, np.arange(1, 7)).tolist() == [int((y == 1).sum())] * 6  # the tie 1-2 -> 1


def test_float32_batch_gram_keeps_the_spectrum_to_1e_6_of_its_largest_eigenvalue():
    data = spiked_noisy(n=3000, n_val=10, n_test=10, dim=40, seed=5)
    x = data.x_train + 50.0  # a large mean: the shift keeps the product well conditioned
    s64, s32 = FeatureStats(40, 10), FeatureStats(40, 10, gram_dtype=torch.float32)
    for s in range(0, 3000, 512):
        s64.update(x[s:s + 512], data.y_train[s:s + 512])
        s32.update(x[s:s + 512], data.y_train[s:s + 512])
    lam64, lam32 = s64.spectrum().eigvals, s32.spectrum().eigvals
    assert torch.allclose(lam32, lam64, rtol=0, atol=1e-6 * float(lam64[0]))
    assert not torch.equal(lam32, lam64)  # the option is in effect
    with pytest.raises(ValueError, match="gram_dtype"):
        FeatureStats(4, gram_dtype=torch.float16)


def test_tail_fractions_from_given_coordinates_equal_a_fresh_projection():
    data = spiked_noisy(n=2000, n_val=10, n_test=10, dim=30, seed=6)
    st = FeatureStats(30, 10)
    st.update(data.x_train, data.y_train, data.y_train_true)
    spec, grid = st.spectrum(), np.array([1, 2, 6, 10, 30])
    fresh = TailFractionAccumulator(spec, st.clean_class_means(), grid)
    given = TailFractionAccumulator(spec, st.clean_class_means(), grid)
    fresh.update(data.x_train, data.y_train, data.y_train_true)
    given.update(data.x_train, data.y_train, data.y_train_true, z=spec.project(data.x_train))
    for a, b in zip(fresh.result(), given.result(), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="coordinates"):
        given.update(data.x_train, data.y_train, data.y_train_true, z=spec.project(data.x_train, 5))


def definition_shares(spec, x: torch.Tensor, noisy: torch.Tensor) -> torch.Tensor:
    """rho_k by its definition, sum_{noisy i} z_ik^2 / sum_i z_ik^2, from float64 coordinates."""
    z2 = spec.project(x, None, torch.float64).square()
    return z2[noisy].sum(0) / z2.sum(0)


def test_the_noise_share_from_the_split_gram_matrix_is_its_definition():
    """The batch Gram matrix summed as clean rows' + noisy rows' (noisy_second_moment=True) is the
    same covariance; rho_k from the noisy part equals sum_noisy z^2 / sum z^2 (float64), and with
    float32 Gram products (the clean rows' only) stays within the stated tolerance of the
    float64 numbers."""
    data = spiked_noisy(n=2000, n_val=10, n_test=10, dim=30, seed=7)
    x, y, t = data.x_train + 20.0, data.y_train, data.y_train_true  # a mean: the shift matters
    built = {}
    for key, noisy, dtype in (("plain", False, torch.float64), ("64", True, torch.float64),
                              ("32", True, torch.float32)):
        built[key] = st = FeatureStats(30, 10, noisy_second_moment=noisy, gram_dtype=dtype)
        for s in range(0, 2000, 300):
            st.update(x[s:s + 300], y[s:s + 300], t[s:s + 300])
    cov = built["plain"].covariance()
    torch.testing.assert_close(built["64"].covariance(), cov, rtol=1e-12, atol=1e-12 * float(cov.abs().max()))
    # the noisy rows' product stays float64 with float32 Gram products (a float32 one, rounded
    # to ~1e-7 of its largest entries, swamped the shares of small components on the demo)
    s_noisy = built["64"].noisy_centered_second_moment()
    torch.testing.assert_close(built["32"].noisy_centered_second_moment(), s_noisy, rtol=0,
                               atol=1e-12 * float(s_noisy.abs().max()))
    spec, spec32 = built["64"].spectrum(), built["32"].spectrum()
    rho = noise_share(built["64"], spec)
    torch.testing.assert_close(rho, definition_shares(spec, x, data.noise_mask), rtol=0, atol=1e-10)
    assert float(rho[:6].mean()) < 0.5 < float(rho[6:].mean())  # the planted tail is noise-dominated
    lam = spec.eigvals
    gaps = (lam[:, None] - lam[None]).abs() + torch.diag(torch.full_like(lam, torch.inf))
    tol = (1e-5 + 1e-6 * lam[0] / gaps.min(1).values).clamp(max=1.0)
    diff = (noise_share(built["32"], spec32) - rho).abs()
    assert bool((diff <= tol).all()) and float(diff.max()) > 0  # float32 products ran, within tolerance
    with pytest.raises(ValueError, match="noisy_second_moment"):
        noise_share(built["plain"], built["plain"].spectrum())


def test_tail_fractions_from_the_top_d_coordinates_are_the_definition():
    """At d = 6 of 30 the accumulator needs only 6 coordinates (|f - m_y|^2 from the features):
    the mean of |P_tail delta_i|^2 / |delta_i|^2 per group, to 1e-12 from float64 coordinates,
    to 1e-6 from float32 ones."""
    data = spiked_noisy(n=1500, n_val=10, n_test=10, dim=30, seed=12)
    st = FeatureStats(30, 10)
    st.update(data.x_train, data.y_train, data.y_train_true)
    spec, means = st.spectrum(), st.clean_class_means()
    delta = data.x_train.double() - means[data.y_train_true]
    tail = spec.eigvecs[:, 6:]
    frac = ((delta @ tail).square().sum(1) / delta.square().sum(1)).numpy()
    noisy = data.noise_mask.numpy()
    want = (frac[~noisy].mean(), frac[noisy].mean())
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-6)):
        acc = TailFractionAccumulator(spec, means, np.array([6]))
        for s in range(0, 1500, 400):
            sl = slice(s, s + 400)
            acc.update(data.x_train[sl], data.y_train[sl], data.y_train_true[sl],
                       z=spec.project(data.x_train[sl], 6, dtype))
        got = acc.result()
        np.testing.assert_allclose([got[0][0], got[1][0]], want, rtol=0, atol=tol)
    with pytest.raises(ValueError, match="coordinates"):
        acc.update(data.x_train[:5], data.y_train[:5], data.y_train_true[:5], z=spec.project(data.x_train[:5], 5))


def test_auto_probe_schedule_is_every_epoch_for_short_runs_and_log_spaced_for_long_ones():
    assert probe_epochs(29, "auto") == list(range(30))  # 30 probed epochs: every one
    long = probe_epochs(50, "auto")
    assert long == probe_epochs(50, "log") and len(long) == 22
    assert long[:11] == list(range(11)) and long[-1] == 50
    assert probe_epochs(50, "auto", points=60) == list(range(51))
    cfg = load_config(None, ["probe.schedule=auto"])
    assert cfg.probe.schedule == "auto"


def test_a_component_without_variance_has_noise_share_zero_whatever_the_rounding():
    g = torch.Generator().manual_seed(8)
    x = torch.randn(1000, 4, generator=g, dtype=torch.float64)
    x = torch.cat([x, x[:, 3:] * 3.0], 1)  # column 5 = 3 x column 4: one direction without variance
    y_true = torch.randint(0, 3, (1000,), generator=g)
    y_obs = torch.where(torch.rand(1000, generator=g) < 0.3, (y_true + 1) % 3, y_true)
    st = FeatureStats(5, 3, noisy_second_moment=True)
    st.update(x, y_obs, y_true)
    spec = st.spectrum()
    assert resolved(spec.eigvals).tolist() == [True] * 4 + [False]
    rho = noise_share(st, spec)
    assert float(rho[4]) == 0.0 and bool((rho[:4] > 0.1).all())
    assert torch.allclose(rho[:4], definition_shares(spec, x, y_obs != y_true)[:4], rtol=0, atol=1e-12)


# --------------------------------------------------------------------------- the report grid
def test_the_report_grid_is_every_d_to_64_then_16_per_octave_plus_the_top_and_the_extras():
    g = report_grid(np.arange(1, 513))
    assert len(g) == 64 + 48 and g[:64].tolist() == list(range(1, 65))
    assert g[64:70].tolist() == [67, 70, 73, 76, 79, 83] and g[-3:].tolist() == [470, 490, 512]
    assert {128, 256, 512} <= set(g.tolist())  # every octave boundary
    assert report_grid(np.arange(1, 513), (100, 101, 600)).tolist() == sorted({*g.tolist(), 100, 101})
    assert report_grid(np.arange(1, 49)).tolist() == list(range(1, 49))  # <= 64 wide: every d
    assert report_grid(np.arange(1, 201))[-1] == 200  # the top is kept off the ladder too
    assert report_grid([2, 100, 200, 300]).tolist() == [2, 100, 200, 300]  # sparser than the ladder
    assert report_grid([]).size == 0


def random_readout(dim: int, c: int, seed: int, n: int = 700) -> tuple[torch.Tensor, torch.Tensor, Readout]:
    g = torch.Generator().manual_seed(seed)
    z = (torch.randn(n, dim, generator=g) * torch.linspace(3, 0.01, dim)).float()  # float32, as projected
    y = torch.randint(0, c, (n,), generator=g)
    r = Readout(0.1 * torch.randn(c, generator=g, dtype=torch.float64),
                0.1 * torch.randn(dim, c, generator=g, dtype=torch.float64))
    return z, y, r


@pytest.mark.parametrize("grid", [
    report_grid(np.arange(1, 301), (100, 101, 150)),  # runs of single components after longer segments
    np.array([3, 4, 5, 40, 41, 200, 299, 300]),  # a first segment longer than one component
    np.arange(1, 301),  # every d: all segments single
])
def test_segment_sums_give_the_same_counts_as_every_d_scoring_restricted_to_the_grid(grid):
    for seed, c in ((1, 10), (2, 2), (3, 17)):
        z, y, r = random_readout(300, c, seed)
        every = cumulative_correct(z, y, r, np.arange(1, 301))
        assert torch.equal(grid_correct(z, y, r, grid), every[torch.as_tensor(grid) - 1])


def test_segment_sums_break_ties_to_the_first_class_as_argmax():
    """Exact ties (constant scores, copies of a class's weights): the first class wins, in a
    run of single components and after a longer segment alike."""
    z = torch.randn(60, 8, generator=torch.Generator().manual_seed(4))
    y = torch.arange(60) % 4
    w = torch.zeros(8, 4, dtype=torch.float64)
    w[:, 1] = w[:, 2] = torch.linspace(1, 2, 8, dtype=torch.float64)  # classes 1 and 2 tie everywhere
    for icpt in ([0.0, 0.0, 0.0, 0.0], [0.0, 1.0, 1.0, 0.0], [0.5, 0.5, 0.5, 0.5]):
        r = Readout(torch.tensor(icpt, dtype=torch.float64), w)
        for grid in (np.arange(1, 9), np.array([1, 2, 5, 8]), np.array([4, 8])):
            got = grid_correct(z, y, r, grid)
            assert torch.equal(got, naive_correct(z, y, r, grid))
            assert torch.equal(got, cumulative_correct(z, y, r, np.arange(1, 9))[torch.as_tensor(grid) - 1])
    r = Readout(torch.tensor([0.0, 1.0, 1.0, 0.0], dtype=torch.float64), w)
    twos = torch.full((60,), 2)  # class 2 is never predicted: class 1 ties it and comes first
    assert grid_correct(z, twos, r, np.array([1, 2, 5, 8])).tolist() == [0, 0, 0, 0]
    assert grid_correct(z, twos - 1, r, np.array([8])).tolist() == [int((z.double() @ w[:, 1] > -1).sum())]


def wide_run(**options: object) -> pd.DataFrame:
    """The probe on a model with taps 160 and 96 wide (over 64: the report grid thins them)."""
    data = spiked_noisy(n=1500, n_val=400, n_test=500, dim=40, seed=9)
    torch.manual_seed(1)
    model = build_mlp((40,), 10, widths=[160, 96]).eval()
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rows = make_probe("spectral", **options)(model, data, ProbeContext(epoch=2, batch_size=256))
    finally:
        torch.set_num_threads(before)
    return rows_to_frame(rows)


@pytest.fixture(scope="module")
def wide() -> dict[str, pd.DataFrame]:
    return {"report": wide_run(gram="float64"), "all": wide_run(eval_grid="all", gram="float64"),
            "fast": wide_run()}


def test_the_report_grid_writes_the_every_d_numbers_at_its_points(wide):
    rep, every = wide["report"], wide["all"]
    m = rep.merge(every, on=KEY, how="outer", suffixes=("_rep", "_all"), indicator=True)
    assert (m["_merge"] != "left_only").all()  # nothing new
    gone = m[m["_merge"] == "right_only"]
    # only test curves and truncated-fit curves lose points, and only off the report grid
    curves = gone["metric"].isin(["probe_acc", "trunc_acc"]) & (gone["subset"] == "test")
    curves |= gone["metric"] == "fit_acc"
    assert curves.all(), gone[~curves][KEY].head()
    for tap, width in (("layer1", 160), ("layer2", 96)):
        kept = m[(m.tap == tap) & (m.metric == "probe_acc") & (m.subset == "test") & (m._merge == "both")]
        d_star = int(every[(every.tap == tap) & (every.metric == "d_star")]["value"].iat[0])
        stars = [int(every[(every.tap == tap) & (every.metric == k)]["value"].iat[0])
                 for k in ("d_star", "trunc_d_star") if ((every.tap == tap) & (every.metric == k)).any()]
        on_grid = set(report_grid(np.arange(1, width + 1), stars).tolist())
        assert set(kept["index"]) == on_grid and d_star in on_grid
        fit = m[(m.tap == tap) & (m.metric == "fit_acc") & (m._merge == "both")]
        assert set(fit["index"]) == (on_grid if tap == "layer2" else set())  # the head's tap only
    both = m[m["_merge"] == "both"]
    assert len(both) > 1000 and (both["metric"] == "probe_acc").any() and (both["metric"] == "fit_acc").any()
    exact = ~both["metric"].isin(["tail_fraction", "segregation"])
    a, b = both["value_rep"].to_numpy(float), both["value_all"].to_numpy(float)
    assert np.array_equal(a[exact.to_numpy()], b[exact.to_numpy()], equal_nan=True)  # counts, d*, spectra
    np.testing.assert_allclose(a[~exact.to_numpy()], b[~exact.to_numpy()], rtol=0, atol=1e-12)  # at d*
    for name in ("d_star", "trunc_d_star", "trunc_acc_d_star", "probe_acc_d_star"):
        assert (both["metric"] == name).any()


def test_float32_gram_products_move_the_wide_probe_within_the_stated_tolerances(wide):
    """Float32 batch Gram products (the default) against float64 ones on the wide run:
    eigenvalues within 1e-6 lambda_1 (Weyl: |d lambda_k| <= ||d C||), counts within one
    sample at a near-tie, d* unchanged."""
    m = merge(wide["report"], wide["fast"])
    check(m, 1.0)
    lam = m[m.metric == "eigval"]
    assert not np.array_equal(lam["value_ref"], lam["value_now"])  # the float32 products ran
    for name in ("d_star", "trunc_d_star"):
        sel = m[m.metric == name]
        assert len(sel) and np.array_equal(sel["value_ref"], sel["value_now"])


def test_a_bad_eval_grid_names_the_option_and_the_choices():
    with pytest.raises(ValueError, match="eval_grid must be one of 'report', 'all'"):
        make_probe("spectral", eval_grid="every")
    with pytest.raises(Exception, match=r"probe\.options\.spectral\.gram must be one of"):
        load_config(None, ['probe.options={spectral = {gram = "half"}}'])


def test_without_a_validation_split_d_star_is_the_top_and_test_is_scored_at_the_report_grid():
    import dataclasses

    data = spiked_noisy(n=600, n_val=10, n_test=200, dim=40, seed=11)
    data = dataclasses.replace(data, x_val=data.x_val[:0], y_val=data.y_val[:0], y_val_true=data.y_val_true[:0])
    torch.manual_seed(2)
    model = build_mlp((40,), 10, widths=[80]).eval()
    df = rows_to_frame(make_probe("spectral")(model, data, ProbeContext(epoch=1, batch_size=128)))
    phi = df[df.tap == model.feature_tap]
    assert float(phi[phi.metric == "d_star"]["value"].iat[0]) == 80
    test = phi[(phi.metric == "probe_acc") & (phi.subset == "test")]
    assert test["index"].tolist() == report_grid(np.arange(1, 81)).tolist()
    assert not (phi.metric == "trunc_d_star").any() and (phi.metric == "trunc_acc").any()
    assert len(phi[phi.metric == "tail_fraction"]) == 2
