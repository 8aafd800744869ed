"""Experiment configuration: typed sections, TOML files, ``--set key=value`` overrides.

Every run records the fully resolved config (``Config.to_dict()``), so a run directory is
enough to reproduce it. Validation errors are :class:`ConfigError` with a one-line message
naming the field and the fix; the CLI turns them into exit status 2 before anything is written.

Example (``noisescope run my.toml --set noise.rate=0.2``)::

    [data]
    name = "fashion_mnist"
    subset = 10000          # class-balanced training subset; 0 = all
    val_fraction = 0.1      # held-out noisy-validation split
    [noise]
    model = "symmetric"
    rate = 0.4
    [model]
    arch = "mlp"
    options = { widths = [512, 512, 512] }
    [train]
    optimizer = "adam"
    lr = 1e-3
    epochs = 50
    [probe]
    schedule = "every"
    probes = ["dynamics"]
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PRESET_DIR = Path(__file__).parent / "presets"


class ConfigError(ValueError):
    """A config field is invalid; the message names the field and how to fix it."""


@dataclass
class DataConfig:
    name: str = "synthetic"
    subset: int = 0
    val_fraction: float = 0.1
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class NoiseConfig:
    model: str = "symmetric"
    rate: float = 0.0
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class ModelConfig:
    arch: str = "mlp"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainConfig:
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    batch_size: int = 128
    epochs: int = 50
    schedule: str = "constant"
    warmup_epochs: int = 0
    seed: int = 0
    device: str = "auto"
    augment: bool = False
    precision: str = "fp32"
    compile: bool = False


@dataclass
class ProbeConfig:
    schedule: str = "every"
    every: int = 1
    points: int = 30
    probes: list[str] = field(default_factory=lambda: ["dynamics"])
    batch_size: int = 2048
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunConfig:
    root: str = "runs"
    name: str = ""
    checkpoint_epochs: list[int] = field(default_factory=list)
    checkpoint_every: int = 0


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_SECTION_TYPES = {
    "data": DataConfig,
    "noise": NoiseConfig,
    "model": ModelConfig,
    "train": TrainConfig,
    "probe": ProbeConfig,
    "run": RunConfig,
}

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "step", "linear")
PROBE_SCHEDULES = ("every", "every_k", "log")
PRECISIONS = ("fp32", "bf16")


def _coerce(section: str, key: str, value: Any, default: Any) -> Any:
    """Check ``value`` against the type of the field's default."""
    where = f"{section}.{key}"
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    if isinstance(default, list):
        if not isinstance(value, list):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        return value
    if isinstance(default, dict):
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a table, e.g. {{ key = 1 }}, got {value!r}")
        return value
    return value


def from_dict(raw: dict[str, Any]) -> Config:
    """Build and validate a Config from nested dicts (unknown keys are errors)."""
    cfg = Config()
    for section, values in raw.items():
        if section not in _SECTION_TYPES:
            raise ConfigError(
                f"unknown section [{section}]; valid sections are {', '.join(_SECTION_TYPES)}"
            )
        if not isinstance(values, dict):
            raise ConfigError(f"[{section}] must be a table of keys")
        target = getattr(cfg, section)
        names = {f.name for f in dataclasses.fields(target)}
        for key, value in values.items():
            if key not in names:
                raise ConfigError(
                    f"unknown key {section}.{key}; valid keys in [{section}] are "
                    f"{', '.join(sorted(names))}"
                )
            setattr(target, key, _coerce(section, key, value, getattr(target, key)))
    validate(cfg)
    return cfg


def validate(cfg: Config) -> None:
    """Range and choice checks; raises ConfigError naming the field."""
    d, n, t, p, r = cfg.data, cfg.noise, cfg.train, cfg.probe, cfg.run
    if d.subset < 0:
        raise ConfigError(f"data.subset must be >= 0 (0 = all samples), got {d.subset}")
    if not 0.0 <= d.val_fraction < 1.0:
        raise ConfigError(f"data.val_fraction must lie in [0, 1), got {d.val_fraction}")
    if not 0.0 <= n.rate < 1.0:
        raise ConfigError(f"noise.rate must lie in [0, 1), got {n.rate}; e.g. 0.4 for 40% noise")
    if t.optimizer.lower() not in OPTIMIZERS:
        raise ConfigError(f"train.optimizer must be one of {', '.join(OPTIMIZERS)}, got {t.optimizer!r}")
    if t.schedule.lower() not in SCHEDULES:
        raise ConfigError(f"train.schedule must be one of {', '.join(SCHEDULES)}, got {t.schedule!r}")
    if t.precision not in PRECISIONS:
        raise ConfigError(f"train.precision must be one of {', '.join(PRECISIONS)}, got {t.precision!r}")
    if t.lr <= 0:
        raise ConfigError(f"train.lr must be > 0, got {t.lr}")
    if t.weight_decay < 0:
        raise ConfigError(f"train.weight_decay must be >= 0, got {t.weight_decay}")
    if t.batch_size <= 0:
        raise ConfigError(f"train.batch_size must be > 0, got {t.batch_size}")
    if t.epochs < 0:
        raise ConfigError(f"train.epochs must be >= 0, got {t.epochs}")
    if p.schedule not in PROBE_SCHEDULES:
        raise ConfigError(f"probe.schedule must be one of {', '.join(PROBE_SCHEDULES)}, got {p.schedule!r}")
    if p.every <= 0:
        raise ConfigError(f"probe.every must be > 0, got {p.every}")
    if p.points <= 0:
        raise ConfigError(f"probe.points must be > 0, got {p.points}")
    if p.batch_size <= 0:
        raise ConfigError(f"probe.batch_size must be > 0, got {p.batch_size}")
    from noisescope.probes import REGISTRY as PROBES

    for name in p.probes:
        if name not in PROBES:
            raise ConfigError(f"probe.probes: unknown probe {name!r}; choose from {sorted(PROBES)}")
    from noisescope.models import REGISTRY as MODELS

    if cfg.model.arch.lower() not in MODELS:
        raise ConfigError(f"model.arch: unknown architecture {cfg.model.arch!r}; choose from {sorted(MODELS)}")
    widths = cfg.model.options.get("widths")
    if widths is not None:
        if not isinstance(widths, list) or not widths or any(
            not isinstance(w, int) or isinstance(w, bool) or w <= 0 for w in widths
        ):
            raise ConfigError(f"model.options.widths must be a list of positive integers, got {widths!r}")
    for key in ("width", "depth"):
        v = cfg.model.options.get(key)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v <= 0):
            raise ConfigError(f"model.options.{key} must be a positive integer, got {v!r}")
    if any((not isinstance(e, int)) or e < 0 for e in r.checkpoint_epochs):
        raise ConfigError(f"run.checkpoint_epochs must be non-negative integers, got {r.checkpoint_epochs}")
    if r.checkpoint_every < 0:
        raise ConfigError(f"run.checkpoint_every must be >= 0, got {r.checkpoint_every}")


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.lr=1e-3"`` -> (["train", "lr"], 0.001). Values are TOML literals; bare words
    that are not valid TOML are taken as strings."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r} must look like section.key=value, e.g. train.lr=1e-3")
    key, _, value = text.partition("=")
    path = key.strip().split(".")
    if len(path) < 2 or not all(path):
        raise ConfigError(f"--set {text!r}: the key must be section.key, e.g. noise.rate=0.2")
    try:
        parsed = tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value.strip()
    return path, parsed


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``--set`` overrides to a nested dict (in place) and return it."""
    for text in overrides:
        path, value = parse_override(text)
        node = raw
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {text!r}: {part} is not a table")
        node[path[-1]] = value
    return raw


def resolve_path(name_or_path: str | Path) -> Path:
    """A config file path, or the name of a bundled preset (``fmnist_demo``)."""
    path = Path(name_or_path)
    if path.exists():
        return path
    preset = PRESET_DIR / f"{name_or_path}.toml"
    if preset.exists():
        return preset
    presets = sorted(p.stem for p in PRESET_DIR.glob("*.toml"))
    raise ConfigError(f"config {str(name_or_path)!r} is neither a file nor a preset; presets: {', '.join(presets)}")


def read_toml(name_or_path: str | Path) -> dict[str, Any]:
    path = resolve_path(name_or_path)
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None


def load_config(name_or_path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read a TOML file or preset (None = defaults), apply overrides, validate."""
    raw = read_toml(name_or_path) if name_or_path is not None else {}
    return from_dict(apply_overrides(raw, list(overrides or [])))
