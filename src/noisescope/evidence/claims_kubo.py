"""The claims of Kubo, Uda and Iida (epoch-wise double descent in noisy data), each a pure
function ``claim_<key>(metrics, **context) -> Claim`` whose docstring states its rule (shared
definitions in :mod:`noisescope.evidence.claims_common`)."""

from __future__ import annotations

import inspect
import math
from typing import Any

import numpy as np
import pandas as pd

from noisescope.evidence.bands import ABOVE, BELOW, band_side, mean_se
from noisescope.evidence.claims_common import (
    CLAIM_TEXT,
    INCONCLUSIVE,
    KUBO,
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
    _nearest,
    _only,
    _scalar,
    _taps,
    _width,
)
from noisescope.evidence.descent import ABSENT, CLEAR, UNCLEAR, read_descent, test_curves
from noisescope.evidence.rules import LARGE, MEDIAN_REL_ERROR, UNDECIDED, large_activation_flag, neuron_follows
from noisescope.metrics import curve, select

#: Memorization gates (docs/definitions.md, "Claims scorecard"): the noisy-label fit below
#: which an absent double descent is inconclusive, and the fit that makes it benign.
MEMORIZED_DD, BENIGN_LEVEL = 0.9, 0.99
#: The noisy-label fit below which the separation and test-alignment claims are inconclusive.
MEMORIZED_SIGNALS = 0.5


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


def claim_double_descent(metrics: pd.DataFrame, memorized_level: float = MEMORIZED_DD,
                         benign_level: float = BENIGN_LEVEL, threshold: float = 0.03, smooth: int = 5) -> Claim:
    """Read on the clean test loss (as Kubo et al. do), with the test error reported beside it:
    each curve is classified by ``evidence.descent.read_descent`` (smoothed over ``smooth`` (5)
    probe points; a dip is clear when it reaches max(``threshold`` (0.03), 2 SE), noise at
    <= 1 SE, SE of the dip from the per-point standard errors: loss_sd / sqrt(n) for the loss,
    the binomial one for the error; the first descent, from the untrained model's value to the
    first minimum, and the fall from the peak to the last point (the second descent must hold)
    are judged like the dips). Supported when the loss curve's double descent is clear;
    inconclusive when it is unclear; when it is absent: not supported if the training labels
    were fitted by the final epoch (noisy training accuracy against observed labels >=
    ``memorized_level`` (0.9); a run without noisy labels: training accuracy >= that level) or
    the noisy-label fit has stopped rising (it rose above its minimum by more than that
    minimum's Wilson interval width, and from the probe nearest half the final epoch to the
    final one it moved by no more than its Wilson interval width: training longer would not
    fit more), else inconclusive (train longer: the second descent follows memorization). Without
    ``loss_sd`` rows (older runs) the error curve decides, and the summary says so.
    Re-generalization gain: peak - second minimum of the deciding curve; benign overfitting:
    the noisy-label fit at the second minimum >= ``benign_level`` (0.99)."""
    key = "double_descent"
    metrics = _only(metrics, "acc", "n", "loss", "loss_sd")
    curves = test_curves(metrics)
    if not curves:
        return _claim(key, NOT_MEASURED, {}, "no dynamics rows with test sample counts", NEEDS_DYNAMICS)
    noisy = curve(metrics, "dynamics", "acc", subset="noisy_train_obs").dropna()
    reads = {name: read_descent(*c, threshold=threshold, smooth=smooth) for name, c in curves.items()}
    for r in reads.values():
        if "second_min_epoch" in r:
            r["noisy_fit_at_second_min"] = float(noisy.get(r["second_min_epoch"], np.nan))
            r["benign"] = bool(r["noisy_fit_at_second_min"] >= benign_level)
    by = "loss" if "loss" in reads else "error"
    read = reads[by]
    nums: dict[str, Any] = {"read_on": by, "loss": reads.get("loss"), "error": reads.get("error"),
                            "memorized_level": memorized_level, "benign_level": benign_level,
                            "n_test": _n(metrics, "test", None)}
    words = "; ".join(_descent_words(name, reads[name]) for name in ("loss", "error") if name in reads)
    if by == "error":
        words += " (no loss_sd rows: read on the test error; re-run to record the loss spread)"
    if read["status"] == CLEAR:
        benign = "noisy labels fitted at the second minimum" if read["benign"] else \
            f"noisy labels not fully fitted at the second minimum ({read['noisy_fit_at_second_min']:.3f})"
        return _claim(key, SUPPORTED, nums, f"{words}; {benign}")
    if read["status"] == UNCLEAR:
        return _claim(key, INCONCLUSIVE, nums, words + " (within the band)")
    fit, what = _fitted(metrics, noisy)
    nums.update(fit_final=fit, fit_of=what)
    if math.isfinite(fit) and fit >= memorized_level:
        return _claim(key, NOT_SUPPORTED, nums, f"{words}; {what} fit {fit:.3f} by the final epoch")
    if what == "noisy-label" and len(noisy) >= 3:
        final = int(noisy.index[-1])
        half = _nearest([int(x) for x in noisy.index[:-1]], final // 2)
        n_noisy = _n(metrics, "noisy_train_obs", None)
        low, at_half = float(noisy.min()), float(noisy[half])
        w_low, w_half = _width(low, n_noisy), _width(at_half, n_noisy)
        began = w_low is not None and fit - low > w_low
        flat = w_half is not None and abs(fit - at_half) <= w_half
        nums.update(plateau_from=half, noisy_fit_at_half=at_half, noisy_fit_min=low)
        if began and flat:
            return _claim(key, NOT_SUPPORTED, nums, f"{words}; the noisy-label fit has stopped rising "
                          f"({at_half:.3f} at epoch {half}, {fit:.3f} at {final})")
    return _claim(key, INCONCLUSIVE, nums, f"{words}; {what} fit only {fit:.3f}, still rising (train longer)")


def _fitted(metrics: pd.DataFrame, noisy: pd.Series) -> tuple[float, str]:
    """The memorization gate's value: the final noisy-label fit, or the training fit when the
    run has no noisy labels."""
    n_noisy = curve(metrics, "dynamics", "n", subset="noisy_train_obs").dropna()
    if not noisy.empty and not (len(n_noisy) and float(n_noisy.iloc[-1]) == 0):
        return float(noisy.iloc[-1]), "noisy-label"
    train = curve(metrics, "dynamics", "acc", subset="train").dropna()
    if train.empty:
        train = curve(metrics, "dynamics", "acc", subset="clean_train").dropna()
    return (float(train.iloc[-1]) if not train.empty else float("nan")), "training-label (no noisy labels)"


def _descent_words(name: str, r: dict) -> str:
    if "peak_epoch" not in r:
        return f"test {name}: no minimum-peak-minimum"
    if r["status"] == ABSENT:
        return f"test {name}: absent (a move within 1 SE, or none)"
    return (f"test {name} {r['first_min']:.3f} (epoch {r['first_min_epoch']}) -> {r['peak']:.3f} "
            f"(epoch {r['peak_epoch']}) -> {r['second_min']:.3f} (epoch {r['second_min_epoch']}): "
            f"{r['status']} (fall {r['fall']:.3f} vs SE {r['fall_se']:.3f})")


def _memorization_gate(metrics: pd.DataFrame, epoch: int, level: float) -> tuple[bool | None, float]:
    """(passed, fit): the noisy-label fit (dynamics ``noisy_train_obs`` acc) at the dynamics
    epoch nearest ``epoch`` against ``level``; (None, NaN) without dynamics rows."""
    noisy = curve(metrics, "dynamics", "acc", subset="noisy_train_obs").dropna()
    if noisy.empty:
        return None, float("nan")
    fit = float(noisy[_nearest([int(x) for x in noisy.index], int(epoch))])
    return fit >= level, fit


def claim_separation_outward(metrics: pd.DataFrame, taps: list[str] | None = None, epoch: int | None = None,
                             min_drop: float = 0.05, tol: float = 0.02,
                             memorized_level: float = MEMORIZED_SIGNALS) -> Claim:
    """At the final signals epoch, the class-averaged separation cosine s_l (by true label) of
    each tap, shallow to deep. Gate: inconclusive when the noisy-label fit there is below
    ``memorized_level`` (0.5; nothing memorized, nothing to separate). Band: the drop
    s_first - s_last has the standard error of the mean over classes of the per-class drops
    (``evidence.bands.mean_se``). Supported when s never rises by more than ``tol`` (0.02) from
    one tap to the next and the drop lies above ``min_drop`` (0.05) + 2 SE (lower cosine = more
    separated); not supported when it rises by more than ``tol`` somewhere or the drop lies
    below ``min_drop`` - 2 SE; inconclusive within the band, or with fewer than two taps."""
    key = "separation_outward"
    metrics = _only(metrics, "separation", "acc")
    e = _final(metrics, "signals") if epoch is None else epoch
    rows = select(metrics, probe="signals", metric="separation", subset="by_true", epoch=e)
    if e is None or rows.empty:
        return _claim(key, NOT_MEASURED, {}, "no signals rows", NEEDS_SIGNALS)
    by_tap = rows[rows["index"] == -1].groupby("tap")["value"].last()
    order = [t for t in _taps(metrics, "signals", taps) if t in by_tap.index and math.isfinite(by_tap[t])]
    s = [float(by_tap[t]) for t in order]
    nums: dict[str, Any] = {"epoch": e, "separation": dict(zip(order, s, strict=True)), "min_drop": min_drop,
                            "tol": tol, "memorized_level": memorized_level}
    if len(s) < 2:
        return _claim(key, INCONCLUSIVE, nums, "fewer than two taps with a separation value")
    passed, fit = _memorization_gate(metrics, e, memorized_level)
    nums["noisy_fit"] = fit
    words = "cosine(clean, noisy) by depth: " + ", ".join(f"{t} {v:.3f}" for t, v in zip(order, s, strict=True))
    if passed is False:
        return _claim(key, INCONCLUSIVE, nums, words + f"; only {fit:.3f} of the noisy labels memorized "
                      f"(needs {memorized_level:g})")
    mono = all(b <= a + tol for a, b in zip(s, s[1:], strict=False))
    drop = s[0] - s[-1]
    per_class = rows[rows["index"] >= 0].pivot_table(index="index", columns="tap", values="value", aggfunc="last")
    drops = (per_class[order[0]] - per_class[order[-1]]).tolist() if len(per_class) else []
    se = mean_se(drops)
    side = band_side(drop, min_drop, se)
    nums.update(drop=drop, drop_se=se, monotone=mono)
    words += f"; drop {drop:.3f} (SE {se:.3f} over {len([d for d in drops if math.isfinite(d)])} classes)"
    if not mono or side == BELOW:
        return _claim(key, NOT_SUPPORTED, nums, words)
    return _claim(key, SUPPORTED if side == ABOVE else INCONCLUSIVE, nums,
                  words + ("" if side == ABOVE else f" (within {min_drop:g} +- 2 SE)"))


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
                         min_n: int = 10, memorized_level: float = MEMORIZED_SIGNALS) -> Claim:
    """At the final signals epoch on ``tap`` (default the deepest signals tap), the mean
    alignment of correctly and of wrongly predicted test samples, each with its standard error
    sd / sqrt(n) (``alignment_sd_*`` rows). Gate: inconclusive when the noisy-label fit is
    below ``memorized_level`` (0.5: no noisy signal to align with). Supported when the correct
    mean lies above 0 + 2 SE and the wrong mean below 0 - 2 SE (``evidence.bands.band_side``);
    not supported when either lies beyond 2 SE on the wrong side of 0; inconclusive otherwise,
    when a mean is NaN or rests on fewer than ``min_n`` (10) samples. Without sd rows (older
    runs) the signs alone decide (SE 0), and the summary says so."""
    key = "test_alignment"
    names = ("alignment_correct", "alignment_wrong", "alignment_n_correct", "alignment_n_wrong",
             "alignment_sd_correct", "alignment_sd_wrong")
    metrics = _only(metrics, *names, "acc")
    e = _final(metrics, "signals") if epoch is None else epoch
    order = _taps(metrics, "signals", None)
    tap = tap if tap is not None else (order[-1] if order else None)
    vals = {m: _scalar(metrics, "signals", m, e, "test", tap) for m in names} if e is not None else {}
    if e is None or tap is None or not any(math.isfinite(vals[m]) for m in names[:2]):
        return _claim(key, NOT_MEASURED, {}, "no test-alignment rows", NEEDS_SIGNALS)
    nums: dict[str, Any] = {"epoch": e, "tap": tap, **vals, "memorized_level": memorized_level}
    c, w = vals["alignment_correct"], vals["alignment_wrong"]
    se = {k: vals[f"alignment_sd_{k}"] / math.sqrt(vals[f"alignment_n_{k}"])
          if vals[f"alignment_n_{k}"] > 0 else float("nan") for k in ("correct", "wrong")}
    no_sd = not any(math.isfinite(vals[f"alignment_sd_{k}"]) for k in ("correct", "wrong"))
    if no_sd:
        se = {"correct": 0.0, "wrong": 0.0}
    nums.update(se_correct=se["correct"], se_wrong=se["wrong"])
    words = f"at {tap}: correct {c:+.3f} (SE {se['correct']:.3f}, n={vals['alignment_n_correct']:.0f}), " \
            f"wrong {w:+.3f} (SE {se['wrong']:.3f}, n={vals['alignment_n_wrong']:.0f})"
    if no_sd:
        words += " (no sd rows: the signs alone decide; re-run to record them)"
    counts_ok = all(math.isfinite(vals[k]) and vals[k] >= min_n for k in ("alignment_n_correct", "alignment_n_wrong"))
    if not (math.isfinite(c) and math.isfinite(w)) or not counts_ok:
        return _claim(key, INCONCLUSIVE, nums, words + f" (needs >= {min_n} of each)")
    passed, fit = _memorization_gate(metrics, e, memorized_level)
    nums["noisy_fit"] = fit
    if passed is False:
        return _claim(key, INCONCLUSIVE, nums, words + f"; only {fit:.3f} of the noisy labels memorized "
                      f"(needs {memorized_level:g})")
    sc, sw = band_side(c, 0.0, se["correct"]), band_side(w, 0.0, se["wrong"])
    if sc == ABOVE and sw == BELOW:
        return _claim(key, SUPPORTED, nums, words)
    if sc == BELOW or sw == ABOVE:
        return _claim(key, NOT_SUPPORTED, nums, words)
    return _claim(key, INCONCLUSIVE, nums, words + " (a mean within 2 SE of 0)")


CLAIM_TEXT.update({
    "clean_before_noisy": ("Clean samples are learned before noisy ones", KUBO,
                           inspect.getdoc(claim_clean_before_noisy) or ""),
    "test_error_rises": ("Test error rises while the noisy labels are memorized", KUBO,
                         inspect.getdoc(claim_test_error_rises) or ""),
    "double_descent": ("Epoch-wise double descent: test loss falls again after memorization", KUBO,
                       inspect.getdoc(claim_double_descent) or ""),
    "separation_outward": ("Clean and noisy activations separate more toward the outer layers", KUBO,
                           inspect.getdoc(claim_separation_outward) or ""),
    "large_activation": ("A single large activation appears in a shallow layer and follows the input", KUBO,
                         inspect.getdoc(claim_large_activation) or ""),
    "test_alignment": ("Correct test predictions align with the clean signal, wrong ones with the noisy signal",
                       KUBO, inspect.getdoc(claim_test_alignment) or ""),
})
