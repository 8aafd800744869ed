"""Deep k-nearest-neighbour label disagreement (Bahri et al. 2020 "Deep k-NN for noisy labels";
Zhu et al. 2022 SimiFeat): a sample whose nearest neighbours in feature space carry other
observed labels is likely mislabeled.

Neighbours are by cosine similarity, the sample itself excluded, on the raw features (d=None)
or on the centred top-d principal coordinates z = (f - mu) V_d (d given). Similarities are
computed in row chunks of at most ``max_elems`` entries: never N x N at once.
"""

from __future__ import annotations

import torch

from noisescope.detect._util import Array, as_features, as_labels, check_d, out, rows_per_chunk, spectrum_of
from noisescope.spectral.stats import Spectrum


def knn_space(feats: Array, d: int | None = None, spectrum: Spectrum | None = None) -> torch.Tensor:
    """The (N, D) or (N, d) float64 l2-normalized rows the neighbours are searched in."""
    x = as_features(feats)
    if d is not None:
        spectrum = spectrum if spectrum is not None else spectrum_of(x)
        x = spectrum.project(x, check_d(d, spectrum.dim))
    x = x.to(torch.float64)
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)


@torch.no_grad()
def knn_disagreement(
    space: torch.Tensor, labels: torch.Tensor, k: int, max_elems: int = 1 << 24,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """(N,) fraction of each row's k most cosine-similar other rows with a different label.

    ``space``: (N, F) l2-normalized rows (see :func:`knn_space`). Ties in similarity are
    broken by ``torch.topk`` (unspecified order).
    """
    n = len(space)
    if not 1 <= k < n:
        raise ValueError(f"k must lie in [1, N - 1] = [1, {n - 1}], got {k}")
    z = space.to(dtype)
    y = labels.to(z.device)
    res = torch.empty(n, dtype=torch.float64, device=z.device)
    step = rows_per_chunk(n, max_elems)
    for s in range(0, n, step):
        e = min(n, s + step)
        sim = z[s:e] @ z.T  # (b, N)
        sim[torch.arange(e - s, device=z.device), torch.arange(s, e, device=z.device)] = -torch.inf
        nb = sim.topk(k, dim=1).indices
        res[s:e] = (y[nb] != y[s:e, None]).to(torch.float64).mean(1)
    return res


def knn_score(
    feats: Array,
    labels: Array,
    k: int = 10,
    d: int | None = None,
    spectrum: Spectrum | None = None,
    max_elems: int = 1 << 24,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Fraction of the k nearest neighbours whose observed label differs from the sample's.

    s_i = (1/k) #{ j in kNN(i) : y_j != y_i },  kNN(i) = the k rows j != i with the largest
    cosine similarity to row i, on the raw features (``d=None``) or on the centred top-d
    principal coordinates (``d`` given; ``spectrum`` defaults to the features' own).

    Args:
        feats: (N, D) features; labels: (N,) observed labels.
        k: neighbours (1 <= k < N).
        max_elems: bound on the similarity block held at once (rows x N).
        dtype: precision of the similarity products (float32 is ~2x faster; float64 exact).

    Returns:
        (N,) float64 in {0, 1/k, ..., 1}, higher = more neighbours disagree.
    """
    x = as_features(feats)
    y = as_labels(labels, len(x))
    return out(knn_disagreement(knn_space(x, d, spectrum), y, k, max_elems, dtype))


def knn_issues(scores: Array) -> torch.Tensor:
    """(N,) bool: a strict majority of the neighbours disagrees with the label (score > 1/2)."""
    return torch.as_tensor(scores).to("cpu", torch.float64).reshape(-1) > 0.5
