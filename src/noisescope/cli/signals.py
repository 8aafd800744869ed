"""``noisescope signals RUN``: internal-signal tables and figures of a run (Kubo et al.)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from noisescope.cli.common import console, fail


def _cell(v: float) -> str:
    if v is None or math.isnan(v):
        return "-"
    return f"{v:.4f}" if abs(v) < 10 else f"{v:.1f}"


def print_table(table, title: str) -> None:
    """Print a (tap x epoch) DataFrame as a rich table, one row per epoch."""
    out = Table(title=title)
    out.add_column("epoch", justify="right")
    for tap in table.index:
        out.add_column(str(tap), justify="right")
    for epoch in table.columns:
        out.add_row(str(epoch), *[_cell(float(v)) for v in table[epoch].to_numpy()])
    console.print(out)


def signals(
    run: Annotated[Path, typer.Argument(help="run directory")],
    recompute: Annotated[bool, typer.Option(
        "--recompute", help="recompute from the saved checkpoints into RUN/signals.parquet")] = False,
    epochs: Annotated[str, typer.Option(
        help="with --recompute: comma-separated checkpoint epochs (default all)")] = "",
    taps: Annotated[str, typer.Option(help="with --recompute: comma-separated tap names")] = "",
    out: Annotated[Path | None, typer.Option(help="figure folder (default RUN/figures)")] = None,
) -> None:
    """Separation per layer, large activation and test alignment over epochs: tables + figures."""
    from noisescope.signals.offline import load_signals
    from noisescope.signals.offline import recompute as do_recompute
    from noisescope.signals.plots import plot_signals, signal_table

    if not (run / "config.json").exists():
        fail(f"{run} is not a noisescope run (no config.json inside)")
    try:
        if recompute:
            opts: dict = {}
            if taps:
                opts["taps"] = [t.strip() for t in taps.split(",") if t.strip()]
            chosen = [int(e) for e in epochs.split(",") if e.strip()] if epochs else None
            frame = do_recompute(run, chosen, **opts)
        else:
            frame = load_signals(run)
        if frame.empty:
            fail(f"{run} has no signals rows; rerun with --recompute (needs checkpoints)")
        print_table(signal_table(frame, "separation", "by_true"),
                    "separation cos(S_clean, S_noisy), noisy by true label (class average)")
        print_table(signal_table(frame, "large_act_ratio"), "large activation: max|a| / median|a|")
        print_table(signal_table(frame, "large_act_neuron"), "large activation: neuron")
        if (frame["metric"] == "alignment_correct").any():
            print_table(signal_table(frame, "alignment_correct"), "test alignment, correct")
            print_table(signal_table(frame, "alignment_wrong"), "test alignment, wrong")
        from noisescope.run import load_run

        metrics = load_run(run).metrics
        dyn = metrics[metrics["probe"] == "dynamics"]
        import pandas as pd

        paths = plot_signals(pd.concat([frame, dyn], ignore_index=True), out or run / "figures",
                             title=run.name)
    except (ValueError, FileNotFoundError) as exc:
        fail(str(exc))
    for p in paths:
        console.print(f"wrote {p}")


def register(app: typer.Typer) -> None:
    app.command("signals")(signals)
