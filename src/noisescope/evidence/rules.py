"""The decision rules: one definition each, stated in the docstrings (``docs/definitions.md``
quotes them). Accuracies are fractions in [0, 1]; "points" are percentage points.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

from noisescope.evidence._arrays import as_numpy
from noisescope.evidence.paired import mcnemar_counts, paired_se

D_RULES = ("1se", "argmax")

# The large-activation median is read from a histogram with relative error <= 2**-8
# (noisescope.signals.large_activation.MEDIAN_REL_ERROR).
MEDIAN_REL_ERROR = 2.0**-8
LARGE, NOT_LARGE, UNDECIDED = "large", "not large", "undecided"
FOLLOWS = ("input", "label", "neither", "undecided")


# --------------------------------------------------------------------------- choice of d
def choose_d(correct_counts: torch.Tensor | np.ndarray | Iterable[int], d_grid: np.ndarray | Iterable[int],
             n: int | None = None, rule: str = "1se") -> int:
    """d* from the number of correct noisy-validation predictions at each d of a grid.

    Rules (``d_grid`` sorted ascending; acc_g = correct_g / n):

    * ``"1se"`` (default): the smallest d whose accuracy is at least best - SE(best), with
      best = max_g acc_g and SE(best) = sqrt(best (1 - best) / n) the binomial standard error
      of the best accuracy on n validation samples.
    * ``"argmax"``: the d with the most correct predictions, ties -> the smaller d.

    Args:
        correct_counts: (G,) correct predictions per grid d.
        d_grid: (G,) the d values, ascending.
        n: number of validation samples (required by ``"1se"``).
        rule: ``"1se"`` or ``"argmax"``.
    """
    counts = as_numpy(correct_counts)
    grid = as_numpy(d_grid)
    if counts.shape != grid.shape:
        raise ValueError("correct_counts and d_grid must have the same length")
    if counts.size == 0:
        raise ValueError("empty d grid")
    if np.any(np.diff(grid) <= 0):
        raise ValueError("d_grid must be strictly ascending")
    if rule == "argmax":
        return int(grid[int(np.argmax(counts))])
    if rule == "1se":
        if not n:
            raise ValueError("rule='1se' needs n_val, the number of validation samples")
        if counts.max() > n or counts.min() < 0:
            raise ValueError(f"correct counts must lie in [0, n={n}]")
        return int(grid[int(np.argmax(within_one_se(counts, counts.max(), n)))])
    raise ValueError(f"unknown d rule {rule!r}; choose from {D_RULES}")


def within_one_se(correct: np.ndarray | int, best: int, n: int) -> np.ndarray | bool:
    """The one-standard-error test behind every "smallest choice within 1 SE of the best" rule
    (d*, weight ranks, per-layer d): correct/n >= p - sqrt(p (1 - p) / n) with p = best/n
    (a 1e-12 slack absorbs float rounding at the boundary). ``correct`` may be an array."""
    p = best / n
    return np.asarray(correct) / n >= p - math.sqrt(p * (1 - p) / n) - 1e-12


# --------------------------------------------------------------------------- repair verdict
@dataclass(frozen=True)
class Verdict:
    """Whether to recommend a repair (see :func:`repair_verdict`).

    Attributes:
        recommended: True when the validation gain exceeds its standard error.
        gain: acc(repaired) - acc(original) on noisy validation.
        se: standard error of ``gain``.
        n: validation samples.
        reason: one sentence with the numbers in points.
        method: ``"paired"`` (per-sample vectors) or ``"unpaired"`` (counts only).
        b, c: repaired-right/original-wrong and repaired-wrong/original-right (paired only).
        p_value: McNemar exact p (paired only, informative; the rule is gain > se).
    """

    recommended: bool
    gain: float
    se: float
    n: int
    reason: str
    method: str
    b: int | None = None
    c: int | None = None
    p_value: float | None = None

    def __str__(self) -> str:
        return self.reason


def _pts(x: float, sign: bool = False) -> str:
    return f"{100 * x:+.1f}" if sign else f"{100 * x:.1f}"


def repair_verdict(repaired: np.ndarray | torch.Tensor | int, original: np.ndarray | torch.Tensor | int,
                   n_val: int | None = None, name: str = "repair") -> Verdict:
    """Recommend a repair only when its noisy-validation gain over the model it repairs exceeds
    one standard error of that gain.

    Rule: gain = acc_val(repaired) - acc_val(original); recommended iff gain > se (strictly;
    a gain of 0 with se 0 is not recommended).

    * Paired (``repaired`` and ``original`` are per-sample correctness vectors on the same
      validation samples): with b = #(repaired right, original wrong), c = #(repaired wrong,
      original right), gain = (b - c)/n and se = sqrt(b' + c - (b' - c)^2/n)/n with b' = b + 1:
      the Wald SE with one more discordant sample, a small-count guard so that a handful of
      discordant samples (b = 1, c = 0 gives se > gain) never clears the rule (Wald on the
      per-sample differences). Preferred.
    * Unpaired (both are correct counts; ``n_val`` required):
      se = sqrt(p1 (1 - p1)/n + p0 (1 - p0)/n). The two models' errors are usually positively
      correlated, so this overstates the paired se: the rule is then conservative.

    ``name`` only appears in the reason when it is not ``"repair"``.
    """
    label = "" if name == "repair" else f" ({name})"
    if np.ndim(repaired) == 0 and np.ndim(original) == 0:
        if not n_val or n_val <= 0:
            raise ValueError("repair_verdict on correct counts needs n_val > 0")
        k1, k0 = int(repaired), int(original)
        if not (0 <= k1 <= n_val and 0 <= k0 <= n_val):
            raise ValueError(f"correct counts must lie in [0, n_val={n_val}], got {k1} and {k0}")
        p1, p0 = k1 / n_val, k0 / n_val
        gain = p1 - p0
        se = math.sqrt(p1 * (1 - p1) / n_val + p0 * (1 - p0) / n_val)
        n, method, b, c, p = int(n_val), "unpaired", None, None, None
    else:
        r, o = as_numpy(repaired, bool), as_numpy(original, bool)
        if r.shape != o.shape:
            raise ValueError(f"paired correctness vectors differ in length: {r.size} vs {o.size}")
        if n_val is not None and n_val != r.size:
            raise ValueError(f"n_val={n_val} but the correctness vectors have {r.size} entries")
        n = int(r.size)
        if n == 0:
            raise ValueError("repair_verdict needs at least one validation sample")
        b, c = int((r & ~o).sum()), int((~r & o).sum())
        gain, se = (b - c) / n, paired_se(b + 1, c, n)  # one more discordant pair: see the docstring
        p, method = mcnemar_counts(b, c, n).p_value, "paired"
    if gain > se:
        reason = (f"repair{label}: validation gain {_pts(gain, True)} points exceeds one standard error "
                  f"({_pts(se)} points)")
    elif gain > 0:
        reason = (f"no repair{label}: validation gain {_pts(gain, True)} points is within one standard error "
                  f"({_pts(se)} points)")
    else:
        reason = (f"no repair{label}: the repair does not improve validation accuracy (gain "
                  f"{_pts(gain, True)} points, standard error {_pts(se)} points)")
    return Verdict(bool(gain > se), float(gain), float(se), n, reason, method, b, c, p)


def best_repair(candidates: dict[str, np.ndarray | torch.Tensor], original: np.ndarray | torch.Tensor
                ) -> tuple[str | None, Verdict | None]:
    """The candidate with the highest noisy-validation accuracy (ties: first given), and its
    paired :func:`repair_verdict` against ``original``; ``(None, verdict)`` when that verdict is
    "no repair", ``(None, None)`` without candidates. Picking the best of several candidates on
    the same validation set favours the lucky one; the one-se margin is the only guard."""
    if not candidates:
        return None, None
    accs = {k: float(as_numpy(v, bool).mean()) for k, v in candidates.items()}
    name = max(accs, key=lambda k: accs[k])  # first maximal in insertion order
    v = repair_verdict(candidates[name], original, name=name)
    return (name if v.recommended else None), v


# --------------------------------------------------------------------------- resolution
def resolution_warning(n_val: int, acc: float, delta: float, min_n: int = 100) -> str | None:
    """Warn when the noisy-validation set is too small to resolve the differences at stake.

    Rule: with SE = sqrt(acc (1 - acc) / n_val) the binomial standard error of an accuracy
    near ``acc``, warn when n_val < ``min_n`` (100), or when SE > |delta| / 2, i.e. a
    difference of |delta| between the candidates is less than two standard errors of one
    accuracy. The message names the n_val that would resolve it: ceil(4 acc (1 - acc) / delta^2).
    A zero ``delta`` (nothing at stake) only triggers the ``min_n`` warning. Returns None or
    the message.
    """
    if n_val < 0 or not 0.0 <= acc <= 1.0:
        raise ValueError(f"need n_val >= 0 and acc in [0, 1], got {n_val}, {acc}")
    if n_val < min_n:
        return (f"noisy validation has only {n_val} samples (fewer than {min_n}): choices made on it "
                "(d, early-stopping epoch, repair) are unreliable")
    delta = abs(float(delta))
    se = math.sqrt(acc * (1 - acc) / n_val)
    if delta > 0 and se > delta / 2:
        need = math.ceil(4 * acc * (1 - acc) / delta**2)
        return (f"noisy validation ({n_val} samples) cannot resolve a {_pts(delta)}-point difference: an "
                f"accuracy near {acc:.2f} has a standard error of {_pts(se)} points, more than half the "
                f"difference; about {need} samples would resolve it")
    return None


# --------------------------------------------------------------------------- large activation
def large_activation_flag(ratio: float, threshold: float = 100.0, rel_err: float = MEDIAN_REL_ERROR) -> str:
    """Is the largest activation "large" (max |a| / median |a| against a relative threshold)?

    The max is exact, the median carries relative error <= ``rel_err`` (2**-8), so the true
    ratio lies in [ratio (1 - rel_err), ratio (1 + rel_err)]. Rule:

    * ``"large"`` when ratio (1 - rel_err) >= threshold (it clears the threshold by more than
      the median's relative error; a ratio of +inf, median 0, is large);
    * ``"not large"`` when ratio (1 + rel_err) < threshold;
    * ``"undecided"`` in between, or when the ratio is NaN.
    """
    if threshold <= 0 or not 0 <= rel_err < 1:
        raise ValueError(f"need threshold > 0 and 0 <= rel_err < 1, got {threshold}, {rel_err}")
    r = float(ratio)
    if math.isnan(r):
        return UNDECIDED
    if r * (1 - rel_err) >= threshold:
        return LARGE
    if r * (1 + rel_err) < threshold:
        return NOT_LARGE
    return UNDECIDED


def neuron_follows(r2_input: float, eta2_true: float, eta2_obs: float, small: float = 0.1) -> str:
    """Does the large-activation neuron follow the input, the label, or neither?

    With R^2 the held-out R^2 of the activation from the input's top principal components and
    eta^2 = max(eta2_true, eta2_obs) its correlation ratio with the (true or observed) label,
    NaN-aware (a NaN eta^2 is ignored when the other is finite):

    * ``"undecided"`` when R^2 or both eta^2 are NaN (not measured, or a constant activation);
    * ``"neither"`` when R^2 < ``small`` and eta^2 < ``small`` (default 0.1: each explains less
      than 10% of the activation's variance);
    * ``"input"`` when R^2 >= eta^2, else ``"label"``.
    """
    r2 = float(r2_input)
    etas = [float(e) for e in (eta2_true, eta2_obs) if not math.isnan(float(e))]
    if math.isnan(r2) or not etas:
        return "undecided"
    eta = max(etas)
    if r2 < small and eta < small:
        return "neither"
    return "input" if r2 >= eta else "label"
