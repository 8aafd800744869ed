"""Reading ``torch.save`` files without torch and without trusting them: :func:`read_torch_file`.

Two formats: the zip format of ``torch.save`` since torch 1.6 (``<prefix>/data.pkl`` plus one
raw file per tensor storage in ``<prefix>/data/``) and the legacy format (a sequence of
pickles) without tensors. What they may hold: dicts / lists / tuples of numbers, strings, numpy
arrays of the plain numeric dtypes, and CPU torch tensors of those dtypes (returned as numpy
arrays; torch is not imported). CIFAR-10N's ``CIFAR-10_human.pt`` and CIFAR-100N's
``CIFAR-100_human.pt`` (dicts of int64 arrays and int lists) are of this kind. The pickles are
read with :class:`~noisescope.data.safe_unpickler.SafeUnpickler` (see
:mod:`noisescope.data.safepickle`).
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from noisescope.data.download import DataFileError
from noisescope.data.safe_numpy import UnsafePickleError, _build_array, _plain, _Storage, _StorageType
from noisescope.data.safe_unpickler import SafeUnpickler, _open_error, _read_nonempty, safe_loads

_MAX_ARCHIVE_BYTES = 1 << 34  # 16 GiB: torch archives claiming more are refused before unpacking

#: the first pickle of a legacy (non-zip) torch file
TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def read_torch_file(path: str | os.PathLike):
    """Read a ``torch.save`` file without torch and without trusting it (see the module docstring).

    Returns:
        The saved object; tensors come back as numpy arrays of the same shape and dtype.

    Raises:
        FileNotFoundError: no such file.
        DataFileError: unreadable, empty, truncated, corrupt, unsafe, or holding something
            outside the allow-list (one line naming the file).
    """
    path = Path(path)
    head = _read_nonempty(path, 4)
    if zipfile.is_zipfile(path):
        return _read_torch_zip(path)
    if head.startswith(b"PK"):
        raise DataFileError(f"{path}: a truncated or corrupt zip archive (torch file); get the file again")
    return _read_torch_legacy(path)


def _read_torch_zip(path: Path):
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            names = [i.filename for i in infos]
            declared = sum(i.file_size for i in infos)
            if declared > _MAX_ARCHIVE_BYTES:
                raise DataFileError(
                    f"{path}: the archive claims {declared} bytes uncompressed; a label file is far smaller, "
                    "refusing to unpack it"
                )
            pkls = [n for n in names if n == "data.pkl" or (n.endswith("/data.pkl") and n.count("/") == 1)]
            if len(pkls) != 1:
                raise DataFileError(
                    f"{path}: a zip archive but not a torch file (expected one <name>/data.pkl, found {len(pkls)})"
                )
            prefix = pkls[0][: -len("data.pkl")]
            order = "<"
            if prefix + "byteorder" in names:
                order = ">" if zf.read(prefix + "byteorder").strip() == b"big" else "<"
            cache: dict[str, _Storage] = {}

            def load_storage(key: str, stype: _StorageType, numel: int) -> _Storage:
                if key not in cache:
                    member = f"{prefix}data/{key}"
                    if member not in names:
                        raise DataFileError(f"{path}: tensor storage {member} is missing from the archive")
                    dt = _plain(np.dtype(order + stype.code))
                    raw = zf.read(member)
                    if len(raw) != numel * dt.itemsize:
                        raise DataFileError(
                            f"{path}: tensor storage {member} holds {len(raw)} bytes, expected "
                            f"{numel} x {dt.itemsize}; the file is truncated or corrupt"
                        )
                    cache[key] = _Storage(_build_array(raw, dt, (numel,)))
                return cache[key]

            data = zf.read(pkls[0])
            return safe_loads(data, f"{path}:{pkls[0]}", "latin1", torch=True, storage_loader=load_storage)
    except DataFileError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
        raise DataFileError(f"{path}: a corrupt zip archive (torch file) ({exc}); get the file again") from None


def _read_torch_legacy(path: Path):
    src = str(path)
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise _open_error(path, exc) from None
    with fh:
        try:
            magic = SafeUnpickler(fh, src, "latin1").load()
        except DataFileError:
            magic = None
        if magic != TORCH_LEGACY_MAGIC:
            raise DataFileError(
                f"{path}: not a torch file (neither a torch zip archive nor the legacy torch format); "
                "if it is a plain pickle of label arrays, name it .pkl"
            )
        version = SafeUnpickler(fh, src, "latin1").load()
        if version != 1001:
            raise DataFileError(f"{path}: unsupported legacy torch file version {version!r}")
        SafeUnpickler(fh, src, "latin1").load()  # system info: byte order and type sizes

        def refuse(*_args):
            raise UnsafePickleError(
                "a legacy-format torch file holding tensors is not supported; re-save it with a current torch "
                "(zip format) or as .npz"
            )

        return SafeUnpickler(fh, src, "latin1", torch=True, storage_loader=refuse).load()
