"""Input scaling: uint8 -> float, and per-channel standardization fitted on training data.

Loaders keep images as uint8 (4x less memory); the training pipeline converts with
:class:`Normalizer` fitted on the training split only (never on validation or test).
For 4-D images ``(N, C, H, W)`` statistics are per channel; for any other layout
(e.g. features ``(N, D)``) one global mean and std are used, which preserves the geometry
(relative variances, principal directions) of feature data.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch


def to_float(x: torch.Tensor) -> torch.Tensor:
    """float32 view of inputs: uint8 is scaled to [0, 1], floats are cast."""
    if x.dtype == torch.uint8:
        return x.float().div_(255.0)
    return x.float()


@dataclass(frozen=True)
class Normalizer:
    """``(to_float(x) - mean) / std``, broadcast per channel (dim 1) for 4-D inputs.

    Attributes:
        mean: per-channel means (C,) for images, or a single value (1,).
        std: matching standard deviations (> 0).
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def fit(cls, x: torch.Tensor, chunk: int = 4096) -> Normalizer:
        """Statistics of ``to_float(x)`` over all samples (float64, streamed in chunks)."""
        if len(x) == 0:
            raise ValueError("cannot fit a Normalizer on an empty tensor")
        per_channel = x.dim() == 4
        c = x.shape[1] if per_channel else 1
        s1 = torch.zeros(c, dtype=torch.float64)
        s2 = torch.zeros(c, dtype=torch.float64)
        count = 0
        for i in range(0, len(x), chunk):
            xb = x[i : i + chunk].double()
            if x.dtype == torch.uint8:
                xb = xb / 255.0
            if per_channel:
                xb = xb.transpose(0, 1).reshape(c, -1)
            else:
                xb = xb.reshape(1, -1)
            s1 += xb.sum(1)
            s2 += (xb * xb).sum(1)
            count += xb.shape[1]
        mean = s1 / count
        std = (s2 / count - mean**2).clamp_min(0).sqrt()
        std = torch.where(std > 1e-12, std, torch.ones_like(std))
        return cls(tuple(mean.tolist()), tuple(std.tolist()))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Normalized float32 copy of ``x`` (same shape)."""
        xf = to_float(x)
        mean = torch.tensor(self.mean, dtype=xf.dtype, device=xf.device)
        std = torch.tensor(self.std, dtype=xf.dtype, device=xf.device)
        if len(self.mean) > 1:
            if xf.dim() != 4 or xf.shape[1] != len(self.mean):
                raise ValueError(
                    f"Normalizer has {len(self.mean)} channels but got input {tuple(xf.shape)}"
                )
            mean, std = mean.view(1, -1, 1, 1), std.view(1, -1, 1, 1)
        return (xf - mean) / std

    def to_dict(self) -> dict:
        return {"mean": list(self.mean), "std": list(self.std)}


def normalize(data, normalizer: Normalizer | None = None):
    """Return ``(copy of data with float32 normalized inputs, normalizer)``.

    ``data`` is a :class:`~noisescope.data.base.Dataset` or
    :class:`~noisescope.data.base.NoisyDataset`; the normalizer is fitted on ``x_train``
    unless given, and applied to every input split (``x_train``, ``x_val``, ``x_test``).
    """
    norm = normalizer or Normalizer.fit(data.x_train)
    changes = {
        f.name: norm(getattr(data, f.name))
        for f in dataclasses.fields(data)
        if f.name.startswith("x_")
    }
    return dataclasses.replace(data, **changes), norm
