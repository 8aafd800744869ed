"""``SpectralProbe``: the Malignant Tail measurements as rows of the run's metrics table.

Rows written per analysed tap (probe ``"spectral"``; ``index`` as noted, else -1):

==================== ================== ====================================================
metric               subset             value
==================== ================== ====================================================
eigval               train              covariance eigenvalue lambda_k (index k, 1-based)
effective_rank       train              exp(entropy of lambda / sum lambda)
participation_ratio  train              (sum lambda)^2 / sum lambda^2
stable_rank          train              sum lambda / lambda_1
probe_acc            val / test         spectral linear probe accuracy at d (index d): val at
                                        every grid d; test at the report grid (below)
d_star               val                d chosen by noisy-validation probe accuracy
probe_acc_d_star     val / test         probe accuracy at d_star
trunc_acc            val / test         original head on the top-d projection (index d, grids
                                        as probe_acc); penultimate tap only
trunc_d_star         val                d chosen by noisy-validation truncation accuracy
trunc_acc_d_star     val / test         truncated-model accuracy at trunc_d_star
noise_share          train              rho_k (index k)
noise_rate           train              realized training noise rate (for comparison)
tail_fraction        clean_train /      mean tail fraction beyond d_star of clean / noisy
                     noisy_train_true   samples (deviation from the true class's clean mean)
segregation          train              noisy - clean tail fraction at d_star
noise_dominated_     train              number of components with noise share rho_k >= tau,
count                                   tau = min(2 rate, (1 + rate) / 2)
                                        (``evidence.tail.noise_position``); NaN without noise
noise_dominated_     train              their share of the variance, sum lambda_k / sum lambda
variance_share
fit_acc              clean_train /      accuracy against the *observed* labels of the clean /
                     noisy_train_obs    noisy training samples when the head reads the top-d
                                        projection (index d, the report grid); at d = D it
                                        is the model's own training fit. Tap with a head only
tail_margin_share    clean_train /      share of the fitted samples' margin (observed label vs
                     noisy_train_obs    strongest competitor) carried by components beyond
                                        trunc_d_star (``spectral.attribution``). Head tap only
==================== ================== ====================================================

**Report grid** (``eval_grid = "report"``, the default; ``spectral.linear_probe.report_grid``,
docs/definitions.md): the test curves and ``fit_acc`` are written at every d <= 64, then 16
log-spaced d per octave (67, 70, 73, ..., 470, 490, 512 on a 512-wide tap), the largest grid d,
d_star and trunc_d_star; validation keeps every grid d (d* is chosen there); the tail
fractions are measured at d_star only. Every written number is the one the every-d
computation gives (``eval_grid = "all"``: every curve at every grid d).

The last four groups come with ``segregation`` (the second training pass). At epoch 0, with
``raw_input`` on, the same probe on the raw inputs (tap ``input``: no network at all, the
reference a repair has to beat) adds ``d_star`` (val) and ``probe_acc_d_star`` (val / test).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from noisescope.data.base import NoisyDataset
from noisescope.evidence.tail import noise_position
from noisescope.metrics import Row
from noisescope.models.base import TappedModel
from noisescope.probes.base import ProbeContext
from noisescope.probes.engine import run_probes
from noisescope.spectral.analysis import SpectralReducer, TapAnalysis, analyse, select_taps
from noisescope.spectral.linear_probe import D_RULES, EVAL_GRIDS
from noisescope.spectral.rank import effective_rank, participation_ratio, stable_rank
from noisescope.taps import INPUT_TAP

GRAMS = ("float32", "float64")  # the probe's ``gram`` option


@dataclass
class SpectralProbe:
    """Spectrum, all-d linear probe, truncation and segregation of a model's taps.

    Args:
        taps: ``"auto"`` (every tap at most ``max_dim`` wide), ``"feature"`` (the penultimate
            tap phi) or a list of tap names.
        d_grid: d values to score (default every d up to the tap's width, capped at ``d_max``).
        d_max: largest d on the default grid.
        alpha: ridge strength of the probe (0 = least squares).
        d_rule: ``"1se"`` (default) or ``"argmax"`` (see ``evidence.rules.choose_d``).
        segregation: measure noise shares, tail fractions, truncated-fit curves and the tail
            margin share (one more training pass, or the cached training activations).
        max_dim: widest tap analysed.
        raw_input: at epoch 0, also the probe on the raw inputs (tap ``input``; skipped when
            the inputs are wider than ``max_dim``).
        eval_grid: ``"report"`` (default): test curves and truncated-fit curves at the report
            grid, tail fractions at d* only; ``"all"``: every curve at every grid d (module
            docstring).
        gram: ``"float32"`` (default): each batch's Gram product of the training moments in
            single precision, summed in float64 (``FeatureStats(gram_dtype=...)``); ``"float64"``.
    """

    taps: str | list[str] = "auto"
    d_grid: list[int] | None = None
    d_max: int = 1024
    alpha: float = 0.0
    d_rule: str = "1se"
    segregation: bool = True
    max_dim: int = 4096
    raw_input: bool = True
    eval_grid: str = "report"
    gram: str = "float32"
    name: str = "spectral"

    def __post_init__(self) -> None:
        problem = self.check_options({"eval_grid": self.eval_grid, "gram": self.gram, "d_rule": self.d_rule})
        if problem:
            raise ValueError(f"spectral probe option {problem[0]} {problem[1]}")

    @staticmethod
    def check_options(options: dict[str, Any]) -> tuple[str, str] | None:
        """(option, what is wrong and the fix) for the first bad value of ``options``, else None
        (config validation calls it with the ``probe.options.spectral`` table)."""
        for key, choices in (("eval_grid", EVAL_GRIDS), ("gram", GRAMS), ("d_rule", D_RULES)):
            if key in options and options[key] not in choices:
                return key, f"must be one of {', '.join(map(repr, choices))}, got {options[key]!r}"
        return None

    def start(self, model: TappedModel, data: NoisyDataset, ctx: ProbeContext) -> _SpectralSession:
        grid = self.d_grid if self.d_grid is not None else list(range(1, self.d_max + 1))
        names = select_taps(model, self.taps, self.max_dim, data.x_train, ctx.device)
        gram = torch.float32 if self.gram == "float32" else torch.float64
        reducer = SpectralReducer(
            model, data, names, d_grid=grid, alpha=self.alpha, d_rule=self.d_rule, segregation=self.segregation,
            batch_size=ctx.batch_size, device=ctx.device, eval_grid=self.eval_grid, gram_dtype=gram,
        )
        raw = None
        if self.raw_input and ctx.epoch == 0 and len(data.x_val) and data.x_train[0].numel() <= self.max_dim:
            raw = {"d_grid": grid, "alpha": self.alpha, "d_rule": self.d_rule, "batch_size": ctx.batch_size,
                   "device": ctx.device, "eval_grid": self.eval_grid, "gram_dtype": gram}
        return _SpectralSession(reducer, ctx.epoch, self.name, raw)

    def __call__(self, model: TappedModel, data: NoisyDataset, ctx: ProbeContext) -> list[Row]:
        return run_probes([self], model, data, ctx)


class _SpectralSession:
    """The probe's share of the shared pass: a :class:`SpectralReducer` and its rows."""

    def __init__(self, reducer: SpectralReducer, epoch: int, name: str, raw: dict | None = None) -> None:
        self.reducer, self.epoch, self.name, self.raw = reducer, epoch, name, raw
        self.taps, self.splits = reducer.taps, reducer.splits

    def consume(self, split: str, sl: slice, logits: object, acts: dict) -> None:
        self.reducer.consume(split, sl, logits, acts)

    def end(self, split: str) -> None:
        self.reducer.end(split)

    def rows(self) -> list[Row]:
        data = self.reducer.data
        rate = float(data.noise_mask.double().mean()) if len(data.y_train) else float("nan")
        rows: list[Row] = []
        for res in self.reducer.result().values():
            rows.extend(tap_rows(res, self.epoch, rate, self.name))
        if self.raw is not None:
            ref = analyse(None, data, segregation=False, **self.raw)[INPUT_TAP]
            rows.extend(reference_rows(ref, self.epoch, self.name))
        return rows


def reference_rows(res: TapAnalysis, epoch: int, probe: str = "spectral") -> list[Row]:
    """The raw-input reference: the probe's d* and its accuracy at d* on val / test (tap ``input``)."""
    rows = [Row(epoch, probe, "d_star", float(res.d_star), subset="val", tap=res.tap)]
    for subset in res.probe_correct:
        acc = res.probe_acc(subset)[res.at(res.d_star, subset)]
        rows.append(Row(epoch, probe, "probe_acc_d_star", float(acc), subset=subset, tap=res.tap))
    return rows


def tap_rows(res: TapAnalysis, epoch: int, noise_rate: float, probe: str = "spectral") -> list[Row]:
    """The rows of the module docstring's table for one tap's analysis."""
    tap = res.tap

    def row(metric: str, value: float, subset: str = "", index: int = -1) -> Row:
        return Row(epoch, probe, metric, float(value), subset=subset, tap=tap, index=int(index))

    lam = res.spectrum.eigvals.cpu().numpy()
    rows = [row("eigval", v, "train", k) for k, v in enumerate(lam, start=1)]
    rows += [
        row("effective_rank", effective_rank(lam), "train"),
        row("participation_ratio", participation_ratio(lam), "train"),
        row("stable_rank", stable_rank(lam), "train"),
    ]
    for subset in res.probe_correct:
        acc, grid = res.probe_acc(subset), res.grid(subset)
        rows += [row("probe_acc", a, subset, d) for d, a in zip(grid, acc, strict=True)]
        rows.append(row("probe_acc_d_star", acc[res.at(res.d_star, subset)], subset))
    if res.probe_correct:
        rows.append(row("d_star", res.d_star, "val"))
    if res.head is not None and res.head_correct:
        for subset in res.head_correct:
            acc, grid = res.head_acc(subset), res.grid(subset)
            rows += [row("trunc_acc", a, subset, d) for d, a in zip(grid, acc, strict=True)]
            if res.head_d_star is not None:  # None without a validation split
                rows.append(row("trunc_acc_d_star", acc[res.at(res.head_d_star, subset)], subset))
        if res.head_d_star is not None:
            rows.append(row("trunc_d_star", res.head_d_star, "val"))
    if res.noise_share is not None:
        rows += [row("noise_share", v, "train", k) for k, v in enumerate(res.noise_share.cpu().numpy(), 1)]
        rows.append(row("noise_rate", noise_rate, "train"))
        clean, noisy = res.tail_at(res.d_star)
        rows += [
            row("tail_fraction", clean, "clean_train"),
            row("tail_fraction", noisy, "noisy_train_true"),
            row("segregation", noisy - clean if np.isfinite(noisy - clean) else np.nan, "train"),
        ]
        if noise_rate > 0:
            pos = noise_position(res.noise_share.cpu().numpy(), lam, noise_rate)
            count, share = float(pos.count), pos.variance_share
        else:  # no noisy sample: no noise share to compare
            count = share = float("nan")
        rows += [row("noise_dominated_count", count, "train"), row("noise_dominated_variance_share", share, "train")]
    if res.fit is not None:
        for subset, acc in (("clean_train", res.fit.clean_acc), ("noisy_train_obs", res.fit.noisy_acc)):
            rows += [row("fit_acc", a, subset, d) for d, a in zip(res.fit.d_grid, acc, strict=True)]
    if res.tail_margin is not None:
        rows += [row("tail_margin_share", v, subset) for subset, v in res.tail_margin.items()]
    return rows
