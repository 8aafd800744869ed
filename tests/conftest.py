"""Shared fixtures: a small noisy dataset built by hand (no loader needed)."""

from __future__ import annotations

import pytest
import torch

from noisescope.data.base import NoisyDataset


def make_blobs(n: int, dim: int, classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(classes, dim, generator=g) * 2.0
    y = torch.arange(n) % classes
    x = centers[y] + torch.randn(n, dim, generator=g)
    return x, y


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors gain nothing from threads, and spinning threads suffer on a shared CPU.
    Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny_noisy() -> NoisyDataset:
    """600 train / 100 val / 200 test samples, 16 dims, 4 classes, 30% of train labels flipped."""
    torch.manual_seed(0)
    x, y = make_blobs(900, 16, 4, seed=1)
    g = torch.Generator().manual_seed(2)
    y_obs = y.clone()
    flip = torch.rand(900, generator=g) < 0.3
    y_obs[flip] = (y[flip] + torch.randint(1, 4, (int(flip.sum()),), generator=g)) % 4
    return NoisyDataset(
        x_train=x[:600], y_train=y_obs[:600], y_train_true=y[:600],
        x_val=x[600:700], y_val=y_obs[600:700], y_val_true=y[600:700],
        x_test=x[700:], y_test=y[700:], num_classes=4, name="blobs",
        noise={"model": "symmetric", "rate": 0.3},
    )
