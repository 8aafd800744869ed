"""Synthetic spiked-covariance classification data with a planted signal dimension k*.

Model: a random orthonormal basis U (D, k*) spans the signal subspace. Each class owns
``clusters_per_class`` prototypes a_p in R^{k*}; the P prototypes are centred and whitened so
that (1/P) sum_p a_p a_p^T = I_k*. A sample of class c picks one of its prototypes p uniformly
and is

    x = signal * U a_p + noise * eps,   eps ~ N(0, I_D).

With balanced classes the population covariance is ``signal^2 U U^T + noise^2 I_D``: k* spikes
of height ``signal^2 + noise^2`` over a flat bulk ``noise^2``. The class information lives
only in the top-k* principal directions, so a linear probe on the top-d PCs improves up to
d = k* and gains nothing (then overfits) beyond. With one prototype per class the prototypes
span at most C - 1 dimensions, so ``clusters_per_class`` defaults to ceil((k* + 1) / C).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from noisescope.data.base import Dataset


def generated_splits(sample, n: int, n_test: int) -> dict[str, torch.Tensor]:
    """Train then test set drawn by ``sample(count) -> (x, y)`` numpy arrays (one generator,
    train first): ``x_train``, ``y_train``, ``x_test``, ``y_test`` as float32 / int64 tensors,
    the Dataset's fields."""
    out = {}
    for split, count in (("train", n), ("test", n_test)):
        x, y = sample(count)
        out[f"x_{split}"] = torch.from_numpy(np.asarray(x).astype(np.float32))
        out[f"y_{split}"] = torch.from_numpy(np.asarray(y).astype(np.int64))
    return out


def make_spiked(
    n: int = 5000,
    n_test: int = 2000,
    dim: int = 100,
    k_star: int = 9,
    num_classes: int = 10,
    signal: float = 1.5,
    noise: float = 1.0,
    clusters_per_class: int | None = None,
    seed: int = 0,
    n_train: int | None = None,
) -> Dataset:
    """Generate the spiked-covariance dataset (float32 features, balanced classes).

    Args:
        n: number of training samples.
        n_test: number of test samples.
        dim: ambient dimension D.
        k_star: planted signal dimension, 1 <= k* <= D.
        num_classes: C >= 2.
        signal: per-direction standard deviation of the class prototypes in the signal subspace.
        noise: standard deviation of the isotropic noise (in every one of the D dims).
        clusters_per_class: prototypes per class (default ceil((k* + 1) / C), the fewest whose
            centred span reaches k* dimensions).
        seed: everything (basis, prototypes, samples) derives from it.
        n_train: alias of ``n`` (overrides it when given).

    Returns:
        Dataset with x (n, D) float32, y (n,) int64; ``meta`` holds k_star and the population
        eigenvalues.
    """
    if n_train is not None:
        n = n_train
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    if not 1 <= k_star <= dim:
        raise ValueError(f"k_star must lie in [1, dim={dim}], got {k_star}")
    if n < num_classes or n_test < 0:
        raise ValueError(f"need n >= num_classes and n_test >= 0, got {n}, {n_test}")
    if signal <= 0 or noise < 0:
        raise ValueError(f"need signal > 0 and noise >= 0, got signal={signal}, noise={noise}")
    m = clusters_per_class or math.ceil((k_star + 1) / num_classes)
    n_proto = m * num_classes
    if n_proto - 1 < k_star:
        raise ValueError(
            f"{m} cluster(s) per class x {num_classes} classes span at most {n_proto - 1} "
            f"dimensions < k_star={k_star}; use clusters_per_class >= "
            f"{math.ceil((k_star + 1) / num_classes)}"
        )
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.standard_normal((dim, k_star)))
    protos = rng.standard_normal((k_star, n_proto))
    protos -= protos.mean(axis=1, keepdims=True)
    chol = np.linalg.cholesky(protos @ protos.T / n_proto)
    protos = np.linalg.solve(chol, protos)  # (k*, P), (1/P) A A^T = I
    centres = signal * (basis @ protos).T  # (P, D)

    def sample(count: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.permutation(np.arange(count) % num_classes)
        p = y * m + rng.integers(0, m, size=count)
        return centres[p] + noise * rng.standard_normal((count, dim)), y

    return Dataset(
        **generated_splits(sample, n, n_test),
        num_classes=num_classes,
        name="synthetic",
        classes=[f"class_{i}" for i in range(num_classes)],
        meta={
            "k_star": int(k_star),
            "dim": int(dim),
            "signal": float(signal),
            "noise": float(noise),
            "clusters_per_class": int(m),
            "seed": int(seed),
            "spike_eigenvalue": float(signal**2 + noise**2),
            "bulk_eigenvalue": float(noise**2),
        },
        source=f"synthetic spiked-covariance data, generated (seed {seed}): {n} train / {n_test} test, "
        f"dim {dim}, planted k* = {k_star}",
    )
