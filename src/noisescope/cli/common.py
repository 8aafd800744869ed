"""What every command module shares: the consoles and the one-line error exit."""

from __future__ import annotations

import math
from typing import NoReturn

import numpy as np
import typer
from rich.console import Console
from rich.text import Text

from noisescope.evidence.paired import p_value  # noqa: F401  (one p-value format, re-exported)

console = Console()
err_console = Console(stderr=True)


def error_line(message: str) -> None:
    """Print ``error: message`` as one line on stderr (no markup parsing)."""
    err_console.print(Text("error: ", style="bold red") + Text(message), highlight=False, soft_wrap=True)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: message`` as one line on stderr (no markup parsing) and exit with ``code``."""
    error_line(message)
    raise typer.Exit(code)


def cell(v: object, digits: int = 3) -> str:
    """One table cell, the same in every command: ``-`` for missing or NaN, yes/no for
    booleans, integers as they are, floats to ``digits`` decimals (3 significant digits when
    huge), anything else as text."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, (bool, np.bool_)):  # numpy booleans too: never "False"
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.{digits}f}" if abs(v) < 1e4 else f"{v:.3g}"
    return str(v)


def interval(value: float, low: float, high: float, digits: int = 3) -> str:
    """An accuracy with its interval, the same in every command: ``value [low, high]`` (bounds
    to 3 decimals), ``value`` alone when the bounds are NaN, ``-`` when the value is NaN."""
    if value != value:
        return "-"
    return f"{value:.{digits}f} [{low:.3f}, {high:.3f}]" if low == low else f"{value:.{digits}f}"


