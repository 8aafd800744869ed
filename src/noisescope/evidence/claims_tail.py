"""The claims of "The Malignant Tail" (withdrawn by its author: hypotheses, not facts), each a
pure function ``claim_<key>(metrics, **context) -> Claim`` whose docstring states its rule
(shared definitions in :mod:`noisescope.evidence.claims_common`)."""

from __future__ import annotations

import inspect
import math
from typing import Any

import numpy as np
import pandas as pd

from noisescope.evidence._arrays import as_numpy
from noisescope.evidence.bands import ABOVE, WITHIN, band_side
from noisescope.evidence.claims_common import (
    CLAIM_TEXT,
    INCONCLUSIVE,
    MALIGNANT,
    NEEDS_SPECTRAL,
    NOT_MEASURED,
    NOT_SUPPORTED,
    SUPPORTED,
    Claim,
    _claim,
    _early_stop,
    _feature_tap,
    _final,
    _memorization_rose,
    _n,
    _nearest,
    _only,
    _scalar,
)
from noisescope.evidence.intervals import Accuracy
from noisescope.evidence.paired import mcnemar, paired_difference
from noisescope.evidence.rules import choose_d
from noisescope.evidence.tail import (
    MAX_CLEAN_DROP,
    MAX_NOISY_RATIO,
    MIN_MEMORIZED,
    TailVerdict,
    noise_position,
    tail_verdict,
)
from noisescope.metrics import curve, select, vector
from noisescope.spectral.rank import effective_rank_rel_se


def claim_effective_rank_grows(metrics: pd.DataFrame, feature_tap: str | None = None,
                               early_stop_epoch: int | None = None, n_by_subset: dict | None = None,
                               min_growth: float = 0.10) -> Claim:
    """Effective rank of the feature tap's training spectrum at the spectral epoch nearest the
    early-stopping epoch (ties -> earlier) and at the final spectral epoch; ratio g = final /
    early, with its standard error from both spectra's sampling errors
    (``spectral.rank.effective_rank_rel_se``, n = the clean + noisy training samples). When
    memorization rose between them (module docstring): supported when g lies above 1 +
    ``min_growth`` (10%) + 2 SE, not supported when below 1 + ``min_growth`` - 2 SE, inconclusive
    within that band (``evidence.bands.band_side``) or when the sample count is unknown;
    inconclusive when memorization did not rise."""
    key = "effective_rank_grows"
    metrics = _only(metrics, "effective_rank", "eigval", "trunc_d_star", "acc", "n")
    tap = _feature_tap(metrics, feature_tap)
    er = curve(metrics, "spectral", "effective_rank", subset="train", tap=tap).dropna() if tap else pd.Series()
    es = _early_stop(metrics, early_stop_epoch)
    if er.empty or es is None:
        return _claim(key, NOT_MEASURED, {}, "no spectral or dynamics rows", NEEDS_SPECTRAL)
    a, b = _nearest([int(x) for x in er.index], es), int(er.index.max())
    rose, nums = _memorization_rose(metrics, a, b, n_by_subset)
    ra, rb = float(er[a]), float(er[b])
    counts = [_n(metrics, s, n_by_subset) for s in ("clean_train", "noisy_train_obs")]
    n = None if None in counts else sum(counts)
    rel = []
    for e in (a, b):
        lam = vector(metrics, "spectral", "eigval", e, "train", tap)
        rel.append(effective_rank_rel_se(lam.to_numpy(dtype=float, copy=True), n) if n and not lam.empty
                   else float("nan"))
    g = rb / ra if ra > 0 else float("nan")
    se = g * math.sqrt(rel[0] ** 2 + rel[1] ** 2)
    nums.update(tap=tap, epoch_from=a, epoch_to=b, effective_rank_from=ra, effective_rank_to=rb,
                min_growth=min_growth, growth=g, growth_se=se, n_train=n)
    words = (f"effective rank of {tap}: {ra:.1f} (epoch {a}) -> {rb:.1f} (epoch {b}), ratio {g:.3f} "
             f"(SE {se:.3f}) while noisy-label fit "
             f"{nums['noisy_obs_acc_from']:.3f} -> {nums['noisy_obs_acc_to']:.3f}")
    if not rose:
        return _claim(key, INCONCLUSIVE, nums, words + " (memorization did not rise)")
    if not math.isfinite(se):
        return _claim(key, INCONCLUSIVE, nums, words + " (no standard error: sample count or spectrum unknown)")
    side = band_side(g, 1 + min_growth, se)
    if side == WITHIN:
        return _claim(key, INCONCLUSIVE, nums, words + f" (within 2 SE of {1 + min_growth:.2f})")
    return _claim(key, SUPPORTED if side == ABOVE else NOT_SUPPORTED, nums, words)


TAIL_METRICS = ("fit_acc", "trunc_d_star", "eigval", "acc", "n", "noise_share", "noise_rate", "tail_margin_share")


def _tail_inputs(m: pd.DataFrame, tap: str | None, epoch: int | None, n_by_subset: dict | None) -> dict | str:
    """The numbers tail_verdict needs from the fit_acc rows, or a reason string."""
    if tap is None:
        return "no spectral rows"
    fit = select(m, probe="spectral", metric="fit_acc", tap=tap)
    if fit.empty:
        return "no truncated-fit rows (fit_acc)"
    e = int(fit["epoch"].max()) if epoch is None else int(epoch)
    m = m[(m["epoch"] == e) | (m["metric"] == "n")]
    d = _scalar(m, "spectral", "trunc_d_star", e, "val", tap)
    if not math.isfinite(d):
        return f"no trunc_d_star at epoch {e}"
    d = int(d)
    clean = vector(m, "spectral", "fit_acc", e, "clean_train", tap)
    noisy = vector(m, "spectral", "fit_acc", e, "noisy_train_obs", tap)
    dim = len(vector(m, "spectral", "eigval", e, "train", tap))
    if d not in clean.index or d not in noisy.index:
        return f"no fit_acc at d = {d}"
    if dim and dim in clean.index and dim in noisy.index:
        cf, nf, src = float(clean[dim]), float(noisy[dim]), f"fit_acc at d = D = {dim}"
    else:
        cf = _scalar(m, "dynamics", "acc", e, "clean_train")
        nf = _scalar(m, "dynamics", "acc", e, "noisy_train_obs")
        src = "dynamics accuracies"
    return {"epoch": e, "tap": tap, "d": d, "clean_full": cf, "noisy_full": nf, "full_from": src,
            "clean_at_d": float(clean[d]), "noisy_at_d": float(noisy[d]),
            "n_clean": _n(m, "clean_train", n_by_subset), "n_noisy": _n(m, "noisy_train_obs", n_by_subset)}


def _position_words(m: pd.DataFrame, tap: str, e: int, d_star: int | None = None) -> str:
    share = vector(m, "spectral", "noise_share", e, "train", tap)
    lam = vector(m, "spectral", "eigval", e, "train", tap)
    rate = _scalar(m, "spectral", "noise_rate", e, "train", tap)
    if share.empty or len(share) != len(lam) or not math.isfinite(rate):
        return ""
    return noise_position(share.to_numpy(), lam.to_numpy(), rate, d_star=d_star).words


def _tail_measurement(key: str, metrics: pd.DataFrame, feature_tap: str | None, epoch: int | None,
                      n_by_subset: dict | None, **rule: float) -> Claim | tuple[dict, TailVerdict]:
    """The truncated-fit numbers of the feature tap and ``tail_verdict`` on them, or the claim
    saying why they cannot be had (shared by the tail and the systematic-noise claims)."""
    metrics = _only(metrics, *TAIL_METRICS)
    inp = _tail_inputs(metrics, _feature_tap(metrics, feature_tap), epoch, n_by_subset)
    if isinstance(inp, str):
        return _claim(key, NOT_MEASURED, {}, inp, NEEDS_SPECTRAL)
    if inp["n_clean"] is None or inp["n_noisy"] is None:
        return _claim(key, INCONCLUSIVE, inp, "the clean / noisy training sample counts are unknown (metric n)")
    return inp, tail_verdict(inp["clean_full"], inp["noisy_full"], inp["clean_at_d"], inp["noisy_at_d"],
                             inp["n_clean"], inp["n_noisy"], inp["d"], **rule)


def claim_noise_in_tail(metrics: pd.DataFrame, feature_tap: str | None = None, epoch: int | None = None,
                        n_by_subset: dict | None = None, max_noisy_ratio: float = MAX_NOISY_RATIO,
                        max_clean_drop: float = MAX_CLEAN_DROP, min_memorized: float = MIN_MEMORIZED) -> Claim:
    """``evidence.tail.tail_verdict`` at the final spectral epoch on the feature tap, with d =
    ``trunc_d_star`` (the original head's d chosen on noisy validation), the truncated fits from
    the ``fit_acc`` rows (subsets clean_train / noisy_train_obs, index d) and the untruncated ones
    from ``fit_acc`` at d = D (else the dynamics accuracies of the same epoch): supported when the
    noisy samples' fit at d is at most half its untruncated value and the clean fit falls by at
    most 5 points (Wilson intervals, n from the ``n`` rows); see tail_verdict for the rest."""
    key = "noise_in_tail"
    measured = _tail_measurement(key, metrics, feature_tap, epoch, n_by_subset, max_noisy_ratio=max_noisy_ratio,
                                 max_clean_drop=max_clean_drop, min_memorized=min_memorized)
    if isinstance(measured, Claim):
        return measured
    inp, v = measured
    nums = {**inp, **v.numbers}
    metrics = metrics[metrics["epoch"] == inp["epoch"]]
    for subset in ("clean_train", "noisy_train_obs"):
        share = _scalar(metrics, "spectral", "tail_margin_share", inp["epoch"], subset, inp["tap"])
        if math.isfinite(share):
            nums[f"tail_margin_share_{subset}"] = share
    words = v.reason
    pos = _position_words(metrics, inp["tap"], inp["epoch"], inp["d"])
    if pos:
        nums["noise_position"] = pos
        words += f"; {pos}"
    return _claim(key, v.status, nums, words)


def claim_rank_risk_valley(metrics: pd.DataFrame, k_star: int | None = None, feature_tap: str | None = None,
                           epoch: int | None = None, n_by_subset: dict | None = None) -> Claim:
    """Only with a planted signal dimension k* (synthetic data). On the clean-test curve of the
    spectral linear probe (``probe_acc``, subset test) of the feature tap at the final spectral
    epoch: d_opt = the one-standard-error choice (``rules.choose_d(..., "1se")``) on that curve.
    Supported when |d_opt - k*| <= max(2, ceil(0.2 k*)) and the curve falls beyond the optimum
    (best accuracy - accuracy at the largest d > the Wilson interval width at the best): a
    valley of risk near k*. Not supported otherwise; inconclusive when the test n is unknown."""
    key = "rank_risk_valley"
    if k_star is None:
        return _claim(key, NOT_MEASURED, {}, "needs data with a known signal dimension k*",
                      "noisescope run synthetic_demo --set 'probe.probes=[\"dynamics\", \"spectral\"]', "
                      "then noisescope verdict runs/demo-synthetic-sym40-mlp3x512")
    metrics = _only(metrics, "probe_acc", "trunc_d_star", "n")
    tap = _feature_tap(metrics, feature_tap)
    rows = select(metrics, probe="spectral", metric="probe_acc", subset="test", tap=tap)
    if tap is None or rows.empty:
        return _claim(key, NOT_MEASURED, {}, "no spectral probe rows", NEEDS_SPECTRAL)
    e = int(rows["epoch"].max()) if epoch is None else int(epoch)
    metrics = metrics[(metrics["epoch"] == e) | (metrics["metric"] == "n")]
    acc = vector(metrics, "spectral", "probe_acc", e, "test", tap).dropna()
    n = _n(metrics, "test", n_by_subset)
    tol = max(2, math.ceil(0.2 * k_star))
    nums: dict[str, Any] = {"epoch": e, "tap": tap, "k_star": int(k_star), "tolerance": tol, "n_test": n}
    if n is None or acc.empty:
        return _claim(key, INCONCLUSIVE, nums, "the number of test samples is unknown (metric n)")
    grid = acc.index.to_numpy()
    counts = np.rint(acc.to_numpy() * n).astype(np.int64)
    d_opt = choose_d(counts, grid, n, "1se")
    best, far = float(acc.max()), float(acc.iloc[-1])
    w = Accuracy.from_value(best, n).width
    near, rises = abs(d_opt - k_star) <= tol, best - far > w
    nums.update(d_opt=d_opt, best_acc=best, acc_at_largest_d=far, largest_d=int(grid[-1]), interval_width=w)
    words = (f"clean-test probe accuracy peaks (1se) at d = {d_opt} (k* = {k_star}, tolerance {tol}); "
             f"best {best:.3f}, at d = {int(grid[-1])} {far:.3f} (width {w:.3f})")
    return _claim(key, SUPPORTED if near and rises else NOT_SUPPORTED, nums, words)


def claim_truncation_vs_early_stop(metrics: pd.DataFrame, test_correct: dict | None = None,
                                   feature_tap: str | None = None, early_stop_epoch: int | None = None,
                                   n_by_subset: dict | None = None, alpha: float = 0.05) -> Claim:
    """The truncated final model (original head, d = trunc_d_star) against the early-stopped model
    on the clean test set; a difference decides only outside its own uncertainty (a tie is
    inconclusive). With per-sample test correctness vectors
    (``test_correct={"truncated": ..., "early_stop": ...}``): supported when acc_trunc > acc_early
    and McNemar's exact p < ``alpha`` (0.05); not supported when it is lower with p < ``alpha``;
    inconclusive otherwise. With accuracies only (``trunc_acc_d_star`` test at the final spectral
    epoch; dynamics test accuracy at the early-stopping epoch; Wilson intervals on the test n):
    supported when the truncated interval lies wholly above the early-stopping one; not supported
    when it lies wholly below; inconclusive otherwise."""
    key = "truncation_vs_early_stop"
    if test_correct is not None and {"truncated", "early_stop"} <= set(test_correct):
        t, s = test_correct["truncated"], test_correct["early_stop"]
        test = mcnemar(t, s)
        diff = paired_difference(t, s)
        nums = {"acc_truncated": float(as_numpy(t, bool).mean()), "acc_early_stop": float(as_numpy(s, bool).mean()),
                "b": test.b, "c": test.c, "n_test": test.n, "p_value": test.p_value, "difference": diff.diff,
                "difference_low": diff.low, "difference_high": diff.high, "method": "McNemar exact (paired)"}
        words = (f"truncated {nums['acc_truncated']:.3f} vs early stopping {nums['acc_early_stop']:.3f}: "
                 f"{diff}; {test}")
        status = INCONCLUSIVE if test.p_value >= alpha or diff.diff == 0 else \
            SUPPORTED if diff.diff > 0 else NOT_SUPPORTED
        return _claim(key, status, nums, words)
    metrics = _only(metrics, "trunc_acc_d_star", "trunc_d_star", "acc", "n")
    tap = _feature_tap(metrics, feature_tap)
    tr = curve(metrics, "spectral", "trunc_acc_d_star", subset="test", tap=tap).dropna() if tap else pd.Series()
    es = _early_stop(metrics, early_stop_epoch)
    if tr.empty or es is None:
        return _claim(key, NOT_MEASURED, {}, "no truncation rows", "noisescope truncate RUN")
    e = int(tr.index.max())
    a_t, a_s = float(tr.iloc[-1]), _scalar(metrics, "dynamics", "acc", es, "test")
    n = _n(metrics, "test", n_by_subset)
    d = _scalar(metrics, "spectral", "trunc_d_star", e, "val", tap)
    nums = {"epoch": e, "tap": tap, "d": d, "early_stop_epoch": es, "acc_truncated": a_t, "acc_early_stop": a_s,
            "n_test": n, "method": "Wilson intervals"}
    if not math.isfinite(a_s):
        return _claim(key, INCONCLUSIVE, nums, f"no test accuracy at the early-stopping epoch {es}")
    words = f"truncated final (d = {d:.0f}) {a_t:.3f} vs early stopping (epoch {es}) {a_s:.3f}"
    if n is None:
        return _claim(key, INCONCLUSIVE, nums, words + "; the number of test samples is unknown (metric n)")
    it, isx = Accuracy.from_value(a_t, n), Accuracy.from_value(a_s, n)
    nums.update(truncated_low=it.low, truncated_high=it.high, early_stop_low=isx.low, early_stop_high=isx.high)
    words = f"truncated final (d = {d:.0f}) {it} vs early stopping (epoch {es}) {isx}"
    status = SUPPORTED if it.low > isx.high else NOT_SUPPORTED if it.high < isx.low else INCONCLUSIVE
    return _claim(key, status, nums, words)


SYSTEMATIC = ("pairflip",)


def claim_systematic_noise_in_signal(metrics: pd.DataFrame, noise_model: str | None = None,
                                     feature_tap: str | None = None, epoch: int | None = None,
                                     n_by_subset: dict | None = None, max_noisy_ratio: float = MAX_NOISY_RATIO,
                                     min_memorized: float = MIN_MEMORIZED) -> Claim:
    """Only on a run with systematic (``pairflip``) noise. With the numbers of
    :func:`claim_noise_in_tail`: supported when at least ``min_memorized`` of the noisy labels
    are memorized and the lower Wilson bound of the noisy fit at d* stays above
    ``max_noisy_ratio`` (0.5) x its untruncated value (truncation does not remove the memorized
    systematic noise: it sits in the top components); not supported when tail_verdict says
    supported (it was in the tail after all); inconclusive otherwise."""
    key = "systematic_noise_in_signal"
    if noise_model not in SYSTEMATIC:
        return _claim(key, NOT_MEASURED, {"noise_model": noise_model}, "needs a run with pairflip noise",
                      "noisescope run CONFIG --set 'noise.model=\"pairflip\"' --set noise.rate=0.3 "
                      "--set 'probe.probes=[\"dynamics\", \"spectral\"]'")
    measured = _tail_measurement(key, metrics, feature_tap, epoch, n_by_subset, max_noisy_ratio=max_noisy_ratio,
                                 min_memorized=min_memorized)
    if isinstance(measured, Claim):
        return measured
    inp, v = measured
    nums = {**inp, **v.numbers, "noise_model": noise_model}
    if v.status == SUPPORTED:
        return _claim(key, NOT_SUPPORTED, nums, v.reason + ": the systematic noise sat in the tail")
    survives = inp["noisy_full"] >= min_memorized and \
        v.numbers.get("noisy_at_d_low", -1.0) > max_noisy_ratio * inp["noisy_full"]
    return _claim(key, SUPPORTED if survives else INCONCLUSIVE, nums, v.reason)


def claim_no_tail_at_init(metrics: pd.DataFrame, feature_tap: str | None = None,
                          max_variance_share: float = 0.01, factor: float = 2.0) -> Claim:
    """At epoch 0 (the untrained network) on the feature tap: the noise-dominated components
    (noise share >= tau, ``evidence.tail.noise_dominated_threshold``) hold less than
    ``max_variance_share`` (1%) of the variance: supported; otherwise not supported."""
    key = "no_tail_at_init"
    metrics = _only(metrics, "noise_share", "eigval", "noise_rate", "trunc_d_star")
    tap = _feature_tap(metrics, feature_tap)
    share = vector(metrics, "spectral", "noise_share", 0, "train", tap) if tap else pd.Series()
    lam = vector(metrics, "spectral", "eigval", 0, "train", tap) if tap else pd.Series()
    rate = _scalar(metrics, "spectral", "noise_rate", 0, "train", tap) if tap else float("nan")
    if share.empty or len(share) != len(lam) or not math.isfinite(rate):
        return _claim(key, NOT_MEASURED, {}, "no epoch-0 noise-share rows", "noisescope probe RUN --epochs 0")
    pos = noise_position(share.to_numpy(), lam.to_numpy(), rate, factor)
    nums = {"tap": tap, "noise_rate": rate, "threshold": pos.threshold, "count": pos.count,
            "variance_share": pos.variance_share, "max_variance_share": max_variance_share}
    last = _final(select(metrics, metric="noise_share", tap=tap), "spectral")
    if last is not None and last != 0:
        s1 = vector(metrics, "spectral", "noise_share", last, "train", tap)
        l1 = vector(metrics, "spectral", "eigval", last, "train", tap)
        r1 = _scalar(metrics, "spectral", "noise_rate", last, "train", tap)
        if len(s1) == len(l1) and len(s1) and math.isfinite(r1):
            nums["final_epoch"], nums["final_variance_share"] = last, noise_position(
                s1.to_numpy(), l1.to_numpy(), r1, factor).variance_share
    ok = pos.variance_share < max_variance_share
    return _claim(key, SUPPORTED if ok else NOT_SUPPORTED, nums, f"at initialization, {pos.words}")


def claim_wider_larger_tail(metrics: pd.DataFrame, by_width: dict[int, pd.DataFrame] | None = None,
                            feature_tap: str | None = None) -> Claim:
    """Only with a width sweep (``by_width``: width -> that run's metrics table). Tail size of a
    run = share of the feature tap's variance beyond trunc_d_star at its final spectral epoch,
    sum_{k > d*} lambda_k / sum_k lambda_k. Supported when it never decreases with width and the
    widest run's exceeds the narrowest's; not supported when the widest's does not exceed the
    narrowest's; inconclusive otherwise (not monotone)."""
    key = "wider_larger_tail"
    if not by_width or len(by_width) < 2:
        return _claim(key, NOT_MEASURED, {}, "needs a width sweep (one run has one width)",
                      "noisescope sweep malignant_width, then noisescope verdict sweeps/malignant_width")
    shares: dict[int, float] = {}
    for width in sorted(by_width):
        m = _only(by_width[width], "eigval", "trunc_d_star")
        tap = _feature_tap(m, feature_tap)
        dstar = curve(m, "spectral", "trunc_d_star", subset="val", tap=tap).dropna() if tap else pd.Series()
        if dstar.empty:
            continue
        e = int(dstar.index.max())
        lam = vector(m, "spectral", "eigval", e, "train", tap).clip(lower=0)
        if lam.empty or lam.sum() <= 0:
            continue
        shares[int(width)] = float(lam[lam.index > int(dstar.iloc[-1])].sum() / lam.sum())
    nums = {"tail_variance_share": shares}
    if len(shares) < 2:
        return _claim(key, NOT_MEASURED, nums, "fewer than two widths with spectral truncation rows", NEEDS_SPECTRAL)
    s = list(shares.values())
    words = "tail variance share by width: " + ", ".join(f"{w}: {v:.3f}" for w, v in shares.items())
    if s[-1] <= s[0]:
        status = NOT_SUPPORTED
    else:
        status = SUPPORTED if all(b >= a for a, b in zip(s, s[1:], strict=False)) else INCONCLUSIVE
    return _claim(key, status, nums, words)


CLAIM_TEXT.update({
    "effective_rank_grows": ("The feature effective rank grows while the noise is memorized", MALIGNANT,
                             inspect.getdoc(claim_effective_rank_grows) or ""),
    "noise_in_tail": ("Stochastic label noise is memorized in the spectral tail", MALIGNANT,
                      inspect.getdoc(claim_noise_in_tail) or ""),
    "rank_risk_valley": ("The spectral probe's risk has a valley near the signal dimension k*", MALIGNANT,
                         inspect.getdoc(claim_rank_risk_valley) or ""),
    "truncation_vs_early_stop": ("Spectral truncation recovers generalization at least as well as early stopping",
                                 MALIGNANT, inspect.getdoc(claim_truncation_vs_early_stop) or ""),
    "systematic_noise_in_signal": ("Systematic noise stays in the signal subspace", MALIGNANT,
                                   inspect.getdoc(claim_systematic_noise_in_signal) or ""),
    "no_tail_at_init": ("There is no malignant tail at initialization", MALIGNANT,
                        inspect.getdoc(claim_no_tail_at_init) or ""),
    "wider_larger_tail": ("Wider networks grow a larger tail", MALIGNANT,
                          inspect.getdoc(claim_wider_larger_tail) or ""),
})
