"""Experiment grids in TOML: which fields vary, and the runs they expand into.

A sweep file is an ordinary config file (the base run) plus up to three extra tables::

    [noise]                 # the base config, exactly as for `noisescope run`
    model = "symmetric"
    ...

    [grid]                  # cross product: every dotted key -> the list of its values
    noise.rate = [0.0, 0.2, 0.4]
    train.seed = [0, 1]
    model.options.widths = [[64, 64], [256, 256]]   # a list-valued field: a list of lists

    [[zip]]                 # zipped axes: these keys vary *together* (equal-length lists);
    model.arch = ["mlp", "vgg"]                     # each [[zip]] table is one more axis
    train.lr = [1e-3, 1e-4]

    [sweep]                 # where and how (all optional)
    name = "noise-vs-width" # default: the file's stem; the sweep lives in root/name
    root = "sweeps"
    executor = "local"      # or "ray"
    workers = 1
    pack = true             # train runs that differ only in seeds, lr or weight decay as one
                            # packed model (noisescope.runs.packed_runs); false: one by one

The rule is unambiguous: only values under ``[grid]`` and ``[[zip]]`` are axes, so fields that
are lists themselves (``probe.probes``, ``run.checkpoint_epochs``, ``model.options.widths``)
keep their meaning in the base config and are swept by giving a list of lists. Keys may be
written bare (``noise.rate = [...]``, TOML nests them) or quoted (``"noise.rate" = [...]``).
Axes expand in file order, ``[grid]`` keys first, then each ``[[zip]]``; the last axis varies
fastest. Every run's id is :func:`noisescope.experiment.config_hash` of its resolved config,
so the same point gets the same id in any grid and in any order.

Errors are one-line :class:`~noisescope.config.ConfigError` messages naming the field.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from noisescope.config import _SECTION_TYPES, Config, ConfigError, apply_overrides, from_dict, read_toml
from noisescope.runs.build import config_hash

SWEEP_TABLES = ("grid", "zip", "sweep")
EXECUTORS = ("local", "ray")
# config fields that are free-form tables: a grid key may go deeper into them
OPTION_FIELDS = {"options"}
FORBIDDEN = {"run.root": "each sweep keeps its runs in SWEEP_DIR/runs",
             "run.name": "each run of a sweep is named by its id (the config hash)"}


@dataclass
class SweepSettings:
    """The ``[sweep]`` table: where the sweep lives and how it runs by default.

    Attributes:
        name: sweep directory name (default: the config file's stem).
        root: directory holding sweeps.
        executor: ``"local"`` or ``"ray"``.
        workers: local worker processes (1 = sequential, in this process).
        address: Ray cluster address (``""`` = start Ray locally, ``"auto"``, ``"ray://h:p"``).
        cpus_per_run: CPUs reserved per run (Ray's ``num_cpus``).
        gpus_per_run: GPUs per run; a fraction (e.g. 0.25) packs several runs onto one GPU.
        threads_per_run: torch intra-op threads in each run (0 = torch's default).
        retry_failed: rerun runs recorded as failed (they resume from their last checkpoint).
        pack: train the pending runs that differ only in ``train.seed``, ``noise.seed``,
            ``train.lr``, ``train.weight_decay`` (or lr schedule) as one packed model each
            (:func:`noisescope.runs.packed_runs.run_packed`: one executor task per pack, the
            same run directories); False runs every point on its own.
    """

    name: str = ""
    root: str = "sweeps"
    executor: str = "local"
    workers: int = 1
    address: str = ""
    cpus_per_run: float = 1.0
    gpus_per_run: float = 0.0
    threads_per_run: int = 1
    retry_failed: bool = True
    pack: bool = True

    def validate(self) -> None:
        if self.executor not in EXECUTORS:
            raise ConfigError(f"sweep.executor must be one of {', '.join(EXECUTORS)}, got {self.executor!r}")
        if self.workers < 1:
            raise ConfigError(f"sweep.workers must be >= 1, got {self.workers}")
        if self.cpus_per_run <= 0:
            raise ConfigError(f"sweep.cpus_per_run must be > 0, got {self.cpus_per_run}")
        g = self.gpus_per_run
        if g < 0 or (g > 1 and not float(g).is_integer()):
            raise ConfigError(f"sweep.gpus_per_run must be a fraction in [0, 1] or a whole number, got {g}")
        if self.threads_per_run < 0:
            raise ConfigError(f"sweep.threads_per_run must be >= 0 (0 = torch's default), got "
                              f"{self.threads_per_run}")


def settings_from_dict(raw: dict[str, Any]) -> SweepSettings:
    """Typed, validated :class:`SweepSettings` from the ``[sweep]`` table."""
    from noisescope.config import _coerce

    s = SweepSettings()
    names = {f.name: f for f in dataclasses.fields(s)}
    for key, value in raw.items():
        if key not in names:
            raise ConfigError(f"unknown key sweep.{key}; valid keys in [sweep] are {', '.join(names)}")
        setattr(s, key, _coerce("sweep", key, value, getattr(s, key)))
    s.validate()
    return s


@dataclass(frozen=True)
class Axis:
    """One axis of the grid: ``keys`` vary together through ``values`` (one tuple per step)."""

    keys: tuple[str, ...]
    values: tuple[tuple[Any, ...], ...]

    def __len__(self) -> int:
        return len(self.values)

    def to_dict(self) -> dict[str, Any]:
        return {"keys": list(self.keys), "values": [list(v) for v in self.values]}


@dataclass
class GridPoint:
    """One run of a sweep: its id, the swept values (dotted key -> value) and its config."""

    id: str
    params: dict[str, Any]
    config: Config


@dataclass
class SweepSpec:
    """An expanded sweep: its settings, its axes and its runs (in expansion order)."""

    settings: SweepSettings
    base: dict[str, Any]
    axes: list[Axis]
    points: list[GridPoint] = field(default_factory=list)

    @property
    def keys(self) -> list[str]:
        """Every swept dotted key, in axis order."""
        return [k for axis in self.axes for k in axis.keys]

    @property
    def directory(self) -> Path:
        return Path(self.settings.root) / self.settings.name


def _check_key(dotted: str, where: str) -> None:
    """A dotted key must name a config field (deeper parts only inside ``options`` tables)."""
    parts = dotted.split(".")
    if len(parts) < 2 or not all(parts):
        raise ConfigError(f"{where}: key {dotted!r} must be section.field, e.g. noise.rate")
    section, name = parts[0], parts[1]
    if section not in _SECTION_TYPES:
        raise ConfigError(f"{where}.{dotted}: unknown section [{section}]; valid sections are "
                          f"{', '.join(_SECTION_TYPES)}")
    names = [f.name for f in dataclasses.fields(_SECTION_TYPES[section])]
    if name not in names:
        raise ConfigError(f"{where}.{dotted}: unknown key {section}.{name}; valid keys in "
                          f"[{section}] are {', '.join(sorted(names))}")
    if len(parts) > 2 and name not in OPTION_FIELDS:
        raise ConfigError(f"{where}.{dotted}: {section}.{name} is not a table; sweep it as "
                          f"{section}.{name} = [...]")
    if f"{section}.{name}" in FORBIDDEN:
        raise ConfigError(f"{where}.{dotted} can't be swept: {FORBIDDEN[f'{section}.{name}']}")


def flatten_axes(table: dict[str, Any], where: str, prefix: str = "") -> dict[str, list[Any]]:
    """Nested ``{"noise": {"rate": [..]}}`` or ``{"noise.rate": [..]}`` -> ``{"noise.rate": [..]}``.

    Recursion stops at the first list (the axis' values) or at a config field that is not an
    options table; a scalar there is an error (an axis needs a list of values).
    """
    out: dict[str, list[Any]] = {}
    for key, value in table.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        depth = len(dotted.split("."))
        is_options = depth >= 2 and dotted.split(".")[1] in OPTION_FIELDS
        if isinstance(value, dict) and (depth < 2 or (is_options and value)):
            out.update(flatten_axes(value, where, dotted))
            continue
        _check_key(dotted, where)
        if not isinstance(value, list):
            raise ConfigError(f"{where}.{dotted} must be a list of values to sweep, e.g. "
                              f"{dotted} = [{json.dumps(value)}, ...], got {value!r}")
        if not value:
            raise ConfigError(f"{where}.{dotted} is an empty list; give at least one value")
        if dotted in out:
            raise ConfigError(f"{where}.{dotted} is given twice")
        out[dotted] = value
    return out


def parse_axes(grid: Any, zips: Any) -> list[Axis]:
    """``[grid]`` and ``[[zip]]`` tables -> axes (grid keys first, in file order)."""
    if grid is None:
        grid = {}
    if not isinstance(grid, dict):
        raise ConfigError("[grid] must be a table of section.field = [values]")
    axes = [Axis((k,), tuple((v,) for v in vals)) for k, vals in flatten_axes(grid, "grid").items()]
    if zips is None:
        zips = []
    if isinstance(zips, dict):
        zips = [zips]
    if not isinstance(zips, list) or not all(isinstance(z, dict) for z in zips):
        raise ConfigError("zip must be one or more [[zip]] tables of section.field = [values]")
    for i, z in enumerate(zips):
        where = f"zip[{i}]"
        flat = flatten_axes(z, where)
        if not flat:
            continue
        lengths = {k: len(v) for k, v in flat.items()}
        if len(set(lengths.values())) != 1:
            raise ConfigError(f"{where}: zipped lists must have equal lengths, got "
                              + ", ".join(f"{k}: {n}" for k, n in lengths.items()))
        keys = tuple(flat)
        axes.append(Axis(keys, tuple(zip(*(flat[k] for k in keys), strict=True))))
    seen: set[str] = set()
    for axis in axes:
        for k in axis.keys:
            if k in seen:
                raise ConfigError(f"{k} is swept twice (in [grid] and a [[zip]], or in two [[zip]]s)")
            seen.add(k)
    return axes


def set_dotted(raw: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``raw["a"]["b"]["c"] = value`` for ``"a.b.c"``, creating tables on the way."""
    node = raw
    parts = dotted.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{dotted}: {part} is not a table in the base config")
    node[parts[-1]] = copy.deepcopy(value)


def describe(params: dict[str, Any]) -> str:
    """``{"noise.rate": 0.2, "train.seed": 1}`` -> ``"noise.rate=0.2 train.seed=1"``."""
    return " ".join(f"{k}={json.dumps(v)}" for k, v in params.items())


def expand(base: dict[str, Any], axes: list[Axis]) -> list[GridPoint]:
    """The cross product of ``axes`` applied to ``base``; validated, with stable ids.

    Raises ConfigError naming the grid point and the field when a point is invalid, and when
    two points resolve to the same config (a repeated value on an axis).
    """
    points: list[GridPoint] = []
    ids: dict[str, int] = {}
    for i, combo in enumerate(itertools.product(*(axis.values for axis in axes))):
        params: dict[str, Any] = {}
        for axis, values in zip(axes, combo, strict=True):
            params.update(zip(axis.keys, values, strict=True))
        raw = copy.deepcopy(base)
        for k, v in params.items():
            set_dotted(raw, k, v)
        try:
            cfg = from_dict(raw)
        except ConfigError as exc:
            raise ConfigError(f"grid point {i} ({describe(params)}): {exc}") from None
        run_id = config_hash(cfg)
        if run_id in ids:
            raise ConfigError(f"grid points {ids[run_id]} and {i} resolve to the same config "
                              f"({describe(params)}); remove the repeated value")
        ids[run_id] = i
        points.append(GridPoint(run_id, params, cfg))
    return points


def split_sweep(raw: dict[str, Any]) -> tuple[dict[str, Any], Any, Any, dict[str, Any]]:
    """A parsed sweep file -> (base config, grid, zip, sweep settings table)."""
    base = {k: v for k, v in raw.items() if k not in SWEEP_TABLES}
    for key in ("root", "name"):
        if key in base.get("run", {}):
            raise ConfigError(f"run.{key} can't be set in a sweep (file or --set): {FORBIDDEN['run.' + key]}; "
                              f"use sweep.{key} for the sweep directory")
    sweep = raw.get("sweep", {})
    if not isinstance(sweep, dict):
        raise ConfigError("[sweep] must be a table, e.g. [sweep] name = \"my-sweep\"")
    return base, raw.get("grid"), raw.get("zip"), sweep


def sweep_from_dict(raw: dict[str, Any], default_name: str = "sweep") -> SweepSpec:
    """Validate and expand a parsed sweep file (see the module docstring)."""
    base, grid, zips, sweep = split_sweep(raw)
    settings = settings_from_dict(sweep)
    settings.name = settings.name or default_name
    if "/" in settings.name or settings.name in (".", ".."):
        raise ConfigError(f"sweep.name must be a plain directory name, got {settings.name!r}")
    axes = parse_axes(grid, zips)
    spec = SweepSpec(settings, base, axes)
    spec.points = expand(base, axes)
    return spec


def load_sweep_spec(name_or_path: str | Path, overrides: list[str] | None = None) -> SweepSpec:
    """Read a sweep TOML file or preset, apply ``--set`` overrides (``grid.train.seed=[0,1]``
    and ``sweep.workers=2`` work too), validate and expand it. A run config without [grid],
    [[zip]] or [sweep] is a sweep's base: its ``run.root`` / ``run.name`` are dropped (the
    sweep names the directories); set on the command line they are still refused."""
    from noisescope.config import resolve_path

    path = resolve_path(name_or_path)
    raw = read_toml(path)
    if not any(t in raw for t in SWEEP_TABLES):
        # a run config (a preset such as fmnist_demo) as the base of a sweep: where its one run
        # would go (run.root, run.name) does not apply; each sweep keeps its runs in SWEEP_DIR/runs
        run = raw.get("run")
        if isinstance(run, dict):
            raw["run"] = {k: v for k, v in run.items() if k not in ("root", "name")}
    raw = apply_overrides(raw, list(overrides or []))
    return sweep_from_dict(raw, default_name=path.stem)
