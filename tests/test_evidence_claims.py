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
                 eta_obs=0.02, align=(0.1, -0.05), n_align=(8000, 2000), taps=TAPS):
    rows = []
    for t, s, r in zip(taps, separation, ratio, strict=True):
        rows += [Row(epoch, "signals", "separation", s, "by_true", t), Row(epoch, "signals", "separation", s, "by_true",
                                                                           t, 3),
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


def test_double_descent():
    m = frame(dynamics_rows())
    dd = {"first_min_epoch": 3, "peak_epoch": 8, "second_min_epoch": 10, "first_min_error": 0.18,
          "peak_error": 0.36, "second_min_error": 0.30, "gain": 0.06}
    assert claim_double_descent(m).status == "not measured"
    assert claim_double_descent(m, double_descent=dd).status == "supported"
    tiny = {**dd, "gain": 0.01, "second_min_error": 0.35}
    assert claim_double_descent(m, double_descent=tiny).status == "inconclusive"  # within width ~1.9 points
    assert claim_double_descent(m, double_descent=None).status == "not supported"  # 0.98 memorized
    half = [0.1] * 6 + [0.5] * 5
    c = claim_double_descent(frame(dynamics_rows(noisy=half)), double_descent=None)
    assert c.status == "inconclusive" and "train longer" in c.summary


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
    assert claim_truncation_vs_early_stop(full_run(trunc=0.83)).status == "supported"
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
    better[np.flatnonzero(~es)[:5]] = True
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
