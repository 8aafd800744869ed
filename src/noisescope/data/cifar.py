"""CIFAR-10 / CIFAR-100 from the standard "python version" batches, unpickled safely.

The official batches are Python-2 pickles of a dict: ``b"data"`` uint8 (N, 3072) (1024 red,
then green, then blue values, each 32x32 row-major), ``b"labels"`` (CIFAR-10) or
``b"fine_labels"`` / ``b"coarse_labels"`` (CIFAR-100), plus ``b"filenames"`` and
``b"batch_label"``. Files: CIFAR-10 ``data_batch_1..5``, ``test_batch``, ``batches.meta``
(folder ``cifar-10-batches-py``); CIFAR-100 ``train``, ``test``, ``meta`` (folder
``cifar-100-python``).

Pickle can run arbitrary code, so batches are read with
:class:`~noisescope.data.safepickle.SafeUnpickler`: only containers, strings, numbers and
plain numeric numpy arrays, each array validated before numpy builds it (no object dtypes, no
crafted dtype state, data length checked against the shape); anything else raises
:class:`UnsafePickleError` before it is called.
Archives (``*.tar.gz``) are extracted with member checks (regular files and folders only, no
absolute paths, no ``..``, no links).

Every unusable file (empty, truncated, corrupt, unsafe, wrong layout) raises one
:class:`~noisescope.data.download.DataFileError` line (a ``ValueError``) naming the file.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
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
from noisescope.data.safepickle import SafeUnpickler, UnsafePickleError, safe_load_pickle

__all__ = ["SafeUnpickler", "UnsafePickleError", "extract_archive", "load_cifar", "read_batch",
           "safe_load_pickle"]

CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]

_LAYOUT = {
    "cifar10": {
        "dir": "cifar-10",
        "sub": "cifar-10-batches-py",
        "train": [f"data_batch_{i}" for i in range(1, 6)],
        "test": ["test_batch"],
        "meta": "batches.meta",
        "archive": "cifar-10-python.tar.gz",
        "classes": 10,
    },
    "cifar100": {
        "dir": "cifar-100",
        "sub": "cifar-100-python",
        "train": ["train"],
        "test": ["test"],
        "meta": "meta",
        "archive": "cifar-100-python.tar.gz",
        "classes": 100,
    },
}


def _key(d: dict, name: str):
    for k in (name.encode(), name):
        if k in d:
            return d[k]
    return None


def read_batch(
    path: str | os.PathLike, label_key: str = "labels", num_classes: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """One batch file -> (uint8 images (N, 3, 32, 32), int64 labels (N,)).

    Raises:
        DataFileError: the file is empty, truncated, corrupt, unsafe, or not a CIFAR batch
            (missing entries, wrong dtype or shape, labels outside [0, num_classes)).
    """
    d = safe_load_pickle(path)
    if not isinstance(d, dict):
        raise DataFileError(f"{path}: not a CIFAR batch (expected a pickled dict, got {type(d).__name__})")
    data, labels = _key(d, "data"), _key(d, label_key)
    if data is None or labels is None:
        keys = sorted(k.decode(errors="replace") if isinstance(k, bytes) else str(k) for k in d)
        raise DataFileError(f"{path}: not a CIFAR batch (no 'data'/'{label_key}' entries; keys: {keys})")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataFileError(f"{path}: 'data' must be a uint8 array (N, 3072), got {got}")
    try:
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError, OverflowError):
        raise DataFileError(f"{path}: '{label_key}' must be a list of integer class indices") from None
    if len(labels) != len(data):
        raise DataFileError(f"{path}: {len(data)} images but {len(labels)} labels")
    if num_classes is not None and len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataFileError(
            f"{path}: labels must lie in [0, {num_classes}), got [{labels.min()}, {labels.max()}]"
        )
    return data.reshape(-1, 3, 32, 32), labels


def _safe_members(tar: tarfile.TarFile, archive: Path) -> list[tarfile.TarInfo]:
    members = []
    for m in tar.getmembers():
        p = Path(m.name)
        if p.is_absolute() or ".." in p.parts or not (m.isfile() or m.isdir()):
            raise DataFileError(f"{archive}: unsafe archive member {m.name!r}; refusing to extract")
        members.append(m)
    return members


def extract_archive(archive: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Safely extract a .tar.gz into ``dest`` (atomically per top-level folder).

    Raises:
        DataFileError: the archive is empty, truncated or corrupt, or holds an unsafe member
            (nothing is left behind in ``dest``).
    """
    archive, dest = Path(archive), Path(dest)
    if archive.is_file() and archive.stat().st_size == 0:
        raise DataFileError(f"{archive}: the archive is empty; delete it and download it again")
    dest.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest, prefix=".extract."))
    try:
        try:
            with tarfile.open(archive, "r:*") as tar:
                members = _safe_members(tar, archive)
                if hasattr(tarfile, "data_filter"):
                    tar.extractall(tmp, members=members, filter="data")
                else:  # pragma: no cover - Python < 3.10.12
                    tar.extractall(tmp, members=members)
        except DataFileError:
            raise
        except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
            if isinstance(exc, FileNotFoundError) and not archive.exists():
                raise
            detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DataFileError(
                f"{archive}: cannot extract the archive ({detail}); it is truncated or corrupt: "
                "delete it and download it again"
            ) from None
        for child in tmp.iterdir():
            target = dest / child.name
            if target.exists():
                shutil.rmtree(target) if target.is_dir() else target.unlink()
            os.replace(child, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _find_folder(layout: dict, dirs: list[Path]) -> Path | None:
    needed = layout["train"] + layout["test"]
    for d in dirs:
        for sub in (d, d / layout["sub"]):
            if all((sub / f).is_file() for f in needed):
                return sub
    return None


def load_cifar(
    name: str = "cifar10",
    root: str | os.PathLike | None = None,
    download: bool = False,
    label_type: str = "fine",
) -> Dataset:
    """Load CIFAR-10 (``name="cifar10"``) or CIFAR-100 (``"cifar100"``).

    Looks for the extracted batches (in a folder or its ``cifar-10-batches-py`` /
    ``cifar-100-python`` subfolder), else for the ``.tar.gz`` archive (extracted to the cache
    folder), else downloads the archive when ``download=True``.

    Args:
        name: ``"cifar10"`` or ``"cifar100"``.
        root: folder searched first.
        download: fetch the archive from the canonical address (MD5-verified).
        label_type: CIFAR-100 only: ``"fine"`` (100 classes) or ``"coarse"`` (20).

    Returns:
        Dataset with uint8 images ``(N, 3, 32, 32)`` (50000 train / 10000 test for the real
        files) and int64 labels.
    """
    if name not in _LAYOUT:
        raise ValueError(f"unknown CIFAR dataset {name!r}; choose from {sorted(_LAYOUT)}")
    if label_type not in ("fine", "coarse"):
        raise ValueError(f"label_type must be 'fine' or 'coarse', got {label_type!r}")
    lay = _LAYOUT[name]
    dirs = search_dirs(lay["dir"], root)
    folder = _find_folder(lay, dirs)
    if folder is None:
        archive = find_file(dirs, (lay["archive"],))
        if archive is None and download:
            archive = fetch(SOURCES[lay["dir"]], cache_dir(lay["dir"]))[0]
        if archive is not None:
            extract_archive(archive, cache_dir(lay["dir"]))
            folder = _find_folder(lay, [cache_dir(lay["dir"])])
            if folder is None:
                raise DataFileError(
                    f"{archive}: the archive does not hold {lay['sub']}/ with "
                    f"{', '.join(lay['train'] + lay['test'])}; it is incomplete or not the CIFAR python "
                    "archive: delete it and download it again"
                )
    if folder is None:
        files = lay["train"] + lay["test"]
        raise missing_error(
            name, [f"{lay['archive']} (or its extracted {', '.join(files)})"], dirs,
            SOURCES[lay["dir"]],
        )
    num_classes = lay["classes"] if label_type == "fine" else 20
    label_key = "labels" if name == "cifar10" else f"{label_type}_labels"
    parts = {s: [read_batch(folder / f, label_key, num_classes) for f in lay[s]] for s in ("train", "test")}
    x = {s: torch.from_numpy(np.concatenate([p[0] for p in v])) for s, v in parts.items()}
    y = {s: torch.from_numpy(np.concatenate([p[1] for p in v])) for s, v in parts.items()}
    classes = _class_names(folder / lay["meta"], name, label_type, num_classes)
    return Dataset(
        x_train=x["train"].contiguous(),
        y_train=y["train"],
        x_test=x["test"].contiguous(),
        y_test=y["test"],
        num_classes=num_classes,
        name=name if label_type == "fine" else f"{name}_coarse",
        classes=classes,
        meta={"source": str(folder), "format": "cifar-python"},
        source=f"{'CIFAR-10' if name == 'cifar10' else 'CIFAR-100'}"
        f"{'' if label_type == 'fine' else ' (coarse labels)'}, {len(y['train'])} train / "
        f"{len(y['test'])} test from {folder}",
    )


def _class_names(meta_path: Path, name: str, label_type: str, c: int) -> list[str] | None:
    if not meta_path.is_file():
        return list(CIFAR10_CLASSES) if name == "cifar10" else None
    meta = safe_load_pickle(meta_path)
    key = "label_names" if name == "cifar10" else f"{label_type}_label_names"
    names = _key(meta, key) if isinstance(meta, dict) else None
    if not isinstance(names, (list, tuple)) or len(names) != c:
        return list(CIFAR10_CLASSES) if name == "cifar10" else None
    return [n.decode(errors="replace") if isinstance(n, bytes) else str(n) for n in names]
