"""Metric rows of the ``weights`` probe at one epoch (the tidy schema of ``noisescope.metrics``).

Per weight layer (tap = the layer's dotted module name, subset ``""``, probe ``"weights"``):

========================= ===== =============================================================
metric                    index value
========================= ===== =============================================================
``sv``                    k     k-th largest singular value (k = 0, 1, ...; all of them unless
                                ``max_sv`` caps the count)
``alpha``                 -1    power-law exponent of the eigenvalue tail (KS cutoff)
``alpha_xmin``            -1    its cutoff x_min, in units of lambda = s^2 / N
``alpha_ks``              -1    its Kolmogorov-Smirnov distance
``alpha_n_tail``          -1    number of eigenvalues >= x_min
``alpha_se``              -1    standard error (alpha - 1) / sqrt(n_tail)
``stable_rank``           -1    sum s^2 / s_max^2
``spectral_norm``         -1    s_max
``frobenius_norm``        -1    sqrt(sum s^2)
``effective_rank``        -1    exp entropy of lambda / sum lambda
========================= ===== =============================================================

The five ``alpha*`` rows are left out for a layer with too few eigenvalues to fit (fewer than
``min_tail``, e.g. a 10-class head), rather than written as NaN.
"""

from __future__ import annotations

from torch import nn

from noisescope.metrics import Row
from noisescope.weights.powerlaw import fit_powerlaw
from noisescope.weights.spectra import layer_spectra

PROBE = "weights"


def weight_rows(model: nn.Module, epoch: int, layers: list[str] | None = None, max_sv: int | None = None,
                min_tail: int = 10) -> list[Row]:
    """The ``weights`` probe's rows for ``model`` at ``epoch`` (see the module docstring).

    Args:
        model: any ``nn.Module``; its Linear / Conv layers are read, never changed.
        epoch: the epoch the rows belong to.
        layers: dotted layer names (default: every Linear / Conv layer).
        max_sv: keep only the largest ``max_sv`` singular values per layer (default all).
        min_tail: the power-law fit's smallest tail (``noisescope.weights.powerlaw.fit_powerlaw``).
    """
    rows: list[Row] = []
    for name, spec in layer_spectra(model, layers).items():
        def row(metric: str, value: float, index: int = -1, _tap: str = name) -> Row:
            return Row(epoch=int(epoch), probe=PROBE, metric=metric, value=float(value), tap=_tap, index=index)

        sv = spec.sv if max_sv is None else spec.sv[:max_sv]
        rows.extend(row("sv", s, k) for k, s in enumerate(sv.tolist()))
        fit = fit_powerlaw(spec.eigvals, min_tail=min_tail)
        if fit.ok:
            rows += [row("alpha", fit.alpha), row("alpha_xmin", fit.xmin), row("alpha_ks", fit.ks),
                     row("alpha_n_tail", fit.n_tail), row("alpha_se", fit.se)]
        rows += [row("stable_rank", spec.stable_rank), row("spectral_norm", spec.spectral_norm),
                 row("frobenius_norm", spec.frobenius_norm), row("effective_rank", spec.effective_rank)]
    return rows
