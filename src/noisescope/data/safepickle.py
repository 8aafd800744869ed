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

Where the parts live: the checked stand-ins in :mod:`noisescope.data.safe_numpy`, the unpickler
in :mod:`noisescope.data.safe_unpickler`, the ``.pt`` reader in :mod:`noisescope.data.torch_file`;
every public name is importable from here.
"""

from __future__ import annotations

import os
from pathlib import Path

from noisescope.data.download import DataFileError
from noisescope.data.safe_numpy import TORCH_STORAGES, UnsafePickleError
from noisescope.data.safe_unpickler import SafeUnpickler, _read_nonempty, safe_loads
from noisescope.data.torch_file import TORCH_LEGACY_MAGIC, read_torch_file

__all__ = ["TORCH_LEGACY_MAGIC", "TORCH_STORAGES", "DataFileError", "SafeUnpickler", "UnsafePickleError",
           "read_torch_file", "safe_load_pickle", "safe_loads"]


def safe_load_pickle(path: str | os.PathLike, encoding: str = "bytes"):
    """Unpickle the file ``path`` with :class:`SafeUnpickler` (bytes strings stay bytes).

    Raises:
        FileNotFoundError: no such file.
        DataFileError: unreadable, empty, truncated, corrupt or unsafe (one line naming the file).
    """
    path = Path(path)
    return safe_loads(_read_nonempty(path), str(path), encoding)
