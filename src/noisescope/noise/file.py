"""Observed labels read from a file: real human noise such as CIFAR-10N / CIFAR-100N.

Formats:

* ``.pt`` / ``.pth``: a ``torch.save`` file, read without torch and without trusting it
  (:func:`noisescope.data.safepickle.read_torch_file`: restricted unpickling, numeric numpy
  arrays and CPU tensors only, everything validated before it is built). CIFAR-10N's
  ``CIFAR-10_human.pt`` and CIFAR-100N's ``CIFAR-100_human.pt`` are read as they ship: pass
  ``path="CIFAR-10_human.pt", key="aggre"`` (or ``worse``, ``random1``..``random3``,
  ``clean``); CIFAR-100N: ``key="noisy"`` (or ``noisy_coarse``, ``clean``, ``clean_coarse``).
* ``.pkl`` / ``.pickle``: a pickle of a dict of arrays / lists (or one array), through the same
  restricted unpickler.
* ``.npy``: a 1-D integer array (``allow_pickle=False``);
* ``.npz``: a dict-like archive; ``key`` picks the array;
* ``.csv``: one label per row; with a header row, ``key`` names the column (default: the
  first);
* ``.json``: a list of labels, or an object whose ``key`` holds the list.

Keys: the CIFAR-N short names ``aggre``, ``worse``, ``random1``..``random3``, ``clean``,
``noisy``, ``noisy_coarse``, ``clean_coarse`` stand for ``aggre_label``, ..., ``clean_coarse_label``.

The file covers the source's full training set; ``indices`` (the dataset's ``train_index``,
set by subsetting) selects the rows of the samples actually used. A file that is unreadable,
empty, truncated, corrupt or unsafe raises one
:class:`~noisescope.data.download.DataFileError` line (a ``ValueError``) naming it.
"""

from __future__ import annotations

import csv
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import torch

from noisescope.data.download import DataFileError
from noisescope.data.safepickle import read_torch_file, safe_load_pickle
from noisescope.noise.base import NoiseResult
from noisescope.noise.transition import check_labels

ALIASES = {
    "aggre": "aggre_label",
    "worse": "worse_label",
    "worst": "worse_label",
    "random1": "random_label1",
    "random2": "random_label2",
    "random3": "random_label3",
    "clean": "clean_label",
    "noisy": "noisy_label",  # CIFAR-100N
    "noisy_coarse": "noisy_coarse_label",
    "clean_coarse": "clean_coarse_label",
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


def _from_object(obj, key: str | None, p: Path):
    """The label array inside an unpickled object: a dict of label sets, or the labels themselves."""
    if isinstance(obj, dict):
        if not obj:
            raise DataFileError(f"{p}: holds no label sets (an empty dict)")
        named = {(k.decode(errors="replace") if isinstance(k, bytes) else str(k)): v for k, v in obj.items()}
        return named[_pick(sorted(named), key, p)]
    if isinstance(obj, (list, tuple, np.ndarray)):
        return obj
    raise DataFileError(f"{p}: expected a dict of label arrays or one label array, got {type(obj).__name__}")


def _read(p: Path, ext: str, key: str | None):
    if ext in (".pt", ".pth"):
        return _from_object(read_torch_file(p), key, p)
    if ext in (".pkl", ".pickle"):
        return _from_object(safe_load_pickle(p), key, p)
    try:
        if ext == ".npy":
            return np.load(p, allow_pickle=False)
        if ext == ".npz":
            with np.load(p, allow_pickle=False) as z:
                return z[_pick(list(z.files), key, p)]
        if ext == ".json":
            obj = json.loads(p.read_text())
            if isinstance(obj, dict):
                obj = obj[_pick(list(obj), key, p)]
            return obj
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as exc:
        if isinstance(exc, ValueError) and str(exc).startswith(str(p)):
            raise  # a missing or ambiguous key, already one line naming the file
        raise DataFileError(
            f"{p}: cannot read the labels ({_first_line(exc)}); the file is truncated or corrupt"
        ) from None
    # .csv / .txt
    try:
        with open(p, newline="") as fh:
            rows = [r for r in csv.reader(fh) if r]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataFileError(f"{p}: cannot read the labels ({_first_line(exc)})") from None
    if not rows:
        raise DataFileError(f"{p} is empty")
    header = None
    try:
        float(rows[0][0])
    except ValueError:
        header, rows = rows[0], rows[1:]
    col = 0 if header is None or key is None else header.index(_pick(header, key, p))
    try:
        return [float(r[col]) for r in rows]
    except (ValueError, IndexError):
        bad = next(i for i, r in enumerate(rows) if len(r) <= col or not _is_number(r[col]))
        raise DataFileError(f"{p}: row {bad + 1 + (header is not None)} has no number in column {col + 1}") from None


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _first_line(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:200]


def read_label_file(path: str | os.PathLike, key: str | None = None) -> np.ndarray:
    """Read a 1-D int64 label array from .pt / .pkl / .npy / .npz / .csv / .json (see the module docstring).

    Raises:
        FileNotFoundError: no such file.
        ValueError: unknown or missing ``key``, labels not 1-D integers.
        DataFileError: the file is unreadable, empty, truncated, corrupt or unsafe.
    """
    p = Path(path).expanduser()
    if p.is_dir():
        raise ValueError(f"label file {str(p)!r} is a directory; give noise.options.path the label file itself "
                         "(.npy, .npz, .csv, .json, .pt)")
    if not p.is_file():
        raise FileNotFoundError(f"label file {p} does not exist")
    ext = p.suffix.lower()
    if ext not in (".pt", ".pth", ".pkl", ".pickle", ".npy", ".npz", ".json", ".csv", ".txt"):
        raise ValueError(
            f"{p}: unsupported label file type {ext!r}; use .pt, .pkl, .npy, .npz, .csv or .json"
        )
    try:
        arr = np.asarray(_read(p, ext, key))
    except (ValueError, TypeError) as exc:
        if isinstance(exc, ValueError) and str(exc).startswith(str(p)):
            raise
        raise ValueError(f"{p}: labels must be integers ({_first_line(exc)})") from None
    arr = arr.reshape(-1) if arr.ndim == 2 and 1 in arr.shape else arr
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
