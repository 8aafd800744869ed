"""``noisescope signals RUN``: internal-signal tables and figures of a run (Kubo et al.)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from noisescope.cli.common import cell, console, fail


def print_table(table, title: str) -> None:
    """Print a (tap x epoch) DataFrame as a rich table, one row per epoch."""
    out = Table(title=title)
    out.add_column("epoch", justify="right")
    for tap in table.index:
        out.add_column(str(tap), justify="right")
    for epoch in table.columns:
        out.add_row(str(epoch), *[cell(float(v), 4) for v in table[epoch].to_numpy()])
    console.print(out)


def signals(
    run: Annotated[Path, typer.Argument(help="run directory")],
    recompute: Annotated[bool, typer.Option(
        "--recompute", help="replay the signals probe on the saved checkpoints into the run's metrics")] = False,
    epochs: Annotated[str, typer.Option(
        help="with --recompute: comma-separated checkpoint epochs (default all)")] = "",
    taps: Annotated[str, typer.Option(help="with --recompute: comma-separated tap names")] = "",
    out: Annotated[Path | None, typer.Option(help="figure folder (default RUN/figures)")] = None,
) -> None:
    """Separation per layer, large activation and test alignment over epochs: tables + figures."""
    from noisescope.config import ConfigError
    from noisescope.metrics import select
    from noisescope.report.signals_figures import plot_signals, signal_table
    from noisescope.runs.replay import replay
    from noisescope.runs.run import load_run

    if not (run / "config.json").exists():
        fail(f"{run} is not a noisescope run (no config.json inside)")
    try:
        if recompute:
            opts: dict = {}
            if taps:
                opts["taps"] = [t.strip() for t in taps.split(",") if t.strip()]
            chosen = [int(e) for e in epochs.split(",") if e.strip()] if epochs else None
            with console.status("replaying the signals probe ..."):
                replay(run, ["signals"], chosen, options={"signals": opts})
        metrics = load_run(run).metrics
        frame = select(metrics, probe="signals")
        if frame.empty:
            fail(f"{run} has no signals rows; rerun with --recompute (needs checkpoints)")
        print_table(signal_table(frame, "separation", "by_true"),
                    "separation cos(S_clean, S_noisy), noisy by true label (class average)")
        print_table(signal_table(frame, "large_act_ratio"), "large activation: max|a| / median|a|")
        print_table(signal_table(frame, "large_act_neuron"), "large activation: neuron")
        if not select(frame, metric="alignment_correct").empty:
            print_table(signal_table(frame, "alignment_correct"), "test alignment, correct")
            print_table(signal_table(frame, "alignment_wrong"), "test alignment, wrong")
        paths = plot_signals(select(metrics, probe=["signals", "dynamics"]), out or run / "figures", title=run.name)
    except (ValueError, FileNotFoundError, ConfigError) as exc:
        fail(str(exc))
    for p in paths:
        console.print(f"wrote {p}")


def register(app: typer.Typer) -> None:
    app.command("signals")(signals)
