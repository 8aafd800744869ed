"""Device-resident batching: the whole split lives on the device; batches are index gathers.

Images are stored once on the device in their own dtype (uint8 for image datasets: 4x less
memory and bandwidth than float32); with augmentation the store is zero padded and, when
flipping, followed by its mirror image (CIFAR-10's 50,000 training images: 150 MB plain,
480 MB padded and mirrored). A training batch is then one gather that picks the samples
*and* their crop windows and flips, plus a conversion to normalized float32: a handful of
kernels per batch, no per-sample Python, no host-device synchronization.

Every batch carries its sample indices so probes and losses can split clean from noisy
samples. Randomness (order and augmentation) depends only on ``seed`` and the epoch, and
a sample's augmentation depends only on (seed, epoch, sample index), not on the batch size
or its position in the order.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from noisescope.augment import (
    Augment,
    affine_from_stats,
    crop_windows,
    default_padding,
    draw_params,
    gather_augmented,
    gather_crops,
    mirror_store,
    normalize,
    pad_images,
)

_MIX = 0x9E3779B97F4A7C15  # odd 64-bit constant: decorrelates (seed, epoch) streams
_MASK = (1 << 63) - 1


class TensorPipeline:
    """Shuffled, optionally augmented and normalized mini-batches over device tensors.

    Args:
        x: (N, ...) inputs: float features, or images (N, C, H, W) (uint8 recommended).
            Moved to ``device`` once.
        y: (N,) int64 labels.
        batch_size: samples per batch.
        shuffle: reshuffle each epoch (the permutation depends only on seed and epoch).
        seed: base seed.
        device: where the data and the batches live.
        drop_last: drop the final short batch.
        augment: ``Augment(crop_padding, hflip)``; ``True`` for the CIFAR recipe (flip, and
            crop padding 4 at 32x32, scaled as round(H / 8)); None/False for none. Needs
            images (N, C, H, W).
        mean, std: normalization, ``(x' - mean) / std`` with x' = x / 255 for uint8 data
            and x' = x otherwise: one value per channel for images, or one value. E.g. the
            fields of ``noisescope.data.transforms.Normalizer.fit(x_train)``. None: batches
            are ``x.float()`` unscaled (uint8 stays in 0..255).
        channels_last: return image batches in ``torch.channels_last`` memory format
            (faster convolutions on GPUs with tensor cores); ignored for other layouts.

    Iterating yields ``(xb float32 (B, ...), yb (B,), idx (B,))`` with ``yb == y[idx]``;
    call ``set_epoch(e)`` before each epoch so a resumed run sees the same order and the
    same augmentations as an uninterrupted one.
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
        *,
        augment: Augment | bool | None = None,
        mean: Sequence[float] | float | None = None,
        std: Sequence[float] | float | None = None,
        channels_last: bool = False,
    ) -> None:
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} rows but y has {len(y)}")
        if batch_size <= 0:
            raise ValueError(f"batch_size must be > 0, got {batch_size}")
        if (mean is None) != (std is None):
            raise ValueError("give both mean and std for normalization, or neither")
        if augment and x.dim() != 4:
            raise ValueError(
                f"augmentation needs images (N, C, H, W); "
                f"got x of shape {tuple(x.shape)}. Reshape 1-channel images with "
                "x.unsqueeze(1), or drop augmentation for feature vectors"
            )
        if augment is True:
            augment = Augment(crop_padding=default_padding(x.shape[-2]))
        self.augment: Augment | None = augment if augment and augment.active else None
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.drop_last = drop_last
        self.channels_last = channels_last and x.dim() == 4
        self.epoch = 0
        self.y = y.to(self.device)
        # Stored once on the device. With augmentation the store is zero padded for cropping
        # and, for flips, followed by its mirror image; ``x`` is the plain (N, ...) view.
        n = len(x)
        self._store = x.to(self.device)
        self.x = self._store
        self._windows: torch.Tensor | None = None
        self._pad = self.augment.crop_padding if self.augment is not None else 0
        if self.augment is not None:
            p = self._pad
            self._store = pad_images(self._store, p)
            if self.augment.hflip:
                self._store = mirror_store(self._store)
            h, w = self._store.shape[-2:]
            self.x = self._store[:n, :, p : h - p, p : w - p]
            self._windows = crop_windows(self._store, p)
        self._affine: tuple[torch.Tensor, torch.Tensor] | None = None
        if mean is not None and std is not None:
            self._affine = affine_from_stats(
                mean, std, tuple(x.shape[1:]), x.dtype == torch.uint8, self.device
            )

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

    def augment_params(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """This epoch's augmentation of every sample: crop corners oy, ox (N,) in
        [0, 2 pad] and flip (N,) bool, indexed by sample index."""
        if self.augment is None:
            raise ValueError("this pipeline has no augmentation (augment=None)")
        g = torch.Generator(device=self.device)
        g.manual_seed(((self.seed * 1_000_003 + self.epoch) * _MIX + 1) & _MASK)
        return draw_params(len(self.x), self.augment, g, self.device)

    def transform(self, xb: torch.Tensor) -> torch.Tensor:
        """The deterministic part: (B, ...) stored-dtype batch -> float32, normalized,
        channels_last if asked. Use it to prepare evaluation inputs the same way."""
        xb = normalize(xb, *self._affine) if self._affine is not None else xb.float()
        if self.channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        return xb

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        order = self._order()
        params = self.augment_params() if self.augment is not None else None
        for b in range(len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            if params is None or self._windows is None:
                xb = self.x[idx]
            elif self.augment is not None and self.augment.hflip:
                oy, ox, flip = (p[idx] for p in params)
                xb = gather_augmented(self._windows, len(self.x), self._pad, idx, oy, ox, flip)
            else:
                xb = gather_crops(self._windows, idx, params[0][idx], params[1][idx])
            yield self.transform(xb), self.y[idx], idx
