"""The Malignant Tail half of noisescope: where label noise lives in the feature spectrum, and
post-hoc spectral truncation that cuts it out (docs/definitions.md, "Spectrum" and
"Explicit spectral truncation"). The Malignant Tail paper (arXiv 2603.02293) was withdrawn by its
author (v2, April 2026): its claims are hypotheses noisescope tests, not facts.

Modules (one concept each):

* ``stats``: streaming float64 mean / covariance / class-wise and clean-noisy sums; ``Spectrum``.
* ``rank``: effective rank, participation ratio, stable rank.
* ``linear_probe``: the closed-form spectral linear probe for all d in one pass; logistic check.
* ``segregation``: noise share per component, tail fractions, segregation index.
* ``analysis``: one streaming analysis of a model's taps (or raw inputs) on a NoisyDataset
  (``SpectralReducer``, fed by the shared pass).
* ``attribution``: the head's margin split over principal components.
* ``truncation``: the ``SpectralTruncation`` estimator.
* ``export``: ``TruncatedModel``, save / load as safetensors + JSON.
* ``compare``: final vs early stopping vs truncation, with the per-tap and raw-input references.
* ``plots``: rank-risk, spectrum / noise-share and effective-rank figures.

The probe shell that writes these measurements into a run is ``noisescope.probes.spectral``.
"""

from __future__ import annotations

from noisescope.spectral.analysis import TapAnalysis, analyse
from noisescope.spectral.export import SpectralHead, TruncatedModel, load_truncated, save_truncated
from noisescope.spectral.rank import effective_rank, participation_ratio, stable_rank
from noisescope.spectral.stats import FeatureStats, Spectrum
from noisescope.spectral.truncation import SpectralTruncation

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
