"""Property-based fuzzing of config validation through the real command line.

Hypothesis generates malformed configs (TOML files written to a fresh directory) and malformed
``--set`` overrides, and ``noisescope run`` is invoked on them in-process (typer's CliRunner)
with the working directory and ``run.root`` inside that directory (the click command typer
builds from the app, built once: typer's own CliRunner rebuilds it on every call). Every case must be refused
before anything happens: exit status 2, nothing on stdout, exactly one line on stderr naming
the broken field and where it came from (the file, or the ``--set`` override), and nothing
written (the directory holds only the config file afterwards).

The base config is tiny (synthetic data, one epoch of a width-8 MLP), so a malformed case that
is wrongly accepted fails fast instead of training for long.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import string
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple
from unittest import mock

import pytest
import typer
from click.testing import CliRunner

from noisescope.cli import app
from noisescope.config import _SECTION_TYPES, MAX_EPOCHS, MAX_SEED, OPTIMIZERS, PRECISIONS, SCHEDULES

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

EXAMPLES = settings(max_examples=200, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
CONFIG = "exp.toml"
BASE: dict[str, Any] = {
    "data": {"name": "synthetic", "subset": 0, "val_fraction": 0.1, "seed": 0,
             "options": {"n": 80, "n_test": 40, "dim": 8, "k_star": 2, "num_classes": 4}},
    "noise": {"model": "symmetric", "rate": 0.2, "seed": 0},
    "model": {"arch": "mlp", "options": {"widths": [8]}},
    "train": {"epochs": 1, "batch_size": 32, "lr": 1e-3, "device": "cpu"},
    "probe": {"probes": ["dynamics"], "schedule": "every"},
    "run": {"name": "fuzz"},
}
FIELDS = {s: [f.name for f in __import__("dataclasses").fields(t)] for s, t in _SECTION_TYPES.items()}
# typer's CliRunner rebuilds the click command on every call (30 ms); build it once
COMMAND = typer.main.get_command(app)
runner = CliRunner()


# --- TOML writing -------------------------------------------------------------------------

_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


def toml_string(s: str) -> str:
    """A TOML basic string (control characters and DEL escaped)."""
    out = []
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def toml_key(k: str) -> str:
    return k if _BARE.match(k) else toml_string(k)


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return toml_string(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{toml_key(k)} = {toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(v)


def toml_document(doc: dict[str, Any]) -> str:
    """Scalars at the top (before any table header), then one ``[section]`` per table."""
    lines = [f"{toml_key(k)} = {toml_value(v)}" for k, v in doc.items() if not isinstance(v, dict)]
    for section, table in doc.items():
        if isinstance(table, dict):
            lines.append(f"[{toml_key(section)}]")
            lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def shown_key(k: str) -> str:
    """How an error message shows a key (bare, or JSON-quoted)."""
    return k if _BARE.match(k) else json.dumps(k)


# --- strategies of bad values -------------------------------------------------------------

class Mutation(NamedTuple):
    """Set ``path`` to ``value``; the error must name ``field``. ``file_only``: can't be a --set."""

    path: tuple[str, ...]
    value: Any
    field: str
    file_only: bool = False


TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
IDENT = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)
ANY_KEY = st.one_of(IDENT, st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=6))
NON_FINITE = st.sampled_from([math.nan, math.inf, -math.inf])
OTHER_TYPES = st.one_of(TEXT, st.lists(st.integers(-3, 3), max_size=2), st.just({"a": 1}))
NOT_BOOL = st.one_of(st.integers(-2, 2), st.floats(allow_nan=True), OTHER_TYPES)
NOT_NUMBER = st.one_of(st.booleans(), OTHER_TYPES)
NOT_INT = st.one_of(NOT_NUMBER, NON_FINITE, st.floats(-1e6, 1e6).filter(lambda x: not x.is_integer()),
                    st.floats(min_value=2.0**64, allow_infinity=False))
I64 = {"min_value": -(2**63), "max_value": 2**63 - 1}


def ints_outside(lo: int | None, hi: int | None) -> st.SearchStrategy[Any]:
    """64-bit integers < lo or > hi, or anything that is not an integer."""
    options = [NOT_INT]
    if lo is not None:
        options.append(st.integers(I64["min_value"], lo - 1))
    if hi is not None:
        options.append(st.integers(hi + 1, I64["max_value"]))
    return st.one_of(*options)


def floats_outside(lo: float, hi: float, hi_open: bool = True, lo_open: bool = False) -> st.SearchStrategy[Any]:
    """Numbers outside [lo, hi) (or (lo, ..)), NaN, infinities, or not a number at all."""
    below = st.floats(max_value=lo, exclude_max=not lo_open, allow_nan=False)
    above = st.floats(min_value=hi, exclude_min=not hi_open, allow_nan=False)
    return st.one_of(NOT_NUMBER, NON_FINITE, below, above)


def bad_choice(choices: tuple[str, ...], fold: bool = True) -> st.SearchStrategy[Any]:
    ok = {c.lower() for c in choices} if fold else set(choices)
    return st.one_of(TEXT.filter(lambda s: (s.lower() if fold else s) not in ok), NOT_NUMBER.filter(
        lambda v: not isinstance(v, str)))


def _names(module: str, attr: str) -> set[str]:
    from importlib import import_module

    return {k.lower() for k in getattr(import_module(module), attr)}


DATASET_NAMES = _names("noisescope.data", "REGISTRY") | {"fashion-mnist", "fmnist", "cifar-10", "cifar-100"}
DEVICE_OK = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def _cuda_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def scalar(section: str, key: str, values: st.SearchStrategy[Any]) -> st.SearchStrategy[Mutation]:
    return values.map(lambda v: Mutation((section, key), v, f"{section}.{key}"))


def unknown_key(section: str) -> st.SearchStrategy[Mutation]:
    return IDENT.filter(lambda k: k not in FIELDS[section]).map(
        lambda k: Mutation((section, k), 1, f"{section}.{k}"))


def option_table(section: str, known: set[str]) -> st.SearchStrategy[Mutation]:
    """An options table with an unknown key, or a known key with a non-finite value."""
    unknown = st.tuples(ANY_KEY.filter(lambda k: k not in known), st.integers(0, 3)).map(
        lambda kv: Mutation((section, "options"), {kv[0]: kv[1]}, f"{section}.options.{shown_key(kv[0])}"))
    non_table = NOT_NUMBER.filter(lambda v: not isinstance(v, dict)).map(
        lambda v: Mutation((section, "options"), v, f"{section}.options"))
    muts = [unknown, non_table]
    if known:
        muts.append(st.tuples(st.sampled_from(sorted(known)), NON_FINITE).map(
            lambda kv: Mutation((section, "options"), {kv[0]: kv[1]}, f"{section}.options.{kv[0]}")))
    return st.one_of(*muts)


def bad_run_name() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.sampled_from([".", "..", "", " x", "x "]),
        st.tuples(TEXT, st.sampled_from(["/", "\\", "\x00", "\n", "\x7f"]), TEXT).map("".join),
        st.text(st.sampled_from("ab"), min_size=256, max_size=300),
        NOT_NUMBER.filter(lambda v: not isinstance(v, str)),
    )


MUTATIONS = st.one_of(
    scalar("data", "subset", ints_outside(0, None)),
    scalar("data", "val_fraction", floats_outside(0.0, 1.0)),
    scalar("data", "seed", ints_outside(0, MAX_SEED)),
    scalar("data", "name", bad_choice(tuple(DATASET_NAMES))),
    option_table("data", {"n", "n_test", "dim", "k_star", "signal", "noise"}),
    scalar("noise", "rate", floats_outside(0.0, 1.0)),
    scalar("noise", "seed", ints_outside(0, MAX_SEED)),
    scalar("noise", "model", bad_choice(("none", "symmetric", "pairflip", "transition", "instance", "file"))),
    option_table("noise", {"exact", "include_true"}),
    scalar("model", "arch", bad_choice(tuple(_names("noisescope.models", "REGISTRY")))),
    option_table("model", set()),
    scalar("model", "options", st.lists(st.integers(-2, 0), min_size=1, max_size=3).map(lambda w: {"widths": w})),
    scalar("train", "lr", floats_outside(0.0, math.inf, lo_open=True)),
    scalar("train", "weight_decay", floats_outside(0.0, math.inf)),
    scalar("train", "momentum", floats_outside(0.0, 1.0)),
    scalar("train", "batch_size", ints_outside(1, None)),
    scalar("train", "epochs", ints_outside(0, MAX_EPOCHS)),
    scalar("train", "warmup_epochs", ints_outside(0, 1)),  # the base trains for 1 epoch
    scalar("train", "seed", ints_outside(0, MAX_SEED)),
    scalar("train", "device", st.one_of(
        bad_choice(()).filter(lambda s: not (isinstance(s, str) and DEVICE_OK.match(s))),
        st.integers(_cuda_count(), 99).map(lambda i: f"cuda:{i}"))),
    scalar("train", "optimizer", bad_choice(OPTIMIZERS)),
    scalar("train", "schedule", bad_choice(SCHEDULES)),
    scalar("train", "precision", bad_choice(PRECISIONS, fold=False)),
    scalar("train", "augment", NOT_BOOL),
    scalar("probe", "schedule", bad_choice(("every", "every_k", "log"), fold=False)),
    scalar("probe", "every", ints_outside(1, None)),
    scalar("probe", "points", ints_outside(1, None)),
    scalar("probe", "batch_size", ints_outside(1, None)),
    scalar("probe", "probes", st.one_of(
        st.lists(TEXT.filter(lambda s: s not in ("dynamics", "spectral", "signals")), min_size=1, max_size=2),
        st.just(["dynamics", "dynamics"]), NOT_NUMBER.filter(lambda v: not isinstance(v, list)))),
    ANY_KEY.filter(lambda k: k not in ("dynamics", "spectral", "signals")).map(
        lambda k: Mutation(("probe", "options"), {k: {}}, f"probe.options.{shown_key(k)}")),
    st.tuples(st.sampled_from(["spectral", "signals"]), IDENT.filter(lambda k: k not in {
        "taps", "d_grid", "d_max", "alpha", "d_rule", "segregation", "max_dim", "name", "tap_types", "min_noisy",
        "threshold", "median", "max_train", "max_test", "dependence", "dependence_samples", "input_pcs",
        "dependence_buffer_mb", "alignment", "seed"})).map(
        lambda pk: Mutation(("probe", "options"), {pk[0]: {pk[1]: 1}}, f"probe.options.{pk[0]}.{pk[1]}")),
    scalar("run", "name", bad_run_name()),
    scalar("run", "checkpoint_epochs", st.one_of(
        st.lists(st.one_of(st.integers(I64["min_value"], -1), st.booleans(), st.floats(0.5, 9.5)),
                 min_size=1, max_size=3),
        NOT_NUMBER.filter(lambda v: not isinstance(v, list)))),
    scalar("run", "checkpoint_every", ints_outside(0, None)),
    *[unknown_key(s) for s in _SECTION_TYPES],
    IDENT.filter(lambda s: s not in _SECTION_TYPES).map(lambda s: Mutation((s, "x"), 1, s)),
    st.sampled_from(sorted(_SECTION_TYPES)).flatmap(lambda s: OTHER_TYPES.filter(lambda v: not isinstance(v, dict))
                                                    .map(lambda v: Mutation((s,), v, s, file_only=True))),
)


# --- running the CLI ----------------------------------------------------------------------

@contextlib.contextmanager
def workdir() -> Iterator[Path]:
    """A fresh directory as the working directory (restored afterwards)."""
    before = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="ns-fuzz-") as tmp:
        os.chdir(tmp)
        try:
            yield Path(tmp)
        finally:
            os.chdir(before)


def base_document(tmp: Path) -> dict[str, Any]:
    doc = json.loads(json.dumps(BASE))
    doc["run"]["root"] = str(tmp / "runs")
    return doc


def _accepted(cfg: Any, *args: Any, **kwargs: Any) -> None:
    """Stands in for training: a malformed config that got this far was wrongly accepted."""
    print(f"ACCEPTED {cfg}")
    raise typer.Exit(99)


def run_cli(config: str, overrides: list[str]) -> tuple[int, str, str]:
    """``noisescope run CONFIG --set ...`` in-process: (exit code, stdout, stderr).

    Training is replaced by :func:`_accepted` (exit 99), so a wrongly accepted case fails
    at once whatever it asks for (a million epochs, say) instead of training."""
    args = ["run", config, "--quiet", *(f"--set={o}" for o in overrides)]
    module = sys.modules.get("noisescope.cli.run")
    guard = mock.patch.object(module, "execute", _accepted) if hasattr(module, "execute") else contextlib.nullcontext()
    with guard:
        result = runner.invoke(COMMAND, args)
    return result.exit_code, result.stdout, result.stderr


def assert_refused(tmp: Path, code: int, out: str, err: str) -> str:
    """Exit 2, nothing on stdout, one ``error:`` line on stderr, nothing written; the line."""
    lines = err.splitlines()
    assert code == 2, (code, out, err)
    assert out == "", out
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    written = sorted(p.name for p in tmp.iterdir())
    assert written in ([CONFIG], []), written
    return lines[0]


def set_path(doc: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = doc
    for part in path[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[path[-1]] = value


@EXAMPLES
@given(mutations=st.lists(MUTATIONS, min_size=1, max_size=3, unique_by=lambda m: m.path[:2]),
       as_set=st.lists(st.booleans(), min_size=3, max_size=3))
def test_a_malformed_config_is_refused_in_one_line_naming_the_field_before_anything_is_written(mutations, as_set):
    with workdir() as tmp:
        doc = base_document(tmp)
        overrides, origins = [], []
        for m, use_set in zip(mutations, as_set, strict=False):
            if m.path[0] in doc and not isinstance(doc[m.path[0]], dict):
                continue  # an earlier mutation replaced the whole section
            if use_set and not m.file_only:
                overrides.append(f"{'.'.join(m.path)}={toml_value(m.value)}")
                origins.append((m, f"--set {overrides[-1]!r}"))
            else:
                set_path(doc, m.path, m.value) if len(m.path) > 1 else doc.__setitem__(m.path[0], m.value)
                origins.append((m, CONFIG))
        (tmp / CONFIG).write_text(toml_document(doc), encoding="utf-8")
        line = assert_refused(tmp, *run_cli(CONFIG, overrides))
        assert any(m.field in line and f"error: {source}: " in line for m, source in origins), (line, origins)


BAD_SYNTAX = st.one_of(
    TEXT.filter(lambda s: "=" not in s),                                        # no '='
    st.sampled_from(["=1", "train=1", ".lr=1", "train.=1", "train..lr=1", " . =1"]),   # not section.key
    st.sampled_from(["train.lr=", "noise.rate=  "]),                              # no value
    st.tuples(st.sampled_from(["data.options", "probe.probes", "run.name", "model.options"]),
              st.sampled_from(["[1,", "{a=", '"open', "'open", "[1 2]", "{a=1,}"])).map("=".join),
    st.tuples(IDENT.filter(lambda s: s not in _SECTION_TYPES), IDENT).map(lambda p: f"{p[0]}.{p[1]}=1"),
    st.sampled_from(sorted(_SECTION_TYPES)).flatmap(
        lambda s: IDENT.filter(lambda k: k not in FIELDS[s]).map(lambda k: f"{s}.{k}=1")),
    st.tuples(st.sampled_from(["train.lr", "noise.rate", "run.name", "probe.probes"]), IDENT).map(
        lambda p: f"{p[0]}.{p[1]}=1"),
)


@EXAMPLES
@given(override=BAD_SYNTAX)
def test_a_malformed_override_is_refused_in_one_line_quoting_it(override):
    with workdir() as tmp:
        (tmp / CONFIG).write_text(toml_document(base_document(tmp)), encoding="utf-8")
        line = assert_refused(tmp, *run_cli(CONFIG, [override]))
        assert line.startswith(f"error: --set {override!r}"), line


GARBAGE_LINES = st.one_of(
    st.sampled_from(["[[[", "x = ", "= 1", "[train]\nlr = 1", "[data", "a = 'b", 'a = """', "x = [1,", "1 2 3",
                     "[run]\nname = 'a'", "[model]\narch = 'mlp'\narch = 'vgg'"]),
    st.text(string.printable, min_size=1, max_size=20),
)


def _invalid_toml(text: str) -> bool:
    import tomllib

    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return True
    return False


@EXAMPLES
@given(kind=st.sampled_from(["bytes", "garbage", "directory", "missing"]), data=st.data())
def test_an_unreadable_config_file_is_refused_in_one_line_naming_it(kind, data):
    with workdir() as tmp:
        text = toml_document(base_document(tmp)).encode()
        if kind == "bytes":  # not UTF-8: a byte >= 0x80 that starts no valid sequence here
            pos = data.draw(st.integers(0, len(text)))
            bad = data.draw(st.sampled_from([b"\x80", b"\xff", b"\xc3(", b"\xe2\x28\xa1", b"\xfe"]))
            (tmp / CONFIG).write_bytes(text[:pos] + bad + text[pos:])
        elif kind == "garbage":
            pos = text.count(b"\n")
            lines = text.decode().splitlines()
            at = data.draw(st.integers(0, pos))
            junk = data.draw(GARBAGE_LINES.filter(lambda g: _invalid_toml("\n".join([*lines[:at], g, *lines[at:]]))))
            (tmp / CONFIG).write_text("\n".join([*lines[:at], junk, *lines[at:]]) + "\n", encoding="utf-8")
        elif kind == "directory":
            (tmp / CONFIG).mkdir()
        code, out, err = run_cli(CONFIG, [])
        line = assert_refused(tmp, code, out, err)
        assert CONFIG in line, line
        if kind == "directory":
            assert (tmp / CONFIG).is_dir() and not any((tmp / CONFIG).iterdir())
