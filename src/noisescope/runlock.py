"""One writer per run: an exclusive lock on a run (or sweep) directory.

``RunLock(path)`` holds ``path/.lock`` for as long as the ``with`` block runs::

    from noisescope.runlock import LockedError, RunLock

    try:
        with RunLock(run_dir):
            ...  # the only process writing into run_dir
    except LockedError as exc:
        fail(str(exc))  # "run runs/x is in use by pid 4242 on node1 since 2025-01-01 12:00:00; ..."

How it works: the lock is ``fcntl.flock(LOCK_EX | LOCK_NB)`` on ``path/.lock``, a file that
records the holder (pid, host, start time, command) for the refusal message. The kernel drops
a flock when its process dies, however it dies (``kill -9`` included), so a lock left behind by
a dead process is never in force: the next ``RunLock`` simply takes it over (and records in
:attr:`RunLock.previous` whom it took it from). On release the file is removed; taking the lock
checks that the locked file is still the one at ``path/.lock``, so a removal racing with a new
holder can't let two processes in.

The lock is per open file, not per process: a second ``RunLock`` on the same directory in the
same process is refused too (it is not re-entrant). Processes started by exec (``subprocess``,
multiprocessing's ``spawn`` and ``forkserver`` workers) don't inherit it (the file is opened
``O_CLOEXEC``); a child made by a bare ``fork`` shares it: should this process die without
releasing it, the lock lasts until that child has exited too. Where ``fcntl`` is missing
(Windows), the file is created with ``O_CREAT | O_EXCL`` instead and a lock whose pid is dead
on this host is taken over. On network filesystems flock is only as good as the server's lock support (NFSv4
and Lustre honour it; a lock held on another host is reported with that host's name).

Only the standard library is used.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".lock"
_HAVE_FLOCK = fcntl is not None


class LockedError(RuntimeError):
    """The directory is locked by another live process; the message (one line) says which."""

    def __init__(self, message: str, holder: LockInfo | None = None) -> None:
        super().__init__(message)
        self.holder = holder


@dataclass(frozen=True)
class LockInfo:
    """Who holds (or held) a lock: process id, host name, start time (epoch seconds), command."""

    pid: int
    host: str
    since: float
    command: str = ""

    @classmethod
    def current(cls) -> LockInfo:
        return cls(os.getpid(), socket.gethostname(), time.time(), " ".join(sys.argv)[:500])

    def to_json(self) -> str:
        return json.dumps({"pid": self.pid, "host": self.host, "since": self.since, "command": self.command})

    @classmethod
    def parse(cls, text: str) -> LockInfo | None:
        """The record written by :meth:`to_json`, or None for an empty or foreign file."""
        try:
            d = json.loads(text)
            return cls(int(d["pid"]), str(d["host"]), float(d["since"]), str(d.get("command", "")))
        except (ValueError, KeyError, TypeError):
            return None

    def describe(self) -> str:
        """``pid 4242 on node1 since 2025-01-01 12:00:00``."""
        since = datetime.fromtimestamp(self.since).strftime("%Y-%m-%d %H:%M:%S")
        return f"pid {self.pid} on {self.host} since {since}"


def read_lock(path: str | os.PathLike[str]) -> LockInfo | None:
    """The record in ``path/.lock`` (None when there is none). It says who took the lock
    last; whether that process still holds it is what :func:`is_locked` tells."""
    try:
        return LockInfo.parse(Path(path, LOCK_NAME).read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return None


def is_locked(path: str | os.PathLike[str]) -> bool:
    """Whether a live process holds the lock on ``path`` right now (changes nothing)."""
    lock_path = Path(path, LOCK_NAME)
    if not _HAVE_FLOCK:
        holder = read_lock(path)
        return holder is not None and (holder.host != socket.gethostname() or _pid_alive(holder.pid))
    try:
        fd = os.open(lock_path, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))  # RDWR: NFS needs it for LOCK_EX
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also drops the probe's own flock
    return False


def _read(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    return os.read(fd, 4096).decode("utf-8", "replace")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:  # pragma: no cover
        return False
    return True


class RunLock:
    """Exclusive lock on the directory ``path`` (see the module docstring).

    Args:
        path: the run (or sweep) directory; created (with parents) unless ``create`` is False.
        label: how the refusal message names it (default ``run PATH``).
        timeout: seconds to wait for a held lock before giving up (0 = refuse at once).
        create: create ``path`` when it does not exist (else FileNotFoundError).

    Attributes:
        previous: the record of a dead holder this lock was taken over from, else None.
    """

    def __init__(self, path: str | os.PathLike[str], *, label: str | None = None, timeout: float = 0.0,
                 create: bool = True, poll: float = 0.1) -> None:
        self.path = Path(path)
        self.lock_path = self.path / LOCK_NAME
        self.label = label or f"run {self.path}"
        self.timeout = float(timeout)
        self.create = create
        self.poll = poll
        self.previous: LockInfo | None = None
        self.info: LockInfo | None = None
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock now."""
        return self._fd is not None

    def acquire(self) -> RunLock:
        """Take the lock, waiting up to ``timeout`` seconds; raise LockedError if it stays held."""
        if self._fd is not None:
            raise RuntimeError(f"{self.label}: this RunLock is already held (it is not re-entrant)")
        if self.create:
            self.path.mkdir(parents=True, exist_ok=True)
        elif not self.path.is_dir():
            raise FileNotFoundError(errno.ENOENT, "no such run directory", str(self.path))
        deadline = time.monotonic() + self.timeout
        while True:
            holder = self._try_flock() if _HAVE_FLOCK else self._try_exclusive()
            if holder is None:
                return self
            if time.monotonic() >= deadline:
                who = holder.describe() if holder.pid else "another process (it is starting up)"
                raise LockedError(f"{self.label} is in use by {who}; wait for it or stop it", holder)
            time.sleep(self.poll)

    def _record(self, fd: int) -> None:
        self.info = LockInfo.current()
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, (self.info.to_json() + "\n").encode())
        os.fsync(fd)

    def _try_flock(self) -> LockInfo | None:
        """One attempt; None when taken, else the holder's record (pid 0 while unreadable)."""
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = LockInfo.parse(_read(fd))
                os.close(fd)
                return holder or LockInfo(0, "", 0.0)
            try:  # the file may have been removed (and replaced) by a releasing holder meanwhile
                same = os.path.samestat(os.fstat(fd), os.stat(self.lock_path))
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                return self._try_flock()
            self.previous = LockInfo.parse(_read(fd))
            self._record(fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.close(fd)
            raise
        self._fd = fd
        return None

    def _try_exclusive(self) -> LockInfo | None:
        """The fallback without flock: create the file exclusively; take over a dead pid's."""
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o644)
        except FileExistsError:
            holder = read_lock(self.path)
            if holder is not None and holder.host == socket.gethostname() and not _pid_alive(holder.pid):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.lock_path)
                self.previous = holder
                return self._try_exclusive()
            return holder or LockInfo(0, "", 0.0)
        self._record(fd)
        self._fd = fd
        return None

    def release(self) -> None:
        """Give the lock up and remove the lock file (no-op when not held)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.lock_path)
        os.close(fd)  # closing drops the flock; removing the file first keeps its record consistent

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()

    def __del__(self) -> None:  # a forgotten lock is dropped with the object, as the kernel would
        with contextlib.suppress(Exception):
            if self._fd is not None:
                os.close(self._fd)
