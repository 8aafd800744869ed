"""The claims scorecard on synthetic metrics tables with known answers."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from noisescope.evidence.claims import (
    CLAIM_FUNCTIONS,
    STATUSES,
    claim_clean_before_noisy,
    claim_double_descent,
    claim_effective_rank_grows,
    claim_large_activation,
    claim_no_tail_at_init,
    claim_noise_in_tail,
    claim_rank_risk_valley,
    claim_separation_outward,
    claim_systematic_noise_in_signal,
    claim_test_alignment,
    claim_test_error_rises,
    claim_truncation_vs_early_stop,
    claim_wider_larger_tail,
    scorecard,
    scorecard_frame,
)
from noisescope.metrics import Row, empty_frame, rows_to_frame

EPOCHS = list(range(11))
CLEAN = [0.1, 0.6, 0.8, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99, 1.0, 1.0]
NOISY = [0.1, 0.05, 0.05, 0.06, 0.2, 0.4, 0.6, 0.8, 0.9, 0.95, 0.98]
VAL = [0.1, 0.45, 0.50, 0.52, 0.51, 0.48, 0.45, 0.42, 0.40, 0.39, 0.38]
TEST = [0.1, 0.70, 0.78, 0.82, 0.80, 0.75, 0.70, 0.66, 0.64, 0.62, 0.62]
N = {"clean_train": 5400, "noisy_train_obs": 3600, "val": 1000, "test": 10000}
TAPS = ["layer1", "layer2", "layer3"]
D = 64


def dynamics_rows(clean=CLEAN, noisy=NOISY, val=VAL, test=TEST, n=True):
    rows = []
    for subset, curve in (("clean_train", clean), ("noisy_train_obs", noisy), ("val", val), ("test", test)):
        for e, v in zip(EPOCHS, curve, strict=True):
            rows.append(Row(e, "dynamics", "acc", v, subset=subset))
            if n:
                rows.append(Row(e, "dynamics", "n", N[subset], subset=subset))
    return rows


def signals_rows(epoch=10, separation=(0.95, 0.8, 0.5), ratio=(500.0, 20.0, 10.0), r2=0.6, eta_true=0.05,
                 eta_obs=0.02, align=(0.1, -0.05), n_align=(8000, 2000), taps=TAPS, spread=0.01, sd_align=None):
    """Signals rows; per-class separations are the average +- ``spread`` (classes 0-3)."""
    rows = []
    for t, s, r in zip(taps, separation, ratio, strict=True):
        rows += [Row(epoch, "signals", "separation", s, "by_true", t)]
        rows += [Row(epoch, "signals", "separation", s + spread * (t == taps[-1]) * d, "by_true", t, c)
                 for c, d in enumerate((-1.5, -0.5, 0.5, 1.5))]
        if sd_align is not None:
            rows += [Row(epoch, "signals", "alignment_sd_correct", sd_align[0], "test", t),
                     Row(epoch, "signals", "alignment_sd_wrong", sd_align[1], "test", t)]
        rows += [
                 Row(epoch, "signals", "large_act_ratio", r, "train", t),
                 Row(epoch, "signals", "r2_input", r2, "train", t), Row(epoch, "signals", "eta2_true", eta_true,
                                                                        "train", t),
                 Row(epoch, "signals", "eta2_obs", eta_obs, "train", t),
                 Row(epoch, "signals", "alignment_correct", align[0], "test", t),
                 Row(epoch, "signals", "alignment_wrong", align[1], "test", t),
                 Row(epoch, "signals", "alignment_n_correct", n_align[0], "test", t),
                 Row(epoch, "signals", "alignment_n_wrong", n_align[1], "test", t)]
    return rows


def spectral_rows(epoch, tap="layer3", er=40.0, d_star=10, fit_clean=None, fit_noisy=None, share=None,
                  probe=None, trunc=0.70, rate=0.4, lam=None):
    lam = np.linspace(10, 0.01, D) if lam is None else lam
    rows = [Row(epoch, "spectral", "eigval", v, "train", tap, k) for k, v in enumerate(lam, 1)]
    rows += [Row(epoch, "spectral", "effective_rank", er, "train", tap),
             Row(epoch, "spectral", "trunc_d_star", d_star, "val", tap),
             Row(epoch, "spectral", "trunc_acc_d_star", trunc, "test", tap),
             Row(epoch, "spectral", "noise_rate", rate, "train", tap)]
    rows += [Row(epoch, "spectral", "trunc_acc", 0.5, "val", tap, d) for d in (1, d_star, D)]
    share = np.full(D, rate) if share is None else share
    rows += [Row(epoch, "spectral", "noise_share", v, "train", tap, k) for k, v in enumerate(share, 1)]
    for subset, fit in (("clean_train", fit_clean), ("noisy_train_obs", fit_noisy)):
        if fit is not None:
            rows += [Row(epoch, "spectral", "fit_acc", v, subset, tap, d) for d, v in fit.items()]
    if probe is not None:
        rows += [Row(epoch, "spectral", "probe_acc", v, "test", tap, d) for d, v in probe.items()]
    return rows


def frame(*parts):
    return rows_to_frame([r for p in parts for r in p])


def full_run(**kw):
    spec0 = spectral_rows(0, er=50.0, fit_clean={10: 0.1, D: 0.1}, fit_noisy={10: 0.1, D: 0.1})
    spec3 = spectral_rows(3, er=12.5, fit_clean={10: 0.9, D: 0.92}, fit_noisy={10: 0.05, D: 0.06})
    spec10 = spectral_rows(10, er=44.0, fit_clean={10: 0.97, D: 1.0}, fit_noisy={10: 0.10, D: 0.98}, **kw)
    return frame(dynamics_rows(), signals_rows(), spec0, spec3, spec10)


# ----------------------------------------------------------------------------- Kubo
def test_clean_before_noisy():
    assert claim_clean_before_noisy(frame(dynamics_rows())).status == "supported"
    c = claim_clean_before_noisy(frame(dynamics_rows(clean=NOISY, noisy=CLEAN)))
    assert c.status == "not supported" and c.numbers["t_clean"] > c.numbers["t_noisy"]
    same = [0.1, 0.6] + [0.9] * 9
    assert claim_clean_before_noisy(frame(dynamics_rows(clean=same, noisy=same))).status == "inconclusive"
    never = [0.1] + [0.05] * 10
    c = claim_clean_before_noisy(frame(dynamics_rows(noisy=never)))
    assert c.status == "supported" and c.numbers["t_noisy"] is None
    c = claim_clean_before_noisy(empty_frame())
    assert c.status == "not measured" and "dynamics" in c.command


def test_test_error_rises():
    c = claim_test_error_rises(frame(dynamics_rows()))
    assert c.status == "supported" and c.numbers["early_stop_epoch"] == 3
    assert c.numbers["test_acc_early_stop"] == 0.82 and c.numbers["test_interval_width"] < 0.02
    flat = [0.1, 0.7, 0.78, 0.82] + [0.818] * 7
    assert claim_test_error_rises(frame(dynamics_rows(test=flat))).status == "not supported"
    no_mem = [0.1] + [0.05] * 10
    assert claim_test_error_rises(frame(dynamics_rows(noisy=no_mem))).status == "inconclusive"
    c = claim_test_error_rises(frame(dynamics_rows(n=False)))
    assert c.status == "inconclusive" and "unknown" in c.summary
    c = claim_test_error_rises(frame(dynamics_rows(n=False)), n_by_subset=N)
    assert c.status == "supported"
    assert claim_test_error_rises(frame(dynamics_rows()), early_stop_epoch=10).status == "inconclusive"


def dd_rows(loss, err=None, noisy=None, n_test=10000, sd=1.0, n_noisy=120):
    """Dynamics rows of a run whose test loss (and error) follow the given curves."""
    epochs = range(len(loss))
    err = [0.3] * len(loss) if err is None else err
    noisy = [0.5] * len(loss) if noisy is None else noisy
    rows = []
    for e in epochs:
        rows += [Row(e, "dynamics", "loss", loss[e], subset="test"), Row(e, "dynamics", "loss_sd", sd, subset="test"),
                 Row(e, "dynamics", "acc", 1 - err[e], subset="test"), Row(e, "dynamics", "n", n_test, subset="test"),
                 Row(e, "dynamics", "acc", noisy[e], subset="noisy_train_obs"),
                 Row(e, "dynamics", "n", n_noisy, subset="noisy_train_obs"),
                 Row(e, "dynamics", "acc", 0.9, subset="train")]
    return frame(rows)


HUMP = [0.9] * 4 + [0.6] * 6 + [0.9] * 8 + [0.75] * 10  # down 0.3, up 0.3 nats, down 0.15 nats


def test_double_descent_reads_the_loss_with_a_band_from_its_standard_error():
    # SE per point 1/sqrt(10000) = 0.01, of a dip 0.014: 0.15 nats is > 10 SE
    c = claim_double_descent(dd_rows(HUMP, noisy=[0.5] * 12 + [1.0] * 16))
    assert c.status == "supported" and c.numbers["read_on"] == "loss"
    assert c.numbers["loss"]["gain"] == pytest.approx(0.15) and c.numbers["loss"]["benign"] is True
    assert c.numbers["loss"]["fall_se"] == pytest.approx(np.sqrt(2) * 0.01)
    assert c.numbers["error"]["status"] == "absent"  # a flat error: reported beside, not deciding
    # benign overfitting needs the noisy labels fitted at the second minimum
    assert claim_double_descent(dd_rows(HUMP)).numbers["loss"]["benign"] is False
    # the same hump on 100 test samples with a spread of 2 nats: SE of a dip 0.28, fall 0.15 < 1 SE
    c = claim_double_descent(dd_rows(HUMP, n_test=100, sd=2.0, noisy=[0.95] * 28))
    assert c.status == "not supported" and c.numbers["loss"]["status"] == "absent"
    # between 1 and 2 SE: inconclusive (SE of a dip 0.106 at n=400, sd 1.5; fall 0.15)
    c = claim_double_descent(dd_rows(HUMP, n_test=400, sd=1.5))
    assert c.status == "inconclusive" and c.numbers["loss"]["status"] == "unclear"


def test_double_descent_absent_is_gated_on_memorization():
    rising = list(np.linspace(0.6, 1.2, 20))
    assert claim_double_descent(dd_rows(rising, noisy=[0.95] * 20)).status == "not supported"
    c = claim_double_descent(dd_rows(rising, noisy=list(np.linspace(0.2, 0.6, 20))))
    assert c.status == "inconclusive" and "train longer" in c.summary
    # a fit that has stopped rising (0.5 since epoch 5; Wilson width on 120 samples ~0.18): not supported
    c = claim_double_descent(dd_rows(rising, noisy=[0.2] * 5 + [0.5] * 15))
    assert c.status == "not supported" and "stopped rising" in c.summary
    # a fit that fell (the clean labels learned first) and stays low has not begun to memorize
    c = claim_double_descent(dd_rows(rising, noisy=[0.5] + [0.1] * 19))
    assert c.status == "inconclusive"
    # no noisy labels: the training fit (0.9 >= 0.9) is the gate
    c = claim_double_descent(dd_rows(rising, noisy=[float("nan")] * 20, n_noisy=0))
    assert c.status == "not supported" and c.numbers["fit_of"].startswith("training")
    assert claim_double_descent(empty_frame()).status == "not measured"


def test_double_descent_falls_back_to_the_error_without_loss_spread():
    m = frame(dynamics_rows())  # accuracies and n only (a run recorded before loss_sd)
    c = claim_double_descent(m)
    assert c.numbers["read_on"] == "error" and "re-run" in c.summary
    assert c.status == "not supported"  # test accuracy falls and stays down, 0.98 memorized
    err = [0.5, 0.2, 0.18, 0.18, 0.25, 0.3, 0.36, 0.36, 0.33, 0.30, 0.30]
    c = claim_double_descent(frame(dynamics_rows(test=[1 - e for e in err])), smooth=1)
    assert c.status == "supported" and c.numbers["error"]["gain"] == pytest.approx(0.06)


def test_separation_outward():
    assert claim_separation_outward(frame(signals_rows())).status == "supported"
    c = claim_separation_outward(frame(signals_rows(separation=(0.5, 0.8, 0.95))))
    assert c.status == "not supported"
    # with the taps given in the other order the same rows read the other way
    assert claim_separation_outward(frame(signals_rows(separation=(0.5, 0.8, 0.95))),
                                    taps=TAPS[::-1]).status == "supported"
    assert claim_separation_outward(frame(signals_rows(separation=(0.95, 0.7, 0.8)))).status == "not supported"
    assert claim_separation_outward(frame(signals_rows(separation=(0.9,), ratio=(1.0,), taps=["a"]))).status == \
        "inconclusive"
    assert claim_separation_outward(empty_frame()).status == "not measured"


def test_large_activation():
    c = claim_large_activation(frame(signals_rows()))
    assert c.status == "supported" and c.numbers["tap"] == "layer1" and c.numbers["follows"] == "input"
    assert claim_large_activation(frame(signals_rows(r2=0.02, eta_obs=0.5))).status == "not supported"
    assert claim_large_activation(frame(signals_rows(r2=0.02, eta_true=0.01))).status == "not supported"
    assert claim_large_activation(frame(signals_rows(ratio=(100.2, 20.0, 10.0)))).status == "inconclusive"
    assert claim_large_activation(frame(signals_rows(ratio=(50.0, 20.0, 10.0)))).status == "not supported"
    c = claim_large_activation(frame(signals_rows(ratio=(50.0, 20.0, 900.0))))
    assert c.status == "not supported" and "deep" in c.summary
    assert claim_large_activation(frame(signals_rows(r2=float("nan")))).status == "inconclusive"


def test_test_alignment():
    c = claim_test_alignment(frame(signals_rows()))
    assert c.status == "supported" and c.numbers["tap"] == "layer3"
    assert claim_test_alignment(frame(signals_rows(align=(0.1, 0.02)))).status == "not supported"
    assert claim_test_alignment(frame(signals_rows(n_align=(9000, 3)))).status == "inconclusive"
    assert claim_test_alignment(empty_frame()).status == "not measured"


# ----------------------------------------------------------------------------- Malignant Tail
def test_effective_rank_grows():
    m = full_run()
    c = claim_effective_rank_grows(m)
    assert c.status == "supported" and (c.numbers["epoch_from"], c.numbers["epoch_to"]) == (3, 10)
    m2 = frame(dynamics_rows(), spectral_rows(3, er=12.5), spectral_rows(10, er=12.8))
    assert claim_effective_rank_grows(m2).status == "not supported"
    no_mem = [0.1] + [0.05] * 10
    m3 = frame(dynamics_rows(noisy=no_mem), spectral_rows(3, er=12.5), spectral_rows(10, er=40.0))
    assert claim_effective_rank_grows(m3).status == "inconclusive"
    # spectral epochs 0, 5, 10 only: the one nearest the early-stopping epoch 3 is 5
    m4 = frame(dynamics_rows(), spectral_rows(0, er=50.0), spectral_rows(5, er=12.0), spectral_rows(10, er=40.0))
    assert claim_effective_rank_grows(m4).numbers["epoch_from"] == 5
    assert claim_effective_rank_grows(frame(dynamics_rows())).status == "not measured"



def test_effective_rank_growth_near_its_threshold_is_inconclusive_until_the_samples_pin_it_down():
    # growth 1.15 against the 10% threshold: with 9,000 training samples the ratio's SE
    # (delta method on the eigenvalue rows) is far below 0.025, so it is supported; with 30
    # samples the same ratio lies within 2 SE of 1.10
    lam = 3.0 * 0.8 ** np.arange(D)
    m = frame(dynamics_rows(), spectral_rows(3, er=20.0, lam=lam), spectral_rows(10, er=23.0, lam=lam))
    c = claim_effective_rank_grows(m)
    assert c.status == "supported" and c.numbers["n_train"] == 9000
    assert c.numbers["growth"] == pytest.approx(1.15) and 0 < c.numbers["growth_se"] < 0.01
    few = claim_effective_rank_grows(m, n_by_subset={"clean_train": 20, "noisy_train_obs": 10})
    assert few.status == "inconclusive" and "within 2 SE" in few.summary
    no_n = frame(dynamics_rows(n=False), spectral_rows(3, er=20.0, lam=lam), spectral_rows(10, er=23.0, lam=lam))
    assert claim_effective_rank_grows(no_n).status == "inconclusive"

def test_noise_in_tail():
    share = np.full(D, 0.4)
    share[50:] = 0.9
    c = claim_noise_in_tail(full_run(share=share))
    assert c.status == "supported", c.summary
    assert c.numbers["d"] == 10 and c.numbers["full_from"] == f"fit_acc at d = D = {D}"
    assert "14 of 64, at k = 51..64 (the smallest-variance end)" in c.summary and "all beyond d* = 10" in c.summary
    m = frame(dynamics_rows(), spectral_rows(10, fit_clean={10: 0.99, D: 1.0}, fit_noisy={10: 0.90, D: 0.98}))
    assert claim_noise_in_tail(m).status == "not supported"
    m = frame(dynamics_rows(), spectral_rows(10, fit_clean={10: 0.99, D: 1.0}, fit_noisy={10: 0.05, D: 0.3}))
    assert claim_noise_in_tail(m).status == "inconclusive"
    # the grid stops short of D: the untruncated fit comes from the dynamics rows (0.98 noisy)
    m = frame(dynamics_rows(), spectral_rows(10, fit_clean={10: 0.99}, fit_noisy={10: 0.05}))
    c = claim_noise_in_tail(m)
    assert c.status == "supported" and c.numbers["full_from"] == "dynamics accuracies"
    m = frame(dynamics_rows(n=False), spectral_rows(10, fit_clean={10: 0.99}, fit_noisy={10: 0.05}))
    assert claim_noise_in_tail(m).status == "inconclusive"
    assert claim_noise_in_tail(m, n_by_subset=N).status == "supported"
    assert claim_noise_in_tail(frame(dynamics_rows(), spectral_rows(10))).status == "not measured"
    m = frame(dynamics_rows(), spectral_rows(10, fit_clean={10: 0.99}, fit_noisy={10: 0.05}),
              [Row(10, "spectral", "tail_margin_share", 1.7, "noisy_train_obs", "layer3")])
    assert claim_noise_in_tail(m).numbers["tail_margin_share_noisy_train_obs"] == 1.7


def _valley(peak=10, fall=0.2):
    d = np.arange(1, D + 1)
    acc = np.where(d <= peak, 0.3 + 0.5 * d / peak, 0.8 - fall * (d - peak) / (D - peak))
    return dict(zip(d.tolist(), acc.tolist(), strict=True))


def test_rank_risk_valley():
    m = frame(dynamics_rows(), spectral_rows(10, probe=_valley()))
    c = claim_rank_risk_valley(m)
    assert c.status == "not measured" and "synthetic_demo" in c.command
    c = claim_rank_risk_valley(m, k_star=10)
    assert c.status == "supported" and c.numbers["d_opt"] == 10
    assert claim_rank_risk_valley(m, k_star=11).status == "supported"  # within max(2, ceil(2.2)) = 3
    assert claim_rank_risk_valley(m, k_star=30).status == "not supported"
    flat = frame(dynamics_rows(), spectral_rows(10, probe=_valley(fall=0.0)))
    assert claim_rank_risk_valley(flat, k_star=10).status == "not supported"  # a plateau, no valley
    no_n = frame(dynamics_rows(n=False), spectral_rows(10, probe=_valley()))
    assert claim_rank_risk_valley(no_n, k_star=10).status == "inconclusive"


def test_truncation_vs_early_stop_from_accuracies():
    assert claim_truncation_vs_early_stop(full_run(trunc=0.85)).status == "supported"
    # 1 point better on 10,000 test samples: the Wilson intervals overlap, a tie
    assert claim_truncation_vs_early_stop(full_run(trunc=0.83)).status == "inconclusive"
    c = claim_truncation_vs_early_stop(full_run(trunc=0.70))
    assert c.status == "not supported" and c.numbers["early_stop_epoch"] == 3
    assert claim_truncation_vs_early_stop(full_run(trunc=0.815)).status == "inconclusive"  # intervals overlap
    assert claim_truncation_vs_early_stop(frame(dynamics_rows())).status == "not measured"


def test_truncation_vs_early_stop_with_mcnemar():
    rng = np.random.default_rng(0)
    es = rng.random(2000) < 0.8
    worse = es.copy()
    worse[np.flatnonzero(es)[:100]] = False  # 100 discordant pairs, all against truncation
    c = claim_truncation_vs_early_stop(empty_frame(), test_correct={"truncated": worse, "early_stop": es})
    assert c.status == "not supported" and c.numbers["p_value"] < 1e-20 and c.numbers["c"] == 100
    slight = es.copy()
    slight[np.flatnonzero(es)[:3]] = False
    c = claim_truncation_vs_early_stop(empty_frame(), test_correct={"truncated": slight, "early_stop": es})
    assert c.status == "inconclusive" and c.numbers["p_value"] == pytest.approx(0.25)
    better = es.copy()
    better[np.flatnonzero(~es)[:5]] = True  # 5 discordant pairs for truncation: p = 0.0625, a tie
    c = claim_truncation_vs_early_stop(empty_frame(), test_correct={"truncated": better, "early_stop": es})
    assert c.status == "inconclusive"
    better[np.flatnonzero(~es)[:30]] = True
    c = claim_truncation_vs_early_stop(empty_frame(), test_correct={"truncated": better, "early_stop": es})
    assert c.status == "supported"


def test_systematic_noise_in_signal():
    m = frame(dynamics_rows(), spectral_rows(10, fit_clean={10: 0.99, D: 1.0}, fit_noisy={10: 0.90, D: 0.98}))
    assert claim_systematic_noise_in_signal(m).status == "not measured"
    assert claim_systematic_noise_in_signal(m, noise_model="symmetric").status == "not measured"
    assert claim_systematic_noise_in_signal(m, noise_model="pairflip").status == "supported"
    m = frame(dynamics_rows(), spectral_rows(10, fit_clean={10: 0.99, D: 1.0}, fit_noisy={10: 0.05, D: 0.98}))
    assert claim_systematic_noise_in_signal(m, noise_model="pairflip").status == "not supported"


def test_no_tail_at_init():
    c = claim_no_tail_at_init(full_run())
    assert c.status == "supported" and c.numbers["count"] == 0
    share = np.full(D, 0.4)
    share[:3] = 0.9  # the three largest components are noise-dominated at epoch 0
    m = frame(dynamics_rows(), spectral_rows(0, share=share), spectral_rows(10))
    c = claim_no_tail_at_init(m)
    assert c.status == "not supported" and c.numbers["variance_share"] > 0.01
    c = claim_no_tail_at_init(frame(dynamics_rows(), spectral_rows(10)))
    assert c.status == "not measured" and "--epochs 0" in c.command


def test_separation_outward_gate_and_band():
    dyn = dynamics_rows()  # noisy fit 0.98 at epoch 10
    c = claim_separation_outward(frame(dyn, signals_rows()))
    assert c.status == "supported" and c.numbers["drop"] == pytest.approx(0.45)
    # per-class drops 0.45 +- (0.015, 0.005): SE = sd / 2 = 0.0065
    assert c.numbers["drop_se"] == pytest.approx(np.std([-1.5, -0.5, 0.5, 1.5], ddof=1) * 0.01 / 2)
    # a drop of 0.052 or 0.044 against 0.05 with a per-class spread of 0.05 (SE 0.032): inconclusive
    for last in (0.95 - 0.052, 0.95 - 0.044):
        c = claim_separation_outward(frame(dyn, signals_rows(separation=(0.95, 0.93, last), spread=0.05)))
        assert c.status == "inconclusive" and "2 SE" in c.summary
    # the same drops measured tightly decide: 0.052 +- 0.0006 is above, 0.044 below
    tight = {round(0.95 - last, 3): claim_separation_outward(frame(dyn, signals_rows(
        separation=(0.95, 0.93, last), spread=0.001))).status for last in (0.95 - 0.052, 0.95 - 0.044)}
    assert tight == {0.052: "supported", 0.044: "not supported"}
    # rising by more than tol somewhere: not supported; the gate: 0.2 memorized -> inconclusive
    assert claim_separation_outward(frame(dyn, signals_rows(separation=(0.8, 0.95, 0.5)))).status == "not supported"
    c = claim_separation_outward(frame(dynamics_rows(noisy=[0.2] * 11), signals_rows()))
    assert c.status == "inconclusive" and "memorized" in c.summary


def test_test_alignment_gate_and_band():
    dyn = dynamics_rows()
    # correct +0.1 with sd 1 on 8000 (SE 0.011), wrong -0.05 with sd 1.2 on 2000 (SE 0.027): within 2 SE
    c = claim_test_alignment(frame(dyn, signals_rows(sd_align=(1.0, 1.2))))
    assert c.status == "inconclusive" and c.numbers["se_wrong"] == pytest.approx(1.2 / np.sqrt(2000))
    assert claim_test_alignment(frame(dyn, signals_rows(sd_align=(0.5, 0.5)))).status == "supported"
    c = claim_test_alignment(frame(dyn, signals_rows(align=(0.1, 0.2), sd_align=(0.5, 0.5))))
    assert c.status == "not supported"
    # older runs without sd rows: the signs decide, said in the summary
    c = claim_test_alignment(frame(dyn, signals_rows()))
    assert c.status == "supported" and "signs alone" in c.summary
    c = claim_test_alignment(frame(dynamics_rows(noisy=[0.2] * 11), signals_rows(sd_align=(0.5, 0.5))))
    assert c.status == "inconclusive" and "memorized" in c.summary


def test_wider_larger_tail():
    assert claim_wider_larger_tail(full_run()).status == "not measured"

    def run(tail):
        lam = np.r_[np.full(10, 1.0), np.full(D - 10, tail)]
        return frame(spectral_rows(10, lam=lam))

    grow = {64: run(0.001), 256: run(0.01), 1024: run(0.02)}
    c = claim_wider_larger_tail(full_run(), by_width=grow)
    assert c.status == "supported" and list(c.numbers["tail_variance_share"]) == [64, 256, 1024]
    assert claim_wider_larger_tail(full_run(), by_width={64: run(0.02), 1024: run(0.001)}).status == "not supported"
    bumpy = {64: run(0.001), 256: run(0.05), 1024: run(0.02)}
    assert claim_wider_larger_tail(full_run(), by_width=bumpy).status == "inconclusive"


# ----------------------------------------------------------------------------- the scorecard
def test_scorecard_and_frame():
    claims = scorecard(full_run(), double_descent=None, k_star=None)
    assert [c.key for c in claims] == list(CLAIM_FUNCTIONS)
    status = {c.key: c.status for c in claims}
    assert status == {
        "clean_before_noisy": "supported", "test_error_rises": "supported", "double_descent": "not supported",
        "separation_outward": "supported", "large_activation": "supported", "test_alignment": "supported",
        "effective_rank_grows": "supported", "noise_in_tail": "supported", "rank_risk_valley": "not measured",
        "truncation_vs_early_stop": "not supported", "systematic_noise_in_signal": "not measured",
        "no_tail_at_init": "supported", "wider_larger_tail": "not measured",
    }
    assert all(c.status in STATUSES and c.rule and c.text and c.paper in ("kubo", "malignant_tail") for c in claims)
    assert all(bool(c.command) == (c.status == "not measured") for c in claims)
    df = scorecard_frame(claims)
    assert list(df.columns) == ["key", "paper", "text", "status", "summary", "rule", "command", "numbers"]
    assert len(df) == len(claims)
    nums = json.loads(df.loc[df["key"] == "test_error_rises", "numbers"].iloc[0])
    assert nums["early_stop_epoch"] == 3
    with pytest.raises(ValueError, match="unknown context"):
        scorecard(full_run(), kstar=10)


def test_scorecard_on_an_empty_table_measures_nothing():
    claims = scorecard(empty_frame())
    assert {c.status for c in claims} == {"not measured"}
    assert isinstance(scorecard_frame(claims), pd.DataFrame)
