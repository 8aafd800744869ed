"""Executors: run a picklable function over tasks, yielding ``(task, result)`` as each finishes.

* :class:`LocalExecutor` -- ``workers=1`` runs the tasks one after another in this process;
  ``workers=N`` uses N worker processes started from a fresh interpreter (a warm fork server,
  or ``spawn``): never a fork of the caller's torch/thread state.
* :class:`RayExecutor` -- one Ray task per run with its resources (CPUs, whole or fractional
  GPUs), on a local Ray (``address=""``) or an existing cluster (``"auto"``, ``"ray://h:p"``).
  Ray is optional: ``pip install 'noisescope[ray]'``. On a cluster the sweep directory must be on
  a filesystem every node sees (the runs write their directories there).

The function is expected to catch its own errors (the sweep runner records them in the run's
``status.json``); an executor turns infrastructure failures (a crashed worker process, a dead
Ray node) into ``failure(task, exc)`` so the remaining tasks still go on.

Local workers die with the process that started the sweep, however it dies (``kill -9``
included), so no orphan goes on training and writing into the sweep directory: see
:func:`die_with_parent`.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager, suppress
from typing import Any, Protocol, TypeVar

T = TypeVar("T")
R = TypeVar("R")

RAY_MISSING = ("the Ray executor needs Ray, which is not installed: pip install 'noisescope[ray]' "
               "(or use --executor local)")


THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@contextmanager
def thread_env(threads: int) -> Iterator[None]:
    """Processes started inside inherit ``OMP/MKL/OPENBLAS_NUM_THREADS = threads`` (unless the
    user set them): each worker's numerical libraries then use its share of the cores instead
    of all of them (N workers x all cores threads oversubscribe the machine)."""
    if threads <= 0:
        yield
        return
    added = [v for v in THREAD_VARS if v not in os.environ]
    for v in added:
        os.environ[v] = str(threads)
    try:
        yield
    finally:
        for v in added:
            os.environ.pop(v, None)


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
WATCH_INTERVAL = 0.5  # seconds between a worker's checks that the sweep process still lives


def set_parent_death_signal(sig: int = signal.SIGKILL) -> bool:
    """Linux: have the kernel send ``sig`` to this process when its parent dies
    (``prctl(PR_SET_PDEATHSIG)``). Returns False where that is not available."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):  # pragma: no cover - no libc prctl
        return False


def process_alive(pid: int) -> bool:
    """Whether ``pid`` is a running process (a zombie, dead but not yet reaped, is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        return stat[stat.rindex(b")") + 2:][:1] not in (b"Z", b"X")
    except (OSError, ValueError):  # no /proc (macOS): os.kill said it exists
        return True


def _release_fork_server() -> None:
    """Close this worker's copy of the fork server's "alive" pipe.

    The fork server exits when every holder of that pipe's write end has exited; the sweep
    process holds it, and multiprocessing hands a copy to every worker too, so a fork server
    outlives a killed sweep process for as long as its workers live, and the workers (whose
    parent it is) live on with it. Without the copy the fork server exits as soon as the sweep
    process dies, and the workers' parent-death signal then ends them."""
    try:
        from multiprocessing import forkserver
    except ImportError:  # pragma: no cover - Windows
        return
    server = forkserver._forkserver
    fd = getattr(server, "_forkserver_alive_fd", None)
    if fd is not None and getattr(server, "_forkserver_pid", None) is None:  # inherited, not our own server
        with suppress(OSError):
            os.close(fd)
        server._forkserver_alive_fd = None


def _watch(main_pid: int, parent_pid: int, interval: float) -> None:
    """The watchdog thread: SIGKILL this process once ``main_pid`` is gone or the parent changed."""
    while process_alive(main_pid) and os.getppid() == parent_pid:
        time.sleep(interval)
    os.kill(os.getpid(), signal.SIGKILL)


def die_with_parent(main_pid: int, interval: float = WATCH_INTERVAL) -> None:
    """Make this worker process exit when the sweep process ``main_pid`` dies, however it dies.

    Two layers, each enough on its own where it applies:

    * Linux: the parent-death signal (SIGKILL when the worker's parent dies). The parent is the
      sweep process itself (``spawn``) or the fork server, which exits when the sweep process
      dies once the worker has released its copy of the server's alive pipe (done here).
    * Everywhere: a daemon thread checks every ``interval`` seconds that ``main_pid`` is still
      running and that the worker's parent is unchanged, and SIGKILLs the worker otherwise
      (covers platforms without the signal and a death that raced with this set-up).

    Called by :class:`LocalExecutor` in each worker before its first task.
    """
    parent = os.getppid()
    set_parent_death_signal(signal.SIGKILL)
    _release_fork_server()
    if not process_alive(main_pid) or os.getppid() != parent:  # died before the signal was armed
        os.kill(os.getpid(), signal.SIGKILL)
    threading.Thread(target=_watch, args=(main_pid, parent, interval), name="noisescope-die-with-parent",
                     daemon=True).start()


class Executor(Protocol):
    def map(self, fn: Callable[[T], R], tasks: Iterable[T],
            failure: Callable[[T, BaseException], R]) -> Iterator[tuple[T, R]]:
        ...


START_METHODS = ("forkserver", "spawn")


class LocalExecutor:
    """Sequential (``workers=1``) or ``workers`` processes on this machine.

    Workers come from a fresh interpreter, never from a fork of the caller (whose torch thread
    pools are not fork-safe): by default a fork server that imports torch and noisescope once
    (:mod:`noisescope.sweep.warm`) and forks warm workers from that clean process, which saves
    every worker the seconds of imports a spawned one pays; ``start_method="spawn"`` starts each
    worker from scratch. Either way the workers re-import the calling script, so a script using
    ``workers > 1`` needs the usual ``if __name__ == "__main__":`` guard (the CLI needs nothing).
    The workers, and the fork server, exit when this process dies, however it dies
    (:func:`die_with_parent`).

    Args:
        workers: processes (1 = run the tasks in this process, one after another).
        threads: OMP/MKL/OpenBLAS threads each worker inherits (see :func:`thread_env`).
        start_method: ``"forkserver"`` (default where the platform has it) or ``"spawn"``.
    """

    def __init__(self, workers: int = 1, threads: int = 1, start_method: str = "forkserver") -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if start_method not in START_METHODS:
            raise ValueError(f"start_method must be one of {START_METHODS}, got {start_method!r}")
        if start_method not in multiprocessing.get_all_start_methods():
            start_method = "spawn"
        self.workers = int(workers)
        self.threads = int(threads)
        self.start_method = start_method

    def _context(self):
        ctx = multiprocessing.get_context(self.start_method)
        if self.start_method == "forkserver":
            ctx.set_forkserver_preload(["noisescope.sweep.warm"])
        return ctx

    def describe(self) -> dict[str, Any]:
        return {"executor": "local", "workers": self.workers, "start_method": self.start_method}

    def map(self, fn: Callable[[T], R], tasks: Iterable[T],
            failure: Callable[[T, BaseException], R]) -> Iterator[tuple[T, R]]:
        tasks = list(tasks)
        if self.workers == 1 or len(tasks) <= 1:
            for task in tasks:
                yield task, fn(task)
            return
        pool = ProcessPoolExecutor(max_workers=min(self.workers, len(tasks)), mp_context=self._context(),
                                   initializer=die_with_parent, initargs=(os.getpid(),))
        pending: dict[Future, T] = {}
        try:
            with thread_env(self.threads):  # the workers are spawned during these submits
                pending = {pool.submit(fn, task): task for task in tasks}
            while pending:
                done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
                for fut in done:
                    task = pending.pop(fut)
                    try:
                        yield task, fut.result()
                    except Exception as exc:  # a crashed worker process, an unpicklable result
                        yield task, failure(task, exc)
        finally:
            for fut in pending:
                fut.cancel()
            pool.shutdown(wait=True, cancel_futures=True)


class RayExecutor:
    """Each task is a Ray task with ``num_cpus=cpus_per_run``, ``num_gpus=gpus_per_run``.

    Args:
        address: ``""`` starts a local Ray (with ``num_cpus`` CPUs), ``"auto"`` joins the
            cluster this machine belongs to, ``"ray://host:port"`` connects a Ray client.
        cpus_per_run: CPUs reserved per run.
        gpus_per_run: GPUs per run; fractions (0.25 = four runs per GPU) pack small runs.
        num_cpus: CPUs of a locally started Ray (None = all of this machine's).
    """

    def __init__(self, address: str = "", cpus_per_run: float = 1.0, gpus_per_run: float = 0.0,
                 num_cpus: int | None = None) -> None:
        try:
            import ray  # noqa: F401
        except ImportError:
            raise RuntimeError(RAY_MISSING) from None
        self.address = address
        self.cpus_per_run = float(cpus_per_run)
        self.gpus_per_run = float(gpus_per_run)
        self.num_cpus = num_cpus

    def describe(self) -> dict[str, Any]:
        return {"executor": "ray", "address": self.address or "local",
                "cpus_per_run": self.cpus_per_run, "gpus_per_run": self.gpus_per_run}

    def map(self, fn: Callable[[T], R], tasks: Iterable[T],
            failure: Callable[[T, BaseException], R]) -> Iterator[tuple[T, R]]:
        import ray

        tasks = list(tasks)
        if not tasks:
            return
        started = False
        if not ray.is_initialized():
            if self.address:
                ray.init(address=self.address, log_to_driver=False)
            else:
                ray.init(num_cpus=self.num_cpus, include_dashboard=False, log_to_driver=False)
            started = True
        try:
            check_resources(ray.cluster_resources(), self.cpus_per_run, self.gpus_per_run)
        except ResourceError:
            if started:
                ray.shutdown()
            raise
        remote = ray.remote(num_cpus=self.cpus_per_run, num_gpus=self.gpus_per_run,
                            max_retries=0)(fn)
        pending: dict[Any, T] = {}
        try:
            pending = {remote.remote(task): task for task in tasks}
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    task = pending.pop(ref)
                    try:
                        yield task, ray.get(ref)
                    except Exception as exc:  # a dead worker or node, a lost object
                        yield task, failure(task, exc)
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)
            if started:
                ray.shutdown()


class ResourceError(RuntimeError):
    """The executor cannot provide what each run asks for (e.g. GPUs on a CPU-only cluster)."""


def check_resources(cluster: dict[str, float], cpus_per_run: float, gpus_per_run: float) -> None:
    """Refuse a sweep no node could ever schedule (Ray would wait forever)."""
    if gpus_per_run > 0 and cluster.get("GPU", 0.0) < min(gpus_per_run, 1.0):
        raise ResourceError(f"sweep.gpus_per_run = {gpus_per_run:g} but the Ray cluster has "
                           f"{cluster.get('GPU', 0.0):g} GPUs; set sweep.gpus_per_run = 0 to run on CPUs")
    if cluster.get("CPU", 0.0) < cpus_per_run:
        raise ResourceError(f"sweep.cpus_per_run = {cpus_per_run:g} but the Ray cluster has "
                           f"{cluster.get('CPU', 0.0):g} CPUs; lower sweep.cpus_per_run or add --workers")


def make_executor(kind: str = "local", workers: int = 1, address: str = "",
                  cpus_per_run: float = 1.0, gpus_per_run: float = 0.0,
                  num_cpus: int | None = None, threads: int = 1) -> LocalExecutor | RayExecutor:
    """``"local"`` or ``"ray"`` with its options (see the classes)."""
    if kind == "local":
        if address:
            raise ValueError("--address is for the Ray executor; add --executor ray")
        return LocalExecutor(workers, threads)
    if kind == "ray":
        return RayExecutor(address, cpus_per_run, gpus_per_run, num_cpus=num_cpus or None)
    raise ValueError(f"unknown executor {kind!r}; use local or ray")
