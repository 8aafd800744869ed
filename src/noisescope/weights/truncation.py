"""Weight-space truncation: each chosen layer's matrix W replaced by its best rank-r approximation.

W_r = U_r diag(s_1..s_r) V_r^T (Eckart-Young: the top r singular components of the layer's
(out, fan_in) matrix, a convolution kernel reshaped as in ``noisescope.weights.spectra`` and
reshaped back). Biases are untouched. Contrast with spectral (feature-space) truncation,
``noisescope.spectral.truncation``, which projects the penultimate *features* onto their top-d
principal directions.

* :func:`truncate_weights` returns a deep copy; a rank at or above the layer's full rank
  min(out, fan_in) leaves that weight tensor bit-for-bit as it was (no SVD round trip), so at
  full rank the copy computes exactly the original logits.
* :func:`fixed_share_ranks` is WeightWatcher's fixed-share rule: keep the same fraction of each
  layer's singular components (``SVDSmoothing(percent=0.8, method="svd")``).
* :func:`choose_ranks` picks the ranks on noisy validation (a shared fraction, or greedily layer
  by layer) with the one-standard-error rule.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from noisescope.evidence.rules import within_one_se
from noisescope.weights.spectra import weight_layers

DEFAULT_FRACTIONS = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.8, 1.0)
STRATEGIES = ("shared", "greedy")
WW_PERCENT = 0.8  # WeightWatcher's SVDSmoothing default ``percent``


def full_rank(module: nn.Module) -> int:
    """min(out, fan_in): the number of singular components of the layer's matrix."""
    w = module.weight
    return min(w.shape[0], w[0].numel())


def weight_svd(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(U, S, Vh) of the (out, fan_in) reshape of a weight tensor, in float64 (thin SVD)."""
    return torch.linalg.svd(weight.detach().reshape(weight.shape[0], -1).double(), full_matrices=False)


def low_rank(weight: torch.Tensor, r: int,
             svd: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Best rank-r approximation of a weight tensor (matrix or conv kernel), same shape and dtype.

    The SVD runs in float64 on the (out, fan_in) reshape; the result is cast back. ``r`` at or
    above the full rank returns ``weight`` itself (no round trip). ``svd``: this weight's
    :func:`weight_svd`, when already computed (the same result, without a new SVD).
    """
    mat = weight.detach().reshape(weight.shape[0], -1)
    if r < 1:
        raise ValueError(f"rank must be at least 1, got {r}")
    if r >= min(mat.shape):
        return weight
    u, s, vh = svd if svd is not None else weight_svd(weight)
    approx = (u[:, :r] * s[:r]) @ vh[:r]
    return approx.to(weight.dtype).reshape(weight.shape)


def truncate_weights(model: nn.Module, ranks: dict[str, int],
                     svds: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] | None = None) -> nn.Module:
    """A deep copy of ``model`` whose named layers carry rank-r weights.

    Args:
        model: any ``nn.Module``; it is not modified.
        ranks: dotted layer name -> rank r >= 1 (a Linear / Conv layer of the model). A rank at
            or above the layer's full rank keeps the layer exactly as it is.
        svds: layer name -> :func:`weight_svd` of ``model``'s weight, computed once by a caller
            that truncates the same model many times (``choose_ranks``).

    Returns:
        The copy, in the mode (train / eval) of ``model``.
    """
    layers = weight_layers(model)
    unknown = [n for n in ranks if n not in layers]
    if unknown:
        raise ValueError(f"not weight layers of the model: {unknown}; choose from {list(layers)[:20]}")
    for name, r in ranks.items():
        if int(r) < 1:
            raise ValueError(f"rank of {name!r} must be at least 1, got {r}")
    out = copy.deepcopy(model)
    for name, r in ranks.items():
        layer = out.get_submodule(name)
        if int(r) >= full_rank(layer):
            continue
        with torch.no_grad():
            layer.weight.copy_(low_rank(layer.weight, int(r), (svds or {}).get(name)))
    return out


def fraction_ranks(model: nn.Module, fraction: float, layers: Sequence[str] | None = None) -> dict[str, int]:
    """Layer -> max(1, ceil(fraction * full rank)) for the given layers (default: all)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must lie in (0, 1], got {fraction}")
    found = _layers(model, layers)
    return {n: max(1, math.ceil(fraction * full_rank(m) - 1e-9)) for n, m in found.items()}


def fixed_share_ranks(model: nn.Module, percent: float = WW_PERCENT,
                      layers: Sequence[str] | None = None) -> dict[str, int]:
    """WeightWatcher's fixed-share rule: layer -> max(1, floor(percent * full rank)).

    WeightWatcher 0.7.7's ``SVDSmoothing(model, percent=0.8, method="svd")`` keeps
    ``int(percent * M * rf)`` components of a Dense layer (M = min dimension, rf = 1); for a Conv2d
    it keeps ceil(int(percent * M * rf) / rf) components of each of its rf = k_h * k_w slices, M =
    min(out, in). Here a convolution is one (out, in * k_h * k_w) matrix, so M is
    min(out, in * k_h * k_w). (``SVDSmoothing``'s default *method* is ``detX``, which picks the
    number of components from the spectrum instead; ``percent`` is used with ``method="svd"``.)
    """
    if not 0 < percent <= 1:
        raise ValueError(f"percent must lie in (0, 1], got {percent}")
    found = _layers(model, layers)
    return {n: max(1, int(percent * full_rank(m))) for n, m in found.items()}


def _layers(model: nn.Module, layers: Sequence[str] | None) -> dict[str, nn.Module]:
    found = weight_layers(model)
    if layers is None:
        return found
    unknown = [n for n in layers if n not in found]
    if unknown:
        raise ValueError(f"not weight layers of the model: {unknown}; choose from {list(found)[:20]}")
    return {n: found[n] for n in layers}


@dataclass
class RankChoice:
    """What :func:`choose_ranks` chose and every evaluation it made.

    Attributes:
        ranks: layer -> chosen rank (full rank where nothing was cut).
        strategy: ``"shared"`` or ``"greedy"``.
        fraction: the chosen shared fraction (``"shared"``), else None.
        correct: noisy-validation correct count of the chosen ranks.
        best_correct: the best count seen in any evaluation (the 1se reference).
        n_val: the number of noisy-validation samples.
        trials: one dict per evaluation: ``{"ranks", "correct"}`` plus ``"fraction"`` /
            ``"layer"`` by strategy.
    """

    ranks: dict[str, int]
    strategy: str
    fraction: float | None
    correct: int
    best_correct: int
    n_val: int
    trials: list[dict] = field(default_factory=list)

    @property
    def accuracy(self) -> float:
        return self.correct / self.n_val


def choose_ranks(
    model: nn.Module,
    score: Callable[[nn.Module], int],
    n_val: int,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    strategy: str = "shared",
    layers: Sequence[str] | None = None,
) -> RankChoice:
    """Per-layer ranks chosen on noisy validation with the one-standard-error rule.

    Candidate ranks are fractions of each layer's full rank, r = max(1, ceil(f * full rank));
    full rank (f = 1, the untouched model) is always a candidate.

    * ``"shared"``: one fraction f for every layer in ``layers``; each f is scored; the chosen f
      is the smallest whose accuracy is within one binomial standard error
      sqrt(p (1 - p) / n_val) of the best accuracy p.
    * ``"greedy"``: layer by layer in ``layers`` order (default: definition order, shallow to
      deep), the other layers held at their current ranks (full rank at the start), every
      fraction is scored for this layer and the smallest rank within one SE of the best count
      seen so far, over all evaluations, is kept. Measuring against the running best (not this
      layer's best) keeps the chosen model within one SE of the best model ever scored, so the
      losses of successive layers cannot add up. Costs len(layers) * len(fractions) scores.

    Args:
        model: the trained network (not modified).
        score: ``score(module) -> number of noisy-validation samples it classifies correctly``
            (observed labels; never clean labels or the test set).
        n_val: the number of noisy-validation samples ``score`` counts over.
        fractions: the grid of kept fractions in (0, 1].
        strategy: ``"shared"`` or ``"greedy"``.
        layers: layers to truncate (default every Linear / Conv layer).
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    if n_val < 1:
        raise ValueError(f"n_val must be positive, got {n_val}")
    grid = sorted({float(f) for f in fractions} | {1.0})
    if grid[0] <= 0 or grid[-1] > 1:
        raise ValueError(f"fractions must lie in (0, 1], got {list(fractions)}")
    found = _layers(model, layers)
    full = {n: full_rank(m) for n, m in found.items()}
    trials: list[dict] = []
    svds: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}  # one SVD per layer

    def evaluate(ranks: dict[str, int], **info: object) -> int:
        cut = {n: r for n, r in ranks.items() if r < full[n]}
        for n in cut:
            if n not in svds:
                svds[n] = weight_svd(found[n].weight)
        correct = int(score(truncate_weights(model, cut, svds) if cut else model))
        trials.append({**info, "ranks": dict(ranks), "correct": correct})
        return correct

    if strategy == "shared":
        scored = [(f, fraction_ranks(model, f, list(found))) for f in grid]
        counts = [evaluate(r, fraction=f) for f, r in scored]
        best = max(counts)
        i = next(i for i, c in enumerate(counts) if within_one_se(c, best, n_val))
        return RankChoice(ranks=scored[i][1], strategy=strategy, fraction=scored[i][0], correct=counts[i],
                          best_correct=best, n_val=n_val, trials=trials)

    ranks = dict(full)
    current = best = evaluate(ranks, layer=None, fraction=1.0)
    for name in found:
        options = sorted({max(1, math.ceil(f * full[name] - 1e-9)) for f in grid})
        results = {full[name]: current}
        for r in options:
            if r != full[name]:
                results[r] = evaluate({**ranks, name: r}, layer=name, fraction=r / full[name])
        best = max(best, *results.values())
        # never empty: the layer's full rank scores ``current``, within one SE of ``best``
        # unless an option of this layer raised ``best``, and then that option is.
        r_pick = min(r for r, c in results.items() if within_one_se(c, best, n_val))
        ranks[name], current = r_pick, results[r_pick]
    return RankChoice(ranks=ranks, strategy=strategy, fraction=None, correct=current,
                      best_correct=best, n_val=n_val, trials=trials)
