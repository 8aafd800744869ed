"""One streaming spectral analysis of a model's taps on a NoisyDataset.

Pass 1 streams the training inputs once and accumulates, for every analysed tap at the same
time, the float64 moments (:class:`FeatureStats`); each tap's covariance is diagonalised on
its device. Pass 2 streams noisy-validation and clean-test inputs once and scores the spectral
linear probe (and, on the penultimate tap, the original head on truncated features) for every
d of the grid. Pass 3 (optional) streams the training inputs again for the tail fractions.
No pass holds (N, D) features.

``model=None`` analyses the raw inputs (flattened) as a single tap named ``"input"``: the
reference a repaired network has to beat.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from noisescope.data.base import NoisyDataset
from noisescope.models.base import TappedModel
from noisescope.spectral.linear_probe import (
    D_RULES,
    Readout,
    check_grid,
    choose_d,
    cumulative_correct,
    fit_ridge_readout,
    head_readout,
)
from noisescope.spectral.segregation import TailFractionAccumulator, noise_share
from noisescope.spectral.stats import FeatureStats, Spectrum
from noisescope.taps import iter_taps, resolve_taps

INPUT_TAP = "input"
EVAL_SUBSETS = ("val", "test")


@dataclass
class TapAnalysis:
    """Everything the spectral analysis measured on one tap.

    Attributes:
        tap: tap name.
        spectrum: mean / eigenvalues / eigenvectors of the training features.
        d_grid: (G,) d values scored.
        probe: the ridge read-out fitted on observed training labels.
        probe_correct: subset ("val" observed labels, "test" clean) -> (G,) correct counts.
        n_eval: subset -> number of scored samples.
        d_star: probe's d chosen by noisy validation.
        head: the original head as a read-out (penultimate tap of a model only).
        head_correct: like ``probe_correct`` for ``head``.
        head_d_star: d chosen by noisy validation for the original head.
        noise_share: (D,) rho_k, when segregation was measured.
        tail_clean / tail_noisy: (G,) mean tail fractions, when segregation was measured.
    """

    tap: str
    spectrum: Spectrum
    d_grid: np.ndarray
    probe: Readout
    probe_correct: dict[str, torch.Tensor] = field(default_factory=dict)
    n_eval: dict[str, int] = field(default_factory=dict)
    d_star: int = 0
    head: Readout | None = None
    head_correct: dict[str, torch.Tensor] = field(default_factory=dict)
    head_d_star: int | None = None
    noise_share: torch.Tensor | None = None
    tail_clean: np.ndarray | None = None
    tail_noisy: np.ndarray | None = None

    def probe_acc(self, subset: str) -> np.ndarray:
        """(G,) probe accuracy on ``subset`` for every grid d."""
        return self.probe_correct[subset].cpu().numpy() / max(1, self.n_eval[subset])

    def head_acc(self, subset: str) -> np.ndarray:
        """(G,) accuracy of the original head on truncated features for every grid d."""
        if self.head is None:
            raise ValueError(f"tap {self.tap!r} has no original-head read-out")
        return self.head_correct[subset].cpu().numpy() / max(1, self.n_eval[subset])

    def at(self, d: int) -> int:
        """Position of d in the grid."""
        pos = np.searchsorted(self.d_grid, d)
        if pos >= len(self.d_grid) or self.d_grid[pos] != d:
            raise ValueError(f"d={d} is not on this analysis's grid")
        return int(pos)


FeatureSource = Callable[[torch.Tensor], Iterator[tuple[slice, dict[str, torch.Tensor]]]]


def feature_source(
    model: TappedModel | None,
    taps: list[str] | None,
    batch_size: int = 2048,
    device: torch.device | str | None = None,
) -> FeatureSource:
    """A function x -> iterator of (slice, {tap: (B, F) features}); model None = raw inputs."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be > 0, got {batch_size}")

    def raw(x: torch.Tensor) -> Iterator[tuple[slice, dict[str, torch.Tensor]]]:
        dev = torch.device(device) if device is not None else x.device
        for s in range(0, len(x), batch_size):
            sl = slice(s, min(s + batch_size, len(x)))
            yield sl, {INPUT_TAP: x[sl].to(dev).flatten(1).float()}

    def tapped(x: torch.Tensor) -> Iterator[tuple[slice, dict[str, torch.Tensor]]]:
        for sl, _logits, acts in iter_taps(model, x, taps, batch_size=batch_size, device=device):
            yield sl, acts

    return raw if model is None else tapped


def select_taps(
    model: TappedModel | None, taps: str | list[str] | None, max_dim: int, x: torch.Tensor,
    device: torch.device | str | None = None,
) -> list[str]:
    """Resolve ``taps``: a list (validated, error if wider than ``max_dim``), ``"feature"``/None
    (the penultimate tap), or ``"auto"``/``"all"`` (every tap no wider than ``max_dim``)."""
    if model is None:
        return [INPUT_TAP]
    if taps is None or taps == "feature":
        names = [model.feature_tap]
        explicit = True
    elif taps in ("auto", "all"):
        names = resolve_taps(model, None)
        explicit = False
    elif isinstance(taps, str):
        names, explicit = resolve_taps(model, [taps]), True
    else:
        names, explicit = resolve_taps(model, list(taps)), True
    _, first = next(feature_source(model, names, batch_size=2, device=device)(x[:2]))
    keep = []
    for n in names:
        width = first[n].shape[1]
        if width <= max_dim:
            keep.append(n)
        elif explicit:
            raise ValueError(
                f"tap {n!r} has {width} features, above max_dim={max_dim}: its covariance would "
                f"be {width}x{width}. Pool it first (wrap the model), pick another tap, or raise max_dim."
            )
        else:
            warnings.warn(f"skipping tap {n!r}: {width} features > max_dim={max_dim}", stacklevel=2)
    if not keep:
        raise ValueError(f"no tap is at most max_dim={max_dim} wide; raise max_dim or choose taps")
    return keep


def _grid_for(dim: int, d_grid: list[int] | np.ndarray | None) -> np.ndarray:
    if d_grid is None:
        return check_grid(None, dim)
    g = np.asarray(d_grid, dtype=np.int64)
    g = g[(g >= 1) & (g <= dim)]
    return check_grid(g if g.size else [dim], dim)


@torch.no_grad()
def analyse(
    model: TappedModel | None,
    data: NoisyDataset,
    taps: str | list[str] | None = "feature",
    *,
    d_grid: list[int] | np.ndarray | None = None,
    alpha: float = 0.0,
    d_rule: str = "argmax",
    segregation: bool = True,
    head: bool = True,
    batch_size: int = 2048,
    device: torch.device | str | None = None,
    max_dim: int = 4096,
    projection_dtype: torch.dtype = torch.float32,
    progress: Callable[[str], None] | None = None,
) -> dict[str, TapAnalysis]:
    """Spectral analysis of ``taps`` of ``model`` (or of the raw inputs when ``model`` is None).

    Args:
        model: a TappedModel (wrap user modules with ``noisescope.models.wrap_model``) or None.
        data: training inputs with observed and true labels, noisy validation, clean test.
        taps: see :func:`select_taps`.
        d_grid: d values to score (values above a tap's width are dropped); None = every d.
        alpha: ridge strength of the probe (0 = least squares).
        d_rule: how d* is chosen from noisy-validation accuracy (see
            :func:`~noisescope.spectral.linear_probe.choose_d`).
        segregation: also measure noise shares and tail fractions (one more training pass).
        head: also score the original head on truncated penultimate features.
        batch_size: forward-pass batch size.
        device: where to run (default: the model's device, or the data's for raw inputs).
        max_dim: widest tap analysed (its D x D covariance is held in float64).
        projection_dtype: precision of the product (f - mu) V for the scored sets (moments,
            eigendecomposition, centring and cumulative scores are float64 regardless);
            float32 is ~3x faster on a CPU and changes a prediction only at exact near-ties.
        progress: optional callback called with a short message after each pass.

    Returns:
        tap name -> :class:`TapAnalysis`, in tap order.
    """
    if d_rule not in D_RULES:
        raise ValueError(f"unknown d rule {d_rule!r}; choose from {D_RULES}")
    names = select_taps(model, taps, max_dim, data.x_train, device)
    source = feature_source(model, names, batch_size, device)
    c = data.num_classes
    stats: dict[str, FeatureStats] = {}
    for sl, acts in source(data.x_train):
        for n in names:
            if n not in stats:
                stats[n] = FeatureStats(acts[n].shape[1], c, noisy_second_moment=segregation)
            stats[n].update(acts[n], data.y_train[sl], data.y_train_true[sl])
    if progress:
        progress("train statistics")

    out: dict[str, TapAnalysis] = {}
    for n in names:
        spec = stats[n].spectrum()
        res = TapAnalysis(
            tap=n, spectrum=spec, d_grid=_grid_for(spec.dim, d_grid),
            probe=fit_ridge_readout(stats[n], spec, alpha),
        )
        if head and model is not None and n == model.feature_tap:
            res.head = head_readout(spec, model.head.weight, model.head.bias)
        out[n] = res
    if progress:
        progress("eigendecomposition")

    for subset, x, y in (("val", data.x_val, data.y_val), ("test", data.x_test, data.y_test)):
        if len(x) == 0:
            continue
        for res in out.values():
            res.probe_correct[subset] = torch.zeros(len(res.d_grid), dtype=torch.int64)
            res.head_correct[subset] = torch.zeros(len(res.d_grid), dtype=torch.int64)
            res.n_eval[subset] = len(x)
        for sl, acts in source(x):
            for n, res in out.items():
                dmax = int(res.d_grid[-1])
                z = res.spectrum.project(acts[n], dmax, projection_dtype)
                res.probe_correct[subset] += cumulative_correct(z, y[sl], res.probe, res.d_grid).cpu()
                if res.head is not None:
                    res.head_correct[subset] += cumulative_correct(
                        z, y[sl], res.head, res.d_grid
                    ).cpu()
        if progress:
            progress(f"{subset} scores")
    for res in out.values():
        if "val" in res.probe_correct:
            nv = res.n_eval["val"]
            res.d_star = choose_d(res.probe_correct["val"], res.d_grid, nv, d_rule)
            if res.head is not None:
                res.head_d_star = choose_d(res.head_correct["val"], res.d_grid, nv, d_rule)
        else:
            res.d_star = int(res.d_grid[-1])
        if res.head is None:
            res.head_correct = {}

    if segregation:
        acc = {}
        for n, res in out.items():
            res.noise_share = noise_share(stats[n], res.spectrum)
            acc[n] = TailFractionAccumulator(res.spectrum, stats[n].clean_class_means(), res.d_grid)
        for sl, acts in source(data.x_train):
            for n in names:
                acc[n].update(acts[n], data.y_train[sl], data.y_train_true[sl])
        for n, res in out.items():
            res.tail_clean, res.tail_noisy = acc[n].result()
        if progress:
            progress("segregation")
    return out
