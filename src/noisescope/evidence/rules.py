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
from noisescope.evidence.intervals import binomial_se
from noisescope.evidence.paired import mcnemar_counts, paired_se

# The large-activation median is read from a histogram with relative error <= 2**-8.
from noisescope.signals.large_activation import MEDIAN_REL_ERROR

D_RULES = ("1se", "argmax")
LARGE, NOT_LARGE, UNDECIDED = "large", "not large", "undecided"


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
    return np.asarray(correct) / n >= p - binomial_se(p, n) - 1e-12


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
        se = math.hypot(binomial_se(p1, n_val), binomial_se(p0, n_val))
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


# --------------------------------------------------------------------------- recommendation
ALPHA = 0.05
RECOMMENDED, DEFAULT_BEST, NO_DECISION = "recommended", "default best", "no decision"


@dataclass(frozen=True)
class Comparison:
    """``first`` against ``second`` on the same noisy-validation samples (see :func:`compare_on_val`).

    Attributes:
        first, second: candidate names; k_first, k_second: their correct counts of n.
        b: samples only ``first`` gets right; c: samples only ``second`` gets right (k_first -
            k_second = b - c).
        p_value: McNemar's exact two-sided p (``evidence.paired.mcnemar_counts``).
        gain, se: (b - c)/n and its guarded standard error (``repair_verdict``, b' = b + 1).
        beats: ``first`` beats ``second`` (b > c, p < alpha and gain > se).
    """

    first: str
    second: str
    k_first: int
    k_second: int
    b: int
    c: int
    n: int
    p_value: float
    gain: float
    se: float
    beats: bool

    def text(self) -> str:
        """``"A 612 vs B 590 of 1000 correct, McNemar p=0.003"``."""
        return (f"{self.first} {self.k_first} vs {self.second} {self.k_second} of {self.n} correct, "
                f"McNemar p={self.p_value:.2g}")


def compare_on_val(first: str, a: np.ndarray | torch.Tensor, second: str, b: np.ndarray | torch.Tensor,
                   alpha: float = ALPHA) -> Comparison:
    """Does candidate ``first`` beat ``second`` on noisy validation?

    Rule (paired, per sample): with b, c the samples only ``first`` / only ``second`` gets
    right, ``first`` beats ``second`` iff b > c, McNemar's exact two-sided p < ``alpha``
    (0.05), and the gain (b - c)/n exceeds its standard error with the small-count guard of
    :func:`repair_verdict` (b' = b + 1; implied by p < 0.05 on every count checked, binding
    only at a larger ``alpha``).

    Args:
        a, b: (n,) per-sample correctness (bool or 0/1) of the two candidates on the same samples.
    """
    v = repair_verdict(a, b)  # paired: b, c, the guarded se and McNemar's exact p
    k_b = int(as_numpy(b, bool).sum())
    return Comparison(first, second, k_b + v.b - v.c, k_b, v.b, v.c, v.n, v.p_value, v.gain, v.se,
                      bool(v.b > v.c and v.p_value < alpha and v.recommended))


@dataclass(frozen=True)
class Recommendation:
    """What :func:`recommend` decided.

    Attributes:
        choice: the candidate to use (``default`` unless another one beats every other).
        status: ``"recommended"`` (a candidate other than the default beats every other),
            ``"default best"`` (the default is the most accurate, or the only candidate) or
            ``"no decision"`` (the most accurate does not beat some other: the default is kept).
        default: the safe default; best: the most accurate candidate on noisy validation.
        decisive: the comparison that decided (the closest win, the failed one, or the
            default against the runner-up); None with a single candidate.
        comparisons: ``best`` against every other candidate (identical ones excepted).
        correct: candidate -> correct count; n: validation samples.
        same_as: candidate -> the candidate with exactly the same validation correctness it
            was grouped with (indistinguishable on validation: the earlier-ranked one stands).
        line: the decision in one line.
    """

    choice: str
    status: str
    default: str
    best: str
    decisive: Comparison | None
    comparisons: tuple[Comparison, ...]
    correct: dict[str, int]
    n: int
    same_as: dict[str, str]
    line: str
    alpha: float = ALPHA

    @property
    def decided(self) -> bool:
        return self.status != NO_DECISION

    @property
    def replaces_default(self) -> bool:
        """True when the choice is not the default."""
        return self.choice != self.default

    def outcome(self, name: str) -> str:
        """One word for candidate ``name``'s row: ``"recommended"``, ``"kept"`` (the default,
        chosen), ``"undecided"`` (the most accurate, not chosen), ``"= X"`` (same validation
        correctness as X), ``"beaten"`` / ``"not beaten"`` (by the most accurate), or ``""``
        for a name that is not a candidate."""
        if name == self.choice:
            return "recommended" if self.status == RECOMMENDED else "kept"
        if name == self.best:
            return "undecided"
        if name in self.same_as:
            return f"= {self.same_as[name]}"
        comp = next((c for c in self.comparisons if c.second == name), None)
        if comp is None:
            return ""
        return "beaten" if comp.beats else "not beaten"

    def __str__(self) -> str:
        return self.line


def recommend(candidates: dict[str, np.ndarray | torch.Tensor], default: str = "early_stop",
              alpha: float = ALPHA) -> Recommendation:
    """The one recommendation rule of every leaderboard (repair, truncate, training methods).

    Rule: order the candidates by their correct count on noisy validation (ties: the default
    first, then the order given); candidates with exactly the same per-sample correctness as
    an earlier one are grouped with it (no validation sample tells them apart). If the most
    accurate is the default, keep it (``"default best"``). Otherwise the most accurate is
    recommended only if it beats *every* other candidate, the default included, by
    :func:`compare_on_val` (McNemar's exact test on the paired correctness vectors, b > c,
    p < ``alpha``, with the small-count guard); else ``"no decision"``: the default is kept
    and the line names the comparison it failed (the one with the largest p), e.g. "no
    decision: A and early_stop differ by 6 of 1000 validation samples (McNemar p=0.69);
    keeping early_stop". Requiring every comparison to pass (an intersection-union test)
    keeps the chance of replacing a default that is at least as good at most ``alpha``
    without a multiple-comparison correction; selecting the best on the same validation set
    still favours a lucky candidate, which the clean test set (only reported) reveals.

    Args:
        candidates: name -> (n,) per-sample correctness (bool or 0/1) on the same noisy
            validation samples, for every model the recommendation would choose between.
        default: the safe choice (early stopping in every leaderboard); must be a candidate.
        alpha: the level of each paired test.
    """
    if default not in candidates:
        raise ValueError(f"the default {default!r} is not among the candidates {sorted(candidates)}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    vecs = {k: as_numpy(v, bool).reshape(-1) for k, v in candidates.items()}
    n = vecs[default].size
    bad = [k for k, v in vecs.items() if v.size != n]
    if bad:
        raise ValueError(f"every candidate needs one correctness value per validation sample ({n}); "
                         f"{bad[0]!r} has {vecs[bad[0]].size}")
    if n == 0:
        raise ValueError("recommend needs at least one validation sample")
    counts = {k: int(v.sum()) for k, v in vecs.items()}
    order = sorted(vecs, key=lambda k: (-counts[k], k != default, list(vecs).index(k)))
    same_as: dict[str, str] = {}
    kept: list[str] = []
    for k in order:
        twin = next((j for j in kept if np.array_equal(vecs[j], vecs[k])), None)
        if twin is None:
            kept.append(k)
        else:
            same_as[k] = twin
    best = order[0]
    comps = tuple(compare_on_val(best, vecs[best], k, vecs[k], alpha) for k in kept[1:])
    if not comps:
        line = (f"keeping {default}: no other candidate" if len(vecs) == 1 else
                f"keeping {default}: every candidate has the same validation predictions")
        return Recommendation(default, DEFAULT_BEST, default, best, None, comps, counts, n, same_as, line, alpha)
    if best == default:
        dec = comps[0]
        line = (f"keeping {default}: the most accurate on noisy validation ({counts[default]} of {n} correct; "
                f"next {dec.second} {dec.k_second})")
        return Recommendation(default, DEFAULT_BEST, default, best, dec, comps, counts, n, same_as, line, alpha)
    failed = [c for c in comps if not c.beats]
    if failed:
        dec = max(failed, key=lambda c: (c.p_value, c.k_second))
        line = (f"no decision: {best} and {dec.second} differ by {dec.b - dec.c} of {n} validation samples "
                f"(McNemar p={dec.p_value:.2g}); keeping {default}")
        return Recommendation(default, NO_DECISION, default, best, dec, comps, counts, n, same_as, line, alpha)
    dec = max(comps, key=lambda c: (c.p_value, c.k_second))
    line = (f"recommended: {best}: beats every other candidate on noisy validation; closest: "
            f"{dec.text()}")
    return Recommendation(best, RECOMMENDED, default, best, dec, comps, counts, n, same_as, line, alpha)


def decision_warning(decision: Recommendation) -> str | None:
    """:func:`resolution_warning` for a :func:`recommend` decision: with "no decision" the gap at
    stake is the decisive comparison's (b - c)/n (positive: the most accurate candidate's lead),
    and the warning says how many samples would resolve it; otherwise only the small-set warning
    (n < 100). No sample-size offer for a difference that goes against the candidate."""
    dec = decision.decisive
    delta = 0.0
    if decision.status == NO_DECISION and dec is not None and dec.b > dec.c:
        delta = (dec.b - dec.c) / dec.n
    return resolution_warning(decision.n, decision.correct[decision.default] / decision.n, delta)


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
    se = binomial_se(acc, n_val)
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
