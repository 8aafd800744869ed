"""Generated data for the positive controls: settings where a claim's phenomenon is known to
appear (docs/results/controls.md). Each generator is registered in :data:`noisescope.data.REGISTRY`.

* ``two_scale`` (:func:`make_two_scale`): epoch-wise double descent of a linear classifier
  trained by gradient descent from zero. Gradient descent learns a direction at a speed
  proportional to its variance. A few large-scale coordinates carry part of the signal and
  are learned in the first steps (first descent); a unit-variance nuisance block without
  signal is then fitted to the flipped labels (the test loss and error rise); a small-scale
  slow block carrying most of the signal is learned ~100 times later and brings them down
  again (second descent; Heckel & Yilmaz, ICLR 2021; Pezeshki et al., ICML 2022). The
  nuisance block must stay well below the training size, so that the model cannot fit the
  noisy training set before the slow block is learned (else cross-entropy drives it to
  interpolate and the gradient into the slow block vanishes).
* ``large_input`` (:func:`make_large_input`): Gaussian classes whose first ``spike_dims``
  input coordinates take one large shared value ``spike_scale`` on a small label-free share of
  the samples: one first-layer activation is very large and follows the input, not the
  label. ``spike_scale = 0`` is the null twin.
"""

from __future__ import annotations

import numpy as np

from noisescope.data.base import Dataset
from noisescope.data.synthetic import generated_splits


def make_two_scale(
    n: int = 667,
    n_test: int = 10000,
    fast_dim: int = 5,
    fast_scale: float = 2.0,
    fast_weight: float = 2.0,
    nuisance_dim: int = 200,
    slow_dim: int = 10,
    slow_scale: float = 0.1,
    slow_weight: float = 2.0,
    seed: int = 0,
) -> Dataset:
    """Two-class data with features at several scales (module docstring).

    Three blocks: ``fast_dim`` coordinates with standard deviation ``fast_scale`` (part of the
    signal, learned in the first steps), ``nuisance_dim`` unit-variance coordinates without
    signal (fitted to the flipped labels next) and ``slow_dim`` coordinates with standard
    deviation ``slow_scale`` (most of the signal, learned ~ (fast_scale / slow_scale)^2 times
    later). Teacher logit: ``fast_weight * z_fast @ g1 + slow_weight * z_slow @ g2`` on the
    standardized blocks z (g1, g2 random directions of norm sqrt(block size)); label = logit > 0.

    Args:
        n: training samples (before the noisy-validation split).
        n_test: clean test samples.
        fast_dim, nuisance_dim, slow_dim: block sizes (D = their sum).
        fast_scale, slow_scale: standard deviations of the fast and slow coordinates.
        fast_weight, slow_weight: teacher weights' scale per standardized coordinate.
        seed: teacher and samples.

    Returns:
        Dataset with x (n, D) float32 (fast, nuisance, slow) and y (n,) int64 in {0, 1}.
    """
    if n < 2 or n_test < 0 or fast_dim < 0 or nuisance_dim < 0 or slow_dim < 0 or fast_dim + slow_dim < 1:
        raise ValueError(f"need n >= 2, n_test >= 0, block sizes >= 0 and fast_dim + slow_dim >= 1; got {n}, "
                         f"{n_test}, {fast_dim}, {nuisance_dim}, {slow_dim}")
    if fast_scale <= 0 or slow_scale <= 0 or fast_weight < 0 or slow_weight < 0:
        raise ValueError(f"need scales > 0 and weights >= 0, got {fast_scale}, {slow_scale}, {fast_weight}, "
                         f"{slow_weight}")
    rng = np.random.default_rng(seed)
    # random teacher directions with fixed norms sqrt(dim): each block's share of the logit
    # variance is the same for every seed (fast_dim fast_weight^2 vs slow_dim slow_weight^2)
    g1, g2 = (g / max(np.linalg.norm(g), 1e-12) * np.sqrt(len(g)) if len(g) else g
              for g in (rng.standard_normal(fast_dim), rng.standard_normal(slow_dim)))

    def sample(count: int) -> tuple[np.ndarray, np.ndarray]:
        zf = rng.standard_normal((count, fast_dim))
        zn = rng.standard_normal((count, nuisance_dim))
        zs = rng.standard_normal((count, slow_dim))
        logit = fast_weight * zf @ g1 + slow_weight * zs @ g2
        return np.concatenate([fast_scale * zf, zn, slow_scale * zs], axis=1), logit > 0

    return Dataset(
        **generated_splits(sample, n, n_test), num_classes=2, name="two_scale",
        classes=["negative", "positive"],
        meta={"fast_dim": int(fast_dim), "fast_scale": float(fast_scale), "fast_weight": float(fast_weight),
              "nuisance_dim": int(nuisance_dim), "slow_dim": int(slow_dim), "slow_scale": float(slow_scale),
              "slow_weight": float(slow_weight), "seed": int(seed)},
        source=f"multi-scale linear-teacher data, generated (seed {seed}): {n} train / {n_test} test, "
        f"{fast_dim} fast (scale {fast_scale:g}) + {nuisance_dim} nuisance + {slow_dim} slow (scale "
        f"{slow_scale:g}) dims",
    )


def make_large_input(
    n: int = 3000,
    n_test: int = 2000,
    dim: int = 50,
    num_classes: int = 5,
    spike_dims: int = 3,
    spike_scale: float = 1000.0,
    spike_rate: float = 0.01,
    separation: float = 1.0,
    seed: int = 0,
) -> Dataset:
    """Gaussian classes with a few label-free input coordinates that, in a small random share
    of the samples, take one large shared value.

    x = mu_y + eps on the last ``dim - spike_dims`` coordinates (eps ~ N(0, I), class means
    mu_c ~ N(0, separation^2 I)); the first ``spike_dims`` coordinates are ``spike_scale`` in
    a seeded ``spike_rate`` share of the samples (drawn independently of the label) and 0
    elsewhere. A first-layer unit computes w . x + b: on a spiked sample the spike adds
    ~ spike_scale |w_spike| (after the model's global input standardization, ~
    1 / sqrt(spike_rate spike_dims / dim) standard deviations per coordinate), so the largest
    activation is one entry (sample, unit) many times the median, and it follows the input's
    top principal direction (the spike coordinates), not the label. ``spike_scale = 0`` is the
    null twin (the coordinates are constant 0).

    Args:
        n, n_test: training / test samples (balanced classes).
        dim: D; spike_dims: the spiked coordinates (< dim).
        spike_scale: their shared value on spiked samples (>= 0).
        spike_rate: share of spiked samples, in (0, 1).
        separation: scale of the class means.
        seed: means, spikes and samples.
    """
    if not 0 <= spike_dims < dim or num_classes < 2 or spike_scale < 0 or n < num_classes:
        raise ValueError(f"need 0 <= spike_dims < dim, num_classes >= 2, spike_scale >= 0, n >= num_classes; "
                         f"got {spike_dims}, {dim}, {num_classes}, {spike_scale}, {n}")
    if not 0 < spike_rate < 1:
        raise ValueError(f"spike_rate must lie in (0, 1), got {spike_rate}")
    rng = np.random.default_rng(seed)
    means = separation * rng.standard_normal((num_classes, dim - spike_dims))

    def sample(count: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.permutation(np.arange(count) % num_classes)
        x = np.zeros((count, dim))
        x[:, spike_dims:] = means[y] + rng.standard_normal((count, dim - spike_dims))
        x[rng.random(count) < spike_rate, :spike_dims] = spike_scale
        return x, y

    return Dataset(
        **generated_splits(sample, n, n_test), num_classes=num_classes, name="large_input",
        classes=[f"class_{i}" for i in range(num_classes)],
        meta={"dim": int(dim), "spike_dims": int(spike_dims), "spike_scale": float(spike_scale),
              "spike_rate": float(spike_rate), "separation": float(separation), "seed": int(seed)},
        source=f"Gaussian classes, {spike_dims} input coordinates = {spike_scale:g} on {spike_rate:g} of the "
        f"samples, generated (seed {seed}): {n} train / {n_test} test, dim {dim}",
    )
