"""Test helper: a spiked-covariance classification set with planted signal dimension k*.

Coordinates before a random rotation: the first k* carry the true class's mean (large variance);
the remaining D - k* are small isotropic noise, plus, for *noisy training samples only*, an
offset that encodes the observed (wrong) label: a memorized malignant tail. Validation
(observed noisy labels) and test (clean) features have no such offset, so read-outs that use
tail components lose accuracy: the rank-risk valley has its minimum near d = k*.
"""

from __future__ import annotations

import torch

from noisescope.data.base import NoisyDataset


def spiked_noisy(
    n: int = 6000,
    n_val: int = 3000,
    n_test: int = 3000,
    dim: int = 40,
    k_star: int = 6,
    num_classes: int = 10,
    rate: float = 0.4,
    tail_scale: float = 1.0,
    seed: int = 0,
) -> NoisyDataset:
    g = torch.Generator().manual_seed(seed)
    # well-conditioned class means in k* dims: a scaled random orthogonal frame
    q, _ = torch.linalg.qr(torch.randn(num_classes, num_classes, generator=g))
    means = 10.0 * q[:, :k_star]  # (C, k*)
    offsets = tail_scale * torch.randn(num_classes, dim - k_star, generator=g)
    rot, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=torch.float64))

    def draw(m: int, noisy_offsets: bool):
        y = torch.randint(0, num_classes, (m,), generator=g)
        flip = torch.rand(m, generator=g) < rate
        other = (y + torch.randint(1, num_classes, (m,), generator=g)) % num_classes
        y_obs = torch.where(flip, other, y)
        sig = means[y] + torch.randn(m, k_star, generator=g)
        tail = 0.3 * torch.randn(m, dim - k_star, generator=g)
        if noisy_offsets:
            tail = tail + flip[:, None] * offsets[y_obs]
        x = (torch.cat([sig, tail], 1).double() @ rot.T).float()
        return x, y_obs, y

    x, y_obs, y = draw(n, True)
    xv, yv_obs, yv = draw(n_val, False)
    xt, _, yt = draw(n_test, False)
    return NoisyDataset(
        x_train=x, y_train=y_obs, y_train_true=y, x_val=xv, y_val=yv_obs, y_val_true=yv,
        x_test=xt, y_test=yt, num_classes=num_classes, name="spiked",
        noise={"model": "symmetric", "rate": rate, "k_star": k_star},
    )
