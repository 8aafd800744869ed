"""Validation of a whole Config before anything runs, device checks, and a config's identity and hash."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import json
import math
import sys
from collections.abc import Callable, Sequence
from importlib import import_module
from typing import Any

if sys.version_info >= (3, 11):
    pass
else:  # pragma: no cover
    pass

from noisescope.config.sections import (
    _DEVICE_RE,
    _SECTION_TYPES,
    DEVICES,
    MAX_EPOCHS,
    MAX_NAME_BYTES,
    MAX_SEED,
    OPTIMIZERS,
    PRECISIONS,
    PROBE_SCHEDULES,
    SCHEDULES,
    Config,
    ConfigError,
    DataConfig,
    ModelConfig,
    NoiseConfig,
    ProbeConfig,
    RunConfig,
    TrainConfig,
    _coerce,
    _fail,
    _is_int,
    _key,
    _suggest,
    check_train_method,
    copy_dict,
)


def from_dict(raw: dict[str, Any]) -> Config:
    """Build and validate a Config from nested dicts (unknown keys are errors).

    Does not check that ``train.device`` exists on this machine (recorded runs are read with
    it too); see :func:`check_device`.
    """
    cfg = Config()
    if not isinstance(raw, dict):
        raise ConfigError(f"a config must be a table of sections, got {raw!r}")
    for section, values in raw.items():
        if section not in _SECTION_TYPES:
            _fail(_key(section), f"unknown section [{_key(section)}]{_suggest(str(section), list(_SECTION_TYPES))}; "
                                 f"valid sections are {', '.join(_SECTION_TYPES)}")
        if not isinstance(values, dict):
            _fail(section, f"{section} must be a table ([{section}] followed by its keys), got {values!r}")
        target = getattr(cfg, section)
        names = [f.name for f in dataclasses.fields(target)]
        for key, value in values.items():
            if key not in names:
                dotted = f"{section}.{_key(key)}"
                _fail(dotted, f"unknown key {dotted}{_suggest(str(key), names, section + '.')}; "
                              f"valid keys in [{section}] are {', '.join(sorted(names))}")
            setattr(target, key, _coerce(section, key, value, getattr(target, key)))
    validate(cfg)
    return cfg


def _check_seed(where: str, value: int) -> None:
    if not 0 <= value <= MAX_SEED:
        _fail(where, f"{where} must be an integer in [0, {MAX_SEED}] (2**32 - 1), got {value}")


def _check_finite(where: str, value: Any) -> None:
    """Every number inside ``value`` (nested tables and lists) must be finite."""
    if isinstance(value, float) and not math.isfinite(value):
        _fail(where, f"{where} must be a finite number, got {value!r}")
    if isinstance(value, dict):
        for k, v in value.items():
            _check_finite(f"{where}.{_key(k)}", v)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_finite(f"{where}[{i}]", v)


def _check_choice(where: str, value: str, choices: Sequence[str]) -> None:
    if value.lower() not in choices:
        _fail(where, f"{where} must be one of {', '.join(choices)}, got {value!r}{_suggest(value.lower(), choices)}")


def _load(target: str) -> Callable[..., Any] | None:
    """``"module:attr"`` -> the object, or None when it can't be imported (the option check
    is then left to the call that uses it)."""
    module, _, attr = target.partition(":")
    try:
        return getattr(import_module(module), attr)
    except (ImportError, AttributeError):
        return None


_Params = tuple[tuple[str, ...] | None, tuple[str, ...]]


@functools.cache
def _parameters(fn: Callable[..., Any], skip: frozenset[str], skip_first: int = 0) -> _Params:
    """(option names ``fn`` accepts, or None when it takes ``**kwargs``; required ones)."""
    params = list(inspect.signature(fn).parameters.values())[skip_first:]
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None, ()
    named = [p for p in params if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.POSITIONAL_ONLY)
             and p.name not in skip]
    return tuple(p.name for p in named), tuple(p.name for p in named if p.default is inspect.Parameter.empty)


def _check_options(where: str, options: dict[str, Any], accepted: Sequence[str] | None, owner: str,
                   required: Sequence[str] = ()) -> None:
    """Unknown and missing option names of the ``where`` table (``owner`` says whose)."""
    for key in options:
        if not isinstance(key, str):
            _fail(where, f"{where}: option names must be strings, got {key!r}")
    if accepted is not None:
        for key in options:
            if key not in accepted:
                dotted = f"{where}.{_key(key)}"
                _fail(dotted, f"{dotted}: {owner} has no option {key!r}{_suggest(key, accepted)}; "
                                        f"its options: {', '.join(accepted) or '(none)'}")
    for key in required:
        if key not in options:
            _fail(f"{where}.{key}", f"{where}.{key} is required by {owner}; add it, e.g. "
                                    f"{where} = {{ {key} = ... }}")


def _validate_data(d: DataConfig) -> None:
    from noisescope.data import DATASETS, dataset_options

    try:
        allowed = dataset_options(d.name)
    except ValueError:
        _fail("data.name", f"data.name: unknown dataset {d.name!r}{_suggest(d.name.lower(), DATASETS)}; "
                           f"choose from {', '.join(DATASETS)}")
    if d.subset < 0:
        _fail("data.subset", f"data.subset must be >= 0 (0 = all samples), got {d.subset}")
    if not 0.0 <= d.val_fraction < 1.0:
        _fail("data.val_fraction", f"data.val_fraction must lie in [0, 1), got {d.val_fraction}; e.g. 0.1")
    _check_seed("data.seed", d.seed)
    for key, instead in (("seed", "data.seed"), ("subset", "data.subset")):
        if key in d.options:
            _fail(f"data.options.{key}", f"data.options.{key}: set {instead} instead")
    _check_options("data.options", d.options, [*allowed, "test_subset"], f"dataset {d.name!r}")
    _check_finite("data.options", d.options)
    test_subset = d.options.get("test_subset")
    if test_subset is not None and (not _is_int(test_subset) or test_subset < 0):
        _fail("data.options.test_subset", f"data.options.test_subset must be an integer >= 0 (0 = the whole test "
                                          f"set), got {test_subset!r}")


def _validate_noise(n: NoiseConfig) -> None:
    from noisescope.noise import NOISE_MODELS

    key = n.model.lower()
    if key not in NOISE_MODELS:
        _fail("noise.model", f"noise.model: unknown noise model {n.model!r}{_suggest(key, list(NOISE_MODELS))}; "
                             f"choose from {', '.join(NOISE_MODELS)}")
    if not 0.0 <= n.rate < 1.0:
        _fail("noise.rate", f"noise.rate must lie in [0, 1), got {n.rate}; e.g. 0.4 for 40% noise")
    if key in ("none", "transition", "file") and n.rate != 0.0:
        where = {"transition": " (its rates are the matrix)", "file": " (its labels come from the file)"}.get(key, "")
        _fail("noise.rate", f"noise.rate must be 0 for noise.model = {key!r}{where}, got {n.rate}; "
                            "remove noise.rate or set it to 0")
    _check_seed("noise.seed", n.seed)
    accepted, required = _parameters(NOISE_MODELS[key], frozenset({"y_true", "num_classes", "seed", "rate", "x_ref"}))
    _check_options("noise.options", n.options, accepted, f"noise model {key!r}", required)
    _check_finite("noise.options", n.options)


def _validate_model(m: ModelConfig) -> None:
    from noisescope.models import REGISTRY as MODELS

    key = m.arch.lower()
    if key not in MODELS:
        _fail("model.arch", f"model.arch: unknown architecture {m.arch!r}{_suggest(key, list(MODELS))}; "
                            f"choose from {sorted(MODELS)}")
    builder = _load(MODELS[key])
    if builder is not None:  # (input_shape, num_classes, **options)
        accepted, required = _parameters(builder, frozenset(), skip_first=2)
        _check_options("model.options", m.options, accepted, f"architecture {key!r}", required)
    _check_finite("model.options", m.options)
    widths = m.options.get("widths")
    if widths is not None:
        if not isinstance(widths, list) or not widths or any(not _is_int(w) or w <= 0 for w in widths):
            _fail("model.options.widths", f"model.options.widths must be a list of positive integers, e.g. "
                                          f"[512, 512], got {widths!r}")
    for name in ("width", "depth"):
        v = m.options.get(name)
        if v is not None and (not _is_int(v) or v <= 0):
            _fail(f"model.options.{name}", f"model.options.{name} must be a positive integer, got {v!r}")


def _validate_train(t: TrainConfig) -> None:
    _check_choice("train.optimizer", t.optimizer, OPTIMIZERS)
    _check_choice("train.schedule", t.schedule, SCHEDULES)
    if t.precision not in PRECISIONS:
        _fail("train.precision", f"train.precision must be one of {', '.join(PRECISIONS)}, got {t.precision!r}")
    if t.lr <= 0:
        _fail("train.lr", f"train.lr must be > 0, got {t.lr}; e.g. 1e-3")
    if t.weight_decay < 0:
        _fail("train.weight_decay", f"train.weight_decay must be >= 0, got {t.weight_decay}")
    if not 0.0 <= t.momentum < 1.0:
        _fail("train.momentum", f"train.momentum must lie in [0, 1), got {t.momentum}; e.g. 0.9")
    if t.batch_size < 1:
        _fail("train.batch_size", f"train.batch_size must be >= 1, got {t.batch_size}")
    if not 0 <= t.epochs <= MAX_EPOCHS:
        _fail("train.epochs", f"train.epochs must lie in [0, {MAX_EPOCHS}], got {t.epochs}")
    if t.warmup_epochs < 0:
        _fail("train.warmup_epochs", f"train.warmup_epochs must be >= 0 (0 = no warm-up), got {t.warmup_epochs}")
    if t.warmup_epochs > t.epochs:
        _fail("train.warmup_epochs", f"train.warmup_epochs = {t.warmup_epochs} is longer than train.epochs = "
                                     f"{t.epochs}; lower it or train longer")
    _check_seed("train.seed", t.seed)
    check_train_method(t.method, t.method_options)
    if not _DEVICE_RE.match(t.device):
        _fail("train.device", f"train.device must be one of {', '.join(DEVICES)}, got {t.device!r}")


def _validate_probe(p: ProbeConfig) -> None:
    from noisescope.probes import REGISTRY as PROBES

    if p.schedule not in PROBE_SCHEDULES:
        _fail("probe.schedule", f"probe.schedule must be one of {', '.join(PROBE_SCHEDULES)}, got {p.schedule!r}")
    if p.every < 1:
        _fail("probe.every", f"probe.every must be >= 1, got {p.every}")
    if p.points < 1:
        _fail("probe.points", f"probe.points must be >= 1, got {p.points}")
    if p.batch_size < 1:
        _fail("probe.batch_size", f"probe.batch_size must be >= 1, got {p.batch_size}")
    seen: set[str] = set()
    for name in p.probes:
        if not isinstance(name, str) or name not in PROBES:
            _fail("probe.probes", f"probe.probes: unknown probe {name!r}; choose from {sorted(PROBES)}")
        if name in seen:
            _fail("probe.probes", f"probe.probes lists {name!r} twice; list each probe once")
        seen.add(name)
    for name, options in p.options.items():
        where = f"probe.options.{_key(name)}"
        if name not in PROBES and name not in p.probes:
            _fail(where, f"{where}: unknown probe {name!r}{_suggest(str(name), list(PROBES))}; probe.options is "
                         f"keyed by probe name ({', '.join(sorted(PROBES))})")
        if not isinstance(options, dict):
            _fail(where, f"{where} must be a table of the {name} probe's options, e.g. [{where}], got {options!r}")
        cls = _load(PROBES[name])
        if cls is not None:
            accepted, required = _parameters(cls, frozenset())
            _check_options(where, options, accepted, f"the {name} probe", required)
            check = getattr(cls, "check_options", None)  # a probe's own value checks
            problem = check(options) if callable(check) else None
            if problem:
                _fail(f"{where}.{problem[0]}", f"{where}.{problem[0]} {problem[1]}")
        _check_finite(where, options)


def _validate_run(r: RunConfig) -> None:
    name = r.name
    if name:
        problem = None
        if name in (".", ".."):
            problem = "is not a directory name"
        elif "/" in name or "\\" in name:
            problem = "contains a path separator (run.root says where runs go)"
        elif name != name.strip():
            problem = "starts or ends with whitespace"
        elif any(ord(c) < 32 or ord(c) == 127 for c in name):
            problem = "contains a control character"
        elif len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
            problem = f"is longer than {MAX_NAME_BYTES} bytes"
        if problem:
            _fail("run.name", f"run.name {name!r} {problem}; give a single directory name such as \"my-run\"")
    for e in r.checkpoint_epochs:
        if not _is_int(e) or e < 0:
            _fail("run.checkpoint_epochs", f"run.checkpoint_epochs must be non-negative integers, got "
                                           f"{r.checkpoint_epochs}")
    if r.checkpoint_every < 0:
        _fail("run.checkpoint_every", f"run.checkpoint_every must be >= 0 (0 = off), got {r.checkpoint_every}")


def validate(cfg: Config) -> None:
    """Type, range, choice and option-name checks of every field; raises ConfigError naming
    the field. Nothing is loaded or written (the device's presence: :func:`check_device`)."""
    for section in _SECTION_TYPES:  # values set by hand after construction get the same type checks
        target = getattr(cfg, section)
        for f in dataclasses.fields(target):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            setattr(target, f.name, _coerce(section, f.name, getattr(target, f.name), default))
    _validate_data(cfg.data)
    _validate_noise(cfg.noise)
    _validate_model(cfg.model)
    _validate_train(cfg.train)
    _validate_probe(cfg.probe)
    _validate_run(cfg.run)
    beyond = sorted(e for e in cfg.run.checkpoint_epochs if e > cfg.train.epochs)
    if beyond:
        _fail("run.checkpoint_epochs", f"run.checkpoint_epochs lists epoch {beyond[0]}, beyond train.epochs = "
                                       f"{cfg.train.epochs}; list epochs in 0..{cfg.train.epochs} or train longer")


def check_device(device: str, where: str = "train.device") -> None:
    """Raise ConfigError unless ``device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``)
    is usable on this machine, e.g. ``train.device: cuda:3 is not available here (found 1
    CUDA device); use auto or cpu``."""
    if not _DEVICE_RE.match(device):
        _fail(where, f"{where} must be one of {', '.join(DEVICES)}, got {device!r}")
    if device in ("auto", "cpu"):
        return
    import torch

    if device == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            _fail(where, f"{where}: mps is not available here (it needs Apple silicon and a torch built with "
                         "MPS); use auto or cpu")
        return
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    index = int(device.partition(":")[2] or 0)
    if index >= count:
        found = f"found {count} CUDA device{'' if count == 1 else 's'}"
        if count and ":" in device:
            found += f": cuda:0 .. cuda:{count - 1}"
        _fail(where, f"{where}: {device} is not available here ({found}); use auto or cpu")


# ---------------------------------------------------------------------------------------------
# identity


def config_identity(cfg: Config | dict[str, Any]) -> dict[str, Any]:
    """What a run *is*: the resolved config without ``run.root`` and ``run.name`` (which say
    where it lives). Two configs with the same identity describe the same run, wherever it is."""
    d = copy_dict(cfg.to_dict() if isinstance(cfg, Config) else cfg)
    d["run"] = {k: v for k, v in d.get("run", {}).items() if k not in ("root", "name")}
    train = d.get("train", {})
    if train.get("method", "ce") == "ce" and not train.get("method_options"):  # runs from before methods
        train.pop("method", None)
        train.pop("method_options", None)
    return d


def config_hash(cfg: Config | dict[str, Any]) -> str:
    """Stable 10-hex-digit id of :func:`config_identity` (the run's name where none is given;
    equal to the ``config_hash`` that names existing runs and sweep points)."""
    return hashlib.sha256(json.dumps(config_identity(cfg), sort_keys=True).encode()).hexdigest()[:10]

