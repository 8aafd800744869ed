"""``noisescope probe RUN`` (replay any probe from checkpoints) and ``noisescope truncate RUN|CHECKPOINT``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich import box
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from noisescope.cli.common import cell, console, fail, interval, p_value
from noisescope.metrics import select


def _parse_epochs(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        fail(f"--epochs must be comma-separated integers, got {text!r}")


def _parse_taps(text: str) -> str | list[str]:
    return text if text in ("auto", "all", "feature") else [t.strip() for t in text.split(",") if t.strip()]


def _compact(title: str) -> Table:
    """A table that fits 80 columns: no side borders, one space between columns."""
    return Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                 padding=(0, 1, 0, 0))


def comparison_table(df, title: str) -> Table:
    """The truncation comparison (spectral/compare.py COLUMNS) as a rich table: each accuracy
    with its 95% Wilson interval, and the sample counts (fits 80 columns)."""
    table = _compact(title)
    n_val = int(df["n_val"].max()) if "n_val" in df and len(df) else None
    n_test = int(df["n_test"].max()) if "n_test" in df and len(df) else None
    val_head = "noisy val acc\n[95% CI]" + (f"\nn={n_val}" if n_val else "")
    test_head = "clean test acc\n[95% CI]" + (f"\nn={n_test}" if n_test else "")
    for col, just in (("method", "left"), ("epoch", "right"), ("tap", "left"), ("d", "right"),
                      (val_head, "right"), (test_head, "right")):
        table.add_column(col, justify=just)
    for r in df.to_dict("records"):
        table.add_row(r["method"], "-" if r["epoch"] < 0 else str(r["epoch"]), r["tap"], str(r["d"]),
                      interval(r["val_acc"], r.get("val_low", np.nan), r.get("val_high", np.nan)),
                      interval(r["test_acc"], r.get("test_low", np.nan), r.get("test_high", np.nan)))
    return table


def paired_table(df, title: str) -> Table:
    """McNemar's exact test of the truncated model on the clean test set (workflows.truncate.PAIRED_COLUMNS;
    fits 80 columns)."""
    table = _compact(title)
    for col in ("truncated", "n", "b: only\ntruncated\nright", "c: only\nother\nright",
                "difference, pts\n[95% CI]", "McNemar\np"):
        table.add_column(col, justify="left" if col == "truncated" else "right")
    for r in df.to_dict("records"):
        table.add_row(r["comparison"].replace("truncated ", "", 1), str(r["n_test"]), str(r["b"]), str(r["c"]),
                      f"{100 * r['difference']:+.1f} [{100 * r['diff_low']:+.1f}, {100 * r['diff_high']:+.1f}]",
                      p_value(r['p_value']))
    return table


def spectral_table(rows, title: str) -> Table:
    """One row per (epoch, tap) of the spectral probe's scalar metrics."""
    table = Table(title=title)
    for col in ("epoch", "tap", "eff. rank", "d*", "probe val", "probe test", "trunc d*",
                "trunc test", "segregation"):
        table.add_column(col, justify="right")
    scalars = select(rows, probe="spectral", index=-1)
    piv = scalars.pivot_table(index=["epoch", "tap"], columns=["metric", "subset"], values="value", aggfunc="first")

    def get(row, metric: str, subset: str, digits: int = 3) -> str:
        v = row.get((metric, subset))
        return cell(None if v is None else float(v), digits)

    for (epoch, tap), row in piv.iterrows():
        table.add_row(str(epoch), tap, get(row, "effective_rank", "train", 1), get(row, "d_star", "val", 0),
                      get(row, "probe_acc_d_star", "val"), get(row, "probe_acc_d_star", "test"),
                      get(row, "trunc_d_star", "val", 0), get(row, "trunc_acc_d_star", "test"),
                      get(row, "segregation", "train"))
    return table


def register(app: typer.Typer) -> None:
    @app.command()
    def probe(
        run: Annotated[str, typer.Argument(help="run directory")],
        probe: Annotated[list[str], typer.Option(
            "--probe", help="probe(s) to replay: dynamics, spectral, signals (repeat or comma-separate)")] = None,
        epochs: Annotated[str | None, typer.Option(help="comma-separated checkpoint epochs (default all)")] = None,
        taps: Annotated[str | None, typer.Option(help="spectral: auto | feature | comma-separated taps")] = None,
        d_max: Annotated[int | None, typer.Option(help="spectral: largest d scored")] = None,
        alpha: Annotated[float | None, typer.Option(help="spectral: ridge strength of the probe")] = None,
        d_rule: Annotated[str | None, typer.Option(help="spectral: 1se (default) | argmax")] = None,
        segregation: Annotated[bool | None, typer.Option(help="spectral: noise share and tail fractions")] = None,
        device: Annotated[str, typer.Option(help="cpu, cuda, ...")] = "cpu",
        batch_size: Annotated[int, typer.Option(help="forward batch size")] = 2048,
        figures: Annotated[bool, typer.Option(help="write the figures of the replayed probes")] = True,
    ) -> None:
        """Replay probes on a run's saved checkpoints (one pass per split and checkpoint); the
        rows replace the run's own and the report shows them. Default: the spectral probe."""
        from noisescope.config import ConfigError
        from noisescope.runs.replay import replay
        from noisescope.runs.run import load_run

        names = [n.strip() for item in (probe or ["spectral"]) for n in item.split(",") if n.strip()]
        spectral_opts = {k: v for k, v in (("taps", None if taps is None else _parse_taps(taps)), ("d_max", d_max),
                                            ("alpha", alpha), ("d_rule", d_rule), ("segregation", segregation))
                         if v is not None}
        try:
            r = load_run(run)
        except FileNotFoundError as exc:
            fail(str(exc))
        chosen = _parse_epochs(epochs) or sorted(r.checkpoints())
        if not chosen:
            fail(f"{run} has no checkpoints to probe; keep some with run.checkpoint_every")
        cols = [TextColumn(f"[bold]replay {', '.join(names)}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("epoch {task.fields[epoch]}"), TimeElapsedColumn()]
        with Progress(*cols, console=console) as progress:
            task = progress.add_task("probe", total=len(chosen), epoch="-")
            try:
                rows = replay(run, names, chosen, options={"spectral": spectral_opts}, device=device,
                              batch_size=batch_size, on_epoch=lambda e: progress.update(task, advance=1, epoch=e))
            except (ValueError, FileNotFoundError, ConfigError) as exc:
                fail(str(exc))
        console.print(f"replayed {', '.join(names)} at epochs {chosen}: {len(rows)} rows written to {run}")
        if "spectral" in names:
            console.print(spectral_table(rows, f"spectral probe: {run}"))
        if not figures:
            return
        metrics = load_run(run).metrics
        paths = []
        if "spectral" in names:
            from noisescope.report.spectral_figures import plot_all

            paths += plot_all(metrics, r.store.figure_dir)
        if "signals" in names:
            from noisescope.report.signals_figures import plot_signals

            paths += plot_signals(metrics, r.store.figure_dir, title=Path(run).name)
        for p in paths:
            console.print(f"figure: {p}")

    @app.command()
    def truncate(
        target: Annotated[str, typer.Argument(help="run directory or RUN/checkpoints/epoch_XXXX.safetensors")],
        out: Annotated[str | None, typer.Option(help="output directory (default RUN/truncated/epoch_XXXX)")] = None,
        head: Annotated[str, typer.Option(help="original | refit")] = "original",
        d: Annotated[str, typer.Option(help="'auto' (noisy validation) or an integer")] = "auto",
        d_rule: Annotated[str, typer.Option(help="1se (one-standard-error rule) | argmax")] = "1se",
        early: Annotated[bool, typer.Option(help="compare with the best-noisy-val checkpoint")] = True,
        raw: Annotated[bool, typer.Option(help="add the raw-input reference")] = True,
        taps: Annotated[str, typer.Option(help="taps probed for the reference rows")] = "auto",
        device: Annotated[str, typer.Option(help="cpu, cuda, ...")] = "cpu",
    ) -> None:
        """Truncate a trained run's model to its top-d feature directions; print the comparison."""
        from noisescope.workflows.truncate import truncate_run

        if d != "auto":
            try:
                d_val: int | str = int(d)
            except ValueError:
                fail(f"--d must be 'auto' or an integer, got {d!r}")
        else:
            d_val = "auto"
        with console.status("spectral truncation ..."):
            try:
                rep = truncate_run(target, out, head=head, d=d_val, d_rule=d_rule, early=early,
                                   raw_input=raw, taps=_parse_taps(taps), device=device)
            except (ValueError, FileNotFoundError) as exc:
                fail(str(exc))
        console.print(comparison_table(rep.comparison, f"spectral truncation: {target}"))
        if rep.paired is not None and len(rep.paired):
            console.print(paired_table(rep.paired, "the truncated model on the clean test set, paired "
                                        "(reported, never used to choose)"))
        if rep.early_epoch is not None and rep.best_probed_epoch not in (None, rep.early_epoch):
            console.print(f"[yellow]note:[/] the best noisy-validation epoch was {rep.best_probed_epoch}, "
                          f"but its weights were not kept; early stopping uses saved epoch {rep.early_epoch} "
                          "(keep more with run.checkpoint_every)")
        console.print(Text(rep.comparison_line()))
        decided = rep.decision is not None and rep.decision.decided
        console.print(Text(rep.verdict_line(), style="bold green" if decided else "bold yellow"))
        if rep.warning:
            console.print(Text("warning: ", style="yellow") + Text(rep.warning))
        what = f"truncated model (d={rep.estimator.d_}, head={head}) written to"
        if not rep.recommended:
            what += " (for inspection only: not recommended; truncation.json says why)"
        console.print(Text(what + ":"))
        console.print(Text(str(rep.out)), soft_wrap=True)
