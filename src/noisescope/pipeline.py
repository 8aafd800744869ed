"""Device-resident batching: the whole split lives on the device; batches are index gathers.

Every batch carries its sample indices so probes and losses can split clean from noisy samples.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch


class TensorPipeline:
    """Shuffled mini-batches over device tensors, deterministic under ``seed``.

    Args:
        x: (N, ...) inputs (float, or uint8 images), moved to ``device`` once.
        y: (N,) int64 labels.
        batch_size: samples per batch.
        shuffle: reshuffle each epoch (the permutation depends only on seed and epoch).
        seed: base seed.
        device: where batches live.
        drop_last: drop the final short batch.

    Iterating yields ``(xb float32 (B, ...), yb (B,), idx (B,))``; call ``set_epoch(e)``
    before each epoch so a resumed run sees the same order as an uninterrupted one.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        device: torch.device | str = "cpu",
        drop_last: bool = False,
    ) -> None:
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} rows but y has {len(y)}")
        if batch_size <= 0:
            raise ValueError(f"batch_size must be > 0, got {batch_size}")
        self.device = torch.device(device)
        self.x = x.to(self.device)
        self.y = y.to(self.device)
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.drop_last = drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        n = len(self.x)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _order(self) -> torch.Tensor:
        n = len(self.x)
        if not self.shuffle:
            return torch.arange(n, device=self.device)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(n, generator=g).to(self.device)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        order = self._order()
        for b in range(len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            yield self.x[idx].float(), self.y[idx], idx
