"""The restricted unpickler itself: :class:`SafeUnpickler` and :func:`safe_loads`.

``find_class`` resolves only an allow-list of globals, each to a validating stand-in of
:mod:`noisescope.data.safe_numpy` (any other global raises
:class:`~noisescope.data.safe_numpy.UnsafePickleError` before anything is called); persistent
ids (torch tensor storages) go to a ``storage_loader`` or are refused; after loading, every
stand-in is replaced by the array or dtype it validated. See :mod:`noisescope.data.safepickle`
for the whole scheme.
"""

from __future__ import annotations

import io
import pickle
import re
from collections import OrderedDict
from pathlib import Path

import numpy as np

from noisescope.data.download import DataFileError
from noisescope.data.safe_numpy import (
    _NDARRAY,
    TORCH_STORAGES,
    UnsafePickleError,
    _ArrayStub,
    _codecs_encode,
    _DtypeStub,
    _empty_bytes,
    _frombuffer,
    _int,
    _NdarrayMarker,
    _rebuild_tensor_v2,
    _reconstruct,
    _scalar,
    _Storage,
    _StorageType,
    _text,
)

_MULTIARRAY = ("numpy._core.multiarray", "numpy.core.multiarray")
_NUMERIC = ("numpy._core.numeric", "numpy.core.numeric")


def _printable(s: str, limit: int = 80) -> str:
    """``s`` with control characters escaped, cut to ``limit``: error messages stay one line."""
    return str(s).encode("unicode_escape").decode("ascii")[:limit]


def _allowed(module: str, name: str, torch_ok: bool):
    if module in _MULTIARRAY and name == "_reconstruct":
        return _reconstruct
    if module in _MULTIARRAY and name == "scalar":
        return _scalar
    if module in _NUMERIC and name == "_frombuffer":  # numpy arrays at pickle protocol 5
        return _frombuffer
    if (module, name) == ("numpy", "ndarray"):
        return _NDARRAY
    if (module, name) == ("numpy", "dtype"):
        return _DtypeStub
    if (module, name) == ("_codecs", "encode"):
        return _codecs_encode
    if (module, name) == ("collections", "OrderedDict"):
        return OrderedDict
    if module in ("builtins", "__builtin__") and name == "bytes":
        return _empty_bytes
    if torch_ok and (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
        return _rebuild_tensor_v2
    if torch_ok and module == "torch" and name in TORCH_STORAGES:
        return _StorageType(name)
    return None


_ATOMS = (str, bytes, int, float, complex, bool, type(None), np.ndarray, np.generic, bytearray)
_MARKERS = (_NdarrayMarker, _StorageType, _Storage)


def _resolve(obj):
    """Replace the array / dtype stand-ins by the arrays and dtypes they validated, everywhere."""
    memo: dict[int, object] = {}

    def walk(o):
        if isinstance(o, _ATOMS):
            return o
        if isinstance(o, _ArrayStub):
            if o.array is None:
                raise UnsafePickleError("a numpy array without its data (no state)")
            return o.array
        if isinstance(o, _DtypeStub):
            return o.dtype
        if isinstance(o, _MARKERS):
            raise UnsafePickleError(f"a bare reference to {o!r} is not data")
        key = id(o)
        if key in memo:
            return memo[key]
        if isinstance(o, list):
            memo[key] = o
            o[:] = [walk(v) for v in o]
            return o
        if isinstance(o, dict):
            memo[key] = o
            for k in list(o):
                if isinstance(k, (_ArrayStub, _DtypeStub, *_MARKERS)):
                    raise UnsafePickleError("refusing arrays or types as dict keys")
                o[k] = walk(o[k])
            return o
        if isinstance(o, tuple):
            out = tuple(walk(v) for v in o)
            memo[key] = out
            return out
        if isinstance(o, (set, frozenset)):
            if any(isinstance(v, (_ArrayStub, _DtypeStub, *_MARKERS)) for v in o):
                raise UnsafePickleError("refusing arrays or types inside a set")
            return o
        raise UnsafePickleError(f"unexpected object of type {type(o).__name__}")

    return walk(obj)


class SafeUnpickler(pickle.Unpickler):
    """Unpickler restricted to containers, strings, numbers and validated numeric numpy arrays.

    Args:
        file: binary file object positioned at a pickle.
        source: name used in error messages (the file's path).
        encoding: how Python 2 ``str`` objects are decoded (``"bytes"`` keeps them bytes, as the
            CIFAR batches need).
        torch: also allow the globals of torch tensors (``_rebuild_tensor_v2``, ``torch.*Storage``).
        storage_loader: for torch archives: ``(key, storage_type, numel) -> _Storage``; without
            it persistent ids are refused.

    ``load()`` returns the object with every array a fresh numpy array, and raises
    :class:`~noisescope.data.download.DataFileError` (or its subclass
    :class:`UnsafePickleError`) with one line naming ``source`` on any problem.
    """

    def __init__(self, file, source: str = "<pickle>", encoding: str = "bytes", *, torch: bool = False,
                 storage_loader=None) -> None:
        super().__init__(file, encoding=encoding)
        self.source = source
        self.torch = torch
        self.storage_loader = storage_loader

    def find_class(self, module: str, name: str):
        obj = _allowed(module, name, self.torch)
        if obj is None:
            raise UnsafePickleError(
                f"{self.source}: refusing to unpickle: it asks for {_printable(module)}.{_printable(name)}, "
                "which a data file never "
                "contains (only dicts, lists, bytes, strings, numbers and numeric numpy arrays are allowed). "
                "The file is corrupt or not what it claims to be; do not load it with plain pickle."
            )
        return obj

    def persistent_load(self, pid):
        if self.storage_loader is None:
            raise UnsafePickleError(f"{self.source}: persistent ids (torch tensors) are not allowed here")
        if not isinstance(pid, tuple) or len(pid) not in (5, 6) or _text(pid[0], "persistent id") != "storage":
            raise UnsafePickleError(f"{self.source}: unexpected persistent id {pid!r:.80}")
        stype, key, numel = pid[1], pid[2], pid[4]  # ("storage", type, key, location, numel[, view])
        if not isinstance(stype, _StorageType):
            raise UnsafePickleError(f"{self.source}: a tensor storage of an unsupported type")
        key = _text(key, "storage key")
        if not re.fullmatch(r"\w{1,64}", key):
            raise UnsafePickleError(f"{self.source}: bad storage key {key!r:.80}")
        return self.storage_loader(key, stype, _int(numel, "storage size"))

    def load(self):
        try:
            obj = super().load()
            return _resolve(obj)
        except DataFileError as exc:
            msg = str(exc)
            if msg.startswith(self.source):
                raise
            raise type(exc)(f"{self.source}: {msg}") from None
        except RecursionError:
            raise DataFileError(f"{self.source}: the pickle nests too deeply; the file is corrupt") from None
        except EOFError:
            raise DataFileError(
                f"{self.source}: the pickle ends early (the file is empty or truncated); get the file again"
            ) from None
        except MemoryError:
            raise DataFileError(f"{self.source}: the pickle asks for more memory than exists; it is corrupt") from None
        except Exception as exc:  # noqa: BLE001 - any other failure is a corrupt file
            detail = str(exc).splitlines()[0] if str(exc) else ""
            what = "truncated" if "truncated" in detail else "corrupt"
            raise DataFileError(
                f"{self.source}: not a valid data pickle, the file is {what} "
                f"({type(exc).__name__}: {detail[:200]}); get the file again"
            ) from None


def safe_loads(data: bytes, source: str = "<pickle>", encoding: str = "bytes", *, torch: bool = False,
               storage_loader=None):
    """Unpickle ``data`` with :class:`SafeUnpickler` (see there)."""
    return SafeUnpickler(io.BytesIO(data), source, encoding, torch=torch, storage_loader=storage_loader).load()


def _open_error(path: Path, exc: OSError) -> DataFileError:
    reason = exc.strerror or type(exc).__name__
    return DataFileError(f"{path}: cannot read the file ({reason})")


def _read_nonempty(path: Path, size: int = -1) -> bytes:
    """The first ``size`` bytes of ``path`` (all of it with -1). Raises FileNotFoundError (no such
    file) or DataFileError (unreadable, or empty)."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(size)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise _open_error(path, exc) from None
    if not data:
        raise DataFileError(f"{path}: the file is empty; get it again")
    return data
