"""Does the label noise live in the spectral tail? Truncated-fit curves, the margin carried by
the tail, where the noise-dominated components sit, and the "noise lives in the tail" rule.

* **Truncated-fit curves**: for every d of a grid, the accuracy against *observed* labels of
  the clean and of the noisy training samples when the tap is truncated to its top-d principal
  components and read by a linear read-out (the original head: ``head_readout``), i.e.
  argmax_c [h(mu + V_d V_d^T (f - mu))]_c == observed label. Cumulative over components: one
  pass (``spectral.linear_probe.cumulative_correct``, or ``grid_correct`` for the grid's d
  values only: the spectral probe's report grid).
* **Tail margin share** at d, over a set S of samples the model fits (margin > 0 for the
  observed label): sum_{i in S} (margin carried by components d+1..D)_i / sum_{i in S} margin_i
  (``spectral.attribution``; the margin is against the strongest competitor of the full model).
* **Noise-dominated components**: noise share rho_k >= tau with
  tau = min(factor * rate, (1 + rate) / 2), factor = 2: twice the noise rate, or halfway from
  the rate to 1 when twice the rate would be out of reach (rate > 1/3).
* **Noise lives in the tail** (:func:`tail_verdict`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from noisescope.evidence._arrays import as_numpy
from noisescope.evidence.intervals import wilson_interval
from noisescope.spectral.attribution import MarginAttribution
from noisescope.spectral.linear_probe import Readout, check_grid, cumulative_correct, grid_correct, grid_hits

SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE = "supported", "not supported", "inconclusive"

# tail_verdict defaults (docs/definitions.md)
MAX_NOISY_RATIO = 0.5  # noisy fit at d* at most half its untruncated value
MAX_CLEAN_DROP = 0.05  # clean fit falls by at most 5 points
MIN_MEMORIZED = 0.5  # the rule needs at least half the noisy labels memorized


# --------------------------------------------------------------------------- truncated fit
@dataclass
class TruncatedFit:
    """Correct counts against observed labels of clean / noisy training samples per grid d.

    Attributes:
        d_grid: (G,) ascending d values.
        clean_correct, noisy_correct: (G,) int64 counts.
        n_clean, n_noisy: samples in each group.
        kind: ``"accuracy"`` (argmax over all classes) or ``"margin"`` (margin against the
            full model's strongest competitor stays > 0: an upper bound on the accuracy).
    """

    d_grid: np.ndarray
    clean_correct: np.ndarray
    noisy_correct: np.ndarray
    n_clean: int
    n_noisy: int
    kind: str = "accuracy"

    @property
    def clean_acc(self) -> np.ndarray:
        return self.clean_correct / self.n_clean if self.n_clean else np.full(len(self.d_grid), np.nan)

    @property
    def noisy_acc(self) -> np.ndarray:
        return self.noisy_correct / self.n_noisy if self.n_noisy else np.full(len(self.d_grid), np.nan)

    def at(self, d: int) -> int:
        """Position of d in the grid (ValueError if absent)."""
        pos = int(np.searchsorted(self.d_grid, d))
        if pos >= len(self.d_grid) or self.d_grid[pos] != d:
            raise ValueError(f"d={d} is not on the truncated-fit grid")
        return pos


class TruncatedFitAccumulator:
    """Streams principal coordinates of training samples and counts, for every grid d, the
    clean and the noisy samples whose truncated read-out predicts their observed label.

    Args:
        readout: the linear read-out in principal coordinates (``head_readout`` for the head).
        d_grid: ascending d values in [1, D].
        scorer: ``cumulative_correct`` (scores every d up to the grid's largest: for a dense
            grid) or ``grid_correct`` (segment sums at the grid's d values only: for a sparse
            grid such as the report grid; the same counts, see its docstring).
    """

    def __init__(self, readout: Readout, d_grid: np.ndarray | list[int],
                 scorer: Callable[..., torch.Tensor] = cumulative_correct) -> None:
        self.readout, self.scorer = readout, scorer
        self.d_grid = check_grid(d_grid, int(readout.weights.shape[0]))
        g = len(self.d_grid)
        self.clean = torch.zeros(g, dtype=torch.int64)
        self.noisy = torch.zeros(g, dtype=torch.int64)
        self.n_clean = 0
        self.n_noisy = 0

    @torch.no_grad()
    def update(self, z: torch.Tensor, y_obs: torch.Tensor, noisy: torch.Tensor) -> None:
        """z (B, >= d_max) principal coordinates; y_obs (B,) observed labels; noisy (B,) bool mask."""
        noisy = torch.as_tensor(noisy).reshape(-1).bool().to(z.device)
        y_obs = torch.as_tensor(y_obs).reshape(-1).to(z.device)
        if len(noisy) != len(z) or len(y_obs) != len(z):
            raise ValueError(f"z has {len(z)} rows, y_obs {len(y_obs)}, noisy {len(noisy)}")
        if self.scorer is grid_correct:  # per-sample hits of the whole batch: no copies of z per group
            hits = grid_hits(z, y_obs, self.readout, self.d_grid)
            noisy = noisy.to(hits.device)
            self.noisy += hits[:, noisy].sum(1).cpu()
            self.clean += hits[:, ~noisy].sum(1).cpu()
            self.n_noisy += int(noisy.sum())
            self.n_clean += int((~noisy).sum())
            return
        for mask, target in ((~noisy, "clean"), (noisy, "noisy")):
            m = int(mask.sum())
            if m == 0:
                continue
            counts = self.scorer(z[mask], y_obs[mask], self.readout, self.d_grid).cpu()
            if target == "clean":
                self.clean += counts
                self.n_clean += m
            else:
                self.noisy += counts
                self.n_noisy += m

    def result(self) -> TruncatedFit:
        return TruncatedFit(self.d_grid.copy(), self.clean.numpy().copy(), self.noisy.numpy().copy(),
                            self.n_clean, self.n_noisy)


def truncated_fit(z: torch.Tensor, readout: Readout, y_obs: torch.Tensor, noisy: torch.Tensor,
                  d_grid: np.ndarray | list[int] | None = None) -> TruncatedFit:
    """Truncated-fit curves of (N, D) principal coordinates ``z`` (one pass; module docstring)."""
    acc = TruncatedFitAccumulator(readout, check_grid(d_grid, int(readout.weights.shape[0])))
    acc.update(z, y_obs, noisy)
    return acc.result()


def margin_fit(attr: MarginAttribution, noisy: torch.Tensor, d_grid: np.ndarray | list[int] | None = None
               ) -> TruncatedFit:
    """Like :func:`truncated_fit` from a margin attribution: counts samples whose margin for the
    attributed (observed) label against the full model's strongest competitor stays > 0 after
    truncation to d (constant + sum_{k<=d} contrib_k > 0). Every sample the truncated model
    predicts correctly is counted, so this bounds the truncated-fit accuracy from above."""
    dim = int(attr.contrib.shape[1])
    grid = check_grid(d_grid, dim)
    noisy = torch.as_tensor(noisy).reshape(-1).bool().cpu()
    if len(noisy) != len(attr.margin):
        raise ValueError(f"noisy mask has {len(noisy)} entries for {len(attr.margin)} samples")
    head = attr.constant[:, None] + attr.contrib.cumsum(1)[:, torch.as_tensor(grid - 1)]  # (N, G)
    kept = head > 0
    return TruncatedFit(grid, kept[~noisy].sum(0).numpy(), kept[noisy].sum(0).numpy(),
                        int((~noisy).sum()), int(noisy.sum()), kind="margin")


# --------------------------------------------------------------------------- tail margin share
def tail_margin_share(attr: MarginAttribution, d: int, mask: torch.Tensor | None = None) -> float:
    """sum tail_margin(d) / sum margin over the samples of ``mask`` (default all) with a positive
    margin; NaN when there is none."""
    fitted = attr.margin > 0
    if mask is not None:
        fitted &= torch.as_tensor(mask).reshape(-1).bool().cpu()
    total = float(attr.margin[fitted].sum())
    return float(attr.tail_margin(d)[fitted].sum()) / total if total > 0 else float("nan")


@dataclass
class TailMarginAccumulator:
    """Streaming :func:`tail_margin_share` for clean and noisy samples at one d.

    Call :meth:`update` with each batch's ``margin_attribution(feats, spectrum, W, b, y_obs)``
    and its noise mask; :meth:`result` -> {"clean_train": share, "noisy_train_obs": share}.
    """

    d: int
    _tail: dict[str, float] = field(default_factory=lambda: {"clean_train": 0.0, "noisy_train_obs": 0.0})
    _total: dict[str, float] = field(default_factory=lambda: {"clean_train": 0.0, "noisy_train_obs": 0.0})

    def update(self, attr: MarginAttribution, noisy: torch.Tensor) -> None:
        noisy = torch.as_tensor(noisy).reshape(-1).bool().cpu()
        fitted = attr.margin > 0
        tail = attr.tail_margin(self.d)
        for key, mask in (("clean_train", ~noisy & fitted), ("noisy_train_obs", noisy & fitted)):
            self._tail[key] += float(tail[mask].sum())
            self._total[key] += float(attr.margin[mask].sum())

    def result(self) -> dict[str, float]:
        return {k: self._tail[k] / self._total[k] if self._total[k] > 0 else float("nan") for k in self._tail}


# --------------------------------------------------------------------------- where the noise sits
def noise_dominated_threshold(noise_rate: float, factor: float = 2.0) -> float:
    """tau = min(factor * rate, (1 + rate) / 2) (module docstring)."""
    return min(factor * noise_rate, (1.0 + noise_rate) / 2.0)


@dataclass(frozen=True)
class NoisePosition:
    """The noise-dominated components of one spectrum.

    Attributes:
        threshold: tau; components: 1-based k with rho_k >= tau; dim: D;
        variance_share: their share of sum lambda; words: the sentence.
    """

    threshold: float
    components: tuple[int, ...]
    dim: int
    variance_share: float
    words: str

    @property
    def count(self) -> int:
        return len(self.components)


def _pct(x: float) -> str:
    if not math.isfinite(x):
        return "n/a"
    return "<0.1%" if 0 < 100 * x < 0.1 else f"{100 * x:.1f}%"


def noise_position(noise_share: np.ndarray | torch.Tensor, eigvals: np.ndarray | torch.Tensor,
                   noise_rate: float, factor: float = 2.0, d_star: int | None = None) -> NoisePosition:
    """Which components are noise-dominated (rho_k >= tau), where they sit and how much variance
    they hold. Position words, from the median 1-based k of the flagged components relative to D:
    <= D/3 "the largest-variance end", >= 2D/3 "the smallest-variance end", else "the middle of
    the spectrum"; "at k = a..b" when they are contiguous, "spread over k = a..b" otherwise.
    With ``d_star``, the words add how many lie beyond it (in the truncated tail).
    ``eigvals`` are descending (k = 1 the largest)."""
    rho, lam = as_numpy(noise_share, float), as_numpy(eigvals, float)
    if rho.shape != lam.shape or rho.size == 0:
        raise ValueError(f"noise_share and eigvals must be (D,) of equal length, got {rho.size} and {lam.size}")
    dim = int(rho.size)
    if not noise_rate > 0:
        return NoisePosition(float("nan"), (), dim, float("nan"),
                             "no noisy training samples: no noise share to compare")
    tau = noise_dominated_threshold(noise_rate, factor)
    what = (f"{factor:g}x the noise rate {noise_rate:.2f}" if tau == factor * noise_rate
            else f"halfway from the noise rate {noise_rate:.2f} to 1")
    ok = np.isfinite(rho)
    flag = ok & (rho >= tau)
    ks = tuple(int(k) for k in np.nonzero(flag)[0] + 1)
    total = float(lam.clip(min=0).sum())
    share = float(lam[flag].clip(min=0).sum()) / total if total > 0 else float("nan")
    if not ks:
        j = int(np.nanargmax(rho)) if ok.any() else -1
        best = f"; the largest is {rho[j]:.2f} at k = {j + 1}" if j >= 0 else ""
        return NoisePosition(tau, (), dim, 0.0, f"no component has noise share >= {tau:.2f} ({what}){best}")
    med = float(np.median(ks))
    end = ("the largest-variance end" if med <= dim / 3 else
           "the smallest-variance end" if med >= 2 * dim / 3 else "the middle of the spectrum")
    span = f"k = {ks[0]}" if len(ks) == 1 else (
        f"at k = {ks[0]}..{ks[-1]}" if ks[-1] - ks[0] + 1 == len(ks) else f"spread over k = {ks[0]}..{ks[-1]}")
    if len(ks) == 1:
        span = f"at {span}"
    words = (f"components with noise share >= {tau:.2f} ({what}): {len(ks)} of {dim}, {span} ({end}), "
             f"holding {_pct(share)} of the variance")
    if d_star is not None:
        beyond = sum(k > d_star for k in ks)
        words += (f"; all beyond d* = {d_star}" if beyond == len(ks) else
                  f"; none beyond d* = {d_star}" if beyond == 0 else f"; {beyond} beyond d* = {d_star}")
    return NoisePosition(tau, ks, dim, share, words)


def noise_position_words(noise_share: np.ndarray | torch.Tensor, eigvals: np.ndarray | torch.Tensor,
                         noise_rate: float, factor: float = 2.0, d_star: int | None = None) -> str:
    """Where the noise-dominated components sit, in words (:func:`noise_position`), e.g.
    "components with noise share >= 0.70 (halfway from the noise rate 0.40 to 1): 37 of 512,
    at k = 476..512 (the smallest-variance end), holding 0.3% of the variance"."""
    return noise_position(noise_share, eigvals, noise_rate, factor, d_star).words


# --------------------------------------------------------------------------- the rule
@dataclass(frozen=True)
class TailVerdict:
    """Outcome of :func:`tail_verdict`: ``status`` in supported / not supported / inconclusive,
    the numbers it used and one sentence."""

    status: str
    numbers: dict
    reason: str

    def __str__(self) -> str:
        return f"{self.status}: {self.reason}"


def tail_verdict(clean_full: float, noisy_full: float, clean_at_d: float, noisy_at_d: float,
                 n_clean: int, n_noisy: int, d: int, *, max_noisy_ratio: float = MAX_NOISY_RATIO,
                 max_clean_drop: float = MAX_CLEAN_DROP, min_memorized: float = MIN_MEMORIZED,
                 confidence: float = 0.95) -> TailVerdict:
    """"Noise lives in the tail": truncation to d (= d*, chosen on noisy validation) removes the
    noisy samples' memorization and keeps the clean fit.

    Inputs are training accuracies against *observed* labels: of the clean samples and of the
    noisy samples, for the untruncated model (``*_full``) and truncated to d (``*_at_d``, with
    Wilson intervals [low, high] on n_clean / n_noisy samples at ``confidence``).

    Rule (defaults X = ``max_noisy_ratio`` = 0.5, Y = ``max_clean_drop`` = 0.05, M =
    ``min_memorized`` = 0.5):

    * inconclusive when noisy_full < M (too little memorized to remove) or a group is empty;
    * supported when high(noisy_at_d) <= X noisy_full (memorization at least halved) and
      low(clean_at_d) >= clean_full - Y (the clean fit falls by at most 5 points);
    * not supported when low(noisy_at_d) > X noisy_full (the memorization survives
      truncation) or high(clean_at_d) < clean_full - Y (truncation also removes the clean fit);
    * inconclusive otherwise (an interval straddles a boundary).
    """
    nums = {"d": int(d), "clean_full": float(clean_full), "noisy_full": float(noisy_full),
            "clean_at_d": float(clean_at_d), "noisy_at_d": float(noisy_at_d), "n_clean": int(n_clean),
            "n_noisy": int(n_noisy), "max_noisy_ratio": max_noisy_ratio, "max_clean_drop": max_clean_drop}
    if n_clean <= 0 or n_noisy <= 0:
        return TailVerdict(INCONCLUSIVE, nums, "no clean or no noisy training samples")
    vals = (clean_full, noisy_full, clean_at_d, noisy_at_d)
    if not all(math.isfinite(v) for v in vals):
        return TailVerdict(INCONCLUSIVE, nums, "a truncated-fit accuracy is missing")
    if noisy_full < min_memorized:
        return TailVerdict(INCONCLUSIVE, nums,
                           f"only {noisy_full:.3f} of the noisy labels are memorized (< {min_memorized:g}): "
                           "nothing for truncation to remove")
    nl, nh = wilson_interval(int(round(noisy_at_d * n_noisy)), n_noisy, confidence)
    cl, ch = wilson_interval(int(round(clean_at_d * n_clean)), n_clean, confidence)
    nums.update(noisy_at_d_low=nl, noisy_at_d_high=nh, clean_at_d_low=cl, clean_at_d_high=ch)
    bound, floor = max_noisy_ratio * noisy_full, clean_full - max_clean_drop
    text = (f"truncation to d = {d} takes the noisy samples' fit to their observed labels from "
            f"{noisy_full:.3f} to {noisy_at_d:.3f} [{nl:.3f}, {nh:.3f}] (bound {bound:.3f}) and the clean fit "
            f"from {clean_full:.3f} to {clean_at_d:.3f} [{cl:.3f}, {ch:.3f}] (floor {floor:.3f})")
    if nh <= bound and cl >= floor:
        return TailVerdict(SUPPORTED, nums, text)
    if nl > bound or ch < floor:
        return TailVerdict(NOT_SUPPORTED, nums, text)
    return TailVerdict(INCONCLUSIVE, nums, text + "; an interval straddles a bound")


def tail_verdict_from_fit(fit: TruncatedFit, d: int, clean_full: float | None = None,
                          noisy_full: float | None = None, **kwargs) -> TailVerdict:
    """:func:`tail_verdict` on truncated-fit curves at d; the untruncated accuracies default to
    the curves' largest d (pass them when the grid stops short of D)."""
    j, last = fit.at(d), len(fit.d_grid) - 1
    cf = float(fit.clean_acc[last]) if clean_full is None else float(clean_full)
    nf = float(fit.noisy_acc[last]) if noisy_full is None else float(noisy_full)
    return tail_verdict(cf, nf, float(fit.clean_acc[j]), float(fit.noisy_acc[j]), fit.n_clean, fit.n_noisy, d,
                        **kwargs)
