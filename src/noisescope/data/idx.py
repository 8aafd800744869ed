"""MNIST / Fashion-MNIST from IDX files (gzip-compressed or raw).

IDX format: two zero bytes, a type code (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
0x0D float32, 0x0E float64), the number of dimensions, then each dimension as a big-endian
uint32, then the values in C order, big-endian. Compression is detected from the content
(gzip magic), not the file name.

Every unusable file (empty, truncated gzip, bad magic number, header shape that disagrees with
the data, wrong image size, labels out of range, images and labels of different lengths)
raises one :class:`~noisescope.data.download.DataFileError` line (a ``ValueError``) naming
the file.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path

import numpy as np
import torch

from noisescope.data.base import Dataset
from noisescope.data.download import (
    SOURCES,
    DataFileError,
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

TITLES = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST"}


def parse_idx(raw: bytes, source: str = "<idx>") -> np.ndarray:
    """Parse IDX content (raw or gzip bytes) into a native-endian array of its stored shape.

    Args:
        raw: the file's bytes (gzip-compressed or not; detected from the content).
        source: the file's name, used in error messages.

    Raises:
        DataFileError: empty, truncated or corrupt gzip, bad magic number, or a header whose
            shape disagrees with the amount of data (one line naming ``source``).
    """
    if not raw:
        raise DataFileError(f"{source}: the file is empty; download it again")
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataFileError(
                f"{source}: cannot decompress ({exc}); the gzip file is truncated or corrupt, download it again"
            ) from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _TYPES:
        raise DataFileError(f"{source}: not an IDX file (bad magic number {raw[:4].hex() or 'none'})")
    ndim = raw[3]
    start = 4 + 4 * ndim
    if len(raw) < start:
        raise DataFileError(
            f"{source}: truncated IDX header ({len(raw)} bytes, the header needs {start}); download it again"
        )
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    dtype = np.dtype(_TYPES[raw[2]])
    expected = math.prod(shape) * dtype.itemsize
    if len(raw) - start != expected:
        raise DataFileError(
            f"{source}: header says shape {shape} ({expected} bytes of data) but the file holds "
            f"{len(raw) - start}; the file is truncated or corrupt, download it again"
        )
    arr = np.frombuffer(raw, dtype, offset=start).reshape(shape)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (raw or gzip) into a native-endian numpy array of its stored shape.

    Raises:
        FileNotFoundError: no such file.
        DataFileError: unreadable, empty, truncated or corrupt (one line naming the file).
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise DataFileError(f"{path}: cannot read the file ({exc.strerror or type(exc).__name__})") from None
    return parse_idx(raw, str(path))


def check_image_arrays(
    name: str, images: np.ndarray, labels: np.ndarray, num_classes: int, image_file: str, label_file: str,
    image_shape: tuple[int, int] = (28, 28),
) -> None:
    """Check one split's IDX arrays: uint8 images (N, H, W), integer labels (N,) in [0, C).

    Raises:
        DataFileError: one line naming the file at fault.
    """
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != image_shape:
        raise DataFileError(
            f"{image_file}: {name} images must be uint8 (N, {image_shape[0]}, {image_shape[1]}), got "
            f"{images.dtype} {images.shape}"
        )
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DataFileError(f"{label_file}: {name} labels must be 1-D integers, got {labels.dtype} {labels.shape}")
    if len(images) != len(labels):
        raise DataFileError(
            f"{image_file} holds {len(images)} images but {label_file} holds {len(labels)} labels; "
            "one of them is from another dataset or incomplete"
        )
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise DataFileError(
            f"{label_file}: labels must lie in [0, {num_classes}), got [{int(labels.min())}, {int(labels.max())}]"
        )


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
        check_image_arrays(
            name, arrays[f"{split}_images"], arrays[f"{split}_labels"], 10,
            str(paths[f"{split}_images"]), str(paths[f"{split}_labels"]),
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
        source=f"{TITLES[name]}, full ({len(arrays['train_labels'])} train / {len(arrays['test_labels'])} test) "
        f"from {paths['train_images'].parent}",
    )
