"""MNIST / Fashion-MNIST from IDX files (gzip-compressed or raw).

IDX format: two zero bytes, a type code (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
0x0D float32, 0x0E float64), the number of dimensions, then each dimension as a big-endian
uint32, then the values in C order, big-endian. Compression is detected from the content
(gzip magic), not the file name.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import torch

from noisescope.data.base import Dataset
from noisescope.data.download import (
    SOURCES,
    cache_dir,
    fetch,
    find_file,
    missing_error,
    search_dirs,
)

_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

CLASSES = {
    "mnist": [str(i) for i in range(10)],
    "fashion_mnist": [
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    ],
}

_DIRS = {"mnist": "mnist", "fashion_mnist": "fashion-mnist"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (raw or gzip) into a native-endian numpy array of its stored shape."""
    path = Path(path)
    with open(path, "rb") as fh:
        head = fh.read(2)
    opener = gzip.open if head == b"\x1f\x8b" else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:
        raise ValueError(
            f"{path}: cannot read ({exc}); the file is corrupt, download it again"
        ) from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _TYPES:
        raise ValueError(f"{path}: not an IDX file (bad magic number {raw[:4].hex()})")
    ndim = raw[3]
    start = 4 + 4 * ndim
    if len(raw) < start:
        raise ValueError(f"{path}: truncated IDX header")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    dtype = np.dtype(_TYPES[raw[2]])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - start != expected:
        raise ValueError(
            f"{path}: header says shape {shape} ({expected} bytes of data) but the file holds "
            f"{len(raw) - start}; the file is truncated or corrupt, download it again"
        )
    arr = np.frombuffer(raw, dtype, offset=start).reshape(shape)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def _locate(name: str, root, download: bool) -> dict[str, Path]:
    dirname = _DIRS[name]
    dirs = search_dirs(dirname, root)

    def find_all() -> dict[str, Path | None]:
        return {k: find_file(dirs, (f + ".gz", f)) for k, f in FILES.items()}

    found = find_all()
    if any(p is None for p in found.values()) and download:
        fetch(SOURCES[dirname], cache_dir(dirname))
        found = find_all()
    missing = [FILES[k] + ".gz" for k, p in found.items() if p is None]
    if missing:
        raise missing_error(name, missing, dirs, SOURCES[dirname])
    return found  # type: ignore[return-value]


def load_idx_dataset(
    name: str = "fashion_mnist", root: str | os.PathLike | None = None, download: bool = False
) -> Dataset:
    """Load MNIST (``name="mnist"``) or Fashion-MNIST (``"fashion_mnist"``).

    Args:
        name: ``"mnist"`` or ``"fashion_mnist"``.
        root: folder holding the four IDX files (searched first).
        download: fetch missing files from the canonical address (checksum-verified).

    Returns:
        Dataset with uint8 images ``(N, 1, 28, 28)`` (60000 train, 10000 test for the real
        files) and int64 labels in [0, 10).
    """
    if name not in _DIRS:
        raise ValueError(f"unknown IDX dataset {name!r}; choose from {sorted(_DIRS)}")
    paths = _locate(name, root, download)
    arrays = {k: read_idx(p) for k, p in paths.items()}
    for split in ("train", "test"):
        x, y = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise ValueError(
                f"{name}: {split} images {x.shape} and labels {y.shape} do not match "
                f"(expected (N, H, W) and (N,)); files: {paths[f'{split}_images']}, "
                f"{paths[f'{split}_labels']}"
            )
    def images(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a.astype(np.uint8, copy=False)).unsqueeze(1).contiguous()

    def labels(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a.astype(np.int64))

    return Dataset(
        x_train=images(arrays["train_images"]),
        y_train=labels(arrays["train_labels"]),
        x_test=images(arrays["test_images"]),
        y_test=labels(arrays["test_labels"]),
        num_classes=10,
        name=name,
        classes=list(CLASSES[name]),
        meta={
            "source": str(paths["train_images"].parent),
            "format": "idx",
            "licence": "MIT (Zalando SE)" if name == "fashion_mnist" else "CC BY-SA 3.0",
        },
    )
