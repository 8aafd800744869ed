"""One streaming spectral analysis of a model's taps on a NoisyDataset.

:class:`SpectralReducer` is fed batches of every split by :func:`noisescope.taps.stream_splits`
(alone, through :func:`analyse`, or beside the other probes in the shared probe pass). The
training split accumulates, for every analysed tap at the same time, the float64 moments
(:class:`FeatureStats`); each tap's covariance is diagonalised on its device when the split
ends. Noisy-validation batches score the spectral linear probe (and, on the penultimate tap,
the original head on truncated features) for every d of the grid; d* and the head's d* are
chosen when validation ends. Clean-test batches are scored for every grid d
(``eval_grid="all"``) or only at the report grid (``eval_grid="report"``:
``linear_probe.report_grid``, which holds d* and the head's d*) from segment sums
(``linear_probe.grid_correct``). Segregation's noise shares come from the noisy samples' second
moment, summed in the training pass beside the Gram matrix (``FeatureStats(noisy_second_moment=
True)``: each batch's Gram product split into its clean and its noisy rows). Its tail fractions
need the spectrum and the training features again: the training activations are kept (float32)
when they fit in ``cache_mb``, else streamed a second time; off the head's tap that pass
projects f - m_y onto the top d* components only (float64). On the tap the head reads it
projects onto every component (float64) and also measures the truncated-fit curves
(accuracy against observed labels of clean / noisy training samples when the head reads the
top-d projection, at the test grid's d values) and the tail margin share at the head's d*
(``noisescope.evidence.tail``); the tail fractions are taken at d* only with the report grid,
at every grid d with ``"all"``.

``model=None`` analyses the raw inputs (flattened) as a single tap named ``"input"``: the
reference a repaired network has to beat.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from noisescope.data.base import NoisyDataset
from noisescope.models.base import TappedModel
from noisescope.spectral.attribution import margin_attribution
from noisescope.spectral.linear_probe import (
    D_RULES,
    EVAL_GRIDS,
    Readout,
    check_grid,
    choose_d,
    cumulative_correct,
    fit_ridge_readout,
    grid_correct,
    head_readout,
    report_grid,
)
from noisescope.spectral.segregation import TailFractionAccumulator, noise_share
from noisescope.spectral.stats import FeatureStats, Spectrum
from noisescope.taps import INPUT_TAP, iter_taps, resolve_taps, stream_splits

EVAL_SUBSETS = ("val", "test")


@dataclass
class TapAnalysis:
    """Everything the spectral analysis measured on one tap.

    Attributes:
        tap: tap name.
        spectrum: mean / eigenvalues / eigenvectors of the training features.
        d_grid: (G,) d values scored on validation (every d of the scoring grid).
        probe: the ridge read-out fitted on observed training labels.
        probe_correct: subset ("val" observed labels, "test" clean) -> correct counts at the
            subset's grid (:meth:`grid`).
        grids: subset -> its grid where it is not ``d_grid`` (test with the report grid).
        n_eval: subset -> number of scored samples.
        d_star: probe's d chosen by noisy validation.
        head: the original head as a read-out (penultimate tap of a model only).
        head_correct: like ``probe_correct`` for ``head``.
        head_d_star: d chosen by noisy validation for the original head.
        noise_share: (D,) rho_k, when segregation was measured.
        tail_clean / tail_noisy: mean tail fractions at the d values of ``tail_grid`` (d* only,
            or every grid d), when segregation was measured.
        tail_grid: the d values of ``tail_clean`` / ``tail_noisy``.
        fit: truncated-fit curves of the head on training samples (head tap, with segregation):
            an ``evidence.tail.TruncatedFit``.
        tail_margin: {"clean_train", "noisy_train_obs"} -> tail margin share beyond
            ``head_d_star`` (head tap, with segregation and a validation split).
    """

    tap: str
    spectrum: Spectrum
    d_grid: np.ndarray
    probe: Readout
    probe_correct: dict[str, torch.Tensor] = field(default_factory=dict)
    grids: dict[str, np.ndarray] = field(default_factory=dict)
    n_eval: dict[str, int] = field(default_factory=dict)
    d_star: int = 0
    head: Readout | None = None
    head_correct: dict[str, torch.Tensor] = field(default_factory=dict)
    head_d_star: int | None = None
    noise_share: torch.Tensor | None = None
    tail_clean: np.ndarray | None = None
    tail_noisy: np.ndarray | None = None
    tail_grid: np.ndarray | None = None
    fit: Any = None
    tail_margin: dict[str, float] | None = None

    def grid(self, subset: str) -> np.ndarray:
        """The d values of ``subset``'s counts: ``grids[subset]``, else ``d_grid``."""
        return self.grids.get(subset, self.d_grid)

    def probe_acc(self, subset: str) -> np.ndarray:
        """Probe accuracy on ``subset`` at every d of ``grid(subset)``."""
        return self.probe_correct[subset].cpu().numpy() / max(1, self.n_eval[subset])

    def head_acc(self, subset: str) -> np.ndarray:
        """Accuracy of the original head on truncated features at every d of ``grid(subset)``."""
        if self.head is None:
            raise ValueError(f"tap {self.tap!r} has no original-head read-out")
        return self.head_correct[subset].cpu().numpy() / max(1, self.n_eval[subset])

    def at(self, d: int, subset: str | None = None) -> int:
        """Position of d in ``grid(subset)`` (default: ``d_grid``)."""
        return _position(self.d_grid if subset is None else self.grid(subset), d)

    def tail_at(self, d: int) -> tuple[float, float]:
        """(clean, noisy) mean tail fraction beyond d (d must be on ``tail_grid``)."""
        if self.tail_clean is None or self.tail_noisy is None:
            raise ValueError(f"tap {self.tap!r} has no tail fractions (segregation was off)")
        pos = _position(self.d_grid if self.tail_grid is None else self.tail_grid, d)
        return float(self.tail_clean[pos]), float(self.tail_noisy[pos])


def _position(grid: np.ndarray, d: int) -> int:
    """Index of d in the sorted ``grid``; a ValueError naming the grid when d is not on it."""
    pos = int(np.searchsorted(grid, d))
    if pos >= len(grid) or grid[pos] != d:
        raise ValueError(f"d={d} is not on the grid {np.asarray(grid).tolist()}")
    return pos


def _scorer(res: TapAnalysis, grid: np.ndarray) -> Callable[..., torch.Tensor]:
    """Every-d cumulative scores on the analysis's own grid, segment sums on a sparser one."""
    return cumulative_correct if grid is res.d_grid else grid_correct


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
    _, _, first = next(iter_taps(model, x[:2], names, batch_size=2, device=device))
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


def score_batch(
    spectrum: Spectrum, readouts: list[Readout], d_grid: np.ndarray, feats: torch.Tensor, y: torch.Tensor,
    projection_dtype: torch.dtype = torch.float32, scorer: Callable[..., torch.Tensor] = cumulative_correct,
) -> list[torch.Tensor]:
    """Correct counts (G,) int64 on the CPU of each read-out on a batch of (B, D) features with
    labels (B,), for every d of the grid: the one scoring step of the analysis and of
    :class:`~noisescope.spectral.truncation.SpectralTruncation`. ``scorer``:
    ``cumulative_correct`` (every d up to the grid's largest, then gathered) or
    ``grid_correct`` (segment sums, the grid's d values only)."""
    z = spectrum.project(feats, int(d_grid[-1]), projection_dtype)
    return [scorer(z, y, r, d_grid).cpu() for r in readouts]


class SpectralReducer:
    """The spectral analysis of :func:`analyse` as a consumer of streamed splits.

    Reads ``train`` (moments; eigendecomposition when it ends), then ``val`` (scores for every
    grid d; d* and the head's d* when it ends) and ``test`` (scores at the test grid);
    :meth:`result` adds segregation from the cached training activations (or a second
    training pass when they did not fit in ``cache_mb``). Arguments as in :func:`analyse`;
    ``names`` are resolved taps (see :func:`select_taps`).
    """

    splits = ("train", "val", "test")

    def __init__(
        self,
        model: TappedModel | None,
        data: NoisyDataset,
        names: list[str],
        *,
        d_grid: list[int] | np.ndarray | None = None,
        alpha: float = 0.0,
        d_rule: str = "1se",
        segregation: bool = True,
        head: bool = True,
        batch_size: int = 2048,
        device: torch.device | str | None = None,
        projection_dtype: torch.dtype = torch.float32,
        cache_mb: float = 1024.0,
        progress: Callable[[str], None] | None = None,
        eval_grid: str = "all",
        gram_dtype: torch.dtype = torch.float64,
    ) -> None:
        if d_rule not in D_RULES:
            raise ValueError(f"unknown d rule {d_rule!r}; choose from {D_RULES}")
        if eval_grid not in EVAL_GRIDS:
            raise ValueError(f"eval_grid must be one of {', '.join(EVAL_GRIDS)}, got {eval_grid!r}")
        self.eval_grid, self.gram_dtype = eval_grid, gram_dtype
        self.model, self.data, self.taps = model, data, list(names)
        self.d_grid, self.alpha, self.d_rule = d_grid, alpha, d_rule
        self.segregation, self.head = segregation, head
        self.batch_size, self.device, self.projection_dtype = batch_size, device, projection_dtype
        self.progress = progress
        self.cache_mb = cache_mb
        self.stats: dict[str, FeatureStats] = {}
        self.out: dict[str, TapAnalysis] = {}
        self._cache: list[tuple[slice, dict[str, torch.Tensor]]] | None = [] if segregation else None
        self._cache_bytes = 0
        self._chosen = False

    def _say(self, msg: str) -> None:
        if self.progress:
            self.progress(msg)

    def consume(self, split: str, sl: slice, logits: torch.Tensor | None, acts: dict[str, torch.Tensor]) -> None:
        data = self.data
        if split == "train":
            c = data.num_classes
            for n in self.taps:
                if n not in self.stats:
                    self.stats[n] = FeatureStats(acts[n].shape[1], c, gram_dtype=self.gram_dtype,
                                                 noisy_second_moment=self.segregation)
                self.stats[n].update(acts[n], data.y_train[sl], data.y_train_true[sl])
            if self._cache is not None:
                nbytes = sum(acts[n].numel() * 4 for n in self.taps)
                if self._cache_bytes + nbytes > self.cache_mb * 2**20:
                    self._cache = None  # too big: a second training pass instead
                else:
                    self._cache.append((sl, {n: acts[n].float().clone() for n in self.taps}))
                    self._cache_bytes += nbytes
            return
        y = data.y_val if split == "val" else data.y_test
        if split == "test":
            self._choose()  # no-op after validation ended (it always does, before test)
        for n, res in self.out.items():
            readouts = [res.probe] if res.head is None else [res.probe, res.head]
            grid = res.grid(split)
            counts = score_batch(res.spectrum, readouts, grid, acts[n], y[sl], self.projection_dtype,
                                 _scorer(res, grid))
            res.probe_correct[split] += counts[0]
            if res.head is not None:
                res.head_correct[split] += counts[1]

    def end(self, split: str) -> None:
        if split == "train":
            self._spectra()
            return
        if split == "val":
            self._choose()
        self._say(f"{split} scores")

    def _choose(self) -> None:
        """d* and the head's d* from the validation counts (or the grid's largest d without
        validation), then the test grid and its counters: the report grid (with both d*) or
        every grid d."""
        if self._chosen:
            return
        self._chosen = True
        for res in self.out.values():
            if "val" in res.probe_correct:
                nv = res.n_eval["val"]
                res.d_star = choose_d(res.probe_correct["val"], res.d_grid, nv, self.d_rule)
                if res.head is not None:
                    res.head_d_star = choose_d(res.head_correct["val"], res.d_grid, nv, self.d_rule)
            else:
                res.d_star = int(res.d_grid[-1])
            if self.eval_grid == "report":
                extra = (res.d_star,) if res.head_d_star is None else (res.d_star, res.head_d_star)
                res.grids["test"] = report_grid(res.d_grid, extra)
            if len(self.data.x_test):
                g = len(res.grid("test"))
                res.probe_correct["test"] = torch.zeros(g, dtype=torch.int64)
                res.head_correct["test"] = torch.zeros(g, dtype=torch.int64)
                res.n_eval["test"] = len(self.data.x_test)

    def _spectra(self) -> None:
        if not self.stats:
            raise ValueError("the spectral analysis needs training samples; the training split is empty")
        self._say("train statistics")
        model = self.model
        for n in self.taps:
            spec = self.stats[n].spectrum()
            res = TapAnalysis(tap=n, spectrum=spec, d_grid=_grid_for(spec.dim, self.d_grid),
                              probe=fit_ridge_readout(self.stats[n], spec, self.alpha))
            if self.head and model is not None and n == model.feature_tap:
                res.head = head_readout(spec, model.head.weight, model.head.bias)
            if len(self.data.x_val):  # test's counters follow d* (_choose)
                res.probe_correct["val"] = torch.zeros(len(res.d_grid), dtype=torch.int64)
                res.head_correct["val"] = torch.zeros(len(res.d_grid), dtype=torch.int64)
                res.n_eval["val"] = len(self.data.x_val)
            self.out[n] = res
        self._say("eigendecomposition")

    def result(self) -> dict[str, TapAnalysis]:
        """Tap name -> :class:`TapAnalysis` (call after every split was streamed)."""
        self._choose()
        for res in self.out.values():
            if res.head is None:
                res.head_correct = {}
        if self.segregation:
            self._segregation()
        return self.out

    def _segregation(self) -> None:
        # lazy: evidence.tail imports noisescope.spectral (whose __init__ imports this module)
        from noisescope.evidence.tail import TailMarginAccumulator, TruncatedFitAccumulator

        data = self.data
        acc, fit, margin = {}, {}, {}
        for n, res in self.out.items():
            # rho_k = v_k' S_noisy v_k / (N lambda_k) from the noisy rows' second moment, which
            # the training pass summed beside the Gram matrix (no training projection needed)
            res.noise_share = noise_share(self.stats[n], res.spectrum)
            res.tail_grid = np.array([res.d_star]) if self.eval_grid == "report" else res.d_grid
            acc[n] = TailFractionAccumulator(res.spectrum, self.stats[n].clean_class_means(), res.tail_grid)
            if res.head is not None:
                # the head's tap: one float64 projection onto every component, shared by the tail
                # fractions, the truncated fit (at the test grid) and the tail margin; elsewhere
                # the accumulator projects f - m_y onto the top max(tail_grid) components only
                grid = res.grid("test")
                fit[n] = TruncatedFitAccumulator(res.head, grid, scorer=_scorer(res, grid))
                if res.head_d_star is not None:
                    margin[n] = TailMarginAccumulator(int(res.head_d_star))
        if self._cache is not None:
            batches = iter(self._cache)
        elif self.model is None:
            x = data.x_train
            dev = torch.device(self.device) if self.device is not None else x.device
            batches = ((slice(s, min(s + self.batch_size, len(x))),
                        {INPUT_TAP: x[s:s + self.batch_size].to(dev).flatten(1).float()})
                       for s in range(0, len(x), self.batch_size))
        else:
            batches = ((sl, a) for sl, _lg, a in iter_taps(self.model, data.x_train, self.taps,
                                                            self.batch_size, self.device))
        for sl, acts in batches:
            y_obs, y_true = data.y_train[sl], data.y_train_true[sl]
            for n in self.taps:
                res = self.out[n]
                if n in fit:
                    z = res.spectrum.project(acts[n], None, torch.float64)
                    self._fit_batch(res, acts[n], y_obs, data.noise_mask[sl], fit[n], margin.get(n), z)
                    acc[n].update(acts[n], y_obs, y_true, z=z)
                else:  # (f - m_y) V_d: the accumulator projects the deviations it needs anyway
                    acc[n].update(acts[n], y_obs, y_true)
        for n, res in self.out.items():
            res.tail_clean, res.tail_noisy = acc[n].result()
            if n in fit:
                res.fit = fit[n].result()
            if n in margin:
                res.tail_margin = margin[n].result()
        self._cache = None
        self._say("segregation")

    def _fit_batch(self, res: TapAnalysis, feats: torch.Tensor, y_obs: torch.Tensor, noisy: torch.Tensor,
                   fit: Any, margin: Any, z: torch.Tensor) -> None:
        """Truncated fit (every grid d) and tail margin (at the head's d*) of one training batch
        from its float64 principal coordinates ``z`` (every component when ``margin`` is given),
        so d = D reproduces the head's own predictions."""
        fit.update(z, y_obs, noisy)
        if margin is not None:
            margin.update(margin_attribution(feats, res.spectrum, self.model.head.weight, self.model.head.bias,
                                             y_obs, z=z), noisy)


@torch.no_grad()
def analyse(
    model: TappedModel | None,
    data: NoisyDataset,
    taps: str | list[str] | None = "feature",
    *,
    d_grid: list[int] | np.ndarray | None = None,
    alpha: float = 0.0,
    d_rule: str = "1se",
    segregation: bool = True,
    head: bool = True,
    batch_size: int = 2048,
    device: torch.device | str | None = None,
    max_dim: int = 4096,
    projection_dtype: torch.dtype = torch.float32,
    progress: Callable[[str], None] | None = None,
    eval_grid: str = "all",
    gram_dtype: torch.dtype = torch.float64,
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
        segregation: also measure noise shares and tail fractions, and on the head's tap the
            truncated-fit curves and the tail margin share.
        head: also score the original head on truncated penultimate features.
        batch_size: forward-pass batch size.
        device: where to run (default: the model's device, or the data's for raw inputs).
        max_dim: widest tap analysed (its D x D covariance is held in float64).
        projection_dtype: precision of the product (f - mu) V for the scored sets (moments,
            eigendecomposition, centring and cumulative scores are float64 regardless);
            float32 is ~3x faster on a CPU and changes a prediction only at exact near-ties.
        progress: optional callback called with a short message after each step.
        eval_grid: ``"all"`` (default): test and truncated-fit curves and tail fractions at
            every grid d; ``"report"``: test and truncated-fit curves at the report grid
            (``linear_probe.report_grid``: every d <= 64, 16 per octave above, the largest, d*
            and the head's d*) and tail fractions at d* only. Validation is always scored at
            every grid d.
        gram_dtype: precision of each batch's Gram product (``FeatureStats``); float64 sums.

    Returns:
        tap name -> :class:`TapAnalysis`, in tap order.
    """
    names = select_taps(model, taps, max_dim, data.x_train, device)
    reducer = SpectralReducer(
        model, data, names, d_grid=d_grid, alpha=alpha, d_rule=d_rule, segregation=segregation,
        head=head, batch_size=batch_size, device=device, projection_dtype=projection_dtype, progress=progress,
        eval_grid=eval_grid, gram_dtype=gram_dtype,
    )
    inputs = {"train": data.x_train, "val": data.x_val, "test": data.x_test}
    stream_splits(model, inputs, [reducer], batch_size, device)
    return reducer.result()
