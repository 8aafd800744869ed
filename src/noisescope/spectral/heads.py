"""Linear heads refitted on the top-d principal coordinates of a tap, d on a grid.

Inputs are principal coordinates z = (f - mu) V of the training features (N, D_max), centred,
with the covariance eigenvalues lambda (so z_k^T z_k = N lambda_k), and the *observed* training
labels. Each head is returned as a :class:`~noisescope.spectral.linear_probe.Readout` whose
first d weight rows are the head at d, so ``SpectralHead.from_readout(spectrum, readout, d)``
turns it into the exported module (``spectral.export``).

* :func:`ridge_readout`: one-hot least squares with ridge strength alpha (absolute, in the
  units of N lambda): W_d = diag(1 / (N lambda_k + alpha)) Z_d^T Y, intercept = class
  frequencies. Rows do not depend on d, so one readout serves every d (as the spectral linear
  probe, ``linear_probe.fit_ridge_readout``, of which this is the in-memory twin).
* :func:`logistic_readouts`: multinomial logistic regression refitted for every d of the grid on
  whitened coordinates u_k = z_k / sqrt(lambda_k), mean cross-entropy + (l2 / 2) ||W||^2,
  full-batch L-BFGS (strong Wolfe line search), warm-started from the previous d; the weights are
  mapped back to z units. One readout per d.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from noisescope.spectral.linear_probe import Readout


def ridge_readout(z: torch.Tensor, y: torch.Tensor, eigvals: torch.Tensor, num_classes: int,
                  alpha: float = 0.0) -> Readout:
    """Closed-form ridge head on (N, D) centred principal coordinates (module docstring)."""
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    z = z.to(torch.float64)
    n, dmax = z.shape
    onehot = F.one_hot(y.long().cpu(), num_classes).to(torch.float64)
    zty = z.T.cpu() @ onehot  # (D, C)
    denom = n * eigvals[:dmax].to(torch.float64).cpu() + alpha
    scale = torch.where(denom > 1e-12 * max(float(denom.max()), 1e-300), 1.0 / denom, 0.0)
    return Readout(intercept=onehot.mean(0), weights=zty * scale[:, None])


def logistic_readouts(z: torch.Tensor, y: torch.Tensor, eigvals: torch.Tensor, num_classes: int,
                      d_grid: Sequence[int], l2: float = 1e-3, max_iter: int = 100) -> dict[int, Readout]:
    """d -> multinomial logistic head on the first d coordinates (module docstring)."""
    if l2 < 0:
        raise ValueError(f"l2 must be >= 0, got {l2}")
    grid = sorted({int(d) for d in d_grid})
    dmax = z.shape[1]
    if not grid or grid[0] < 1 or grid[-1] > dmax:
        raise ValueError(f"d grid must lie in [1, {dmax}], got {list(d_grid)}")
    lam = eigvals[:dmax].to(torch.float64).cpu()
    inv = torch.where(lam > 1e-12 * max(float(lam.max()), 1e-300), lam.rsqrt(), torch.zeros_like(lam))
    u_all = (z.to(torch.float64).cpu() * inv).float()
    y = y.long().cpu()
    out: dict[int, Readout] = {}
    w_prev = torch.zeros(num_classes, 0)
    b_prev = torch.log(torch.bincount(y, minlength=num_classes).float().clamp_min(1) / len(y))
    for d in grid:
        u = u_all[:, :d].contiguous()
        w = torch.zeros(num_classes, d)
        w[:, :w_prev.shape[1]] = w_prev[:, :d]
        w_prev, b_prev = _fit_logistic(u, y, w, b_prev.clone(), l2, max_iter)
        weights = torch.zeros(dmax, num_classes, dtype=torch.float64)
        weights[:d] = (w_prev.T.to(torch.float64) * inv[:d, None])
        out[d] = Readout(intercept=b_prev.to(torch.float64), weights=weights)
    return out


def _fit_logistic(u: torch.Tensor, y: torch.Tensor, w: torch.Tensor, b: torch.Tensor, l2: float,
                  max_iter: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Full-batch L-BFGS on mean cross-entropy + (l2 / 2) ||w||^2 from (w, b); returns the fit."""
    w, b = w.clone().requires_grad_(True), b.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, history_size=20, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-6, tolerance_change=1e-9)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(u @ w.T + b, y) + 0.5 * l2 * (w * w).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return w.detach().clone(), b.detach().clone()


def readout_correct(readout: Readout, z: torch.Tensor, y: torch.Tensor, d: int) -> np.ndarray:
    """(M,) bool: the readout at d classifies each row of (M, >= d) coordinates as ``y``."""
    return (readout.scores(z.to(torch.float64).cpu(), d).argmax(1) == y.cpu()).numpy()
