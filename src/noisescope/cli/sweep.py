"""``noisescope sweep CONFIG`` (run a grid, resumably) and ``noisescope sweeps [ROOT]`` (list)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from noisescope.cli.common import cell, console, fail
from noisescope.config import ConfigError
from noisescope.runlock import LockedError

#: headline numbers of a run: (sweep_table column, compact header); see HEADLINE_NOTE
HEADLINE = [("final_test_acc", "test final"), ("early_stop_test_acc", "test early"),
            ("final_noisy_train_obs_acc", "memorized"), ("double_descent", "dd")]
HEADLINE_NOTE = ("test final / early: clean test accuracy of the final / early-stopped model; memorized: "
                 "noisy training accuracy against the observed labels; dd: epoch-wise double descent detected")
#: run states (status.json) as short words
STATE_WORDS = {"complete": "done", "missing": "pending"}


def short_names(keys: list[str]) -> dict[str, str]:
    """Swept keys -> compact column headers: the last dotted part, more parts where two keys
    would share it (``noise.rate`` -> ``rate``, ``model.options.widths`` -> ``widths``)."""
    out: dict[str, str] = {}
    for k in keys:
        parts = k.split(".")
        for n in range(1, len(parts) + 1):
            name = ".".join(parts[-n:])
            if sum(".".join(o.split(".")[-n:]) == name for o in keys) == 1 or n == len(parts):
                out[k] = name
                break
    return out


def param_cell(v: object) -> str:
    """A swept value as written in the sweep file (``0.1``, not ``0.100``)."""
    if isinstance(v, float) and v == v:
        return f"{v:g}"
    return cell(v)


def runs_tables(table: pd.DataFrame, keys: list[str], title: str, width: int) -> list[Table]:
    """A sweep's runs as tables that fit ``width`` columns without wrapping a number or word:
    one table (id, swept values, state, epoch, headline numbers) when it fits, else two (the
    swept values; the results), joined by the run id. Errors are not in the table: see
    :func:`print_runs`."""
    names = short_names(keys)
    recs = table.to_dict("records")

    def params(rec: dict) -> list[str]:
        return [param_cell(rec.get(k)) for k in keys]

    def results(rec: dict) -> list[str]:
        state = str(rec.get("state", "missing"))
        epoch = rec.get("epoch")
        return [STATE_WORDS.get(state, state), "-" if epoch is None or epoch != epoch or epoch < 0 else cell(epoch),
                *(cell(rec.get(k)) for k, _ in HEADLINE)]

    def build(title: str | None, with_params: bool, with_results: bool) -> Table:
        rows = [[r["run"], *(params(r) if with_params else []), *(results(r) if with_results else [])] for r in recs]
        heads = ["run", *([names[k] for k in keys] if with_params else []),
                 *(["state", "ep", *(label for _, label in HEADLINE)] if with_results else [])]
        return compact_table(title, heads, rows, right=range(len(heads) - (len(HEADLINE) + 1 if with_results else 0),
                                                             len(heads)))

    one = build(title, True, True)
    if table_width(one) <= width or not keys:
        return [one]
    return [build(title, True, False), build(None, False, True)]


def compact_table(title: str | None, heads: list[str], rows: list[list[str]], right=()) -> Table:
    """A table whose values never wrap (each column at least as wide as its widest value) and
    whose headers wrap only at spaces; columns ``right`` right-justified."""
    from rich.cells import cell_len

    t = Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, title_justify="left")
    for j, head in enumerate(heads):
        widest = max([cell_len(r[j]) for r in rows] + [max(cell_len(w) for w in head.split() or [""])])
        t.add_column(head, width=widest, justify="right" if j in right else "left")
    for r in rows:
        t.add_row(*r)
    return t


def table_width(t: Table) -> int:
    """The fewest columns ``t`` needs."""
    from rich.measure import Measurement

    probe = Console(width=10_000, file=io.StringIO())
    return Measurement.get(probe, probe.options, t).minimum


def interval_note(table: pd.DataFrame) -> str | None:
    """What the runs table's test accuracies rest on: their clean-test n and the widest 95%
    Wilson half-width among them (``evidence.intervals.Accuracy``); None without n_test."""
    from noisescope.evidence.intervals import Accuracy

    if "n_test" not in table:
        return None
    halves, ns = [], set()
    for rec in table.to_dict("records"):
        n = rec.get("n_test")
        if n is None or n != n or n <= 0:
            continue
        ns.add(int(n))
        for c in ("final_test_acc", "early_stop_test_acc"):
            v = rec.get(c)
            if v is not None and v == v:
                a = Accuracy.from_value(float(v), int(n))
                halves.append((a.high - a.low) / 2)
    if not halves:
        return None
    n_words = f"{min(ns):,}" if len(ns) == 1 else f"{min(ns):,}-{max(ns):,}"
    return (f"test accuracies on n = {n_words} clean test samples per run; 95% Wilson "
            f"half-width at most {max(halves):.3f}")


def print_runs(table: pd.DataFrame, keys: list[str], title: str) -> None:
    """The runs tables (:func:`runs_tables`), what the compact headers mean, and each failed
    run's error (its first line, wrapped at spaces)."""
    names = short_names(keys)
    for t in runs_tables(table, keys, title, console.width):
        console.print(t)
    legend = [f"{names[k]} = {k}" for k in keys if names[k] != k]
    note = interval_note(table)
    console.print(Text("; ".join([*legend, HEADLINE_NOTE, *([note] if note else [])]), style="dim"))
    if "error" in table:
        for rec in table.to_dict("records"):
            err = str(rec.get("error") or "").strip()
            if err:
                console.print(Text(f"{rec['run']} failed: ", style="red") + Text(err.splitlines()[0]))


def register(app: typer.Typer) -> None:
    @app.command()
    def sweep(
        config: Annotated[str, typer.Argument(help=r"sweep TOML file (\[grid], \[\[zip]], \[sweep]) or preset")],
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
            names = short_names(spec.keys)
            rows = []
            for p in spec.points:
                state = RunStore(run_dir(path, p.id)).status().get("state", "missing")
                rows.append([p.id, *(param_cell(p.params[k]) for k in spec.keys), STATE_WORDS.get(state, state)])
            t = compact_table("planned runs", ["run", *(names[k] for k in spec.keys), "state"], rows)
            console.print(t)
            legend = [f"{names[k]} = {k}" for k in spec.keys if names[k] != k]
            if legend:
                console.print(Text("; ".join(legend), style="dim"))
            return
        try:
            ex = executor_for(s)
        except (RuntimeError, ValueError) as exc:
            fail(str(exc))
        for name in logger or []:
            if name not in ("tensorboard", "mlflow"):
                fail(f"--logger {name!r}: choose tensorboard or mlflow")
        desc = ex.describe()
        if isinstance(desc, dict):
            desc = ", ".join(str(v) if k == "executor" else f"{k} {v}" for k, v in desc.items())
        console.print(f"executor: {desc}", highlight=False)
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
        print_runs(sweep_table(path), spec.keys, title=str(path))
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
            print_runs(sweep_table(found[0]), m.get("keys", []), title=str(found[0]))
            return
        rows, axes = [], []
        for d in found:
            try:
                m = read_manifest(d)
                tab = sweep_table(d)
            except (ConfigError, FileNotFoundError, KeyError, ValueError) as exc:
                rows.append([d.name, *["-"] * 7])
                axes.append((d.name, f"unreadable: {exc}"))
                continue
            states = tab["state"].value_counts() if len(tab) else pd.Series(dtype=int)
            n_ok, n_fail = int(states.get("complete", 0)), int(states.get("failed", 0))
            best = {c: (tab[c].max() if c in tab and tab[c].notna().any() else None)
                    for c in ("final_test_acc", "early_stop_test_acc")}
            updated = str(m.get("updated") or "-")
            rows.append([d.name, str(len(tab)), str(n_ok), str(n_fail), str(len(tab) - n_ok - n_fail),
                         cell(best["final_test_acc"]), cell(best["early_stop_test_acc"]),
                         updated[:16].replace("T", " ") if len(updated) >= 16 else updated])
            axes.append((d.name, " x ".join("+".join(a["keys"]) + f" ({len(a['values'])})" for a in m["axes"])
                         or "no axes"))
        t = compact_table(f"sweeps in {root}", ["sweep", "runs", "done", "failed", "other", "best test final",
                                               "best test early", "updated (UTC)"], rows, right=range(1, 7))
        console.print(t)
        for name, text in axes:
            console.print(Text(f"{name}: ", style="bold") + Text(text))
