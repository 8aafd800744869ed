"""Resumable sweeps: a directory with a manifest and one run directory per grid point.

Layout::

    SWEEP/
      sweep.json        manifest: name, axes, base config, settings, the runs (id + swept
                        values) and a log of invocations (executor, start, end, counts)
      runs/<id>/        an ordinary run directory (see noisescope/store.py); <id> is the
                        config hash, so an unchanged grid point always maps to the same run

Each run's own ``status.json`` is the single source of truth for its state. Starting a sweep
again skips every run that is ``complete``; resumes ``running`` (killed) and ``interrupted``
(Ctrl-C) ones from their last checkpoint; reruns ``failed`` ones, also from their last
checkpoint, unless ``retry_failed`` is off; and starts the rest. A run that raises is recorded as ``failed`` with
its error and traceback, and the other runs go on.
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from noisescope.config import ConfigError, from_dict
from noisescope.io import read_json, write_json
from noisescope.runs.lifecycle import run_experiment
from noisescope.runs.store import RunStore
from noisescope.sweep.executors import LocalExecutor, RayExecutor, make_executor
from noisescope.sweep.grid import SweepSettings, SweepSpec

MANIFEST = "sweep.json"
RUNS = "runs"


@dataclass(frozen=True)
class RunTask:
    """What a worker needs to run one grid point (plain data: picklable, Ray-serializable).

    Attributes:
        id: the run id (config hash).
        config: the resolved config dict, ``run.root`` / ``run.name`` pointing into the sweep.
        threads: torch intra-op threads for the run (0 = leave torch's default).
        loggers: metric loggers to attach (``"tensorboard"``, ``"mlflow"``), see loggers.py.
    """

    id: str
    config: dict[str, Any]
    threads: int = 1
    loggers: tuple[str, ...] = ()

    @property
    def path(self) -> Path:
        return Path(self.config["run"]["root"]) / self.config["run"]["name"]


@dataclass
class RunOutcome:
    """How one run ended: ``state`` is ``complete``, ``failed`` or ``skipped`` (already complete)."""

    id: str
    state: str
    seconds: float = 0.0
    error: str = ""
    traceback: str = ""


def execute_task(task: RunTask) -> RunOutcome:
    """Run (or resume) one grid point; never raises on a failing run (only on Ctrl-C).

    A failure is written to the run's ``status.json`` as ``{"state": "failed", "epoch": last
    finished epoch, "error": ..., "traceback": ...}``.
    """
    import torch

    t0 = time.perf_counter()
    old_threads = torch.get_num_threads()
    if task.threads:
        torch.set_num_threads(task.threads)
    store = RunStore(task.path)
    try:
        cfg = from_dict(task.config)
        on_epoch = None
        if task.loggers:
            from noisescope.runs.loggers import make_loggers

            on_epoch = make_loggers(task.loggers, task.path, cfg)
        try:
            run_experiment(cfg, on_epoch=on_epoch)
        finally:
            if on_epoch is not None:
                on_epoch.close()
        return RunOutcome(task.id, "complete", time.perf_counter() - t0)
    except KeyboardInterrupt:  # the sweep was stopped: resumable, not a failure of the run
        if store.path.exists():
            store.set_status("interrupted", store.status().get("epoch", -1))
        raise
    except Exception as exc:
        tb = traceback.format_exc()
        error = f"{type(exc).__name__}: {exc}"
        store.set_status("failed", store.status().get("epoch", -1), error=error, traceback=tb)
        return RunOutcome(task.id, "failed", time.perf_counter() - t0, error, tb)
    finally:
        torch.set_num_threads(old_threads)


def infrastructure_failure(task: RunTask, exc: BaseException) -> RunOutcome:
    """A worker died before the run could record its own failure: record it here."""
    error = f"{type(exc).__name__}: {exc} (the worker running this run failed)"
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    store = RunStore(task.path)
    store.set_status("failed", store.status().get("epoch", -1), error=error, traceback=tb)
    return RunOutcome(task.id, "failed", 0.0, error, tb)


def run_dir(sweep_dir: str | Path, run_id: str) -> Path:
    return Path(sweep_dir) / RUNS / run_id


def tasks_for(spec: SweepSpec, sweep_dir: Path, loggers: tuple[str, ...] = ()) -> list[RunTask]:
    """One task per grid point, its run placed in ``sweep_dir/runs/<id>``."""
    root = str((sweep_dir / RUNS).resolve())
    tasks = []
    for point in spec.points:
        cfg = point.config.to_dict()
        cfg["run"]["root"], cfg["run"]["name"] = root, point.id
        tasks.append(RunTask(point.id, cfg, spec.settings.threads_per_run, tuple(loggers)))
    return tasks


def _adopt_moved_run(task: RunTask) -> None:
    """A run whose sweep directory was moved or renamed differs from its task only in
    ``run.root``: rewrite that field so run_experiment resumes it instead of refusing."""
    store = RunStore(task.path)
    old = store.read_json("config.json")
    if old is None or old == task.config:
        return
    strip = lambda d: {**d, "run": {k: v for k, v in d["run"].items() if k not in ("root", "name")}}  # noqa: E731
    if strip(old) == strip(task.config):
        store.write_json("config.json", task.config)


@dataclass
class SweepResult:
    """What :func:`run_sweep` did: outcomes per run id, in completion order."""

    path: Path
    outcomes: dict[str, RunOutcome] = field(default_factory=dict)

    def ids(self, state: str) -> list[str]:
        return [i for i, o in self.outcomes.items() if o.state == state]

    @property
    def executed(self) -> list[str]:
        return [i for i, o in self.outcomes.items() if o.state != "skipped"]


def write_manifest(spec: SweepSpec, sweep_dir: Path, invocation: dict[str, Any] | None = None) -> dict:
    """Create or update ``sweep.json`` (the plan of the latest invocation, plus a log)."""
    path = sweep_dir / MANIFEST
    old = read_json(path) if path.exists() else {}
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    manifest = {
        "name": spec.settings.name,
        "created": old.get("created", now),
        "updated": now,
        "axes": [a.to_dict() for a in spec.axes],
        "keys": spec.keys,
        "settings": spec.settings.__dict__,
        "base": spec.base,
        "runs": [{"id": p.id, "params": p.params} for p in spec.points],
        "invocations": old.get("invocations", []),
    }
    if invocation is not None:
        manifest["invocations"].append(invocation)
    write_json(path, manifest)
    return manifest


def executor_for(s: SweepSettings) -> LocalExecutor | RayExecutor:
    """The executor the ``[sweep]`` settings ask for. ``workers`` is the number of local worker
    processes, or the CPUs of a Ray started here (1 = let Ray use every CPU)."""
    return make_executor(s.executor, s.workers, s.address, s.cpus_per_run, s.gpus_per_run,
                         num_cpus=s.workers if s.executor == "ray" and s.workers > 1 else None,
                         threads=s.threads_per_run)


def run_sweep(
    spec: SweepSpec,
    executor: LocalExecutor | RayExecutor | None = None,
    sweep_dir: str | Path | None = None,
    on_result: Callable[[RunOutcome], None] | None = None,
    loggers: tuple[str, ...] = (),
) -> SweepResult:
    """Run every grid point of ``spec`` that is not already complete.

    Args:
        spec: an expanded sweep (:func:`noisescope.sweep.grid.load_sweep_spec`).
        executor: where runs execute (default: from ``spec.settings``).
        sweep_dir: the sweep directory (default ``settings.root/settings.name``).
        on_result: called with each :class:`RunOutcome` as it arrives (skipped runs too).
        loggers: metric loggers attached to each run (see noisescope/loggers.py).

    Returns the outcomes; failed runs do not raise. Interrupting (Ctrl-C) leaves the sweep
    resumable: start it again.
    """
    s = spec.settings
    executor = executor or executor_for(s)
    sweep_dir = Path(sweep_dir) if sweep_dir is not None else spec.directory
    sweep_dir.mkdir(parents=True, exist_ok=True)
    write_manifest(spec, sweep_dir)
    result = SweepResult(sweep_dir)
    todo: list[RunTask] = []
    for task in tasks_for(spec, sweep_dir, loggers):
        state = RunStore(task.path).status().get("state")
        if state == "complete" or (state == "failed" and not s.retry_failed):
            outcome = RunOutcome(task.id, "skipped")
            result.outcomes[task.id] = outcome
            if on_result:
                on_result(outcome)
            continue
        _adopt_moved_run(task)
        todo.append(task)
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    for _task, outcome in executor.map(execute_task, todo, infrastructure_failure):
        result.outcomes[outcome.id] = outcome
        if on_result:
            on_result(outcome)
    write_manifest(spec, sweep_dir, {
        **executor.describe(), "started": started, "seconds": round(time.perf_counter() - t0, 3),
        "executed": len(result.executed), "failed": len(result.ids("failed")),
        "skipped": len(result.ids("skipped")),
    })
    return result


def read_manifest(sweep_dir: str | Path) -> dict[str, Any]:
    """The sweep's manifest; a clear error if ``sweep_dir`` is not a sweep."""
    path = Path(sweep_dir) / MANIFEST
    if not path.exists():
        hint = (" (it is a single run: use noisescope.load_run)"
                if (Path(sweep_dir) / "config.json").exists() else "")
        raise FileNotFoundError(f"{sweep_dir} is not a noisescope sweep (no {MANIFEST} inside){hint}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON ({exc})") from None


def is_sweep(path: str | Path) -> bool:
    return (Path(path) / MANIFEST).exists()
