"""Weight-matrix spectra, one per layer (docs/weights.md has the definitions).

Layers: every ``nn.Linear`` and every ``nn.Conv1d`` / ``nn.Conv2d`` / ``nn.Conv3d`` of a module, by
their dotted names from ``named_modules()`` (a module reached twice is counted once). The matrix
of a layer is W as stored, shape (out, in) for a Linear; a convolution's kernel
(out, in / groups, k_1, ..., k_m) is reshaped to (out, in / groups * k_1 * ... * k_m), the matrix
that multiplies an unfolded input patch (im2col). WeightWatcher instead cuts a Conv2d into its
k_h * k_w slices W[:, :, i, j] of shape (out, in) and pools their singular values; the reshape
keeps one matrix per layer, the one the layer actually applies to a patch, which is also what
weight-space truncation (``noisescope.weights.truncation``) factorises.

Per layer, in float64 (s_k^2 are the eigenvalues of the M x M Gram matrix of the short side,
which is much faster than an SVD for wide convolution matrices; error ~1e-16 s_1^2 in s_k^2):

* ``sv``: singular values s_1 >= ... >= s_M of the (out, fan_in) matrix, M = min(out, fan_in);
* ``eigvals``: eigenvalues of the correlation matrix X = W^T W / N, lambda_k = s_k^2 / N with N =
  max(out, fan_in) (Martin and Mahoney's normalisation; WeightWatcher 0.7.7 by default fits
  s_k^2 without the 1 / N, and multiplies Conv2d slices by sqrt(k_h k_w / 2): alpha, the KS
  distance, the stable and effective ranks do not depend on that scale, x_min scales with it);
* ``spectral_norm`` s_1, ``frobenius_norm`` sqrt(sum s_k^2);
* ``stable_rank`` sum s_k^2 / s_1^2 (noisescope.spectral.rank.stable_rank of lambda);
* ``effective_rank`` exp(-sum p_k ln p_k), p_k = lambda_k / sum lambda (noisescope.spectral.rank
  .effective_rank of lambda, the same definition as for feature covariances; Roy and Vetterli's
  original applies it to the singular values s_k instead).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from noisescope.spectral.rank import effective_rank, stable_rank

LAYER_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


@dataclass(frozen=True)
class LayerSpectrum:
    """The weight spectrum of one layer (see the module docstring for the definitions).

    Attributes:
        name: dotted module name.
        kind: the module's class name (``Linear``, ``Conv2d``, ...).
        shape: the weight tensor's shape.
        sv: (M,) float64 singular values, descending.
        eigvals: (M,) float64 eigenvalues s^2 / N of the correlation matrix, descending.
        n: N = max(out, fan_in), the normalisation of ``eigvals``.
    """

    name: str
    kind: str
    shape: tuple[int, ...]
    sv: torch.Tensor
    eigvals: torch.Tensor
    n: int

    @property
    def matrix_shape(self) -> tuple[int, int]:
        """(out, fan_in): the shape of the matrix whose singular values these are."""
        out = self.shape[0]
        fan_in = 1
        for k in self.shape[1:]:
            fan_in *= k
        return out, fan_in

    @property
    def spectral_norm(self) -> float:
        return float(self.sv[0])

    @property
    def frobenius_norm(self) -> float:
        return float(torch.sqrt((self.sv * self.sv).sum()))

    @property
    def stable_rank(self) -> float:
        return stable_rank(self.eigvals)

    @property
    def effective_rank(self) -> float:
        return effective_rank(self.eigvals)


def weight_matrix(module: nn.Module) -> torch.Tensor:
    """The layer's weight as a detached (out, fan_in) float64 CPU matrix (see the module docstring)."""
    if not isinstance(module, LAYER_TYPES):
        raise TypeError(f"not a weight layer: {type(module).__name__}; supported: "
                        f"{[t.__name__ for t in LAYER_TYPES]}")
    w = module.weight.detach()
    return w.reshape(w.shape[0], -1).to("cpu", torch.float64)


def weight_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Dotted name -> layer for every weight layer of ``model`` (definition order; ``""`` when
    ``model`` itself is a single layer)."""
    return {name: m for name, m in model.named_modules() if isinstance(m, LAYER_TYPES)}


def layer_spectrum(name: str, module: nn.Module) -> LayerSpectrum:
    """The spectrum of one weight layer."""
    w = weight_matrix(module)
    if not torch.isfinite(w).all():
        raise ValueError(f"layer {name!r} has NaN or inf weights")
    n = max(w.shape)
    # eigenvalues of the M x M Gram matrix of the short side: the squared singular values, ~20x
    # faster than an SVD for a 512 x 4608 conv matrix; absolute error ~1e-16 s_1^2 in s^2.
    gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
    sq = torch.linalg.eigvalsh(gram).flip(0).clamp_min(0.0)  # descending
    return LayerSpectrum(
        name=name, kind=type(module).__name__, shape=tuple(module.weight.shape), sv=sq.sqrt(),
        eigvals=sq / n, n=n,
    )


def layer_spectra(model: nn.Module, layers: list[str] | None = None) -> dict[str, LayerSpectrum]:
    """Layer name -> :class:`LayerSpectrum` for the weight layers of ``model``.

    Args:
        model: any ``nn.Module`` (a TappedModel or a user's network).
        layers: dotted names to restrict to (default: every Linear / Conv layer).
    """
    found = weight_layers(model)
    if layers is not None:
        unknown = [n for n in layers if n not in found]
        if unknown:
            raise ValueError(f"not weight layers of the model: {unknown}; choose from {list(found)[:20]}")
        found = {n: found[n] for n in layers}
    return {name: layer_spectrum(name, m) for name, m in found.items()}
