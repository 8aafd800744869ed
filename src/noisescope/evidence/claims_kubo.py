"""The claims of Kubo, Uda and Iida (epoch-wise double descent in noisy data), each a pure
function ``claim_<key>(metrics, **context) -> Claim`` whose docstring states its rule (shared
definitions in :mod:`noisescope.evidence.claims_common`)."""

from __future__ import annotations

import inspect
import math
from typing import Any

import numpy as np
import pandas as pd

from noisescope.evidence.claims_common import (
    CLAIM_TEXT,
    INCONCLUSIVE,
    KUBO,
    MISSING,
    NEEDS_DYNAMICS,
    NEEDS_SIGNALS,
    NOT_MEASURED,
    NOT_SUPPORTED,
    SUPPORTED,
    Claim,
    _claim,
    _early_stop,
    _final,
    _memorization_rose,
    _n,
    _only,
    _scalar,
    _taps,
    _width,
)
from noisescope.evidence.rules import LARGE, MEDIAN_REL_ERROR, UNDECIDED, large_activation_flag, neuron_follows
from noisescope.metrics import curve, select


def claim_clean_before_noisy(metrics: pd.DataFrame, level: float = 0.5) -> Claim:
    """t_clean, t_noisy = the first probed epochs at which the clean training accuracy and the
    noisy training accuracy against observed labels reach ``level`` (0.5). Supported when
    t_clean < t_noisy or the noisy curve never reaches it; not supported when t_noisy < t_clean;
    inconclusive when both cross between the same two probes (t_clean = t_noisy) or the clean
    curve never reaches it."""
    metrics = _only(metrics, "acc")
    clean = curve(metrics, "dynamics", "acc", subset="clean_train").dropna()
    noisy = curve(metrics, "dynamics", "acc", subset="noisy_train_obs").dropna()
    if clean.empty or noisy.empty:
        return _claim("clean_before_noisy", NOT_MEASURED, {}, "no dynamics rows", NEEDS_DYNAMICS)
    tc = next((int(e) for e, v in clean.items() if v >= level), None)
    tn = next((int(e) for e, v in noisy.items() if v >= level), None)
    nums = {"level": level, "t_clean": tc, "t_noisy": tn, "noisy_obs_acc_max": float(noisy.max())}
    if tc is None:
        return _claim("clean_before_noisy", INCONCLUSIVE, nums,
                      f"the clean training accuracy never reached {level:g} (max {clean.max():.3f})")
    nums["noisy_obs_acc_at_t_clean"] = float(noisy.get(tc, np.nan))
    if tn is None:
        return _claim("clean_before_noisy", SUPPORTED, nums,
                      f"clean training accuracy reached {level:g} at epoch {tc}; the noisy labels never did "
                      f"(max {noisy.max():.3f})")
    words = f"clean reached {level:g} at epoch {tc}, noisy (observed labels) at epoch {tn}"
    status = SUPPORTED if tc < tn else NOT_SUPPORTED if tn < tc else INCONCLUSIVE
    if status == INCONCLUSIVE:
        words += " (the same probe: the schedule cannot order them)"
    return _claim("clean_before_noisy", status, nums, words)


def claim_test_error_rises(metrics: pd.DataFrame, n_by_subset: dict | None = None,
                           early_stop_epoch: int | None = None) -> Claim:
    """From the early-stopping epoch e to the final epoch: supported when memorization rose
    (module docstring) and the clean test accuracy fell by more than the width of its Wilson
    interval at e; not supported when memorization rose but the test accuracy did not fall by
    that much; inconclusive when memorization did not rise (nothing to attribute a rise to) or
    the test n is unknown."""
    key = "test_error_rises"
    metrics = _only(metrics, "acc", "n")
    test = curve(metrics, "dynamics", "acc", subset="test").dropna()
    es = _early_stop(metrics, early_stop_epoch)
    if test.empty or es is None:
        return _claim(key, NOT_MEASURED, {}, "no dynamics rows", NEEDS_DYNAMICS)
    final = int(test.index.max())
    rose, nums = _memorization_rose(metrics, es, final, n_by_subset)
    t_es, t_fin = float(test.get(es, np.nan)), float(test.iloc[-1])
    n = _n(metrics, "test", n_by_subset)
    nums.update(early_stop_epoch=es, final_epoch=final, test_acc_early_stop=t_es, test_acc_final=t_fin, n_test=n)
    if not rose:
        return _claim(key, INCONCLUSIVE, nums,
                      f"the noisy labels were not memorized after early stopping (noisy train acc "
                      f"{nums['noisy_obs_acc_from']:.3f} -> {nums['noisy_obs_acc_to']:.3f})")
    if not math.isfinite(t_es):
        return _claim(key, INCONCLUSIVE, nums, f"no test accuracy at the early-stopping epoch {es}")
    w = _width(t_es, n)
    if w is None:
        return _claim(key, INCONCLUSIVE, nums, "the number of test samples is unknown (metric n)")
    nums["test_interval_width"] = w
    fall = t_es - t_fin
    words = (f"test accuracy {t_es:.3f} at early stopping (epoch {es}) -> {t_fin:.3f} at epoch {final} "
             f"(fall {100 * fall:.1f} points vs interval width {100 * w:.1f}) while noisy-label fit rose "
             f"{nums['noisy_obs_acc_from']:.3f} -> {nums['noisy_obs_acc_to']:.3f}")
    return _claim(key, SUPPORTED if fall > w else NOT_SUPPORTED, nums, words)


def claim_double_descent(metrics: pd.DataFrame, double_descent: dict | None = MISSING,
                         n_by_subset: dict | None = None, memorized_level: float = 0.9) -> Claim:
    """``double_descent`` is the detection result on the test-error curve
    (``noisescope.probes.dynamics.detect_double_descent``: a minimum, a later peak and a later
    minimum, each dip >= its threshold). Supported when detected and its gain (peak error -
    second minimum error) exceeds the width of the test accuracy's Wilson interval at the peak
    (when the test n is known); inconclusive when detected with a smaller gain; when not
    detected: not supported if the noisy labels were memorized by the final epoch (noisy train
    accuracy against observed labels >= ``memorized_level``, 0.9), else inconclusive (train
    longer: the second descent follows memorization)."""
    key = "double_descent"
    metrics = _only(metrics, "acc", "n")
    if double_descent is MISSING:
        return _claim(key, NOT_MEASURED, {}, "no double-descent detection was given",
                      "noisescope verdict RUN (reads the detection from the run summary)")
    if double_descent:
        nums = dict(double_descent)
        n = _n(metrics, "test", n_by_subset)
        w = _width(1.0 - float(double_descent["peak_error"]), n)
        nums.update(n_test=n, test_interval_width=w)
        words = (f"test error {double_descent['first_min_error']:.3f} (epoch {double_descent['first_min_epoch']}) "
                 f"-> {double_descent['peak_error']:.3f} (epoch {double_descent['peak_epoch']}) -> "
                 f"{double_descent['second_min_error']:.3f} (epoch {double_descent['second_min_epoch']})")
        if w is not None and double_descent["gain"] <= w:
            return _claim(key, INCONCLUSIVE, nums, words + f": the second descent ({100 * double_descent['gain']:.1f} "
                          f"points) is within the interval width ({100 * w:.1f})")
        return _claim(key, SUPPORTED, nums, words)
    noisy = curve(metrics, "dynamics", "acc", subset="noisy_train_obs").dropna()
    if noisy.empty:
        return _claim(key, NOT_MEASURED, {}, "no dynamics rows", NEEDS_DYNAMICS)
    fin = float(noisy.iloc[-1])
    nums = {"noisy_obs_acc_final": fin, "memorized_level": memorized_level}
    if fin >= memorized_level:
        return _claim(key, NOT_SUPPORTED, nums,
                      f"no double descent although {fin:.3f} of the noisy labels are memorized")
    return _claim(key, INCONCLUSIVE, nums,
                  f"no double descent yet; only {fin:.3f} of the noisy labels are memorized (train longer)")


def claim_separation_outward(metrics: pd.DataFrame, taps: list[str] | None = None, epoch: int | None = None,
                             min_drop: float = 0.05, tol: float = 0.02) -> Claim:
    """At the final signals epoch, the class-averaged separation cosine s_l (by true label) of
    each tap, shallow to deep. Supported when it never rises by more than ``tol`` (0.02) from one
    tap to the next and the deepest tap's cosine is at least ``min_drop`` (0.05) below the
    shallowest's (lower cosine = more separated); not supported otherwise; inconclusive with
    fewer than two taps with a value."""
    key = "separation_outward"
    metrics = _only(metrics, "separation")
    e = _final(metrics, "signals") if epoch is None else epoch
    rows = select(metrics, probe="signals", metric="separation", subset="by_true", index=-1, epoch=e)
    if e is None or rows.empty:
        return _claim(key, NOT_MEASURED, {}, "no signals rows", NEEDS_SIGNALS)
    by_tap = rows.groupby("tap")["value"].last()
    order = [t for t in _taps(metrics, "signals", taps) if t in by_tap.index and math.isfinite(by_tap[t])]
    s = [float(by_tap[t]) for t in order]
    nums = {"epoch": e, "separation": dict(zip(order, s, strict=True)), "min_drop": min_drop, "tol": tol}
    if len(s) < 2:
        return _claim(key, INCONCLUSIVE, nums, "fewer than two taps with a separation value")
    mono = all(b <= a + tol for a, b in zip(s, s[1:], strict=False))
    drop = s[0] - s[-1]
    words = "cosine(clean, noisy) by depth: " + ", ".join(f"{t} {v:.3f}" for t, v in zip(order, s, strict=True))
    return _claim(key, SUPPORTED if mono and drop >= min_drop else NOT_SUPPORTED, nums, words)


def claim_large_activation(metrics: pd.DataFrame, taps: list[str] | None = None, epoch: int | None = None,
                           threshold: float = 100.0, rel_err: float = MEDIAN_REL_ERROR,
                           small: float = 0.1) -> Claim:
    """At the final signals epoch, each tap's max/median ratio is classified by
    ``large_activation_flag`` (threshold 100, median relative error 2**-8). Among the "large"
    taps, take the one with the largest ratio. Supported when it lies in the shallow half of the
    taps (position < L/2, shallow to deep) and its neuron follows the input
    (``neuron_follows``: R^2 >= eta^2, not both < 0.1). Not supported when no tap is large (and
    none undecided), when the largest is in the deep half, or when its neuron follows the label or
    neither. Inconclusive with fewer than two taps, undecided flags and no large one, or
    unmeasured dependence."""
    key = "large_activation"
    metrics = _only(metrics, "large_act_ratio", "r2_input", "eta2_true", "eta2_obs")
    e = _final(metrics, "signals") if epoch is None else epoch
    rows = select(metrics, probe="signals", metric="large_act_ratio", subset="train", index=-1, epoch=e)
    if e is None or rows.empty:
        return _claim(key, NOT_MEASURED, {}, "no signals rows", NEEDS_SIGNALS)
    ratio = rows.groupby("tap")["value"].last()
    order = [t for t in _taps(metrics, "signals", taps) if t in ratio.index]
    flags = {t: large_activation_flag(float(ratio[t]), threshold, rel_err) for t in order}
    nums: dict[str, Any] = {"epoch": e, "ratio": {t: float(ratio[t]) for t in order}, "flag": flags,
                            "threshold": threshold}
    if len(order) < 2:
        return _claim(key, INCONCLUSIVE, nums, "one tap: no shallow/deep distinction")
    large = [t for t in order if flags[t] == LARGE]
    if not large:
        status = INCONCLUSIVE if UNDECIDED in flags.values() else NOT_SUPPORTED
        top = max(order, key=lambda t: float(ratio[t]))
        return _claim(key, status, nums, f"no tap's max/median clears {threshold:g} (largest {float(ratio[top]):.1f} "
                      f"at {top})")
    top = max(large, key=lambda t: float(ratio[t]))
    pos = order.index(top)
    dep = {m: _scalar(metrics, "signals", m, e, "train", top) for m in ("r2_input", "eta2_true", "eta2_obs")}
    follows = neuron_follows(dep["r2_input"], dep["eta2_true"], dep["eta2_obs"], small)
    nums.update(tap=top, position=pos, n_taps=len(order), follows=follows, **dep)
    words = (f"largest activation at {top} (tap {pos + 1} of {len(order)}), max/median {float(ratio[top]):.0f}; "
             f"R^2 from input {dep['r2_input']:.2f}, eta^2 true {dep['eta2_true']:.2f}, observed "
             f"{dep['eta2_obs']:.2f}: follows {follows}")
    if pos >= len(order) / 2:
        return _claim(key, NOT_SUPPORTED, nums, words + " (a deep tap)")
    status = {"input": SUPPORTED, "undecided": INCONCLUSIVE}.get(follows, NOT_SUPPORTED)
    return _claim(key, status, nums, words)


def claim_test_alignment(metrics: pd.DataFrame, tap: str | None = None, epoch: int | None = None,
                         min_n: int = 10) -> Claim:
    """At the final signals epoch on ``tap`` (default the deepest signals tap): supported when
    the mean alignment of correctly predicted test samples is > 0 and that of wrongly predicted
    ones is < 0; not supported otherwise; inconclusive when either mean is NaN or rests on fewer
    than ``min_n`` (10) samples."""
    key = "test_alignment"
    metrics = _only(metrics, "alignment_correct", "alignment_wrong", "alignment_n_correct", "alignment_n_wrong")
    e = _final(metrics, "signals") if epoch is None else epoch
    order = _taps(metrics, "signals", None)
    tap = tap if tap is not None else (order[-1] if order else None)
    names = ("alignment_correct", "alignment_wrong", "alignment_n_correct", "alignment_n_wrong")
    vals = {m: _scalar(metrics, "signals", m, e, "test", tap) for m in names} if e is not None else {}
    if e is None or tap is None or not any(math.isfinite(vals[m]) for m in names[:2]):
        return _claim(key, NOT_MEASURED, {}, "no test-alignment rows", NEEDS_SIGNALS)
    nums = {"epoch": e, "tap": tap, **vals}
    c, w = vals["alignment_correct"], vals["alignment_wrong"]
    words = f"at {tap}: correct {c:+.3f} (n={vals['alignment_n_correct']:.0f}), wrong {w:+.3f} " \
            f"(n={vals['alignment_n_wrong']:.0f})"
    counts_ok = all(math.isfinite(vals[k]) and vals[k] >= min_n for k in ("alignment_n_correct", "alignment_n_wrong"))
    if not (math.isfinite(c) and math.isfinite(w)) or not counts_ok:
        return _claim(key, INCONCLUSIVE, nums, words + f" (needs >= {min_n} of each)")
    return _claim(key, SUPPORTED if c > 0 > w else NOT_SUPPORTED, nums, words)


CLAIM_TEXT.update({
    "clean_before_noisy": ("Clean samples are learned before noisy ones", KUBO,
                           inspect.getdoc(claim_clean_before_noisy) or ""),
    "test_error_rises": ("Test error rises while the noisy labels are memorized", KUBO,
                         inspect.getdoc(claim_test_error_rises) or ""),
    "double_descent": ("Epoch-wise double descent: test error falls again after memorization", KUBO,
                       inspect.getdoc(claim_double_descent) or ""),
    "separation_outward": ("Clean and noisy activations separate more toward the outer layers", KUBO,
                           inspect.getdoc(claim_separation_outward) or ""),
    "large_activation": ("A single large activation appears in a shallow layer and follows the input", KUBO,
                         inspect.getdoc(claim_large_activation) or ""),
    "test_alignment": ("Correct test predictions align with the clean signal, wrong ones with the noisy signal",
                       KUBO, inspect.getdoc(claim_test_alignment) or ""),
})
