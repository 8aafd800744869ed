"""The spectral linear probe: a linear read-out on the top-d principal coordinates, all d at once.

On training features with principal coordinates z = (f - mu) V (uncorrelated, z_k^T z_k =
N lambda_k), the ridge / least-squares fit of one-hot observed labels Y on the first d
coordinates, with an intercept, is

    W_d = diag(1 / (N lambda_k + alpha))_{k<=d} Z_d^T Y,   b = mean(Y) (class frequencies),

and row k of W_d does not depend on d. So the scores for every d are a cumulative sum over
components, s_d(x) = b + sum_{k<=d} z_k(x) w_k, and Z^T Y = V^T (centred class sums) comes
from the streaming statistics: one pass over the training features, then one pass over each
scored set. This is exactly scikit-learn's ``RidgeClassifier(alpha)`` on ``PCA(d)`` coordinates
(its +-1 targets are an affine map of the one-hot ones, which leaves the argmax unchanged).

The same cumulative machinery scores the *original* head on truncated features,
h(mu + V_d z_d) = (W mu + b) + sum_{k<=d} z_k (W v_k), see :func:`head_readout`.

d* is chosen on noisy validation by :func:`choose_d` (default: the one-standard-error rule).

Scoring every d costs N D C elementwise work per read-out (more than a forward pass);
:func:`grid_correct` scores only the points of a sparse grid (the *report grid*,
:func:`report_grid`) from segment sums, N D C multiply-adds in a matrix product plus
N G C elementwise work.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from noisescope.evidence.rules import D_RULES
from noisescope.evidence.rules import choose_d as _choose_d
from noisescope.spectral.stats import FeatureStats, Spectrum

__all__ = ["D_RULES", "DENSE_UP_TO", "EVAL_GRIDS", "PER_OCTAVE", "Readout", "check_grid", "choose_d",
           "cumulative_correct", "fit_ridge_readout", "grid_correct", "grid_hits", "head_readout",
           "logistic_probe_accuracy", "report_grid"]

DENSE_UP_TO = 64  # the report grid holds every d up to here ...
PER_OCTAVE = 16  # ... then this many log-spaced values per doubling of d
EVAL_GRIDS = ("report", "all")  # where test / training-fit curves are scored (the probe's ``eval_grid``)


@dataclass
class Readout:
    """Linear read-out in principal coordinates: scores_d(z) = intercept + z[:, :d] @ weights[:d].

    Attributes:
        intercept: (C,) float64.
        weights: (D, C) float64; row k is component k's contribution per unit of z_k.
    """

    intercept: torch.Tensor
    weights: torch.Tensor

    def scores(self, z: torch.Tensor, d: int) -> torch.Tensor:
        """(B, >=d) principal coordinates -> (B, C) scores using the first d components."""
        return self.intercept + z[:, :d].to(self.weights.dtype) @ self.weights[:d]


def check_grid(d_grid: list[int] | np.ndarray | None, dim: int) -> np.ndarray:
    """Validate a grid of d values: sorted unique ints in [1, dim]; None -> every d."""
    if d_grid is None:
        return np.arange(1, dim + 1)
    g = np.unique(np.asarray(d_grid, dtype=np.int64))
    if g.size == 0 or g[0] < 1 or g[-1] > dim:
        raise ValueError(f"d grid must hold integers in [1, {dim}] (the feature dim); got {d_grid}")
    return g


def report_grid(d_grid: np.ndarray | list[int], extra: tuple[int, ...] | list[int] = ()) -> np.ndarray:
    """The report grid (docs/definitions.md, "Report grid"): the points of the scoring grid
    ``d_grid`` at which curves beyond validation are reported.

    Every grid d <= DENSE_UP_TO (64); above it, for each ladder value
    L_j = round(64 * 2^(j / PER_OCTAVE)), j = 1, 2, ... (16 per octave), the smallest grid d
    >= L_j; the grid's largest d; and every d of ``extra`` that lies on the grid (d*, the head's
    d*). On the every-d grid 1..512 that is 112 points: 1..64 and 48 log-spaced values
    (67, 70, 73, ..., 470, 490, 512). A grid sparser than the ladder is kept whole.

    Args:
        d_grid: sorted unique d values (>= 1).
        extra: d values to keep as well (ignored unless on ``d_grid``).

    Returns:
        (G',) int64, sorted, a subset of ``d_grid``.
    """
    g = np.asarray(d_grid, dtype=np.int64)
    if g.size == 0:
        return g
    keep = g <= DENSE_UP_TO
    top = int(g[-1])
    if top > DENSE_UP_TO:
        steps = int(np.ceil(PER_OCTAVE * np.log2(top / DENSE_UP_TO))) + 1
        ladder = np.rint(DENSE_UP_TO * 2.0 ** (np.arange(1, steps + 1) / PER_OCTAVE)).astype(np.int64)
        pos = np.searchsorted(g, ladder, side="left")
        keep[np.unique(pos[pos < g.size])] = True
    keep[-1] = True
    keep |= np.isin(g, np.asarray(list(extra), dtype=np.int64))
    return g[keep]


def fit_ridge_readout(stats: FeatureStats, spectrum: Spectrum, alpha: float = 0.0) -> Readout:
    """Closed-form ridge (alpha > 0) or least-squares (alpha = 0) probe on observed labels.

    ``stats`` must have been updated with the observed training labels. Components with
    N lambda_k + alpha == 0 get zero weight (the minimum-norm solution).
    """
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    sums, counts = stats.centered_class_sums()  # (C, D), (C,)
    zty = spectrum.eigvecs.T @ sums.T  # (D, C) = Z^T Y
    denom = stats.n * spectrum.eigvals + alpha
    scale = torch.where(denom > 1e-12 * max(float(denom.max()), 1e-300), 1.0 / denom, 0.0)
    return Readout(intercept=counts / stats.n, weights=zty * scale[:, None])


def head_readout(spectrum: Spectrum, weight: torch.Tensor, bias: torch.Tensor | None) -> Readout:
    """The original linear head h(f) = W f + b applied to mu + V_d z_d, as a Readout.

    Args:
        weight: (C, D) head weight.
        bias: (C,) head bias or None.
    """
    w = weight.detach().to(spectrum.eigvecs.device, torch.float64)
    if w.shape[1] != spectrum.dim:
        raise ValueError(f"head expects {w.shape[1]} features but the spectrum has {spectrum.dim}")
    b = w @ spectrum.mean
    if bias is not None:
        b = b + bias.detach().to(b.device, torch.float64)
    return Readout(intercept=b, weights=(w @ spectrum.eigvecs).T.contiguous())


def cumulative_correct(
    z: torch.Tensor,
    y: torch.Tensor,
    readout: Readout,
    d_grid: np.ndarray,
    max_elems: int = 1 << 18,
) -> torch.Tensor:
    """Number of correct argmax predictions for every d in ``d_grid``.

    Works in chunks of samples small enough (``B_chunk * d_max * C <= max_elems``) that the
    (C, B_chunk, d_max) cumulative scores stay in cache. The scores are laid out class-major
    so every step is a contiguous elementwise pass: cumulative sums along d, then a running
    maximum over classes instead of an argmax over the short class axis (about 3x faster
    on a CPU, same float64 sums, same counts: a tie goes to the first class, as argmax does).

    Args:
        z: (B, D) principal coordinates (float64).
        y: (B,) labels to score against.
        readout: the linear read-out.
        d_grid: sorted d values in [1, D].
        max_elems: chunk bound (elements of the cumulative score block).

    Returns:
        (len(d_grid),) int64 counts.
    """
    w = readout.weights
    dmax = int(d_grid[-1])
    c = w.shape[1]
    full = len(d_grid) == dmax  # the grid is 1..dmax: no gather needed
    idx = None if full else torch.as_tensor(np.asarray(d_grid) - 1, device=w.device)
    y = y.to(w.device).long()
    out = torch.zeros(len(d_grid), dtype=torch.int64, device=w.device)
    step = max(1, max_elems // max(1, dmax * c))
    wt = w[:dmax].T.contiguous()  # (C, dmax)
    icpt = readout.intercept.to(w.dtype)[:, None]
    z = z[:, :dmax].to(w.device, w.dtype)
    for s in range(0, len(z), step):
        zb = z[s : s + step]
        yb = y[s : s + step]
        rows = torch.arange(len(zb), device=w.device)
        cum = zb[None] * wt[:, None, :]  # (C, b, dmax) per-component contributions
        cum[:, :, 0] += icpt
        cum.cumsum_(2)
        if idx is not None:
            cum = cum.index_select(2, idx)
        own = cum[yb, rows]  # (b, G) score of the label
        for k in range(1, c):  # cum[k] <- max(cum[0..k]): running maximum over classes
            torch.maximum(cum[k], cum[k - 1], out=cum[k])
        earlier = cum[(yb - 1).clamp_min(0), rows]  # best score of a class before the label
        earlier[yb == 0] = -torch.inf
        # argmax returns the first maximum: correct iff no class scores more and none before it ties
        out += ((own >= cum[c - 1]) & (own > earlier)).sum(0)
    return out


def grid_correct(z: torch.Tensor, y: torch.Tensor, readout: Readout, d_grid: np.ndarray) -> torch.Tensor:
    """Number of correct argmax predictions at the d values of ``d_grid`` only:
    ``grid_hits(...).sum(1)``, (len(d_grid),) int64."""
    return grid_hits(z, y, readout, d_grid).sum(1)


def grid_hits(z: torch.Tensor, y: torch.Tensor, readout: Readout, d_grid: np.ndarray) -> torch.Tensor:
    """Whether each sample's argmax prediction is correct at the d values of ``d_grid``, from segment
    sums: with g_0 = 0 < g_1 < ... < g_G the grid, S_j = z[:, g_{j-1}:g_j] @ w[g_{j-1}:g_j]
    (float64; a segment of one component is a plain product), scores at g_j = intercept +
    S_1 + ... + S_j (a cumulative sum over segments), argmax with ties to the first class.

    The same counts as :func:`cumulative_correct` restricted to the grid: bitwise the same
    scores up to the first segment longer than one component (a grid holding every d up to
    64: every d <= 64), beyond that the matrix product sums a segment in another order, which
    moves a score by ~1e-16 of its size; a prediction can then change only where two classes'
    scores tie to that precision (float32 coordinates already move scores by ~1e-7).

    Args:
        z: (B, >= d_max) principal coordinates (any float dtype; summed in float64).
        y: (B,) labels to score against.
        readout: the linear read-out (float64 weights).
        d_grid: sorted unique d values in [1, D].

    Returns:
        (len(d_grid), B) bool.
    """
    w = readout.weights
    g = np.asarray(d_grid, dtype=np.int64)
    dmax, c, n, G = int(g[-1]), w.shape[1], len(z), len(g)
    zt = z[:, :dmax].T.contiguous().to(w.device, w.dtype)  # (dmax, B): every slab below is contiguous
    y = y.to(w.device).long().reshape(-1)
    starts = np.concatenate([[0], g[:-1]])
    seg = torch.empty(G, c, n, dtype=w.dtype, device=w.device)  # (G, C, B) segment sums
    length = g - starts
    j = 0
    while j < G:  # a run of m consecutive segments of one length L: one batched product
        a, L = int(starts[j]), int(length[j])
        e = j + 1
        while e < G and length[e] == L:
            e += 1
        m = e - j
        zs = zt[a:a + m * L].view(m, L, n)
        if L == 1:  # plain products, as cumulative_correct
            torch.mul(w[a:a + m, :, None], zs, out=seg[j:e])
        else:
            torch.bmm(w[a:a + m * L].view(m, L, c).transpose(1, 2), zs, out=seg[j:e])
        j = e
    seg[0].add_(readout.intercept.to(w.dtype)[:, None])
    for j in range(1, G):  # cumulative sum over segments (a loop over slabs beats cumsum_(0) here)
        seg[j].add_(seg[j - 1])  # not seg[j] += ...: that also copies the slab onto itself
    flat = seg.view(G, c * n)
    rows = torch.arange(n, device=w.device)
    own = flat.index_select(1, y * n + rows)  # (G, B) score of the label
    for k in range(1, c):  # seg[:, k] <- max over classes 0..k
        torch.maximum(seg[:, k], seg[:, k - 1], out=seg[:, k])
    earlier = flat.index_select(1, (y - 1).clamp_min(0) * n + rows)  # best class before the label
    earlier[:, y == 0] = -torch.inf
    # argmax returns the first maximum: correct iff no class scores more and none before it ties
    return (own >= seg[:, c - 1]) & (own > earlier)


def choose_d(
    val_correct: torch.Tensor | np.ndarray, d_grid: np.ndarray, n_val: int | None = None,
    rule: str = "1se",
) -> int:
    """d* from noisy-validation correct counts per grid d: the one definition,
    :func:`noisescope.evidence.rules.choose_d` (docs/definitions.md, "d*").

    Rules:
        ``"1se"`` (default): the smallest d whose accuracy is within one binomial standard
        error, sqrt(p (1 - p) / n_val), of the best p; steady on a flat top.
        ``"argmax"``: the d with the most correct predictions, ties -> smaller d.
    """
    return _choose_d(torch.as_tensor(val_correct).cpu().numpy(), d_grid, n_val, rule)


def logistic_probe_accuracy(
    z_train: np.ndarray,
    y_train: np.ndarray,
    evals: dict[str, tuple[np.ndarray, np.ndarray]],
    d_grid: np.ndarray,
    C: float = 1.0,
    max_iter: int = 200,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Cross-check: multinomial logistic regression on the top-d coordinates, refit per d.

    Slower (one fit per d) and needs the principal coordinates in memory.

    Args:
        z_train: (N, >= d_max) training principal coordinates; y_train: (N,) observed labels.
        evals: subset name -> ((M, >= d_max) coordinates, (M,) labels).
        d_grid: d values to fit.
        C: inverse L2 strength (scikit-learn convention).

    Returns:
        subset name -> (len(d_grid),) accuracies.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    out = {k: np.zeros(len(d_grid)) for k in evals}
    for j, d in enumerate(d_grid):
        scaler = StandardScaler().fit(z_train[:, :d])
        clf = LogisticRegression(C=C, max_iter=max_iter, random_state=seed)
        clf.fit(scaler.transform(z_train[:, :d]), y_train)
        for name, (z, y) in evals.items():
            out[name][j] = clf.score(scaler.transform(z[:, :d]), y)
    return out
