"""The weight-space view and weight-space repairs (docs/weights.md).

Modules (the math layer: torch / numpy / scipy, ``noisescope.metrics``, ``noisescope.spectral``):

* ``spectra``: per-layer singular values, correlation eigenvalues s^2 / N, norms and ranks.
* ``powerlaw``: power-law fit of an eigenvalue tail, x_min by Kolmogorov-Smirnov distance.
* ``truncation``: rank-r weight truncation, WeightWatcher's fixed share, ranks from noisy
  validation (1se rule).
* ``label_free``: d without labels from a feature spectrum (eigengap, control edge, MP edge).
* ``loo``: leave-one-out R^2 of a one-variable regression (the Loftus hypothesis).
* ``rows``: the ``weights`` probe's metric rows at one epoch.
"""

from __future__ import annotations

from noisescope.weights.label_free import (
    control_edge,
    control_edge_d,
    eigengap_d,
    label_free_d,
    mp_edge,
    mp_edge_d,
    mp_median,
)
from noisescope.weights.loo import loo_r2
from noisescope.weights.powerlaw import PowerLawFit, fit_powerlaw, sample_powerlaw
from noisescope.weights.rows import weight_rows
from noisescope.weights.spectra import LayerSpectrum, layer_spectra, layer_spectrum, weight_layers, weight_matrix
from noisescope.weights.truncation import (
    RankChoice,
    choose_ranks,
    fixed_share_ranks,
    fraction_ranks,
    full_rank,
    low_rank,
    truncate_weights,
)

__all__ = [
    "LayerSpectrum",
    "PowerLawFit",
    "RankChoice",
    "choose_ranks",
    "control_edge",
    "control_edge_d",
    "eigengap_d",
    "fit_powerlaw",
    "fixed_share_ranks",
    "fraction_ranks",
    "full_rank",
    "label_free_d",
    "layer_spectra",
    "layer_spectrum",
    "loo_r2",
    "low_rank",
    "mp_edge",
    "mp_edge_d",
    "mp_median",
    "sample_powerlaw",
    "truncate_weights",
    "weight_layers",
    "weight_matrix",
    "weight_rows",
]
