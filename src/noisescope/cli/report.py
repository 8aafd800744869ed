"""``noisescope report RUN_OR_SWEEP [-o out.html]``: the self-contained HTML report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from noisescope.cli.common import console, fail


def register(app: typer.Typer) -> None:
    @app.command()
    def report(
        target: Annotated[str, typer.Argument(help="a run directory or a sweep directory")],
        out: Annotated[str | None, typer.Option("-o", "--out", help="output file (default TARGET/report.html)")] = None,
        max_runs: Annotated[int, typer.Option(help="sweeps: runs given detailed sections (0 = all)")] = 12,
        quiet: Annotated[bool, typer.Option(help="no progress bar")] = False,
    ) -> None:
        """Write one HTML file with every figure embedded (opens offline)."""
        from noisescope.report import build_report

        if not Path(target).is_dir():
            fail(f"{target!r} is not a directory; give a run directory (config.json) or a sweep (sweep.json)")
        if max_runs < 0:
            fail(f"--max-runs must be >= 0 (0 = all runs), got {max_runs}")
        try:
            path = build_report(target, out, progress=not quiet, max_runs=max_runs or None)
        except FileNotFoundError as exc:
            fail(str(exc))
        size = path.stat().st_size / 1e6
        # the path whole on a line of its own (never folded by rich), to copy into a browser
        console.print(f"report ({size:.1f} MB, self-contained: open it in any browser):", highlight=False)
        console.print(Text(str(path), style="bold"), soft_wrap=True)
