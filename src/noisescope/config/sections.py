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
    method: str = "ce"
    method_options: dict[str, Any] = field(default_factory=dict)


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

#: ``train.method`` -> its ``train.method_options`` and each option's accepted range [low,
#: high] (``noisescope.methods`` holds the methods and the papers' defaults).
TRAIN_METHODS: dict[str, dict[str, tuple[float, float]]] = {
    "ce": {},
    "gce": {"q": (1e-6, 1.0)},
    "sce": {"alpha": (0.0, 1e3), "beta": (0.0, 1e3), "log_zero": (-1e3, -1e-6)},
    "elr": {"lam": (0.0, 1e3), "beta": (0.0, 1.0)},
    "bootstrap_soft": {"beta": (0.0, 1.0)},
    "bootstrap_hard": {"beta": (0.0, 1.0)},
    "mixup": {"alpha": (1e-9, 1e3), "seed": (0, 2**32 - 1)},
    "coteaching": {"forget_rate": (0.0, 0.99), "ramp_epochs": (0, 1e6), "seed": (0, 2**32 - 1)},
    "rank_tail": {"k": (0, 1e6), "lam": (0.0, 1e3)},
}
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "step", "linear")
PROBE_SCHEDULES = ("every", "every_k", "log", "auto")
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


def check_train_method(method: str, options: dict[str, Any]) -> None:
    """``train.method`` is one of TRAIN_METHODS and each ``train.method_options`` entry is one
    of its options, a number in the option's range (ConfigError naming the field otherwise)."""
    if method not in TRAIN_METHODS:
        _fail("train.method", f"train.method must be one of {', '.join(TRAIN_METHODS)}, got {method!r}"
              + _suggest(method, list(TRAIN_METHODS)))
    accepted = TRAIN_METHODS[method]
    for key, value in options.items():
        where = f"train.method_options.{_key(key)}"
        if key not in accepted:
            names = ", ".join(accepted) or "none"
            _fail(where, f"{where}: {method} takes no option {_key(key)} (its options: {names})")
        low, high = accepted[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or not low <= value <= high:
            _fail(where, f"{where} must be a number in [{low:g}, {high:g}], got {value!r}")
        if isinstance(low, int) and isinstance(high, int) and not float(value).is_integer():
            _fail(where, f"{where} must be an integer, got {value!r}")


def copy_dict(d: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of a JSON-like nested dict."""
    return json.loads(json.dumps(d))


