"""User-supplied arrays (numpy, torch, or an ``.npz`` file) as a validated Dataset."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import torch

from noisescope.data.base import Dataset
from noisescope.data.download import DataFileError
from noisescope.data.splits import stratified_split


def _as_tensor(a, what: str) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        t = a.detach().cpu()
    else:
        try:
            arr = np.asarray(a)
        except Exception as exc:  # noqa: BLE001 - report any conversion failure
            raise ValueError(f"{what}: cannot convert to an array ({exc})") from exc
        if arr.dtype == object:
            raise ValueError(f"{what}: ragged or object array; pass a numeric array")
        t = torch.from_numpy(np.ascontiguousarray(arr))
    if t.dtype == torch.bool or t.is_complex():
        raise ValueError(f"{what}: dtype {t.dtype} is not supported; pass real numbers")
    return t


def _inputs(a, what: str) -> torch.Tensor:
    x = _as_tensor(a, what)
    if x.dim() < 2:
        raise ValueError(
            f"{what} must have shape (N, ...) with at least 2 dims, got {tuple(x.shape)}"
        )
    if x.dtype != torch.uint8:
        x = x.float()
        if not torch.isfinite(x).all():
            raise ValueError(f"{what} contains NaN or infinite values")
    return x.contiguous()


def _labels(a, what: str) -> torch.Tensor:
    y = _as_tensor(a, what)
    if y.dim() == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.dim() != 1:
        raise ValueError(f"{what} must be 1-D integer class indices, got shape {tuple(y.shape)}")
    if y.is_floating_point():
        if not torch.isfinite(y).all() or not torch.equal(y, y.round()):
            raise ValueError(f"{what} must be integer class indices, got non-integer values")
    y = y.long()
    if len(y) and int(y.min()) < 0:
        raise ValueError(f"{what} must be >= 0 (class indices 0..C-1), got {int(y.min())}")
    return y


def from_arrays(
    x_train=None,
    y_train=None,
    x_test=None,
    y_test=None,
    *,
    path: str | os.PathLike | None = None,
    num_classes: int | None = None,
    classes: list[str] | None = None,
    name: str = "arrays",
    test_fraction: float = 0.2,
    seed: int = 0,
) -> Dataset:
    """Build a Dataset from arrays.

    Args:
        x_train: (N, ...) inputs; uint8 kept as is (images), everything else -> float32.
        y_train: (N,) integer class indices in [0, C).
        x_test, y_test: optional test split; when absent a seeded stratified ``test_fraction``
            of the training arrays is held out.
        path: instead of arrays, an ``.npz`` with keys ``x_train``, ``y_train`` and optionally
            ``x_test``, ``y_test`` (read with ``allow_pickle=False``).
        num_classes: C (default: largest label + 1).
        classes: optional class names (length C).
        name: dataset name.
        test_fraction: used only without a test split.
        seed: seed of that split.
    """
    source = "arrays"
    if path is not None:
        if x_train is not None or y_train is not None:
            raise ValueError("pass either arrays or path=..., not both")
        p = Path(path).expanduser()
        if not p.is_file():
            raise FileNotFoundError(f"arrays: no file {p}")
        try:
            with np.load(p, allow_pickle=False) as z:
                if not hasattr(z, "files"):
                    raise DataFileError(f"{p}: a single .npy array; expected an .npz with x_train, y_train")
                files = list(z.files)
                missing = [k for k in ("x_train", "y_train") if k not in files]
                if missing:
                    raise DataFileError(f"{p}: missing key(s) {missing}; found {files}")
                got = {k: z[k] for k in ("x_train", "y_train", "x_test", "y_test") if k in files}
        except DataFileError:
            raise
        except (OSError, EOFError, ValueError, zipfile.BadZipFile) as exc:
            detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DataFileError(f"{p}: cannot read the .npz ({detail}); the file is truncated or corrupt") from None
        x_train, y_train = got["x_train"], got["y_train"]
        x_test, y_test = got.get("x_test"), got.get("y_test")
        source = str(p)
    if x_train is None or y_train is None:
        raise ValueError("arrays: x_train and y_train are required (or path=file.npz)")
    if (x_test is None) != (y_test is None):
        raise ValueError("arrays: give both x_test and y_test, or neither")
    xtr, ytr = _inputs(x_train, "x_train"), _labels(y_train, "y_train")
    if len(xtr) != len(ytr):
        raise ValueError(f"x_train has {len(xtr)} rows but y_train has {len(ytr)}")
    if x_test is None:
        c0 = int(ytr.max()) + 1 if len(ytr) else 0
        keep, held = stratified_split(ytr, test_fraction, seed=seed, num_classes=c0)
        xte, yte = xtr[held], ytr[held]
        xtr, ytr = xtr[keep], ytr[keep]
    else:
        xte, yte = _inputs(x_test, "x_test"), _labels(y_test, "y_test")
        if len(xte) != len(yte):
            raise ValueError(f"x_test has {len(xte)} rows but y_test has {len(yte)}")
        if xte.shape[1:] != xtr.shape[1:]:
            raise ValueError(
                f"x_test samples have shape {tuple(xte.shape[1:])} but x_train samples have "
                f"{tuple(xtr.shape[1:])}"
            )
        if xte.dtype != xtr.dtype:
            xtr, xte = xtr.float(), xte.float()
    top = max(int(ytr.max()) if len(ytr) else -1, int(yte.max()) if len(yte) else -1) + 1
    c = int(num_classes) if num_classes is not None else top
    if c < top:
        raise ValueError(f"num_classes={c} but labels go up to {top - 1}")
    if classes is not None and len(classes) != c:
        raise ValueError(f"classes has {len(classes)} names but there are {c} classes")
    return Dataset(
        x_train=xtr, y_train=ytr, x_test=xte, y_test=yte, num_classes=c, name=name,
        classes=list(classes) if classes is not None else None, meta={"source": source},
        source=f"user arrays{'' if source == 'arrays' else ' from ' + source}: {len(ytr)} train / {len(yte)} test",
    )
