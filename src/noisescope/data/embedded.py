"""Fashion-MNIST: the full dataset where it is installed, else the subset shipped inside noisescope.

``load_dataset("fashion_mnist", source=...)`` (the ``source`` option; config:
``data.options = { source = "embedded" }``):

* ``"auto"`` (default): the full dataset (70000 images) when its IDX files are found (see
  :mod:`noisescope.data.download` for where they are searched), else the embedded subset. The
  fallback happens only when the files are missing and neither ``root`` nor ``download`` was
  given (asking for a folder or a download means asking for the full data, so a miss is then
  an error). Files that are found but corrupt are always an error, never a silent fallback.
* ``"full"``: the full dataset or :class:`~noisescope.data.download.DataNotFoundError`.
* ``"embedded"``: the embedded subset, whatever is installed.

``Dataset.source`` says which one was used, in one line (and, after a fallback, why and how to
get the full data); the command line prints it.

The embedded subset (``noisescope/assets/fashion_mnist_embedded-*``, gzip IDX files, about
6.6 MB) holds 10000 training images (1000 per class) and 5000 test images (500 per class),
chosen by ``scripts/make_embedded_fmnist.py`` as exactly the rows that
``load_dataset("fashion_mnist", subset=10000, test_subset=5000, seed=0)`` takes from the full
dataset. So the demo (``subset = 10000``, ``seed = 0``) trains on the very same samples,
in the same order, on a fresh machine as with the full dataset; only its test set is half as
large. ``Dataset.train_index`` holds the rows in the full training set (so label files line
up), and ``assets/fashion_mnist_embedded.json`` records the rows of both splits, the source
files' checksums and every asset's SHA-256 (checked at each load). A ``subset`` larger than
10000 is an error with the embedded data; any ``subset`` / ``test_subset`` seed draws from
these rows only. Fashion-MNIST is MIT-licensed, Copyright (c) 2017 Zalando SE; the licence
text ships beside the data (``assets/FASHION_MNIST_LICENSE.txt``).
"""

from __future__ import annotations

import hashlib
import json
import os
from importlib import resources
from typing import TYPE_CHECKING

import numpy as np
import torch

from noisescope.data.base import Dataset
from noisescope.data.download import DataFileError, DataNotFoundError, search_dirs
from noisescope.data.idx import CLASSES, FILES, check_image_arrays, load_idx_dataset, parse_idx

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

#: file-name prefix of the embedded subset's files in ``noisescope/assets``
PREFIX = "fashion_mnist_embedded"
MANIFEST = f"{PREFIX}.json"
LICENSE = "FASHION_MNIST_LICENSE.txt"
SOURCES_ALLOWED = ("auto", "full", "embedded")
INSTALL_HINT = (
    "for all 70000 images: apt-get install dataset-fashion-mnist, or put the four IDX files in "
    "~/.cache/noisescope/fashion-mnist, or set data.options.download = true"
)


def asset(name: str) -> Traversable:
    """The packaged file ``noisescope/assets/<name>`` (works from a wheel, a zip or a checkout)."""
    return resources.files("noisescope").joinpath("assets").joinpath(name)


def asset_name(key: str) -> str:
    """Asset file name of one of :data:`noisescope.data.idx.FILES`' keys, e.g. ``train_images``."""
    return f"{PREFIX}-{FILES[key]}.gz"


def load_manifest() -> dict:
    """The embedded subset's record (selection, source checksums, asset checksums, rows).

    Raises:
        DataFileError: the manifest is missing or unreadable (a broken installation).
    """
    ref = asset(MANIFEST)
    try:
        return json.loads(ref.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataFileError(
            f"{ref}: the embedded Fashion-MNIST record cannot be read ({exc}); reinstall noisescope"
        ) from None


def load_embedded_fashion_mnist(verify: bool = True) -> Dataset:
    """The embedded class-balanced Fashion-MNIST subset (see the module docstring).

    Args:
        verify: check every asset's SHA-256 against the manifest (about 20 ms).

    Returns:
        Dataset with uint8 images ``(10000, 1, 28, 28)`` train and ``(5000, 1, 28, 28)`` test,
        int64 labels in [0, 10), ``train_index`` = (10000,) rows in the full training set.

    Raises:
        DataFileError: an asset is missing, altered or corrupt (a broken installation).
    """
    manifest = load_manifest()
    arrays: dict[str, np.ndarray] = {}
    for key in FILES:
        name = asset_name(key)
        ref = asset(name)
        try:
            raw = ref.read_bytes()
        except OSError as exc:
            raise DataFileError(
                f"{ref}: embedded Fashion-MNIST file unreadable ({exc}); reinstall noisescope"
            ) from None
        if verify:
            want = manifest["files"][name]["sha256"]
            got = hashlib.sha256(raw).hexdigest()
            if got != want:
                raise DataFileError(
                    f"{ref}: SHA-256 {got[:16]}... differs from the recorded {want[:16]}...; the embedded "
                    "Fashion-MNIST file is altered or corrupt, reinstall noisescope"
                )
        arrays[key] = parse_idx(raw, str(ref))
    for split in ("train", "test"):
        check_image_arrays("fashion_mnist", arrays[f"{split}_images"], arrays[f"{split}_labels"], 10,
                           asset_name(f"{split}_images"), asset_name(f"{split}_labels"))
    train_index = torch.tensor(manifest["train_index"], dtype=torch.int64)
    n, m = len(arrays["train_labels"]), len(arrays["test_labels"])
    if len(train_index) != n:
        raise DataFileError(f"{asset(MANIFEST)}: records {len(train_index)} training rows but the data has {n}")
    full = manifest["of"]
    return Dataset(
        x_train=torch.from_numpy(arrays["train_images"]).unsqueeze(1).contiguous(),
        y_train=torch.from_numpy(arrays["train_labels"].astype(np.int64)),
        x_test=torch.from_numpy(arrays["test_images"]).unsqueeze(1).contiguous(),
        y_test=torch.from_numpy(arrays["test_labels"].astype(np.int64)),
        num_classes=10,
        name="fashion_mnist",
        classes=list(CLASSES["fashion_mnist"]),
        meta={
            "source": "noisescope/assets (embedded subset)",
            "format": "idx",
            "licence": "MIT (Zalando SE)",
            "embedded": {"train": n, "test": m, "of_train": full["train"], "of_test": full["test"],
                         "selection": manifest["selection"]["recipe"]},
        },
        train_index=train_index,
        source=(
            f"Fashion-MNIST, embedded class-balanced subset shipped with noisescope ({n} train / {m} test "
            f"of {full['train']} / {full['test']})"
        ),
    )


def load_fashion_mnist(
    root: str | os.PathLike | None = None, download: bool = False, source: str = "auto"
) -> Dataset:
    """Fashion-MNIST: the full dataset if found, else the embedded subset (``source``, see module).

    Args:
        root: folder holding the four IDX files (searched first).
        download: fetch missing files from the canonical address (checksum-verified).
        source: ``"auto"``, ``"full"`` or ``"embedded"``.

    Returns:
        Dataset with uint8 images ``(N, 1, 28, 28)``; ``source`` says which data it holds.
    """
    if source not in SOURCES_ALLOWED:
        raise ValueError(f"fashion_mnist: source must be one of {', '.join(SOURCES_ALLOWED)}, got {source!r}")
    if source == "embedded":
        if root is not None or download:
            raise ValueError(
                "fashion_mnist: source='embedded' reads the subset shipped with noisescope; drop root/download, "
                "or use source='full'"
            )
        return load_embedded_fashion_mnist()
    try:
        return load_idx_dataset("fashion_mnist", root, download)
    except DataNotFoundError:
        if source == "full" or root is not None or download:
            raise
    ds = load_embedded_fashion_mnist()
    where = ", ".join(str(d) for d in search_dirs("fashion-mnist"))
    ds.source += f"; the full dataset was not found (searched {where}); {INSTALL_HINT}"
    ds.meta["fallback"] = f"full dataset not found in {where}"
    return ds
