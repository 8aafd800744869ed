"""One writer per run: a second process is refused with a one-line message naming the holder,
and the lock of a process killed with SIGKILL is taken over (the kernel dropped its flock)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import noisescope
from noisescope import runlock
from noisescope.runlock import LockedError, LockInfo, RunLock, is_locked, read_lock

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX processes and signals")

SRC = str(Path(noisescope.__file__).resolve().parents[1])
HOLD = textwrap.dedent("""
    import sys, time
    from noisescope.runlock import RunLock
    with RunLock(sys.argv[1]):
        print("locked", flush=True)
        time.sleep(float(sys.argv[2]))
""")
TRY = textwrap.dedent("""
    import sys
    from noisescope.runlock import LockedError, RunLock
    try:
        with RunLock(sys.argv[1]):
            print("acquired")
    except LockedError as exc:
        print(exc, file=sys.stderr)
        sys.exit(3)
""")


def _python(script: str, *args: str, **kw) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]))
    return subprocess.Popen([sys.executable, "-c", script, *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def _holder(path: Path, seconds: float = 60.0) -> subprocess.Popen:
    """A process holding the lock on ``path`` (returns once it holds it)."""
    proc = _python(HOLD, str(path), str(seconds))
    assert proc.stdout.readline().strip() == "locked", proc.stderr.read()
    return proc


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.communicate(timeout=30)


def test_a_second_process_is_refused_with_one_line_naming_the_holder(tmp_path):
    run = tmp_path / "runs" / "r1"
    holder = _holder(run)
    try:
        other = _python(TRY, str(run))
        out, err = other.communicate(timeout=60)
        assert other.returncode == 3 and out == "", (out, err)
        line = err.strip()
        assert "\n" not in line
        assert line.startswith(f"run {run} is in use by pid {holder.pid} on {socket.gethostname()} since ")
        assert line.endswith("; wait for it or stop it")
        # the same in this process, with the holder's record on the exception
        with pytest.raises(LockedError) as info:
            RunLock(run).acquire()
        assert info.value.holder.pid == holder.pid and is_locked(run)
    finally:
        _stop(holder)


def test_the_lock_of_a_killed_process_is_taken_over(tmp_path):
    run = tmp_path / "r"
    holder = _holder(run)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=30)
    assert read_lock(run).pid == holder.pid  # the dead holder's record is still there
    assert not is_locked(run)
    with RunLock(run) as lock:
        assert lock.previous is not None and lock.previous.pid == holder.pid
        assert read_lock(run).pid == os.getpid()
        other = _python(TRY, str(run))
        _, err = other.communicate(timeout=60)
        assert other.returncode == 3 and f"pid {os.getpid()}" in err
    assert not (run / ".lock").exists()


def test_release_lets_the_next_process_in_and_leaves_no_lock_file(tmp_path):
    run = tmp_path / "r"
    holder = _holder(run, seconds=0.5)
    holder.communicate(timeout=60)
    assert holder.returncode == 0 and not (run / ".lock").exists()
    other = _python(TRY, str(run))
    out, err = other.communicate(timeout=60)
    assert other.returncode == 0 and out.strip() == "acquired", err


def test_a_waiting_lock_gets_the_directory_when_the_holder_finishes(tmp_path):
    run = tmp_path / "r"
    holder = _holder(run, seconds=1.0)
    try:
        start = time.monotonic()
        with RunLock(run, timeout=30) as lock:
            assert lock.held and time.monotonic() - start < 30
    finally:
        _stop(holder)


def test_the_lock_is_not_reentrant_within_a_process(tmp_path):
    with RunLock(tmp_path) as lock:
        with pytest.raises(LockedError, match=rf"^sweep s is in use by pid {os.getpid()} on "):
            RunLock(tmp_path, label="sweep s").acquire()
        with pytest.raises(RuntimeError, match="not re-entrant"):
            lock.acquire()
    with RunLock(tmp_path):
        pass


def test_a_missing_directory_is_created_or_refused_as_asked(tmp_path):
    with pytest.raises(FileNotFoundError):
        RunLock(tmp_path / "absent", create=False).acquire()
    assert not (tmp_path / "absent").exists()
    with RunLock(tmp_path / "a" / "b"):
        assert (tmp_path / "a" / "b" / ".lock").exists()


def test_without_flock_a_dead_pid_is_taken_over_and_a_live_one_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(runlock, "_HAVE_FLOCK", False)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / ".lock").write_text(LockInfo(dead.pid, socket.gethostname(), time.time()).to_json())
    with RunLock(tmp_path) as lock:
        assert lock.previous.pid == dead.pid
        with pytest.raises(LockedError, match=f"in use by pid {os.getpid()}"):
            RunLock(tmp_path).acquire()
    assert not (tmp_path / ".lock").exists()
