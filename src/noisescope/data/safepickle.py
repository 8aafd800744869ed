"""Restricted unpickling of data files (CIFAR batches, CIFAR-N ``.pt`` label files).

Pickle can run arbitrary code, and numpy's own array and dtype reconstruction trusts its
input: a crafted ``dtype.__setstate__`` (a field offset past the item, object flags on a void
type) or array state makes numpy read or write outside its buffers and crash the process.
:class:`SafeUnpickler` therefore never lets numpy rebuild anything from file content:

* ``find_class`` resolves only these globals, each to a validating stand-in of our own:
  ``numpy[._]core.multiarray._reconstruct`` and ``scalar``, ``numpy[._]core.numeric._frombuffer``,
  ``numpy.ndarray`` (a marker, not callable), ``numpy.dtype`` (plain numeric codes only:
  ``b1``, ``i1``..``i8``, ``u1``..``u8``, ``f2``/``f4``/``f8``, ``c8``/``c16`` with a byte order),
  ``_codecs.encode`` (text encodings only), ``builtins.bytes`` (no arguments: ``b""``),
  ``collections.OrderedDict``, and, for torch files
  only, ``torch._utils._rebuild_tensor_v2`` with the numeric ``torch.*Storage`` types. Any
  other global (``os.system``, ``builtins.eval``, ...) raises :class:`UnsafePickleError` before
  anything is called.
* Array and dtype state is checked (state layout, numeric dtype, shape of non-negative ints,
  data length == number of elements x item size) and only then turned into a fresh native-order
  C-contiguous array with ``numpy.frombuffer``. Object arrays, structured dtypes and
  sub-arrays are refused.
* Persistent ids (torch tensor storages) are refused unless the file is a torch zip archive.

Every failure is one :class:`~noisescope.data.download.DataFileError` line naming the file and
what is wrong (empty, truncated, corrupt, unsafe).

Torch files (:func:`read_torch_file`): the zip format of ``torch.save`` since torch 1.6
(``<prefix>/data.pkl`` plus one raw file per tensor storage in ``<prefix>/data/``) and the
legacy format (a sequence of pickles) without tensors. What they may hold: dicts / lists /
tuples of numbers, strings, numpy arrays of the numeric dtypes above, and CPU torch tensors
of those dtypes (returned as numpy arrays; torch is not imported). CIFAR-10N's
``CIFAR-10_human.pt`` and CIFAR-100N's ``CIFAR-100_human.pt`` (dicts of int64 arrays and int
lists) are of this kind.
"""

from __future__ import annotations

import io
import math
import os
import pickle
import re
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np

from noisescope.data.download import DataFileError


class UnsafePickleError(DataFileError, pickle.UnpicklingError):
    """A pickle asked for something outside the allow-list (a global, an object array, ...)."""


_NUMERIC_CODE = re.compile(r"^[<>|=]?(b1|[iu][1248]|f[248]|c8|c16)$")
_TEXT_ENCODINGS = {"latin1", "latin-1", "iso-8859-1", "iso8859-1", "utf-8", "utf8", "ascii"}
_MULTIARRAY = ("numpy._core.multiarray", "numpy.core.multiarray")
_NUMERIC = ("numpy._core.numeric", "numpy.core.numeric")
_MAX_NDIM = 32
_MAX_ARCHIVE_BYTES = 1 << 34  # 16 GiB: torch archives claiming more are refused before unpacking

#: torch storage type name -> numpy type code (little-endian unless the archive says otherwise)
TORCH_STORAGES = {
    "BoolStorage": "b1", "ByteStorage": "u1", "CharStorage": "i1", "ShortStorage": "i2",
    "IntStorage": "i4", "LongStorage": "i8", "HalfStorage": "f2", "FloatStorage": "f4",
    "DoubleStorage": "f8", "ComplexFloatStorage": "c8", "ComplexDoubleStorage": "c16",
}

#: the first pickle of a legacy (non-zip) torch file
TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def _text(v, what: str) -> str:
    if isinstance(v, bytes):
        try:
            return v.decode("ascii")
        except UnicodeDecodeError:
            pass
    if not isinstance(v, str):
        raise UnsafePickleError(f"{what} must be a string, got {type(v).__name__}")
    return v


def _printable(s: str, limit: int = 80) -> str:
    """``s`` with control characters escaped, cut to ``limit``: error messages stay one line."""
    return str(s).encode("unicode_escape").decode("ascii")[:limit]


def _int(v, what: str, lo: int = 0) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise UnsafePickleError(f"{what} must be an integer >= {lo}, got {v!r:.40}")
    return v


def _shape(v, what: str = "array shape") -> tuple[int, ...]:
    if not isinstance(v, (tuple, list)) or len(v) > _MAX_NDIM:
        raise UnsafePickleError(f"{what} must be a tuple of at most {_MAX_NDIM} integers")
    return tuple(_int(d, what) for d in v)


def _raw_bytes(v, what: str = "array data") -> bytes | bytearray:
    if isinstance(v, (bytes, bytearray)):
        return v
    if isinstance(v, str):  # Python 2 pickles read with encoding="latin1"
        try:
            return v.encode("latin1")
        except UnicodeEncodeError:
            raise UnsafePickleError(f"{what} is text with characters beyond latin-1") from None
    if isinstance(v, (list, tuple)):
        raise UnsafePickleError("refusing a numpy object array (its items would be arbitrary objects)")
    raise UnsafePickleError(f"{what} must be bytes, got {type(v).__name__}")


class _NdarrayMarker:
    """Stands for ``numpy.ndarray`` where a pickle names it (calling it is refused)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "numpy.ndarray"

    def __call__(self, *args, **kwargs):
        raise UnsafePickleError("refusing to call numpy.ndarray (a view of a foreign buffer); arrays come only "
                                "from numpy's pickle reconstruction, validated")


_NDARRAY = _NdarrayMarker()


class _DtypeStub:
    """``numpy.dtype(code, align, copy)`` + its BUILD state, checked before a dtype exists."""

    __slots__ = ("dtype", "built")

    def __init__(self, code, align=False, copy=True) -> None:
        if not isinstance(align, (bool, int)) or not isinstance(copy, (bool, int)):
            raise UnsafePickleError("numpy.dtype flags must be booleans")
        code = _text(code, "dtype code")
        if not _NUMERIC_CODE.match(code):
            kind = "an object dtype" if code.lstrip("<>|=").startswith("O") else f"dtype {code!r}"
            raise UnsafePickleError(
                f"refusing {kind}: only plain numeric dtypes (bool, int, uint, float, complex) are allowed"
            )
        self.dtype = np.dtype(code)
        self.built = False

    def __setstate__(self, state) -> None:
        if self.built:
            raise UnsafePickleError("a dtype's state is set twice")
        if not isinstance(state, tuple) or len(state) not in (8, 9) or state[0] not in (3, 4):
            raise UnsafePickleError("unexpected numpy dtype state (expected version 3 or 4, 8 or 9 fields)")
        order = _text(state[1], "dtype byte order")
        subarray, names, fields, elsize, align, flags = state[2:8]
        if order not in ("<", ">", "|", "="):
            raise UnsafePickleError(f"bad dtype byte order {order!r}")
        if subarray is not None or names is not None or fields is not None:
            raise UnsafePickleError("refusing a structured or sub-array dtype; only plain numeric dtypes are allowed")
        if elsize not in (-1, self.dtype.itemsize) or align not in (-1, self.dtype.alignment) or flags != 0:
            raise UnsafePickleError(
                f"dtype state (size {elsize!r}, alignment {align!r}, flags {flags!r}) does not match {self.dtype}"
            )
        if len(state) == 9 and state[8] is not None:
            raise UnsafePickleError("refusing dtype metadata")
        if order in "<>" and self.dtype.itemsize > 1:
            self.dtype = _plain(self.dtype.newbyteorder(order))
        self.built = True


def _plain(dt: np.dtype) -> np.dtype:
    """``dt`` spelled natively (``int64`` rather than ``<i8``) when its byte order is the machine's."""
    return dt.newbyteorder("=") if dt.isnative else dt


def _dtype(v) -> np.dtype:
    if not isinstance(v, _DtypeStub):
        raise UnsafePickleError(f"expected a numpy dtype, got {type(v).__name__}")
    return v.dtype


def _build_array(raw, dtype: np.dtype, shape: tuple[int, ...], order: str = "C") -> np.ndarray:
    """A fresh native-order C-contiguous array from validated parts (the only way arrays are made)."""
    n = math.prod(shape)
    data = _raw_bytes(raw)
    if len(data) != n * dtype.itemsize:
        raise DataFileError(
            f"array data holds {len(data)} bytes but shape {shape} of {dtype} needs {n * dtype.itemsize}"
        )
    native = dtype.newbyteorder("=")
    if n == 0:
        return np.empty(shape, dtype=native)
    arr = np.frombuffer(data, dtype=dtype, count=n).reshape(shape, order=order)
    return np.array(arr, dtype=native, order="C", copy=True)


class _ArrayStub:
    """``_reconstruct(ndarray, shape, typecode)`` + its BUILD state, turned into an array once checked."""

    __slots__ = ("array",)

    def __init__(self) -> None:
        self.array: np.ndarray | None = None

    def __setstate__(self, state) -> None:
        if self.array is not None:
            raise UnsafePickleError("an array's state is set twice")
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise UnsafePickleError("unexpected numpy array state (expected 4 or 5 fields)")
        if len(state) == 5:
            if state[0] != 1:
                raise UnsafePickleError(f"unexpected numpy array state version {state[0]!r}")
            state = state[1:]
        shape, dtype, fortran, raw = state
        if not isinstance(fortran, (bool, int)):
            raise UnsafePickleError("array order flag must be a boolean")
        self.array = _build_array(raw, _dtype(dtype), _shape(shape), "F" if fortran else "C")


def _reconstruct(subtype, shape, typecode) -> _ArrayStub:
    if subtype is not _NDARRAY:
        raise UnsafePickleError("numpy _reconstruct may only build a plain numpy.ndarray")
    _shape(shape)
    if not isinstance(typecode, (bytes, str)) or len(typecode) > 4:
        raise UnsafePickleError("numpy _reconstruct: bad type code")
    return _ArrayStub()


def _scalar(dtype, data=None):
    dt = _dtype(dtype)
    raw = _raw_bytes(data, "scalar data")
    if len(raw) != dt.itemsize:
        raise DataFileError(f"a {dt} scalar needs {dt.itemsize} bytes, got {len(raw)}")
    return np.frombuffer(raw, dtype=dt, count=1).astype(dt.newbyteorder("="))[0]


def _frombuffer(buf, dtype, shape, order) -> np.ndarray:
    order = _text(order, "array order")
    if order not in ("C", "F", "A", "K"):
        raise UnsafePickleError(f"bad array order {order!r}")
    if isinstance(buf, pickle.PickleBuffer):
        buf = bytes(buf.raw())
    return _build_array(buf, _dtype(dtype), _shape(shape), "F" if order == "F" else "C")


def _codecs_encode(obj, encoding="utf-8", errors="strict") -> bytes:
    if not isinstance(obj, str):
        raise UnsafePickleError("_codecs.encode called on a non-string")
    enc = _text(encoding, "encoding").lower()
    if enc not in _TEXT_ENCODINGS or errors != "strict":
        raise UnsafePickleError(f"_codecs.encode with encoding {enc!r} is not allowed")
    try:
        return obj.encode(enc)
    except UnicodeEncodeError as exc:
        raise UnsafePickleError(f"_codecs.encode: {exc}") from None


def _empty_bytes(*args) -> bytes:
    """``bytes()``: how Python 3 pickles ``b""`` at protocols < 3 (e.g. an empty array's data)."""
    if args:
        raise UnsafePickleError("builtins.bytes may only be called without arguments")
    return b""


class _StorageType:
    """Stands for a ``torch.*Storage`` class in a tensor's persistent id."""

    __slots__ = ("name", "code")

    def __init__(self, name: str) -> None:
        self.name, self.code = name, TORCH_STORAGES[name]


class _Storage:
    """One tensor storage read from a torch archive: a 1-D native-order array."""

    __slots__ = ("array",)

    def __init__(self, array: np.ndarray) -> None:
        self.array = array


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None) -> np.ndarray:
    """A torch tensor as a numpy array, after checking that the view lies inside its storage."""
    if not isinstance(storage, _Storage):
        raise UnsafePickleError("a tensor's storage must come from the archive")
    base = storage.array
    offset = _int(storage_offset, "tensor storage offset")
    size, stride = _shape(size, "tensor size"), _shape(stride, "tensor stride")
    if len(size) != len(stride):
        raise UnsafePickleError(f"tensor size {size} and stride {stride} differ in length")
    n = math.prod(size)
    if n == 0:
        return np.empty(size, dtype=base.dtype)
    last = offset + sum((s - 1) * st for s, st in zip(size, stride, strict=True))
    if last >= len(base) or n > len(base):
        raise DataFileError(
            f"a tensor of size {size} (stride {stride}, offset {offset}) does not fit its storage of "
            f"{len(base)} elements"
        )
    idx = np.full(size, offset, dtype=np.int64)
    for axis, (s, st) in enumerate(zip(size, stride, strict=True)):
        shape = [1] * len(size)
        shape[axis] = s
        idx += (np.arange(s, dtype=np.int64) * st).reshape(shape)
    return base[idx]


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


def safe_load_pickle(path: str | os.PathLike, encoding: str = "bytes"):
    """Unpickle the file ``path`` with :class:`SafeUnpickler` (bytes strings stay bytes).

    Raises:
        FileNotFoundError: no such file.
        DataFileError: unreadable, empty, truncated, corrupt or unsafe (one line naming the file).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise _open_error(path, exc) from None
    if not data:
        raise DataFileError(f"{path}: the file is empty; get it again")
    return safe_loads(data, str(path), encoding)


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
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise _open_error(path, exc) from None
    if not head:
        raise DataFileError(f"{path}: the file is empty; get it again")
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
