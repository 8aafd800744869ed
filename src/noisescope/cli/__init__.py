"""The ``noisescope`` command line. Each command group lives in its own module with a
``register(app)`` function; this file only assembles them."""

from __future__ import annotations

from importlib import import_module
from importlib.util import find_spec

import typer

app = typer.Typer(
    name="noisescope",
    help="Train on noisy labels, see where the noise is memorized, repair by spectral truncation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# one module per command group: noisescope.cli.<name>.register(app)
COMMAND_MODULES = ["run", "spectral", "signals", "sweep", "report", "verdict", "label_issues", "repair", "methods"]

for _name in COMMAND_MODULES:
    if find_spec(f"noisescope.cli.{_name}") is not None:
        import_module(f"noisescope.cli.{_name}").register(app)


def main() -> None:
    """The console script: a :class:`~noisescope.io.UserError` that no command caught (a damaged
    file, a full disk) still ends as one line and exit status 2."""
    import sys

    from noisescope.io import UserError

    try:
        app()
    except UserError as exc:
        from noisescope.cli.common import error_line

        error_line(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        sys.exit(2)
