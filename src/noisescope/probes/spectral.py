"""``SpectralProbe``: the Malignant Tail measurements as rows of the run's metrics table.

Rows written per analysed tap (probe ``"spectral"``; ``index`` as noted, else -1):

==================== ================== ====================================================
metric               subset             value
==================== ================== ====================================================
eigval               train              covariance eigenvalue lambda_k (index k, 1-based)
effective_rank       train              exp(entropy of lambda / sum lambda)
participation_ratio  train              (sum lambda)^2 / sum lambda^2
stable_rank          train              sum lambda / lambda_1
probe_acc            val / test         spectral linear probe accuracy at d (index d)
d_star               val                d chosen by noisy-validation probe accuracy
probe_acc_d_star     val / test         probe accuracy at d_star
trunc_acc            val / test         original head on the top-d projection (index d);
                                        penultimate tap only
trunc_d_star         val                d chosen by noisy-validation truncation accuracy
trunc_acc_d_star     val / test         truncated-model accuracy at trunc_d_star
noise_share          train              rho_k (index k)
noise_rate           train              realized training noise rate (for comparison)
tail_fraction        clean_train /      mean tail fraction beyond d_star of clean / noisy
                     noisy_train_true   samples (deviation from the true class's clean mean)
segregation          train              noisy - clean tail fraction at d_star
==================== ================== ====================================================
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from noisescope.data.base import NoisyDataset
from noisescope.metrics import Row
from noisescope.models.base import TappedModel
from noisescope.probes.base import ProbeContext
from noisescope.probes.engine import run_probes
from noisescope.spectral.analysis import SpectralReducer, TapAnalysis, select_taps
from noisescope.spectral.rank import effective_rank, participation_ratio, stable_rank


@dataclass
class SpectralProbe:
    """Spectrum, all-d linear probe, truncation and segregation of a model's taps.

    Args:
        taps: ``"auto"`` (every tap at most ``max_dim`` wide), ``"feature"`` (the penultimate
            tap phi) or a list of tap names.
        d_grid: d values to score (default every d up to the tap's width, capped at ``d_max``).
        d_max: largest d on the default grid.
        alpha: ridge strength of the probe (0 = least squares).
        d_rule: ``"argmax"`` or ``"1se"`` (see ``linear_probe.choose_d``).
        segregation: measure noise shares and tail fractions (one more training pass).
        max_dim: widest tap analysed.
    """

    taps: str | list[str] = "auto"
    d_grid: list[int] | None = None
    d_max: int = 1024
    alpha: float = 0.0
    d_rule: str = "argmax"
    segregation: bool = True
    max_dim: int = 4096
    name: str = "spectral"

    def start(self, model: TappedModel, data: NoisyDataset, ctx: ProbeContext) -> _SpectralSession:
        grid = self.d_grid if self.d_grid is not None else list(range(1, self.d_max + 1))
        names = select_taps(model, self.taps, self.max_dim, data.x_train, ctx.device)
        reducer = SpectralReducer(
            model, data, names, d_grid=grid, alpha=self.alpha, d_rule=self.d_rule, segregation=self.segregation,
            batch_size=ctx.batch_size, device=ctx.device,
        )
        return _SpectralSession(reducer, ctx.epoch, self.name)

    def __call__(self, model: TappedModel, data: NoisyDataset, ctx: ProbeContext) -> list[Row]:
        return run_probes([self], model, data, ctx)


class _SpectralSession:
    """The probe's share of the shared pass: a :class:`SpectralReducer` and its rows."""

    def __init__(self, reducer: SpectralReducer, epoch: int, name: str) -> None:
        self.reducer, self.epoch, self.name = reducer, epoch, name
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
    grid = res.d_grid
    for subset in res.probe_correct:
        acc = res.probe_acc(subset)
        rows += [row("probe_acc", a, subset, d) for d, a in zip(grid, acc, strict=True)]
        rows.append(row("probe_acc_d_star", acc[res.at(res.d_star)], subset))
    if res.probe_correct:
        rows.append(row("d_star", res.d_star, "val"))
    if res.head is not None and res.head_correct:
        for subset in res.head_correct:
            acc = res.head_acc(subset)
            rows += [row("trunc_acc", a, subset, d) for d, a in zip(grid, acc, strict=True)]
            rows.append(row("trunc_acc_d_star", acc[res.at(res.head_d_star)], subset))
        rows.append(row("trunc_d_star", res.head_d_star, "val"))
    if res.noise_share is not None:
        rows += [row("noise_share", v, "train", k) for k, v in enumerate(res.noise_share.cpu().numpy(), 1)]
        rows.append(row("noise_rate", noise_rate, "train"))
        j = res.at(res.d_star)
        clean, noisy = res.tail_clean[j], res.tail_noisy[j]
        rows += [
            row("tail_fraction", clean, "clean_train"),
            row("tail_fraction", noisy, "noisy_train_true"),
            row("segregation", noisy - clean if np.isfinite(noisy - clean) else np.nan, "train"),
        ]
    return rows
