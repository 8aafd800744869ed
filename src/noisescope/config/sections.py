"""Config sections (typed dataclasses), their coercion from raw TOML values, and ``ConfigError``."""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

if sys.version_info >= (3, 11):
    pass
else:  # pragma: no cover
    pass


PRESET_DIR = Path(__file__).parent.parent / "presets"


class ConfigError(ValueError):
    """A config field is invalid; the message names the field and how to fix it.

    Attributes:
        field: the dotted field the error is about (``"train.lr"``), when known; used by
            :func:`locate` to name the file or ``--set`` override the value came from.
    """

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


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
DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")

#: Seeds lie in [0, MAX_SEED]: numpy refuses negative seeds, and the training loop derives
#: per-epoch seeds as ``seed * 1_000_003 + epoch``, which must stay inside torch's 64 bits.
MAX_SEED = 2**32 - 1
#: Upper bound of ``train.epochs`` (a typo guard: 1e9 epochs is never meant).
MAX_EPOCHS = 1_000_000
#: Integers are 64-bit signed (TOML's range; torch's and numpy's too).
INT_MIN, INT_MAX = -(2**63), 2**63 - 1
#: Longest directory name most filesystems accept, in bytes.
MAX_NAME_BYTES = 255
#: Fields whose value is a free-form table of options; ``--set`` may reach inside them.
OPTION_FIELDS = ("options",)

_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def _fail(where: str, message: str) -> NoReturn:
    """Raise ConfigError ``message`` about the dotted field ``where``."""
    raise ConfigError(message, field=where)


def _suggest(word: str, choices: Sequence[str], prefix: str = "") -> str:
    """`` (did you mean PREFIX+X?)`` for a near miss X of ``word`` among ``choices``, else ``""``."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {prefix}{close[0]}?)" if close else ""


_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(key: Any) -> str:
    """A key as a message shows it: bare when TOML allows it, else quoted (one line, always)."""
    return key if isinstance(key, str) and _BARE_KEY.match(key) else json.dumps(str(key))


def _show(text: str) -> str:
    """Free text (a path) as a message shows it: as is when printable, else its repr."""
    return text if text.isprintable() else repr(text)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _coerce(section: str, key: str, value: Any, default: Any) -> Any:
    """Check ``value`` against the type of the field's default (and, for numbers, that it is
    finite / a 64-bit integer); return it converted (``1.0`` -> ``1`` for integer fields)."""
    where = f"{section}.{key}"
    if isinstance(default, bool):
        if not isinstance(value, bool):
            _fail(where, f"{where} must be true or false, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():  # 3.0 -> 3
            if not INT_MIN <= value < 2.0**63:
                _fail(where, f"{where} = {value!r} is out of range; integers must lie in [-2**63, 2**63 - 1]")
            value = int(value)
        if not _is_int(value):
            _fail(where, f"{where} must be an integer, got {value!r}")
        if not INT_MIN <= value <= INT_MAX:
            _fail(where, f"{where} = {value} is out of range; integers must lie in [-2**63, 2**63 - 1]")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            _fail(where, f"{where} must be a number, got {value!r}")
        if not math.isfinite(value):
            _fail(where, f"{where} must be a finite number, got {value!r}")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            _fail(where, f"{where} must be a string, e.g. {key} = \"...\", got {value!r}")
        if "\x00" in value:
            _fail(where, f"{where} contains a NUL character; remove it")
        return value
    if isinstance(default, list):
        if not isinstance(value, list):
            _fail(where, f"{where} must be a list, e.g. {key} = [...], got {value!r}")
        return value
    if isinstance(default, dict):
        if not isinstance(value, dict):
            _fail(where, f"{where} must be a table, e.g. {key} = {{ name = 1 }}, got {value!r}")
        return value
    return value


# ---------------------------------------------------------------------------------------------
# validation


def copy_dict(d: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of a JSON-like nested dict."""
    return json.loads(json.dumps(d))


