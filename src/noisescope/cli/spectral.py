"""``noisescope probe RUN`` and ``noisescope truncate RUN|CHECKPOINT``."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from noisescope.cli.common import console, fail


def _parse_epochs(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        fail(f"--epochs must be comma-separated integers, got {text!r}")


def _parse_taps(text: str) -> str | list[str]:
    return text if text in ("auto", "all", "feature") else [t.strip() for t in text.split(",") if t.strip()]


def comparison_table(df, title: str) -> Table:
    table = Table(title=title)
    for col, just in (("method", "left"), ("epoch", "right"), ("tap", "left"), ("d", "right"),
                      ("noisy val acc", "right"), ("clean test acc", "right")):
        table.add_column(col, justify=just)
    for r in df.itertuples(index=False):
        table.add_row(r.method, "-" if r.epoch < 0 else str(r.epoch), r.tap, str(r.d),
                      f"{r.val_acc:.4f}", f"{r.test_acc:.4f}")
    return table


def register(app: typer.Typer) -> None:
    @app.command()
    def probe(
        run: Annotated[str, typer.Argument(help="run directory")],
        epochs: Annotated[str | None, typer.Option(help="comma-separated checkpoint epochs (default all)")] = None,
        taps: Annotated[str, typer.Option(help="auto | feature | comma-separated tap names")] = "auto",
        d_max: Annotated[int, typer.Option(help="largest d scored")] = 1024,
        alpha: Annotated[float, typer.Option(help="ridge strength of the probe")] = 0.0,
        d_rule: Annotated[str, typer.Option(help="argmax | 1se")] = "argmax",
        segregation: Annotated[bool, typer.Option(help="noise share and tail fractions")] = True,
        device: Annotated[str, typer.Option(help="cpu, cuda, ...")] = "cpu",
        batch_size: Annotated[int, typer.Option(help="forward batch size")] = 2048,
        figures: Annotated[bool, typer.Option(help="write the spectral figures")] = True,
    ) -> None:
        """Recompute the spectral probe on a run's saved checkpoints (stored in its metrics)."""
        from noisescope.run import load_run
        from noisescope.spectral.plots import plot_all
        from noisescope.spectral.probe import SpectralProbe
        from noisescope.spectral.runs import probe_run

        try:
            r = load_run(run)
        except FileNotFoundError as exc:
            fail(str(exc))
        chosen = _parse_epochs(epochs) or sorted(r.checkpoints())
        if not chosen:
            fail(f"{run} has no checkpoints to probe")
        sp = SpectralProbe(taps=_parse_taps(taps), d_max=d_max, alpha=alpha, d_rule=d_rule, segregation=segregation)
        cols = [TextColumn("[bold]spectral probe"), BarColumn(), MofNCompleteColumn(),
                TextColumn("epoch {task.fields[epoch]}"), TimeElapsedColumn()]
        with Progress(*cols, console=console) as progress:
            task = progress.add_task("probe", total=len(chosen), epoch="-")
            try:
                rows = probe_run(run, sp, chosen, device=device, batch_size=batch_size,
                                 on_epoch=lambda e: progress.update(task, advance=1, epoch=e))
            except (ValueError, FileNotFoundError) as exc:
                fail(str(exc))
        table = Table(title=f"spectral probe: {run}")
        for col in ("epoch", "tap", "eff. rank", "d*", "probe val", "probe test", "trunc d*",
                    "trunc test", "segregation"):
            table.add_column(col, justify="right")
        piv = rows[rows["index"] < 0].pivot_table(index=["epoch", "tap"], columns=["metric", "subset"],
                                                  values="value", aggfunc="first")

        def get(row, metric: str, subset: str, fmt: str = "{:.3f}") -> str:
            v = row.get((metric, subset))
            return "-" if v is None or v != v else fmt.format(v)

        for (epoch, tap), row in piv.iterrows():
            table.add_row(str(epoch), tap, get(row, "effective_rank", "train", "{:.1f}"),
                          get(row, "d_star", "val", "{:.0f}"), get(row, "probe_acc_d_star", "val"),
                          get(row, "probe_acc_d_star", "test"), get(row, "trunc_d_star", "val", "{:.0f}"),
                          get(row, "trunc_acc_d_star", "test"), get(row, "segregation", "train"))
        console.print(table)
        if figures:
            for p in plot_all(load_run(run).metrics, r.store.figure_dir):
                console.print(f"figure: {p}")

    @app.command()
    def truncate(
        target: Annotated[str, typer.Argument(help="run directory or RUN/checkpoints/epoch_XXXX.safetensors")],
        out: Annotated[str | None, typer.Option(help="output directory (default RUN/truncated/epoch_XXXX)")] = None,
        head: Annotated[str, typer.Option(help="original | refit")] = "original",
        d: Annotated[str, typer.Option(help="'auto' (noisy validation) or an integer")] = "auto",
        d_rule: Annotated[str, typer.Option(help="argmax | 1se")] = "argmax",
        early: Annotated[bool, typer.Option(help="compare with the best-noisy-val checkpoint")] = True,
        raw: Annotated[bool, typer.Option(help="add the raw-input reference")] = True,
        taps: Annotated[str, typer.Option(help="taps probed for the reference rows")] = "auto",
        device: Annotated[str, typer.Option(help="cpu, cuda, ...")] = "cpu",
    ) -> None:
        """Truncate a trained run's model to its top-d feature directions; print the comparison."""
        from noisescope.spectral.runs import truncate_run

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
        if rep.early_epoch is not None and rep.best_probed_epoch not in (None, rep.early_epoch):
            console.print(f"[yellow]note:[/] the best noisy-validation epoch was {rep.best_probed_epoch}, "
                          f"but its weights were not kept; early stopping uses saved epoch {rep.early_epoch} "
                          "(keep more with run.checkpoint_every)")
        console.print(f"truncated model (d={rep.estimator.d_}, head={head}) written to [bold]{rep.out}[/]")
