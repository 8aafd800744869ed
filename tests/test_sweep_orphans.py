"""Sweeps die with their parent: when the process running a local sweep is killed with SIGKILL,
its worker processes and the fork server exit too, within seconds, instead of training on as
orphans that keep writing into the sweep directory."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import noisescope

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc (Linux)")

SRC = str(Path(noisescope.__file__).resolve().parents[1])
TASK = textwrap.dedent("""
    import os, time

    def hold(path):
        \"\"\"A long sweep task: says where it runs, then works (sleeps) for ten minutes.\"\"\"
        with open(path, "w") as f:
            f.write(str(os.getpid()))
        time.sleep(600)
        return path
""")
MAIN = textwrap.dedent("""
    import sys
    import orphan_task
    from noisescope.sweep.executors import LocalExecutor

    if __name__ == "__main__":
        executor = LocalExecutor(workers=2, start_method=sys.argv[1])
        for _ in executor.map(orphan_task.hold, sys.argv[2:], failure=lambda task, exc: None):
            pass
""")


def _stat(pid: int) -> tuple[int, str] | None:
    """(parent pid, state letter) of a process, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) "
    return int(fields[1]), fields[0]


def descendants(root: int) -> set[int]:
    """Every live process whose chain of parents reaches ``root``."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (st := _stat(int(entry.name))) is not None:
            parents[int(entry.name)] = st[0]
    found, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, ppid in parents.items() if ppid in frontier} - found
        found |= frontier
    return found


def running(pids: set[int]) -> set[int]:
    """Those of ``pids`` still running (zombies, dead but not yet reaped, don't count)."""
    return {pid for pid in pids if (st := _stat(pid)) is not None and st[1] not in "ZX"}


@pytest.mark.parametrize("start_method", ["forkserver", pytest.param("spawn", marks=pytest.mark.slow)])
def test_killing_the_sweep_process_takes_its_workers_and_fork_server_with_it(tmp_path, start_method):
    if start_method not in multiprocessing.get_all_start_methods():
        pytest.skip(f"no {start_method} here")
    (tmp_path / "orphan_task.py").write_text(TASK)
    (tmp_path / "main.py").write_text(MAIN)
    marks = [tmp_path / "task0.pid", tmp_path / "task1.pid"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), SRC, os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1")
    main = subprocess.Popen([sys.executable, str(tmp_path / "main.py"), start_method, *map(str, marks)],
                            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    children: set[int] = set()
    try:
        deadline = time.monotonic() + 180  # the fork server imports torch first: seconds on a busy machine
        while not all(m.exists() and m.read_text() for m in marks):
            assert main.poll() is None, main.stderr.read().decode()
            assert time.monotonic() < deadline, "the workers never started their tasks"
            time.sleep(0.2)
        workers = {int(m.read_text()) for m in marks}
        children = descendants(main.pid)
        assert workers <= children, (workers, children)
        os.kill(main.pid, signal.SIGKILL)
        main.wait(timeout=30)
        killed = time.monotonic()
        while running(workers) and time.monotonic() < killed + 10:  # the processes that do the work
            time.sleep(0.1)
        assert not running(workers), "the workers outlived the sweep process"
        # the fork server (and multiprocessing's resource tracker) exit once the sweep process and
        # the workers are gone; a fork server that imported torch needs a moment to shut down
        while running(children) and time.monotonic() < killed + 20:
            time.sleep(0.1)
        left = running(children)
        assert not left, {pid: Path(f"/proc/{pid}/cmdline").read_bytes()[:120] for pid in left}
    finally:
        if main.poll() is None:
            main.kill()
            main.wait()
        for pid in running(children | descendants(main.pid) | _recorded(marks)):
            os.kill(pid, signal.SIGKILL)  # never leave a test's processes behind


def _recorded(marks: list[Path]) -> set[int]:
    return {int(m.read_text()) for m in marks if m.exists() and m.read_text()}
