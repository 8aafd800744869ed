"""Observed labels read from a file: real human noise such as CIFAR-10N.

Formats (never unpickled):

* ``.npy``: a 1-D integer array (``allow_pickle=False``);
* ``.npz``: a dict-like archive; ``key`` picks the array (CIFAR-10N names: ``aggre``,
  ``worse``, ``random1``..``random3``, ``clean`` are accepted for ``aggre_label``,
  ``worse_label``, ``random_label1``.. ``random_label3``, ``clean_label``; CIFAR-100N's
  ``noisy`` / ``noisy_coarse`` for ``noisy_label`` / ``noisy_coarse_label``);
* ``.csv``: one label per row; with a header row, ``key`` names the column (default: the
  first);
* ``.json``: a list of labels, or an object whose ``key`` holds the list.

CIFAR-10N ships ``CIFAR-10_human.pt``, a pickle: convert it once, in a Python you trust, with
``d = torch.load("CIFAR-10_human.pt", weights_only=False); numpy.savez("cifar10n.npz", **d)``.

The file covers the source's full training set; ``indices`` (the dataset's ``train_index``,
set by subsetting) selects the rows of the samples actually used.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import torch

from noisescope.noise.base import NoiseResult
from noisescope.noise.transition import check_labels

ALIASES = {
    "aggre": "aggre_label",
    "worse": "worse_label",
    "random1": "random_label1",
    "random2": "random_label2",
    "random3": "random_label3",
    "clean": "clean_label",
    "noisy": "noisy_label",  # CIFAR-100N
    "noisy_coarse": "noisy_coarse_label",
}


def _pick(keys: list[str], key: str | None, path: Path) -> str:
    if key is None:
        if len(keys) == 1:
            return keys[0]
        raise ValueError(f"{path} holds several label sets {keys}; choose one with key=...")
    for k in (key, ALIASES.get(key, key)):
        if k in keys:
            return k
    raise ValueError(f"{path}: no labels under key {key!r}; available: {keys}")


def read_label_file(path: str | os.PathLike, key: str | None = None) -> np.ndarray:
    """Read a 1-D label array from .npy / .npz / .csv / .json (see module docstring)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"label file {p} does not exist")
    ext = p.suffix.lower()
    if ext in (".pt", ".pth", ".pkl", ".pickle"):
        raise ValueError(
            f"{p}: pickled label files are not loaded (pickle can run code). Convert it once: "
            f"d = torch.load({p.name!r}, weights_only=False); numpy.savez('labels.npz', **d) "
            "- then pass the .npz with key='aggre' (or worse, random1..3)"
        )
    if ext == ".npy":
        arr = np.load(p, allow_pickle=False)
    elif ext == ".npz":
        with np.load(p, allow_pickle=False) as z:
            arr = z[_pick(list(z.files), key, p)]
    elif ext == ".json":
        obj = json.loads(p.read_text())
        if isinstance(obj, dict):
            obj = obj[_pick(list(obj), key, p)]
        arr = np.asarray(obj)
    elif ext in (".csv", ".txt"):
        with open(p, newline="") as fh:
            rows = [r for r in csv.reader(fh) if r]
        if not rows:
            raise ValueError(f"{p} is empty")
        header = None
        try:
            float(rows[0][0])
        except ValueError:
            header, rows = rows[0], rows[1:]
        col = 0 if header is None or key is None else header.index(_pick(header, key, p))
        arr = np.asarray([float(r[col]) for r in rows])
    else:
        raise ValueError(f"{p}: unsupported label file type {ext!r}; use .npy, .npz, .csv or .json")
    arr = np.asarray(arr).reshape(-1) if np.asarray(arr).ndim == 2 and 1 in arr.shape else arr
    if arr.ndim != 1:
        raise ValueError(f"{p}: labels must be 1-D, got shape {arr.shape}")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise ValueError(f"{p}: labels must be integers")
    elif arr.dtype.kind not in "iu":
        raise ValueError(f"{p}: labels must be integers, got dtype {arr.dtype}")
    return arr.astype(np.int64)


def file_labels(
    y_true: torch.Tensor,
    num_classes: int,
    path: str | os.PathLike,
    key: str | None = None,
    indices=None,
    seed: int = 0,
) -> NoiseResult:
    """Observed labels from ``path`` (rows ``indices`` if given), compared with ``y_true``.

    Args:
        y_true: (N,) true labels in [0, C).
        num_classes: C.
        path: the label file.
        key: which label set (npz/json key or csv column), e.g. ``"aggre"``.
        indices: (N,) rows of the file to use (default: all rows, which must number N).
        seed: unused (file labels are fixed); accepted so every model has the same call.
    """
    y = check_labels(y_true, num_classes)
    arr = torch.from_numpy(read_label_file(path, key))
    if indices is not None:
        idx = torch.as_tensor(indices).long().reshape(-1)
        if len(idx) and (int(idx.min()) < 0 or int(idx.max()) >= len(arr)):
            raise ValueError(f"{path} has {len(arr)} labels but indices go up to {int(idx.max())}")
        arr = arr[idx]
    if len(arr) != len(y):
        raise ValueError(
            f"{path} has {len(arr)} labels but the training set has {len(y)} samples; "
            "pass indices= (the dataset's train_index) when using a subset"
        )
    if len(arr) and (int(arr.min()) < 0 or int(arr.max()) >= num_classes):
        raise ValueError(f"{path}: labels must lie in [0, {num_classes})")
    params = {"path": str(path), "key": key, "subset": indices is not None}
    return NoiseResult.from_labels(y, arr, num_classes, "file", params)
