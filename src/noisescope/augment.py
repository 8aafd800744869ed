"""Batched image augmentation and normalization as pure tensor functions.

All functions take a whole batch (B, C, H, W) and explicit random parameters, so they run
as a few kernels on whatever device holds the data and are exactly reproducible: the
parameters come from :func:`draw_params` with a seeded ``torch.Generator``.

Random crop with zero padding follows the usual CIFAR recipe: pad by ``pad`` pixels on each
side, then cut an H x W window whose top-left corner is ``(oy, ox)`` in ``[0, 2 pad]``;
``oy = ox = pad`` is the identity. Padding is zero in the stored pixel units (black for
uint8 images), applied before normalization, as torchvision's ``RandomCrop(padding=pad)``
followed by ``Normalize`` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Augment:
    """Training-time augmentation: random crop with ``crop_padding`` (0 = off) and a
    horizontal flip with probability 1/2 when ``hflip``."""

    crop_padding: int = 4
    hflip: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.crop_padding, bool) or not isinstance(self.crop_padding, int):
            raise ValueError(f"crop_padding must be an integer, got {self.crop_padding!r}")
        if self.crop_padding < 0:
            raise ValueError(
                f"crop_padding must be >= 0 (0 disables cropping), got {self.crop_padding}"
            )

    @property
    def active(self) -> bool:
        return self.crop_padding > 0 or self.hflip


def default_padding(height: int) -> int:
    """Crop padding for ``augment=True``: CIFAR's 4 pixels at 32, scaled with the image
    height (round(H / 8), at least 1): 4 for 28x28 and 32x32 images, 1 for 8x8 digits."""
    return max(1, round(height / 8))


def pad_images(x: torch.Tensor, pad: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, H + 2 pad, W + 2 pad), zero padded, contiguous."""
    if pad == 0:
        return x.contiguous()
    return F.pad(x, (pad, pad, pad, pad)).contiguous()


def crop_windows(padded: torch.Tensor, pad: int) -> torch.Tensor:
    """A strided view of every crop window, no copy.

    Args:
        padded: (N, C, H + 2 pad, W + 2 pad) contiguous images.
        pad: the padding used.

    Returns:
        (N, 2 pad + 1, 2 pad + 1, C, H, W) view: ``out[n, oy, ox]`` is the H x W window of
        image n whose top-left corner is (oy, ox).
    """
    n, c, hp, wp = padded.shape
    sn, sc, sh, sw = padded.stride()
    k = 2 * pad + 1
    size = (n, k, k, c, hp - 2 * pad, wp - 2 * pad)
    return padded.as_strided(size, (sn, sh, sw, sc, sh, sw), padded.storage_offset())


def gather_crops(
    windows: torch.Tensor, idx: torch.Tensor, oy: torch.Tensor, ox: torch.Tensor
) -> torch.Tensor:
    """Select image ``idx[b]`` cropped at corner ``(oy[b], ox[b])``: one gather, (B, C, H, W)."""
    return windows[idx, oy, ox]


def mirror_store(padded: torch.Tensor) -> torch.Tensor:
    """(N, C, Hp, Wp) -> (2N, C, Hp, Wp): the images, then the same images mirrored along W.

    With this store one gather yields crop and flip together (:func:`gather_augmented`),
    at the price of twice the (uint8) storage.
    """
    return torch.cat([padded, padded.flip(-1)]).contiguous()


def gather_augmented(
    windows: torch.Tensor,
    n: int,
    pad: int,
    idx: torch.Tensor,
    oy: torch.Tensor,
    ox: torch.Tensor,
    flip: torch.Tensor,
) -> torch.Tensor:
    """Crop and mirror in one gather from the windows of a :func:`mirror_store`.

    Mirroring the crop at corner (oy, ox) equals cropping the mirrored image at corner
    (oy, 2 pad - ox), so flipped samples read from the second half of the store.

    Args:
        windows: :func:`crop_windows` of a mirror store of ``n`` images.
        n: number of images (half the store).
        pad: crop padding.
        idx: (B,) sample indices; oy, ox: (B,) crop corners; flip: (B,) bool.

    Returns:
        (B, C, H, W) equal to ``hflip(random_crop(x[idx], pad, oy, ox), flip)``.
    """
    rows = idx + n * flip.long()
    return windows[rows, oy, torch.where(flip, 2 * pad - ox, ox)]


def random_crop(x: torch.Tensor, pad: int, oy: torch.Tensor, ox: torch.Tensor) -> torch.Tensor:
    """Zero-pad (B, C, H, W) images by ``pad`` and crop each at its corner (oy[b], ox[b]).

    ``oy``, ``ox``: (B,) int64 in ``[0, 2 pad]``. Returns (B, C, H, W), same dtype.
    """
    if pad == 0:
        return x
    windows = crop_windows(pad_images(x, pad), pad)
    return gather_crops(windows, torch.arange(len(x), device=x.device), oy, ox)


def hflip(x: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Mirror the images (B, C, H, W) whose ``flip[b]`` is True along W (no host sync)."""
    return torch.where(flip.view(-1, *([1] * (x.dim() - 1))), x.flip(-1), x)


def draw_params(
    n: int, aug: Augment, generator: torch.Generator, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random parameters for ``n`` samples: crop corners oy, ox (n,) int64 in [0, 2 pad]
    (all ``pad`` when cropping is off) and flip (n,) bool (all False when flipping is off)."""
    p = aug.crop_padding
    if p > 0:
        corners = torch.randint(0, 2 * p + 1, (2, n), generator=generator, device=device)
        oy, ox = corners[0], corners[1]
    else:
        oy = ox = torch.zeros(n, dtype=torch.long, device=device)
    if aug.hflip:
        flip = torch.rand(n, generator=generator, device=device) < 0.5
    else:
        flip = torch.zeros(n, dtype=torch.bool, device=device)
    return oy, ox, flip


def affine_from_stats(
    mean: Sequence[float] | float,
    std: Sequence[float] | float,
    sample_shape: tuple[int, ...],
    uint8: bool,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) with ``x * scale + shift == (x' - mean) / std``, where x' = x / 255 for
    uint8 data and x' = x otherwise (the convention of
    :class:`noisescope.data.transforms.Normalizer`, whose fitted ``mean``/``std`` fit here).

    For images (``sample_shape`` = (C, H, W)) mean and std hold 1 or C values and the result
    is (1, C, 1, 1) float32; for any other layout they hold one value (a scalar result).
    """
    m = torch.as_tensor(mean, dtype=torch.float64).flatten()
    s = torch.as_tensor(std, dtype=torch.float64).flatten()
    channels = sample_shape[0] if len(sample_shape) == 3 else 1
    if m.numel() == 1:
        m = m.expand(channels)
    if s.numel() == 1:
        s = s.expand(channels)
    if m.numel() != channels or s.numel() != channels:
        raise ValueError(
            f"mean and std need 1 or {channels} values (one per channel of inputs shaped "
            f"{tuple(sample_shape)}), got {m.numel()} and {s.numel()}"
        )
    if bool((s <= 0).any()):
        raise ValueError(f"std must be > 0 in every channel, got {s.tolist()}")
    unit = 1.0 / 255.0 if uint8 else 1.0
    shape = (1, channels, 1, 1) if len(sample_shape) == 3 else ()
    scale = (unit / s).to(torch.float32).reshape(shape).to(device)
    shift = (-m / s).to(torch.float32).reshape(shape).to(device)
    return scale, shift


def normalize(x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """float32 ``x * scale + shift`` for a batch of any dtype, as a new tensor (``x`` is
    untouched; in-place multiply and add on the converted copy run faster on a CPU than one
    ``addcmul``)."""
    return x.to(torch.float32, copy=True).mul_(scale).add_(shift)
