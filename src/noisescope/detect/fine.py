"""FINE (Kim et al., NeurIPS 2021, "FINE Samples for Learning with Noisy Labels").

For each observed class c, the principal eigenvector v_c of the uncentred Gram matrix of the
class's l2-normalized features,

    G_c = sum_{i: y_i = c} u_i u_i^T,   u_i = f_i / ||f_i||,

is the class's dominant direction. A sample's alignment with its observed class is the squared
cosine a_i = (u_i . v_{y_i})^2 in [0, 1]; the score is 1 - a_i. FINE splits each class's
alignments with a 2-component Gaussian mixture and keeps the samples whose posterior for the
higher-mean component exceeds ``p_threshold`` as clean; :func:`fine_issues` flags the others.
"""

from __future__ import annotations

import numpy as np
import torch

from noisescope.detect._util import Array, as_features, as_labels, num_classes_of, out

EPS = 1e-12


def _normalize(feats: torch.Tensor) -> torch.Tensor:
    x = feats.to(torch.float64)
    return x / x.norm(dim=1, keepdim=True).clamp_min(EPS)


class ClassGram:
    """Streaming per-class Gram matrices of l2-normalized features, (C, D, D) float64."""

    def __init__(self, dim: int, num_classes: int, device: torch.device | str = "cpu") -> None:
        self.gram = torch.zeros(num_classes, dim, dim, dtype=torch.float64, device=device)
        self.sums = torch.zeros(num_classes, dim, dtype=torch.float64, device=device)
        self.counts = torch.zeros(num_classes, dtype=torch.int64)

    @torch.no_grad()
    def update(self, feats: torch.Tensor, labels: torch.Tensor) -> None:
        u = _normalize(feats.to(self.gram.device))
        y = labels.to(self.gram.device).long()
        if len(y) and int(y.max()) >= len(self.gram):
            raise ValueError(f"label {int(y.max())} outside the {len(self.gram)} classes")
        for c in torch.unique(y).tolist():
            uc = u[y == c]
            self.gram[c].addmm_(uc.T, uc)
            self.sums[c] += uc.sum(0)
            self.counts[c] += len(uc)

    def eigvecs(self) -> torch.Tensor:
        """(C, D) float64: row c is the unit principal eigenvector of G_c, signed so that
        sum_i u_i . v_c >= 0; a class with no sample gets a zero row."""
        c_total, dim = self.sums.shape
        out_v = torch.zeros(c_total, dim, dtype=torch.float64)
        for c in range(c_total):
            if int(self.counts[c]) == 0:
                continue
            g = self.gram[c].cpu()
            v = _top_eigvec(g, self.sums[c].cpu())
            if float(v @ self.sums[c].cpu()) < 0:
                v = -v
            out_v[c] = v
        return out_v


def _top_eigvec(g: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
    """Unit eigenvector of the largest eigenvalue of the symmetric PSD matrix g (float64)."""
    dim = g.shape[0]
    if dim > 32:
        from scipy.sparse.linalg import ArpackNoConvergence, eigsh

        v0 = start.numpy() if float(start.norm()) > 0 else np.ones(dim)
        try:
            _, vec = eigsh(g.numpy(), k=1, which="LA", v0=v0, tol=0)
            return torch.from_numpy(np.ascontiguousarray(vec[:, 0]))
        except ArpackNoConvergence:  # fall through to the dense solver
            pass
    from noisescope.spectral.stats import eigh

    _, vecs = eigh(g)
    return vecs[:, -1].contiguous()


def fine_eigvecs(feats: Array, labels: Array, num_classes: int | None = None,
                 batch_size: int = 8192) -> torch.Tensor:
    """(C, D) float64 principal eigenvectors v_c of the class Gram matrices (see module doc)."""
    x = as_features(feats)
    y = as_labels(labels, len(x))
    gram = ClassGram(x.shape[1], num_classes_of(y, num_classes), device=x.device)
    for s in range(0, len(x), batch_size):
        gram.update(x[s : s + batch_size], y[s : s + batch_size])
    return gram.eigvecs()


def fine_alignment(feats: Array, labels: Array, eigvecs: torch.Tensor) -> torch.Tensor:
    """(N,) float64 squared cosine a_i = (u_i . v_{y_i})^2 of each sample with its class's vector."""
    x = as_features(feats)
    y = as_labels(labels, len(x)).cpu()
    if len(y) and int(y.max()) >= len(eigvecs):
        raise ValueError(f"label {int(y.max())} outside the {len(eigvecs)} classes of eigvecs")
    u = _normalize(x).cpu()
    return ((u * eigvecs.to(torch.float64)[y]).sum(1) ** 2).clamp(0.0, 1.0)


def fine_score(feats: Array, labels: Array, num_classes: int | None = None) -> torch.Tensor:
    """1 - (u_i . v_{y_i})^2: FINE's misalignment with the observed class's principal direction.

    Args:
        feats: (N, D) features (any scale; each row is l2-normalized).
        labels: (N,) observed labels.

    Returns:
        (N,) float64 in [0, 1], higher = less aligned with its class = more likely mislabeled.
    """
    v = fine_eigvecs(feats, labels, num_classes)
    return out(1.0 - fine_alignment(feats, labels, v))


def fine_issues(scores: Array, labels: Array, p_threshold: float = 0.5, seed: int = 0) -> torch.Tensor:
    """FINE's split: per observed class, a 2-component 1-D GaussianMixture on the alignments
    a = 1 - score (full covariance, tol 1e-6, 100 iterations, ``random_state=seed``); a sample
    is clean when its posterior for the component with the larger mean exceeds ``p_threshold``.

    Returns:
        (N,) bool, True = flagged (not clean). Classes with fewer than 2 samples or a single
        distinct alignment are not flagged.
    """
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture

    a = 1.0 - torch.as_tensor(scores).to("cpu", torch.float64).reshape(-1).numpy()
    y = as_labels(labels, len(a)).cpu().numpy()
    flagged = np.zeros(len(a), dtype=bool)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        vals = a[idx].reshape(-1, 1)
        if len(idx) < 2 or np.ptp(vals) <= 0:
            continue
        with warnings.catch_warnings():  # a 1-D split that stops at max_iter is still a split
            warnings.simplefilter("ignore", ConvergenceWarning)
            gmm = GaussianMixture(n_components=2, covariance_type="full", tol=1e-6, max_iter=100,
                                  random_state=seed).fit(vals)
        p_clean = gmm.predict_proba(vals)[:, int(np.argmax(gmm.means_[:, 0]))]
        flagged[idx] = ~(p_clean > p_threshold)
    return torch.from_numpy(flagged)
