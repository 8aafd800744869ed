"""The Malignant Tail half of noisescope: where label noise lives in the feature spectrum, and
post-hoc spectral truncation that cuts it out (MISSION.md, "Spectrum" and "Explicit spectral
truncation").

Modules (one concept each):

* ``stats``: streaming float64 mean / covariance / class-wise and clean-noisy sums; ``Spectrum``.
* ``rank``: effective rank, participation ratio, stable rank.
* ``linear_probe``: the closed-form spectral linear probe for all d in one pass; logistic check.
* ``segregation``: noise share per component, tail fractions, segregation index.
* ``analysis``: one streaming analysis of a model's taps (or raw inputs) on a NoisyDataset.
* ``truncation``: ``SpectralTruncation`` estimator, ``TruncatedModel`` export, save / load.
* ``compare``: final vs early stopping vs truncation, with the per-tap and raw-input references.
* ``probe``: ``SpectralProbe``, rows for the run's metrics table.
* ``plots``: rank-risk, spectrum / noise-share and effective-rank figures.
"""

from __future__ import annotations

from noisescope.spectral.analysis import TapAnalysis, analyse
from noisescope.spectral.rank import effective_rank, participation_ratio, stable_rank
from noisescope.spectral.stats import FeatureStats, Spectrum
from noisescope.spectral.truncation import (
    SpectralHead,
    SpectralTruncation,
    TruncatedModel,
    load_truncated,
    save_truncated,
)

__all__ = [
    "FeatureStats",
    "SpectralHead",
    "SpectralTruncation",
    "Spectrum",
    "TapAnalysis",
    "TruncatedModel",
    "analyse",
    "effective_rank",
    "load_truncated",
    "participation_ratio",
    "save_truncated",
    "stable_rank",
]
