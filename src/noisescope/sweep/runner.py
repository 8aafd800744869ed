"""Resumable sweeps: a directory with a manifest and one run directory per grid point.

Layout::

    SWEEP/
      sweep.json        manifest: name, axes, base config, settings, the runs (id + swept
                        values), how the latest invocation packed its pending runs
                        (``packing``) and a log of invocations (executor, start, end, counts,
                        packing)
      runs/<id>/        an ordinary run directory (see noisescope/store.py); <id> is the
                        config hash, so an unchanged grid point always maps to the same run

Each run's own ``status.json`` is the single source of truth for its state. Starting a sweep
again skips every run that is ``complete``; resumes ``running`` (killed) and ``interrupted``
(Ctrl-C) ones from their last checkpoint; reruns ``failed`` ones, also from their last
checkpoint, unless ``retry_failed`` is off; and starts the rest. A run that raises is recorded as ``failed`` with
its error and traceback, and the other runs go on.

Packing (``[sweep] pack = true``, the default): the pending runs are grouped by
:func:`~noisescope.runs.packed_runs.pack_key` (everything but ``train.seed``, ``noise.seed``,
``train.lr``, ``train.weight_decay`` and the lr schedule equal); every group of two or more
trains as one packed model (:func:`~noisescope.runs.packed_runs.run_packed`), one executor
task per pack, into the same run directories; the rest run on their own. What was done is
one line per pack or lone run (``packed 4 runs: ...`` / ``run separately: ... (reason)``), in
:attr:`SweepResult.packing` and in the manifest's invocation log. A run that diverged in a
pack (failed with "non-finite loss") is retried as a pack of one, so the failure is detected
again instead of training on with NaN weights.
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

from noisescope.config import Config, ConfigError, from_dict
from noisescope.io import read_json, write_json
from noisescope.runlock import RunLock
from noisescope.runs.lifecycle import run_experiment
from noisescope.runs.packed_runs import pack_key, pack_reason, run_packed, varying_fields
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


@dataclass(frozen=True)
class PackTask:
    """Runs of a sweep trained as one pack (:func:`execute_pack`); plain data, like RunTask."""

    tasks: tuple[RunTask, ...]

    @property
    def id(self) -> str:
        return "+".join(t.id for t in self.tasks)

    @property
    def threads(self) -> int:
        return self.tasks[0].threads


DIVERGED = "non-finite loss"  # the start of a diverged pack member's error (runs.packed_runs)


def execute_pack(pack: PackTask) -> list[RunOutcome]:
    """Run (or resume) the runs of ``pack`` as one packed model; one outcome per run, in
    order, each with the pack's time. Never raises on failing runs (only on Ctrl-C): a member
    that diverged is failed by :func:`~noisescope.runs.packed_runs.run_packed`; an error of
    the whole pack fails every member that is not complete, with its error and traceback."""
    import torch

    t0 = time.perf_counter()
    old_threads = torch.get_num_threads()
    if pack.threads:
        torch.set_num_threads(pack.threads)
    stores = [RunStore(t.path) for t in pack.tasks]

    def unfinished() -> list[RunStore]:
        out = []
        for store in stores:
            st = store.status()
            if st.get("state") != "complete" and not str(st.get("error", "")).startswith(DIVERGED):
                out.append(store)
        return out

    try:
        cfgs = [from_dict(t.config) for t in pack.tasks]
        hooks: list[Any] = [None] * len(cfgs)
        try:
            if any(t.loggers for t in pack.tasks):
                from noisescope.runs.loggers import make_loggers

                hooks = [make_loggers(t.loggers, t.path, c) if t.loggers else None
                         for t, c in zip(pack.tasks, cfgs, strict=True)]
            run_packed(cfgs, on_epoch=hooks)
        finally:
            for hook in hooks:
                if hook is not None:
                    hook.close()
        seconds = time.perf_counter() - t0
        outcomes = []
        for t, store in zip(pack.tasks, stores, strict=True):
            st = store.status()
            if st.get("state") == "complete":
                outcomes.append(RunOutcome(t.id, "complete", seconds))
            else:
                outcomes.append(RunOutcome(t.id, "failed", seconds, str(st.get("error", "")),
                                           str(st.get("traceback", ""))))
        return outcomes
    except KeyboardInterrupt:
        for store in unfinished():
            if store.path.exists():
                store.set_status("interrupted", store.status().get("epoch", -1))
        raise
    except Exception as exc:
        tb = traceback.format_exc()
        error = f"{type(exc).__name__}: {exc}"
        failing = {s.path for s in unfinished()}
        outcomes = []
        for t, store in zip(pack.tasks, stores, strict=True):
            if store.path in failing:
                store.set_status("failed", store.status().get("epoch", -1), error=error, traceback=tb)
                outcomes.append(RunOutcome(t.id, "failed", time.perf_counter() - t0, error, tb))
            else:
                st = store.status()
                state = "complete" if st.get("state") == "complete" else "failed"
                outcomes.append(RunOutcome(t.id, state, time.perf_counter() - t0, str(st.get("error", ""))))
        return outcomes
    finally:
        torch.set_num_threads(old_threads)


def execute_item(item: RunTask | PackTask) -> list[RunOutcome]:
    """One executor task: a lone run or a pack; its runs' outcomes."""
    return execute_pack(item) if isinstance(item, PackTask) else [execute_task(item)]


def item_failure(item: RunTask | PackTask, exc: BaseException) -> list[RunOutcome]:
    """The worker running ``item`` died: every run in it that is not complete is recorded as
    failed."""
    if not isinstance(item, PackTask):
        return [infrastructure_failure(item, exc)]
    return [RunOutcome(t.id, "complete") if RunStore(t.path).status().get("state") == "complete"
            else infrastructure_failure(t, exc) for t in item.tasks]


def plan_packs(tasks: list[RunTask], pack: bool = True) -> tuple[list[RunTask | PackTask], list[str]]:
    """Group pending runs into packs (see the module docstring); returns the executor's
    tasks (a pack where its first run stands in ``tasks``) and one line per task saying
    what was done and why."""
    if not pack:
        return list(tasks), ([f"run separately: {len(tasks)} run(s) (sweep.pack = false)"] if tasks else [])
    groups: dict[str, list[tuple[RunTask, Config | None]]] = {}
    for t in tasks:
        try:
            cfg: Config | None = from_dict(t.config)
        except ConfigError:
            cfg = None
        key = json.dumps(pack_key(cfg), sort_keys=True, default=str) if cfg is not None else f"invalid {t.id}"
        groups.setdefault(key, []).append((t, cfg))
    items: list[RunTask | PackTask] = []
    lines: list[str] = []
    for group in groups.values():
        ts = [t for t, _ in group]
        cfgs = [c for _, c in group if c is not None]
        if len(group) == 1:
            t = ts[0]
            status = RunStore(t.path).status()
            if cfgs and status.get("state") == "failed" and str(status.get("error", "")).startswith(DIVERGED):
                items.append(PackTask((t,)))
                lines.append(f"packed 1 run: {t.id} (retrying a run that diverged in a pack: {status['error']})")
            else:
                items.append(t)
                lines.append(f"run separately: {t.id} (no other pending run differs from it only in "
                             "train.seed, noise.seed, train.lr, train.weight_decay or the lr schedule)")
            continue
        reason = pack_reason(cfgs) if len(cfgs) == len(group) else "invalid config"
        if reason:
            items.extend(ts)
            lines.append(f"run separately: {' '.join(t.id for t in ts)} ({reason})")
            continue
        items.append(PackTask(tuple(ts)))
        lines.append(f"packed {len(ts)} runs: {' '.join(t.id for t in ts)} "
                     f"(differing in {', '.join(varying_fields(cfgs)) or 'nothing'})")
    return items, lines


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
    """What :func:`run_sweep` did: outcomes per run id, in completion order, and how the
    pending runs were packed (one line per pack or lone run, see :func:`plan_packs`)."""

    path: Path
    outcomes: dict[str, RunOutcome] = field(default_factory=dict)
    packing: list[str] = field(default_factory=list)

    def ids(self, state: str) -> list[str]:
        return [i for i, o in self.outcomes.items() if o.state == state]

    @property
    def executed(self) -> list[str]:
        return [i for i, o in self.outcomes.items() if o.state != "skipped"]


def write_manifest(spec: SweepSpec, sweep_dir: Path, invocation: dict[str, Any] | None = None,
                   packing: list[str] | None = None) -> dict:
    """Create or update ``sweep.json`` (the plan of the latest invocation, plus a log);
    ``packing``: how the latest invocation packs its pending runs (see :func:`plan_packs`)."""
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
        "packing": old.get("packing", []) if packing is None else packing,
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

    Returns the outcomes and how the pending runs were packed (``settings.pack``, see the
    module docstring); failed runs do not raise. Interrupting (Ctrl-C) leaves the sweep
    resumable: start it again. A second process on the same sweep gets
    :class:`~noisescope.runlock.LockedError` (each run also holds its own lock while it trains).
    """
    sweep_dir = Path(sweep_dir) if sweep_dir is not None else spec.directory
    with RunLock(sweep_dir, label=f"sweep {spec.settings.name}"):
        return _run_sweep_locked(spec, executor, sweep_dir, on_result, loggers)


def _run_sweep_locked(spec: SweepSpec, executor: LocalExecutor | RayExecutor | None, sweep_dir: Path,
                      on_result: Callable[[RunOutcome], None] | None, loggers: tuple[str, ...]) -> SweepResult:
    """:func:`run_sweep` while holding the sweep's lock (one process runs a sweep at a time)."""
    s = spec.settings
    executor = executor or executor_for(s)
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
    items, result.packing = plan_packs(todo, s.pack)
    write_manifest(spec, sweep_dir, packing=result.packing)
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    for _item, outcomes in executor.map(execute_item, items, item_failure):
        for outcome in outcomes:
            result.outcomes[outcome.id] = outcome
            if on_result:
                on_result(outcome)
    write_manifest(spec, sweep_dir, {
        **executor.describe(), "started": started, "seconds": round(time.perf_counter() - t0, 3),
        "executed": len(result.executed), "failed": len(result.ids("failed")),
        "skipped": len(result.ids("skipped")), "packing": result.packing,
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
