"""scikit-learn's bundled handwritten digits (1797 images, 8x8, 10 classes; no network)."""

from __future__ import annotations

import numpy as np
import torch

from noisescope.data.base import Dataset
from noisescope.data.splits import stratified_split


def load_digits(test_fraction: float = 0.25, seed: int = 0) -> Dataset:
    """Load the digits as uint8 images ``(N, 1, 8, 8)``.

    The source's 17 grey levels 0..16 are mapped to 0..255 by ``round(v * 255 / 16)``
    (lossless), so every image dataset here shares one uint8 convention. The set has no
    official train/test split: a seeded stratified split holds out ``test_fraction``.

    Args:
        test_fraction: share of samples in the test split, in (0, 1).
        seed: seed of the split.
    """
    from sklearn.datasets import load_digits as _sk_load_digits

    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    bunch = _sk_load_digits()
    img = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    x = torch.from_numpy(img).unsqueeze(1).contiguous()
    y = torch.from_numpy(bunch.target.astype(np.int64))
    train, test = stratified_split(y, test_fraction, seed=seed, num_classes=10)
    return Dataset(
        x_train=x[train],
        y_train=y[train],
        x_test=x[test],
        y_test=y[test],
        num_classes=10,
        name="digits",
        classes=[str(i) for i in range(10)],
        meta={"source": "sklearn.datasets.load_digits", "split_seed": int(seed),
              "test_fraction": float(test_fraction), "licence": "CC BY 4.0 (UCI)"},
        source=f"scikit-learn's bundled 8x8 digits: {len(train)} train / {len(test)} test (seeded split)",
    )
