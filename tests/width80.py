"""Render a noisescope command at a given terminal width and check that a person can read it.

Usage in a test (``tests/`` is on the import path, as for ``layers`` and ``spectral_data``)::

    from width80 import assert_fits

    def test_my_command_fits_80_columns(run_dir):
        out = assert_fits(["verdict", str(run_dir)])        # returns the 80-column text
        assert "supported" in out

``assert_fits(args)`` runs ``noisescope ARGS`` twice through typer's ``CliRunner``: once at
80 columns (the rich consoles of ``noisescope.cli`` set to that width, and ``COLUMNS=80`` in
the environment) and once at 1000 columns, the *reference*, where nothing needs to wrap. It
then fails with every problem it finds in the 80-column text (:func:`problems`):

* **too wide**: a line longer than ``width`` terminal cells (except a line that is a single
  word of the reference, e.g. a path printed whole on a line of its own to be copied);
* **cut**: an ellipsis ``…`` that the reference does not have (rich cut a cell);
* **fragment**: a word or number (a run of characters between spaces and box-drawing lines)
  that the reference does not contain, such as ``compl`` of ``complete`` or ``0.36861`` of
  ``0.3686175`` -- what folding a cell leaves behind;
* **split**: a line that fills its table cell (or, outside a table, the whole width) up to
  the edge, whose last word glued to the first word of the same cell on the next line is a
  word of the reference (``0.3`` + ``65`` -> ``0.365``): caught even when both pieces happen
  to be words elsewhere.

A command whose output changes between the two runs (it skips work the first run did, or
prints the time) can pass its own reference text (``reference=``) or an ``ignore`` pattern
for tokens that legitimately differ. :func:`problems` works on any two texts, so output
rendered another way (``rich.console.Console(width=80, record=True)``) is checked the same way.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from rich.cells import cell_len
from rich.console import Console
from typer.testing import CliRunner

WIDTH = 80
REFERENCE_WIDTH = 1000
BOX = "\u2500-\u257f"  # box-drawing characters: table rules and cell separators
_TOKEN = re.compile(rf"[^\s{BOX}]+")
_VERTICAL = set("│┃║┆┊╎╏")


def tokens(text: str) -> set[str]:
    """The words and numbers of a text: maximal runs of characters that are neither white space
    nor box drawing."""
    return set(_TOKEN.findall(text))


@contextmanager
def console_width(width: int) -> Iterator[None]:
    """Every rich Console held by a loaded ``noisescope`` module renders at ``width``."""
    consoles = []
    for name, module in list(sys.modules.items()):
        if name.startswith("noisescope") and module is not None:
            for value in list(vars(module).values()):
                if isinstance(value, Console) and all(value is not c for c, _ in consoles):
                    consoles.append((value, value._width))
    for c, _ in consoles:
        c.width = width
    try:
        yield
    finally:
        for c, before in consoles:
            c._width = before


def render(args: Sequence[str], width: int = WIDTH, env: dict[str, str] | None = None,
           exit_code: int | None = 0) -> str:
    """``noisescope ARGS`` at ``width`` columns: its stdout and stderr as one text.

    ``exit_code``: the expected exit status (None: any)."""
    import noisescope.cli.common  # noqa: F401 - loads the shared consoles
    from noisescope.cli import app

    with console_width(width):
        res = CliRunner().invoke(app, list(args), env={"COLUMNS": str(width), **(env or {})})
    if exit_code is not None and res.exit_code != exit_code:
        raise AssertionError(f"noisescope {' '.join(args)} exited {res.exit_code}, expected {exit_code}:\n"
                             f"{res.output}\n{res.exception!r}")
    return res.output


def _cells(line: str) -> list[tuple[int, str]]:
    """(start column, text) of each cell of a table line (the parts between vertical box
    characters); the whole line as one cell outside a table."""
    cuts = [i for i, ch in enumerate(line) if ch in _VERTICAL]
    if len(cuts) < 2:
        return [(0, line)]
    return [(a + 1, line[a + 1:b]) for a, b in zip(cuts, cuts[1:], strict=False)]


def _row_continues(a: str, b: str) -> bool:
    """Whether line ``b`` continues the same table row as line ``a`` (same separators, no rule
    between them)."""
    sep_a = [i for i, ch in enumerate(a) if ch in _VERTICAL]
    sep_b = [i for i, ch in enumerate(b) if ch in _VERTICAL]
    return len(sep_a) >= 2 and sep_a == sep_b


def _whole_word(line: str, ref: set[str]) -> bool:
    """A line that is one word of the reference (a path or URL to copy), longer than the width:
    printed whole on purpose, for the terminal to wrap; never a problem."""
    words = _TOKEN.findall(line)
    return len(words) == 1 and words[0] in ref and line.strip() == words[0]


def problems(text: str, reference: str, width: int = WIDTH, ignore: str | None = None) -> list[str]:
    """What a reader of ``text`` (rendered at ``width``) cannot read, judged against
    ``reference`` (the same output rendered where nothing wraps); module docstring. Each
    problem is one line naming the line number (1-based) and the offending text."""
    skip = re.compile(ignore) if ignore else None
    ref = tokens(reference)
    lines = text.splitlines()
    out: list[str] = []
    for i, line in enumerate(lines, start=1):
        if cell_len(line.rstrip()) > width and not _whole_word(line, ref):
            out.append(f"line {i}: too wide ({cell_len(line.rstrip())} > {width} columns): {line.rstrip()!r}")
        if "…" in line and "…" not in reference:
            out.append(f"line {i}: cut with an ellipsis: {line.rstrip()!r}")
        for tok in _TOKEN.findall(line):
            if tok not in ref and not (skip and skip.search(tok)):
                out.append(f"line {i}: fragment {tok!r} (not a word of the unwrapped output): {line.rstrip()!r}")
    for i, (a, b) in enumerate(zip(lines, lines[1:], strict=False), start=1):
        if _row_continues(a, b):
            pairs = list(zip(_cells(a), _cells(b), strict=False))
        elif not any(ch in _VERTICAL for ch in a + b):
            if cell_len(a.rstrip()) < width:
                continue
            pairs = [((0, a.rstrip() + " "), (0, " " + b))]
        else:
            continue
        for (_, ca), (_, cb) in pairs:
            # a fold fills the cell up to its right padding and goes on at its left padding
            if len(ca) < 2 or len(cb) < 2 or ca[-2].isspace() or cb[1].isspace():
                continue
            left, right = _TOKEN.findall(ca), _TOKEN.findall(cb)
            if left and right and left[-1] + right[0] in ref:
                joined = left[-1] + right[0]
                if not (skip and skip.search(joined)):
                    out.append(f"lines {i}-{i + 1}: {joined!r} split as {left[-1]!r} / {right[0]!r}")
    return out


def assert_fits(args: Sequence[str], width: int = WIDTH, reference: str | None = None,
                ignore: str | None = None, env: dict[str, str] | None = None, exit_code: int | None = 0) -> str:
    """Render ``noisescope ARGS`` at ``width`` and fail with every problem of
    :func:`problems`; the reference is the same command at 1000 columns unless given.
    Returns the ``width``-column text."""
    text = render(args, width, env, exit_code)
    if reference is None:
        reference = render(args, REFERENCE_WIDTH, env, exit_code)
    found = problems(text, reference, width, ignore)
    if found:
        raise AssertionError(f"noisescope {' '.join(args)} at {width} columns:\n" + "\n".join(found[:40])
                             + f"\n--- output ---\n{text}")
    return text
