"""Epoch-wise double descent on one curve (test error or test loss), with a band from the
curve's own sampling uncertainty (docs/definitions.md, "Dynamics").

A double descent is a minimum, a later peak and a later minimum. On the curve smoothed by a
centred moving average over ``smooth`` probe points, every interior point j is a candidate
peak with i = argmin before it and k = argmin after it; rise = v_j - v_i, fall = v_j - v_k.
The reported triple is the one with the largest min(rise, fall) (with ``first_descent``, the
largest min(drop, rise, fall), drop = v_0 - v_i from the untrained model's value v_0). With
``hold``, the second descent must last: the fall to the curve's last point, end_fall = v_j -
v_end, must qualify as well (a dip inside a plateau that later climbs past the peak, as a test
loss does when the memorizing network grows overconfident, is not a re-generalization).

Uncertainty: each probe point carries a standard error se_t (test error: the binomial
sqrt(p (1 - p) / n); test loss: the per-sample cross-entropy's standard deviation / sqrt(n)).
A dip between points a and b is compared with SE_ab = sqrt(se_a^2 + se_b^2), the unpaired
standard error of the difference (the points share the test samples, so their errors are
positively correlated and the paired one is smaller: the band is conservative).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from noisescope.evidence.intervals import binomial_se
from noisescope.metrics import curve

#: The band's two edges, in standard errors of the dip: a dip is clear above Z_CLEAR, noise
#: below Z_NOISE, undecided in between.
Z_CLEAR, Z_NOISE = 2.0, 1.0
CLEAR, ABSENT, UNCLEAR = "clear", "absent", "unclear"


def smooth_curve(values: np.ndarray, window: int) -> np.ndarray:
    """Centered moving average over ``window`` points (shrinking at the ends); 1 = unchanged."""
    v = np.asarray(values, dtype=float)
    if window <= 1 or len(v) < 2:
        return v.copy()
    half = window // 2
    out = np.empty_like(v)
    for i in range(len(v)):
        out[i] = np.nanmean(v[max(0, i - half) : i + half + 1])
    return out


def _se_diff(se: np.ndarray | None, a: int, b: int) -> float:
    if se is None:
        return 0.0
    return float(math.sqrt(se[a] ** 2 + se[b] ** 2))


def descent_triple(
    epochs: np.ndarray | list[int],
    values: np.ndarray | list[float],
    smooth: int = 5,
    se: np.ndarray | list[float] | None = None,
    threshold: float = 0.0,
    z: float = 0.0,
    first_descent: bool = False,
    hold: bool = False,
) -> dict[str, float] | None:
    """The best (first minimum, peak, second minimum) of a curve (module docstring).

    Args:
        epochs: (T,) probe epochs (any order; sorted here).
        values: (T,) the curve (error in [0, 1] or loss in nats); NaNs ignored.
        smooth: moving-average window in probe points (1 = raw).
        se: (T,) standard error of each raw point, or None.
        threshold: when > 0 or ``z`` > 0, only triples whose rise and fall both exceed
            max(threshold, z SE) qualify (SE of that dip); else every triple qualifies.
        z: the dips' required size in standard errors.
        first_descent: the curve must first descend: the first point (the untrained model)
            stays out of the smoothing, the first minimum comes after it, and when gated the
            drop from it (``drop``) must qualify like the other two dips.
        hold: when gated, the fall from the peak to the last point (``end_fall``) must
            qualify too: the second descent lasts to the end of training.

    Returns:
        None (fewer than 3 points, or no qualifying triple), or {"first_min_epoch",
        "peak_epoch", "second_min_epoch", "first_min", "peak", "second_min", "end", "rise",
        "fall", "end_fall", "rise_se", "fall_se", "end_fall_se"}: smoothed values, the dips
        and their standard errors (0 when ``se`` is None).
    """
    e = np.asarray(epochs)
    v = np.asarray(values, dtype=float)
    keep = ~np.isnan(v)
    s = None if se is None else np.asarray(se, dtype=float)
    e, v = e[keep], v[keep]
    if s is not None:
        s = s[keep]
    order = np.argsort(e, kind="stable")
    e, v = e[order], v[order]
    lo = 1 if first_descent else 0
    v = np.concatenate([v[:lo], smooth_curve(v[lo:], smooth)])
    if s is not None:
        s = np.nan_to_num(s[order], nan=np.inf)
    n = len(v)
    if n < 3:
        return None
    gated = threshold > 0 or z > 0
    best: tuple[float, int, int, int] | None = None
    for j in range(1 + lo, n - 1):
        i = lo + int(np.argmin(v[lo:j]))
        k = j + 1 + int(np.argmin(v[j + 1 :]))
        rise, fall, drop = v[j] - v[i], v[j] - v[k], v[0] - v[i]
        if gated and not (rise >= max(threshold, z * _se_diff(s, i, j))
                          and fall >= max(threshold, z * _se_diff(s, j, k))
                          and (not first_descent or drop >= max(threshold, z * _se_diff(s, 0, i)))
                          and (not hold or v[j] - v[-1] >= max(threshold, z * _se_diff(s, j, n - 1)))):
            continue
        score = min(rise, fall, drop) if first_descent else min(rise, fall)
        if best is None or score > best[0]:
            best = (score, i, j, k)
    if best is None:
        return None
    _, i, j, k = best
    return {"first_min_epoch": int(e[i]), "peak_epoch": int(e[j]), "second_min_epoch": int(e[k]),
            "start": float(v[0]), "first_min": float(v[i]), "peak": float(v[j]), "second_min": float(v[k]),
            "end": float(v[-1]), "drop": float(v[0] - v[i]), "rise": float(v[j] - v[i]),
            "fall": float(v[j] - v[k]), "end_fall": float(v[j] - v[-1]), "drop_se": _se_diff(s, 0, i),
            "rise_se": _se_diff(s, i, j), "fall_se": _se_diff(s, j, k), "end_fall_se": _se_diff(s, j, n - 1)}


def read_descent(
    epochs: np.ndarray | list[int],
    values: np.ndarray | list[float],
    se: np.ndarray | list[float],
    threshold: float = 0.03,
    smooth: int = 5,
    z_clear: float = Z_CLEAR,
    z_noise: float = Z_NOISE,
) -> dict:
    """Double descent on one curve with its band: the status and the triple behind it.

    Rule, on the best triple of :func:`descent_triple` with ``first_descent=True`` and
    ``hold=True`` (the curve descends from the untrained model's value to the first minimum,
    rises to the peak and descends to the second minimum, and stays down to the last point:
    four moves, drop, rise, fall and end_fall = peak - last point):

    * ``"clear"``: all four reach max(``threshold``, ``z_clear`` SE) (2 SE), the SE of each
      move; the triple reported is the best among those that qualify;
    * ``"absent"``: no triple, or one of the best triple's moves is at most ``z_noise`` SE
      (1 SE) of that move (no double descent beyond sampling noise, or one that did not last);
    * ``"unclear"``: in between (a move between 1 and 2 SE, or above 2 SE but under
      ``threshold``).

    Returns:
        {"status", "threshold", "z_clear", "z_noise", **triple} (triple keys absent when there
        is none); ``gain`` = fall (the re-generalization gain, in the curve's units).
    """
    out: dict = {"threshold": float(threshold), "z_clear": float(z_clear), "z_noise": float(z_noise)}
    clear = descent_triple(epochs, values, smooth, se, threshold, z_clear, first_descent=True, hold=True)
    if clear is not None:
        return {"status": CLEAR, **out, **clear, "gain": clear["fall"]}
    best = descent_triple(epochs, values, smooth, se, first_descent=True)
    if best is None:
        return {"status": ABSENT, **out}
    noise = any(best[m] <= z_noise * best[f"{m}_se"] for m in ("drop", "rise", "fall", "end_fall"))
    return {"status": ABSENT if noise else UNCLEAR, **out, **best, "gain": best["fall"]}


def test_curves(metrics: pd.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The clean test curves with their per-point standard errors, from the dynamics rows:
    {"error": (epochs, 1 - acc, sqrt(p (1 - p) / n)), "loss": (epochs, mean cross-entropy (nats),
    loss_sd / sqrt(n))}. A curve is absent without its rows, or without the ``n`` (both) or
    ``loss_sd`` (loss) rows that give its uncertainty."""
    out: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    n = curve(metrics, "dynamics", "n", subset="test").dropna()
    if n.empty:
        return out
    acc = curve(metrics, "dynamics", "acc", subset="test").dropna()
    common = acc.index.intersection(n.index)
    if len(common):
        p, m = 1.0 - acc[common].to_numpy(float), n[common].to_numpy(float)
        out["error"] = (common.to_numpy(), p, np.array([binomial_se(pi, mi) for pi, mi in zip(p, m, strict=True)]))
    loss = curve(metrics, "dynamics", "loss", subset="test").dropna()
    sd = curve(metrics, "dynamics", "loss_sd", subset="test").dropna()
    common = loss.index.intersection(sd.index).intersection(n.index)
    if len(common):
        out["loss"] = (common.to_numpy(), loss[common].to_numpy(float),
                       sd[common].to_numpy(float) / np.sqrt(n[common].to_numpy(float)))
    return out
