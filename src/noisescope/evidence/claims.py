"""The claims scorecard: each claim of the two papers, scored on one run's tidy metrics table.

Every claim is a pure function ``claim_<key>(metrics, **context) -> Claim`` whose docstring
states its rule; :func:`scorecard` runs them all. Status is one of ``"supported"``,
``"not supported"``, ``"inconclusive"`` (measured, but the numbers cannot decide) and
``"not measured"`` (this run lacks the rows or the setting; ``command`` says how to measure it).

Shared definitions:

* final epoch: the last epoch with rows of the probe the claim reads.
* early-stopping epoch: ``early_stop_epoch`` if given, else the epoch of the best noisy
  validation accuracy (dynamics ``val`` ``acc``), ties -> the earlier epoch.
* sample counts n (Wilson intervals): ``n_by_subset[subset]`` if given, else the last
  ``metric == "n"`` row of that subset; a claim whose rule needs an n it cannot find is
  inconclusive.
* "memorization rose" between epochs a < b: the noisy training accuracy against observed labels
  (dynamics ``noisy_train_obs``) rose by more than the width of its Wilson interval at a (by
  more than 0.10 when its n is unknown).
* tap order (shallow -> deep): ``taps`` if given, else the order in which the probe's rows name
  them. The feature tap: ``feature_tap`` if given, else the spectral tap with ``trunc_acc``
  rows (the penultimate tap), else the deepest spectral tap.
"""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from noisescope.evidence._arrays import as_numpy
from noisescope.evidence.intervals import Accuracy
from noisescope.evidence.paired import mcnemar, paired_difference
from noisescope.evidence.rules import (
    LARGE,
    MEDIAN_REL_ERROR,
    UNDECIDED,
    choose_d,
    large_activation_flag,
    neuron_follows,
)
from noisescope.evidence.tail import (
    MAX_CLEAN_DROP,
    MAX_NOISY_RATIO,
    MIN_MEMORIZED,
    noise_position,
    tail_verdict,
)
from noisescope.metrics import curve, select, vector

SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE, NOT_MEASURED = "supported", "not supported", "inconclusive", "not measured"
STATUSES = (SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE, NOT_MEASURED)
KUBO, MALIGNANT = "kubo", "malignant_tail"
MISSING: Any = object()  # sentinel: a context value that was not given


@dataclass
class Claim:
    """One claim of a paper, scored on a run.

    Attributes:
        key: short identifier; text: the claim; paper: ``"kubo"`` or ``"malignant_tail"``;
        status: see the module docstring; numbers: what the rule used; rule: the rule, in words;
        command: how to measure it (``"not measured"`` only); summary: one sentence with numbers.
    """

    key: str
    text: str
    paper: str
    status: str
    numbers: dict = field(default_factory=dict)
    rule: str = ""
    command: str = ""
    summary: str = ""

    def __str__(self) -> str:
        return f"[{self.status}] {self.text}: {self.summary}"


# ----------------------------------------------------------------------------- helpers
def _final(m: pd.DataFrame, probe: str) -> int | None:
    e = select(m, probe=probe)["epoch"]
    return None if e.empty else int(e.max())


def _taps(m: pd.DataFrame, probe: str, taps: list[str] | None) -> list[str]:
    if taps is not None:
        return list(taps)
    t = select(m, probe=probe)["tap"]
    return [x for x in pd.unique(t.astype(str)) if x != ""]


def _only(m: pd.DataFrame, *metrics: str) -> pd.DataFrame:
    """The rows of the named metrics (one scan; later selections run on far fewer rows)."""
    return m[m["metric"].isin(metrics)]


def _feature_tap(m: pd.DataFrame, feature_tap: str | None) -> str | None:
    if feature_tap is not None:
        return feature_tap
    head = select(m, probe="spectral", metric="trunc_d_star")["tap"]
    if not head.empty:
        return str(head.iloc[-1])
    taps = _taps(m, "spectral", None)
    return taps[-1] if taps else None


def _n(m: pd.DataFrame, subset: str, n_by_subset: dict[str, int] | None) -> int | None:
    if n_by_subset and subset in n_by_subset and n_by_subset[subset] is not None:
        return int(n_by_subset[subset])
    rows = select(m, metric="n", subset=subset, index=-1).dropna(subset=["value"])
    return None if rows.empty else int(rows.sort_values("epoch")["value"].iloc[-1])


def _early_stop(m: pd.DataFrame, early_stop_epoch: int | None) -> int | None:
    if early_stop_epoch is not None:
        return int(early_stop_epoch)
    val = curve(m, "dynamics", "acc", subset="val").dropna()
    return None if val.empty else int(val.index[int(val.to_numpy().argmax())])


def _scalar(m: pd.DataFrame, probe: str, metric: str, epoch: int, subset: str | None = None,
            tap: str | None = None) -> float:
    s = curve(m, probe, metric, subset=subset, tap=tap)
    return float(s.get(epoch, np.nan)) if not s.empty else float("nan")


def _width(value: float, n: int | None) -> float | None:
    if n is None or not math.isfinite(value):
        return None
    return Accuracy.from_value(min(1.0, max(0.0, value)), n).width


def _memorization_rose(m: pd.DataFrame, a: int, b: int, n_by_subset: dict | None) -> tuple[bool, dict]:
    noisy = curve(m, "dynamics", "acc", subset="noisy_train_obs")
    va, vb = float(noisy.get(a, np.nan)), float(noisy.get(b, np.nan))
    w = _width(va, _n(m, "noisy_train_obs", n_by_subset))
    need = 0.10 if w is None else w
    return bool(math.isfinite(va) and math.isfinite(vb) and vb - va > need), {
        "noisy_obs_acc_from": va, "noisy_obs_acc_to": vb, "memorization_margin": need}


def _claim(key: str, status: str, numbers: dict, summary: str, command: str = "") -> Claim:
    text, paper, rule = CLAIM_TEXT[key]
    return Claim(key, text, paper, status, numbers, rule, command if status == NOT_MEASURED else "", summary)


def _nearest(epochs: list[int], target: int) -> int:
    return min(epochs, key=lambda e: (abs(e - target), e))


NEEDS_DYNAMICS = "noisescope run CONFIG --set 'probe.probes=[\"dynamics\"]'"
NEEDS_SPECTRAL = "noisescope probe RUN"
NEEDS_SIGNALS = "noisescope signals RUN"


# ----------------------------------------------------------------------------- Kubo et al.
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
                      "scorecard(metrics, double_descent=run.summary['double_descent'])")
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


# ----------------------------------------------------------------------------- Malignant Tail
def claim_effective_rank_grows(metrics: pd.DataFrame, feature_tap: str | None = None,
                               early_stop_epoch: int | None = None, n_by_subset: dict | None = None,
                               min_growth: float = 0.10) -> Claim:
    """Effective rank of the feature tap's training spectrum at the spectral epoch nearest the
    early-stopping epoch (ties -> earlier) and at the final spectral epoch. Supported when
    memorization rose between them (module docstring) and the effective rank grew by at least
    ``min_growth`` (10%); not supported when memorization rose and it did not; inconclusive when
    memorization did not rise."""
    key = "effective_rank_grows"
    metrics = _only(metrics, "effective_rank", "trunc_d_star", "acc", "n")
    tap = _feature_tap(metrics, feature_tap)
    er = curve(metrics, "spectral", "effective_rank", subset="train", tap=tap).dropna() if tap else pd.Series()
    es = _early_stop(metrics, early_stop_epoch)
    if er.empty or es is None:
        return _claim(key, NOT_MEASURED, {}, "no spectral or dynamics rows", NEEDS_SPECTRAL)
    a, b = _nearest([int(x) for x in er.index], es), int(er.index.max())
    rose, nums = _memorization_rose(metrics, a, b, n_by_subset)
    ra, rb = float(er[a]), float(er[b])
    nums.update(tap=tap, epoch_from=a, epoch_to=b, effective_rank_from=ra, effective_rank_to=rb,
                min_growth=min_growth)
    words = (f"effective rank of {tap}: {ra:.1f} (epoch {a}) -> {rb:.1f} (epoch {b}) while noisy-label fit "
             f"{nums['noisy_obs_acc_from']:.3f} -> {nums['noisy_obs_acc_to']:.3f}")
    if not rose:
        return _claim(key, INCONCLUSIVE, nums, words + " (memorization did not rise)")
    return _claim(key, SUPPORTED if rb >= (1 + min_growth) * ra else NOT_SUPPORTED, nums, words)


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
    metrics = _only(metrics, *TAIL_METRICS)
    inp = _tail_inputs(metrics, _feature_tap(metrics, feature_tap), epoch, n_by_subset)
    if isinstance(inp, str):
        return _claim(key, NOT_MEASURED, {}, inp, NEEDS_SPECTRAL)
    if inp["n_clean"] is None or inp["n_noisy"] is None:
        return _claim(key, INCONCLUSIVE, inp, "the clean / noisy training sample counts are unknown (metric n)")
    v = tail_verdict(inp["clean_full"], inp["noisy_full"], inp["clean_at_d"], inp["noisy_at_d"], inp["n_clean"],
                     inp["n_noisy"], inp["d"], max_noisy_ratio=max_noisy_ratio, max_clean_drop=max_clean_drop,
                     min_memorized=min_memorized)
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
                      "then scorecard(metrics, k_star=10)")
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
    on the clean test set. With per-sample test correctness vectors
    (``test_correct={"truncated": ..., "early_stop": ...}``): supported when acc_trunc >=
    acc_early; not supported when it is lower and McNemar's exact p < ``alpha`` (0.05);
    inconclusive otherwise. With accuracies only (``trunc_acc_d_star`` test at the final spectral
    epoch; dynamics test accuracy at the early-stopping epoch; Wilson intervals on the test n):
    supported when acc_trunc >= acc_early; not supported when the truncated interval lies wholly
    below the early-stopping one; inconclusive otherwise."""
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
        status = SUPPORTED if diff.diff >= 0 else NOT_SUPPORTED if test.p_value < alpha else INCONCLUSIVE
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
    if a_t >= a_s:
        return _claim(key, SUPPORTED, nums, words)
    if n is None:
        return _claim(key, INCONCLUSIVE, nums, words + "; the number of test samples is unknown (metric n)")
    it, isx = Accuracy.from_value(a_t, n), Accuracy.from_value(a_s, n)
    nums.update(truncated_high=it.high, early_stop_low=isx.low)
    words = f"truncated final (d = {d:.0f}) {it} vs early stopping (epoch {es}) {isx}"
    return _claim(key, NOT_SUPPORTED if it.high < isx.low else INCONCLUSIVE, nums, words)


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
    metrics = _only(metrics, *TAIL_METRICS)
    inp = _tail_inputs(metrics, _feature_tap(metrics, feature_tap), epoch, n_by_subset)
    if isinstance(inp, str):
        return _claim(key, NOT_MEASURED, {}, inp, NEEDS_SPECTRAL)
    if inp["n_clean"] is None or inp["n_noisy"] is None:
        return _claim(key, INCONCLUSIVE, inp, "the clean / noisy training sample counts are unknown (metric n)")
    v = tail_verdict(inp["clean_full"], inp["noisy_full"], inp["clean_at_d"], inp["noisy_at_d"], inp["n_clean"],
                     inp["n_noisy"], inp["d"], max_noisy_ratio=max_noisy_ratio, min_memorized=min_memorized)
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
                      "noisescope sweep malignant_width, then scorecard(metrics, by_width={width: metrics})")
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


# ----------------------------------------------------------------------------- the scorecard
CLAIM_TEXT: dict[str, tuple[str, str, str]] = {
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
}

CLAIM_FUNCTIONS: dict[str, Callable[..., Claim]] = {
    "clean_before_noisy": claim_clean_before_noisy,
    "test_error_rises": claim_test_error_rises,
    "double_descent": claim_double_descent,
    "separation_outward": claim_separation_outward,
    "large_activation": claim_large_activation,
    "test_alignment": claim_test_alignment,
    "effective_rank_grows": claim_effective_rank_grows,
    "noise_in_tail": claim_noise_in_tail,
    "rank_risk_valley": claim_rank_risk_valley,
    "truncation_vs_early_stop": claim_truncation_vs_early_stop,
    "systematic_noise_in_signal": claim_systematic_noise_in_signal,
    "no_tail_at_init": claim_no_tail_at_init,
    "wider_larger_tail": claim_wider_larger_tail,
}

CONTEXT_KEYS = ("n_by_subset", "early_stop_epoch", "double_descent", "taps", "feature_tap", "k_star",
                "test_correct", "noise_model", "by_width")


def scorecard(metrics: pd.DataFrame, **context: Any) -> list[Claim]:
    """Every claim on one run's metrics table, in the order of :data:`CLAIM_FUNCTIONS`.

    Context (all optional): ``n_by_subset`` (subset -> n), ``early_stop_epoch``,
    ``double_descent`` (the detection dict or None; absent = not measured), ``taps`` (signals
    taps shallow -> deep), ``feature_tap``, ``k_star``, ``test_correct``
    ({"truncated", "early_stop"} -> per-sample clean-test correctness), ``noise_model``,
    ``by_width`` (width -> metrics table). Each claim receives the keys its function accepts.
    """
    unknown = set(context) - set(CONTEXT_KEYS)
    if unknown:
        raise ValueError(f"scorecard: unknown context {sorted(unknown)}; known: {list(CONTEXT_KEYS)}")
    out = []
    for fn in CLAIM_FUNCTIONS.values():
        params = inspect.signature(fn).parameters
        out.append(fn(metrics, **{k: v for k, v in context.items() if k in params}))
    return out


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating, float)):
        return None if not math.isfinite(float(x)) else float(x)
    return x


def scorecard_frame(claims: list[Claim]) -> pd.DataFrame:
    """Claims -> DataFrame (key, paper, text, status, summary, rule, command, numbers), with
    ``numbers`` as a JSON string (non-finite values as null)."""
    cols = ["key", "paper", "text", "status", "summary", "rule", "command", "numbers"]
    rows = []
    for c in claims:
        d = asdict(c)
        d["numbers"] = json.dumps(_jsonable(d["numbers"]), sort_keys=True)
        rows.append({k: d[k] for k in cols})
    return pd.DataFrame(rows, columns=cols).astype("string")
