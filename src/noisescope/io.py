"""Files: atomic writes and JSON. Every file noisescope writes goes through :func:`atomic_write`;
every JSON value goes through :func:`jsonable`.

A file or disk problem the user has to fix is a :class:`UserError` (a ValueError) whose message
is one line naming the file and the fix: :class:`CorruptFileError` for a file that can't be
read as what it should be, :class:`WriteError` for a write the disk refused (full, file too
large, read-only). The command line prints it and exits with status 2."""

from __future__ import annotations

import errno
import json
import math
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

_UMASK = os.umask(0)
os.umask(_UMASK)


class UserError(ValueError):
    """A problem the user fixes (a damaged file, a full disk, a diverged run); the message is
    one line naming the file or field and the fix."""


class CorruptFileError(UserError):
    """A file that can't be read as what it should be (damaged, truncated or replaced)."""


class WriteError(OSError, UserError):
    """A write the system refused (disk full, file too large, no permission); ``errno`` is the
    system's. The file it was writing is left as it was (writes are atomic)."""

    def __str__(self) -> str:  # the one line, without OSError's "[Errno N]" prefix
        return self.strerror or super().__str__()


# errno -> (what happened, what to do); anything else is re-raised as it is (a bug or a race)
_WRITE_ERRORS = {
    errno.ENOSPC: ("the disk is full", "free some space"),
    errno.EDQUOT: ("the disk quota is exceeded", "free some space"),
    errno.EFBIG: ("the file is too large for this file system", "use a file system that takes larger files"),
    errno.EACCES: ("permission denied", "make the directory writable (chmod u+w)"),
    errno.EPERM: ("operation not permitted", "make the directory writable (chmod u+w)"),
    errno.EROFS: ("the file system is read-only", "use a writable directory"),
    errno.ENOTDIR: ("a part of the path is a file, not a directory", "choose a directory path"),
}


def write_error(path: Path, exc: OSError) -> WriteError | None:
    """The one-line :class:`WriteError` for ``exc`` raised while writing ``path``, or None when
    ``exc`` is not a disk / permission problem."""
    what = _WRITE_ERRORS.get(exc.errno or 0)
    if what is None:
        return None
    return WriteError(exc.errno, f"can't write {path}: {what[0]}; {what[1]}, then run the same command again "
                                 "(a run resumes from its last finished epoch)")


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp_path)`` then rename onto ``path`` (same directory, so atomic).

    A disk or permission failure raises :class:`WriteError` (one line); ``path`` keeps its old
    content and no temporary file is left."""
    path = Path(path)
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            try:
                Path(tmp).unlink(missing_ok=True)
            except OSError:
                pass
        if not isinstance(exc, WriteError):
            code = exc.errno if isinstance(exc, OSError) else _os_error_in(exc)
            err = write_error(path, OSError(code, str(exc))) if code else None
            if err is not None:
                raise err from exc
        raise


def _os_error_in(exc: BaseException) -> int | None:
    """The errno a library's own exception wraps (safetensors raises ``SafetensorError('... No
    space left on device (os error 28)')``), or None."""
    if not isinstance(exc, Exception):
        return None
    m = re.search(r"\(os error (\d+)\)", str(exc))
    return int(m.group(1)) if m else None


def write_json(path: Path, obj: Any) -> None:
    atomic_write(path, lambda p: p.write_text(json.dumps(obj, indent=2, default=str) + "\n"))


def read_json(path: Path) -> Any:
    """The JSON value in ``path``; a file that is not JSON text is a one-line
    :class:`CorruptFileError` naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        reason = "not UTF-8 text"
    except json.JSONDecodeError as exc:
        reason = f"{exc.msg} at line {exc.lineno}"
    raise CorruptFileError(f"{path} is not valid JSON ({reason}); restore it, or delete it and run the "
                           "command that writes it again") from None


def jsonable(x: Any) -> Any:
    """``x`` as plain JSON values: dict keys as strings, tuples / arrays / tensors as lists, numpy
    scalars as Python numbers, non-finite floats and pandas' NA as None (valid JSON)."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if hasattr(x, "tolist") and not isinstance(x, (np.generic,)):  # numpy arrays, torch tensors
        x = x.tolist()
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(float(x)) else None
    if type(x).__name__ == "NAType":
        return None
    return x
