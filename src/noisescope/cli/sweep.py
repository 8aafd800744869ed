"""``noisescope sweep CONFIG`` (run a grid, resumably) and ``noisescope sweeps [ROOT]`` (list)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from noisescope.cli.common import cell, console, fail
from noisescope.config import ConfigError
from noisescope.runlock import LockedError

HEADLINE = [("final_test_acc", "final test"), ("early_stop_test_acc", "early-stop test"),
            ("final_noisy_train_obs_acc", "memorized"), ("double_descent", "double descent")]


def runs_table(table: pd.DataFrame, keys: list[str], title: str) -> Table:
    """A rich table of a sweep's runs: id, swept values, state, headline numbers, error."""
    t = Table(title=title)
    errors = "error" in table and table["error"].fillna("").astype(bool).any()
    t.add_column("run", no_wrap=True)
    for col in [*keys, "state", "epoch", *(label for _, label in HEADLINE), *(["error"] if errors else [])]:
        t.add_column(col, overflow="fold")
    for rec in table.to_dict("records"):
        err = str(rec.get("error") or "")
        t.add_row(rec["run"], *(cell(rec.get(k)) for k in keys), rec["state"], cell(rec["epoch"]),
                  *(cell(rec.get(k)) for k, _ in HEADLINE), *([err.splitlines()[0][:60] if err else ""]
                                                               if errors else []))
    return t


def register(app: typer.Typer) -> None:
    @app.command()
    def sweep(
        config: Annotated[str, typer.Argument(help="sweep TOML file ([grid], [[zip]], [sweep]) or preset")],
        executor: Annotated[str | None, typer.Option(help="local or ray (default: sweep.executor)")] = None,
        workers: Annotated[int | None, typer.Option(help="local processes, or CPUs of a Ray started here")] = None,
        address: Annotated[str | None, typer.Option(help="Ray cluster: auto or ray://host:port")] = None,
        set_: Annotated[list[str] | None, typer.Option(
            "--set", help="override: section.key=value, grid.noise.rate=[0.2,0.4], sweep.workers=2")] = None,
        logger: Annotated[list[str] | None, typer.Option(help="also log to tensorboard / mlflow")] = None,
        dry_run: Annotated[bool, typer.Option("--dry-run", help="list the runs, run nothing")] = False,
        quiet: Annotated[bool, typer.Option(help="no progress bar")] = False,
    ) -> None:
        """Run every point of a grid; completed runs are skipped, interrupted ones resume."""
        from noisescope.runs.store import RunStore
        from noisescope.sweep import load_sweep_spec, run_sweep, sweep_table
        from noisescope.sweep.executors import ResourceError
        from noisescope.sweep.runner import executor_for, run_dir

        overrides = list(set_ or [])
        for name, value in (("executor", executor), ("workers", workers), ("address", address)):
            if value is not None:
                overrides.append(f"sweep.{name}={value!r}" if isinstance(value, str) else f"sweep.{name}={value}")
        try:
            spec = load_sweep_spec(config, overrides)
        except ConfigError as exc:
            fail(str(exc))
        s = spec.settings
        path = spec.directory
        axes = " x ".join(f"{'+'.join(a.keys)} ({len(a)})" for a in spec.axes) or "no axes"
        console.print(f"sweep [bold]{s.name}[/]: {len(spec.points)} runs = {axes} -> {path}")
        if dry_run:
            t = Table(title="planned runs")
            for col in ["run", *spec.keys, "state"]:
                t.add_column(col)
            for p in spec.points:
                state = RunStore(run_dir(path, p.id)).status().get("state", "missing")
                t.add_row(p.id, *(cell(p.params[k]) for k in spec.keys), state)
            console.print(t)
            return
        try:
            ex = executor_for(s)
        except (RuntimeError, ValueError) as exc:
            fail(str(exc))
        for name in logger or []:
            if name not in ("tensorboard", "mlflow"):
                fail(f"--logger {name!r}: choose tensorboard or mlflow")
        console.print(f"executor: {ex.describe()}")
        columns = [TextColumn("[bold]runs"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("done {task.fields[done]}  skipped {task.fields[skipped]}  "
                              "[red]failed {task.fields[failed]}[/]"), TimeElapsedColumn()]
        counts = {"complete": 0, "skipped": 0, "failed": 0}
        with Progress(*columns, console=console, disable=quiet) as progress:
            bar = progress.add_task("sweep", total=len(spec.points), done=0, skipped=0, failed=0)

            def on_result(outcome) -> None:
                counts[outcome.state] = counts.get(outcome.state, 0) + 1
                if outcome.state == "failed":
                    progress.console.print(f"[red]run {outcome.id} failed:[/] {outcome.error.splitlines()[0]}")
                progress.update(bar, advance=1, done=counts["complete"], skipped=counts["skipped"],
                                failed=counts["failed"])

            try:
                result = run_sweep(spec, ex, path, on_result=on_result, loggers=tuple(logger or []))
            except KeyboardInterrupt:
                console.print(f"[yellow]interrupted[/]: run the same command again to resume {path}")
                raise typer.Exit(130) from None
            except (ResourceError, LockedError) as exc:
                fail(str(exc).splitlines()[0])
        for line in result.packing:
            console.print(line, highlight=False)
        console.print(runs_table(sweep_table(path), spec.keys, title=str(path)))
        failed = result.ids("failed")
        if failed:
            console.print(f"[red]{len(failed)} run(s) failed[/]; tracebacks in "
                          f"{path}/runs/<id>/status.json; run the sweep again to retry them")
            raise typer.Exit(1)

    @app.command()
    def sweeps(
        root: Annotated[str, typer.Argument(help="directory holding sweeps, or one sweep")] = "sweeps",
    ) -> None:
        """List sweeps with their progress; given one sweep, list its runs."""
        from noisescope.sweep import find_sweeps, read_manifest, sweep_table

        found = find_sweeps(root)
        if not found:
            fail(f"no sweeps under {root!r} (a sweep is a directory with sweep.json)", code=1)
        if len(found) == 1 and Path(root).resolve() == found[0].resolve():
            m = read_manifest(found[0])
            console.print(runs_table(sweep_table(found[0]), m.get("keys", []), title=str(found[0])))
            return
        t = Table(title=f"sweeps in {root}")
        for col in ("sweep", "axes", "runs", "complete", "failed", "other", "best final test",
                    "best early-stop test", "updated"):
            t.add_column(col)
        for d in found:
            try:
                m = read_manifest(d)
                tab = sweep_table(d)
            except (ConfigError, FileNotFoundError, KeyError, ValueError) as exc:
                t.add_row(d.name, f"[red]unreadable: {exc}[/]", *["-"] * 7)
                continue
            states = tab["state"].value_counts() if len(tab) else pd.Series(dtype=int)
            n_ok, n_fail = int(states.get("complete", 0)), int(states.get("failed", 0))
            best = {c: (tab[c].max() if c in tab and tab[c].notna().any() else None)
                    for c in ("final_test_acc", "early_stop_test_acc")}
            t.add_row(d.name, " x ".join("+".join(a["keys"]) + f" ({len(a['values'])})" for a in m["axes"]),
                      str(len(tab)), str(n_ok), str(n_fail), str(len(tab) - n_ok - n_fail),
                      cell(best["final_test_acc"]), cell(best["early_stop_test_acc"]),
                      m.get("updated", "-"))
        console.print(t)
