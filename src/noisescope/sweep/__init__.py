"""Sweeps: grids of experiments from one TOML file, run locally or on Ray, resumable.

* :mod:`~noisescope.sweep.grid` -- the ``[grid]`` / ``[[zip]]`` / ``[sweep]`` tables and their
  expansion into runs with stable ids (the config hash).
* :mod:`~noisescope.sweep.executors` -- local (sequential or N spawned processes) and Ray.
* :mod:`~noisescope.sweep.runner` -- the resumable sweep directory, failure capture, and
  packing (runs differing only in seeds, lr or weight decay train as one packed model).
* :mod:`~noisescope.sweep.results` -- ``load_sweep`` (all metrics in one DataFrame) and the
  per-run summary table.

Example::

    from noisescope.sweep import load_sweep_spec, run_sweep, load_sweep
    spec = load_sweep_spec("sweep_demo")          # a file path or a bundled preset
    result = run_sweep(spec)                      # skips what is already complete
    df = load_sweep(result.path)                  # run, noise.rate, train.seed, epoch, ...
"""

from __future__ import annotations

from noisescope.sweep.executors import LocalExecutor, RayExecutor, make_executor
from noisescope.sweep.grid import Axis, GridPoint, SweepSettings, SweepSpec, load_sweep_spec, sweep_from_dict
from noisescope.sweep.results import find_sweeps, load_sweep, sweep_params, sweep_table
from noisescope.sweep.runner import (
    PackTask,
    RunOutcome,
    RunTask,
    SweepResult,
    execute_pack,
    execute_task,
    is_sweep,
    plan_packs,
    read_manifest,
    run_sweep,
)

__all__ = [
    "Axis",
    "GridPoint",
    "LocalExecutor",
    "PackTask",
    "RayExecutor",
    "RunOutcome",
    "RunTask",
    "SweepResult",
    "SweepSettings",
    "SweepSpec",
    "execute_pack",
    "execute_task",
    "find_sweeps",
    "is_sweep",
    "load_sweep",
    "load_sweep_spec",
    "make_executor",
    "plan_packs",
    "read_manifest",
    "run_sweep",
    "sweep_from_dict",
    "sweep_params",
    "sweep_table",
]
