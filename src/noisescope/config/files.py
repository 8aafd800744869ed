"""Config files, presets and ``--set`` overrides: reading, locating errors, :func:`load_config`."""

from __future__ import annotations

import dataclasses
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from noisescope.config.sections import (
    _SECTION_TYPES,
    OPTION_FIELDS,
    PRESET_DIR,
    Config,
    ConfigError,
    _fail,
    _key,
    _show,
    _suggest,
)
from noisescope.config.validate import check_device, from_dict

# ---------------------------------------------------------------------------------------------
# overrides and files


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.lr=1e-3"`` -> (["train", "lr"], 0.001). Values are TOML literals; bare words
    that are not valid TOML are taken as strings (``run.name=abc``); a value that opens a
    TOML string, list or table (``"``, ``'``, ``[``, ``{``) must be valid TOML."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r} must look like section.key=value, e.g. train.lr=1e-3")
    key, _, value = text.partition("=")
    path = [part.strip() for part in key.strip().split(".")]
    if len(path) < 2 or not all(path):
        raise ConfigError(f"--set {text!r}: the key must be section.key, e.g. noise.rate=0.2")
    value = value.strip()
    if not value:
        raise ConfigError(f"--set {text!r}: no value after '='; write {key.strip()}=VALUE "
                          f"({key.strip()}='' for an empty string)", field=".".join(path))
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError as exc:
        if value[0] in "\"'[{":
            reason = str(exc).split(" (at line")[0]
            dotted = ".".join(path)
            raise ConfigError(f"--set {text!r}: the value is not valid TOML ({reason}); close quotes, lists and "
                              f"tables, e.g. {dotted}='text', {dotted}=[1, 2] or {dotted}={{ key = 1 }}",
                              field=dotted) from None
        parsed = value
    return path, parsed


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``--set`` overrides to a nested dict (in place) and return it.

    Any section is accepted here (sweep files add ``grid``, ``zip`` and ``sweep``);
    :func:`from_dict` then refuses unknown ones."""
    for text in overrides:
        path, value = parse_override(text)
        node = raw
        for i, part in enumerate(path[:-1]):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                dotted = ".".join(path[: i + 1])
                raise ConfigError(f"--set {text!r}: {dotted} is not a table; set it with {dotted}=VALUE",
                                  field=dotted)
        node[path[-1]] = value
    return raw


def check_override(text: str) -> None:
    """Refuse a ``--set`` override of a run config whose key is not a field: an unknown
    section or key, or a dotted key going inside a field that is not an options table."""
    path, _ = parse_override(text)
    section, key = path[0], path[1]
    if section not in _SECTION_TYPES:
        hint = _suggest(section, list(_SECTION_TYPES))
        _fail(_key(section), f"--set {text!r}: unknown section [{_key(section)}]{hint}; "
                             f"valid sections are {', '.join(_SECTION_TYPES)}")
    names = [f.name for f in dataclasses.fields(_SECTION_TYPES[section])]
    if key not in names:
        dotted = f"{section}.{_key(key)}"
        _fail(dotted, f"--set {text!r}: unknown key {dotted}{_suggest(key, names, section + '.')}; "
                      f"valid keys in [{section}] are {', '.join(sorted(names))}")
    if len(path) > 2 and key not in OPTION_FIELDS:
        _fail(f"{section}.{key}", f"--set {text!r}: {section}.{key} is not a table; write {section}.{key}=VALUE")


def resolve_path(name_or_path: str | Path) -> Path:
    """A config file path, or the name of a bundled preset (``fmnist_demo``)."""
    if "\x00" in str(name_or_path):
        raise ConfigError(f"config {str(name_or_path)!r}: a file name can't contain a NUL character")
    path = Path(name_or_path)
    if path.exists():
        return path
    preset = PRESET_DIR / f"{name_or_path}.toml"
    if "/" not in str(name_or_path) and preset.exists():
        return preset
    presets = sorted(p.stem for p in PRESET_DIR.glob("*.toml"))
    raise ConfigError(f"config {str(name_or_path)!r} is neither a file nor a preset; presets: {', '.join(presets)}")


def describe_source(path: Path) -> str:
    """How a message names a config file: ``preset NAME`` for bundled presets, else the path."""
    return f"preset {path.stem}" if path.parent == PRESET_DIR else _show(str(path))


MAX_CONFIG_BYTES = 4 * 2**20  # a config is a few kB; more is a wrong file (or an endless one: /dev/zero)


def read_toml(name_or_path: str | Path) -> dict[str, Any]:
    """Parse a TOML config file (or preset); every failure is a one-line ConfigError naming it."""
    path = resolve_path(name_or_path)
    where = describe_source(path)
    if path.is_dir():
        raise ConfigError(f"{where} is a directory, not a config file; give a .toml file or a preset name")
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{where}: can't read it ({exc.strerror or exc})") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{where}: larger than {MAX_CONFIG_BYTES // 2**20} MiB, not a config file; give a .toml "
                          "config file or a preset name")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{where}: not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line}); "
                          "save the file as UTF-8") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: not valid TOML ({str(exc).splitlines()[0]})") from None


def locate(exc: ConfigError, source: str | Path | None, overrides: Sequence[str] = ()) -> ConfigError:
    """The same error, prefixed with where the bad value came from: the last ``--set``
    override that touched ``exc.field`` (``--set 'train.lr=nan': ...``), else the file
    (``my.toml: ...``). ``exc.field`` defaults to the dotted name the message starts with.
    Messages already naming their origin are returned unchanged. For errors found after
    :func:`load_config` (while loading the data, say)::

        except ConfigError as exc:
            fail(str(locate(exc, config_path, overrides)))
    """
    message = str(exc)
    if message.startswith("--set ") or (source is not None and message.startswith(str(source))):
        return exc
    field_name = exc.field
    if field_name is None:
        head = re.match(r"^\[?([a-z_]+(?:\.[A-Za-z0-9_\-]+)*)", message)
        if head and head.group(1).split(".")[0] in _SECTION_TYPES:
            field_name = head.group(1)
    if field_name is not None and "." in field_name:  # a whole section: too vague to blame an override
        parts = field_name.split("[")[0].split(".")
        for text in reversed(list(overrides)):
            try:
                path, _ = parse_override(text)
            except ConfigError:
                continue
            n = min(len(path), len(parts))
            if path[:n] == parts[:n]:
                return ConfigError(f"--set {text!r}: {message}", field=field_name)
    if source is None:
        return exc
    where = describe_source(Path(source)) if isinstance(source, Path) else _show(str(source))
    return ConfigError(f"{where}: {message}", field=field_name)


def _shorten_checkpoints(raw: dict[str, Any], overrides: list[str]) -> None:
    """A run shortened with ``--set train.epochs=E`` keeps only the file's checkpoint epochs
    <= E (a preset's later checkpoints cannot exist). Checkpoint epochs given with ``--set``
    are never dropped: beyond train.epochs they are an error (config.validate)."""
    keys = {t.split("=", 1)[0].strip() for t in overrides}
    run, train = raw.get("run"), raw.get("train")
    if "train.epochs" not in keys or any(k.startswith("run.checkpoint_epochs") for k in keys):
        return
    if not (isinstance(run, dict) and isinstance(train, dict) and isinstance(run.get("checkpoint_epochs"), list)):
        return
    epochs = train.get("epochs")
    if isinstance(epochs, int) and not isinstance(epochs, bool):
        run["checkpoint_epochs"] = [e for e in run["checkpoint_epochs"]
                                    if not isinstance(e, int) or isinstance(e, bool) or e <= epochs]


def load_config(name_or_path: str | Path | None = None, overrides: list[str] | None = None, *,
                device_check: bool = True) -> Config:
    """Read a TOML file or preset (None = defaults), apply ``--set`` overrides, validate.

    Every error is one ConfigError line naming the field and where its value came from (the
    file, or the override). With ``device_check`` (the default), ``train.device`` must also
    exist on this machine (:func:`check_device`).
    """
    overrides = list(overrides or [])
    raw: dict[str, Any] = {}
    source: Path | None = None
    if name_or_path is not None:
        source = resolve_path(name_or_path)
        raw = read_toml(source)
    try:
        for text in overrides:
            check_override(text)
        apply_overrides(raw, overrides)
        _shorten_checkpoints(raw, overrides)
        if isinstance(raw.get("run"), dict) and raw["run"].get("name") == "":  # given, and empty
            _fail("run.name", "run.name is empty; give a directory name, or leave run.name out to name the run "
                              "after its config")
        cfg = from_dict(raw)
        if device_check:
            check_device(cfg.train.device)
    except ConfigError as exc:
        raise locate(exc, source, overrides) from None
    return cfg
