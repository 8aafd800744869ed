"""The checked stand-ins that :class:`~noisescope.data.safe_unpickler.SafeUnpickler` resolves a
pickle's few allowed globals to (see :mod:`noisescope.data.safepickle` for the whole scheme).

numpy's own array and dtype reconstruction trusts its input, so none of it runs on file content:
``numpy.dtype`` becomes :class:`_DtypeStub` (plain numeric codes only), ``_reconstruct`` an
:class:`_ArrayStub` whose state is checked (layout, numeric dtype, shape of non-negative ints,
data length == number of elements x item size) before :func:`_build_array` makes a fresh
native-order C-contiguous array with ``numpy.frombuffer``; ``scalar`` and ``_frombuffer`` are
checked the same way. ``_codecs.encode`` (text encodings only) and ``bytes()`` (``b""`` only)
cover how Python 3 pickles bytes at low protocols. Torch tensors in a ``.pt`` archive come
through :func:`_rebuild_tensor_v2`, which checks that the view lies inside its storage and
returns a numpy array. Every refusal is an :class:`UnsafePickleError`, every size mismatch a
:class:`~noisescope.data.download.DataFileError`.
"""

from __future__ import annotations

import math
import pickle
import re

import numpy as np

from noisescope.data.download import DataFileError


class UnsafePickleError(DataFileError, pickle.UnpicklingError):
    """A pickle asked for something outside the allow-list (a global, an object array, ...)."""


_NUMERIC_CODE = re.compile(r"^[<>|=]?(b1|[iu][1248]|f[248]|c8|c16)$")
_TEXT_ENCODINGS = {"latin1", "latin-1", "iso-8859-1", "iso8859-1", "utf-8", "utf8", "ascii"}
_MAX_NDIM = 32

#: torch storage type name -> numpy type code (little-endian unless the archive says otherwise)
TORCH_STORAGES = {
    "BoolStorage": "b1", "ByteStorage": "u1", "CharStorage": "i1", "ShortStorage": "i2",
    "IntStorage": "i4", "LongStorage": "i8", "HalfStorage": "f2", "FloatStorage": "f4",
    "DoubleStorage": "f8", "ComplexFloatStorage": "c8", "ComplexDoubleStorage": "c16",
}


def _text(v, what: str) -> str:
    if isinstance(v, bytes):
        try:
            return v.decode("ascii")
        except UnicodeDecodeError:
            pass
    if not isinstance(v, str):
        raise UnsafePickleError(f"{what} must be a string, got {type(v).__name__}")
    return v


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
