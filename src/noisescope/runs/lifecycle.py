"""A run's life: create or resume its directory, train with probes, complete.

``run_experiment(cfg)`` is the one entry point (the CLI, sweeps and Python users call it).
Everything that can fail on bad input is checked by :func:`noisescope.runs.build.prepare`
before the directory is touched.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from noisescope.config import Config, ConfigError, config_identity
from noisescope.io import UserError, write_error
from noisescope.probes.dynamics import summarize
from noisescope.runlock import RunLock
from noisescope.runs.build import Prepared, checkpoint_epochs, make_probes, prepare
from noisescope.runs.store import RunStore, environment
from noisescope.schedule import probe_epochs
from noisescope.training.loop import EpochReport, Trainer, TrainingDiverged


def run_experiment(
    cfg: Config,
    on_epoch: Callable[[EpochReport], None] | None = None,
    prepared: Prepared | None = None,
) -> Path:
    """Train and probe as ``cfg`` says; returns the run directory.

    An existing directory with the same config (``config_identity``: everything but where the
    run lives) is resumed; one with a different config is an error (pick another ``run.name``).
    ``config.json`` is written last when a run is created, so a directory without it is no run
    yet and is started afresh. One process writes a run at a time: a second one gets
    :class:`~noisescope.runlock.LockedError` (one line naming the holder); a lock left by a
    killed process is taken over.
    """
    p = prepared or prepare(cfg)
    try:
        lock = RunLock(p.path).acquire()
    except OSError as exc:  # the directory could not be made (prepare checked; the disk changed since)
        raise write_error(p.path, exc) or exc from None
    try:
        return _run_locked(cfg, p, on_epoch)
    finally:
        lock.release()


def _run_locked(cfg: Config, p: Prepared, on_epoch: Callable[[EpochReport], None] | None) -> Path:
    store = RunStore(p.path)
    store.remove_stale_temporaries()  # left by a killed writer (config.json, noise.json, a figure ...)
    if store.exists():
        old = store.read_json("config.json")
        if config_identity(old) != config_identity(cfg.to_dict()):
            raise ConfigError(
                f"run.name: {p.path} already holds a run with a different config; "
                "choose another run.name or remove that directory"
            )
        if store.status().get("state") == "complete":
            return p.path
        _warn_if_threads_differ(store)
    store.write_json("noise.json", p.data.noise)
    if not store.exists():
        store.write_json("config.json", cfg.to_dict())
    trainer = Trainer(
        p.model,
        p.data,
        cfg.train,
        probes=make_probes(cfg),
        probe_at=probe_epochs(cfg.train.epochs, cfg.probe.schedule, cfg.probe.every, cfg.probe.points),
        store=store,
        checkpoint_at=checkpoint_epochs(cfg),
        probe_batch_size=cfg.probe.batch_size,
        on_epoch=on_epoch,
    )
    if store.read_json("env.json") is None:
        store.write_json("env.json", environment(trainer.device))
    try:
        trainer.fit()
    except TrainingDiverged as exc:
        _record_failure(store, str(exc), diverged_at=exc.epoch)
        raise
    except BaseException as exc:
        _record_failure(store, str(exc) if isinstance(exc, UserError) else repr(exc))
        raise
    store.compact()
    store.write_json("summary.json", summarize(store.metrics()))
    store.set_status("complete", cfg.train.epochs)
    return p.path


def _record_failure(store: RunStore, error: str, **extra: object) -> None:
    """Mark the run failed in status.json (keeping its last finished epoch), if the disk
    still takes the write: a full or read-only disk must not hide the original error."""
    try:
        epoch = store.status().get("epoch", -1)
    except UserError:  # a damaged status.json
        epoch = -1
    try:
        store.set_status("failed", epoch, error=error, **extra)
    except OSError:
        pass


def _warn_if_threads_differ(store: RunStore) -> None:
    """Results depend on the torch thread count (float reductions): say so on a resume with
    another count (env.json records the count the run started with)."""
    env = store.read_json("env.json") or {}
    then, now = env.get("torch_threads"), torch.get_num_threads()
    if then is not None and int(then) != now:
        warnings.warn(
            f"{store.path} was started with {then} torch thread(s) and resumes with {now}: "
            f"its numbers may differ slightly from an uninterrupted run (set torch.set_num_threads({then}) "
            "or OMP_NUM_THREADS to reproduce exactly)", RuntimeWarning, stacklevel=2,
        )
