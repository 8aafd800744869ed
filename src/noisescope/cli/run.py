"""``noisescope run``, ``noisescope demo`` and ``noisescope runs``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from noisescope.cli.common import cell, console, fail
from noisescope.config import Config, ConfigError, load_config, locate, resolve_path
from noisescope.io import UserError
from noisescope.runlock import LockedError
from noisescope.training.loop import EpochReport


def execute(cfg: Config, quiet: bool = False, loggers: list[str] | None = None,
            source: tuple[str, list[str]] | None = None) -> Path:
    """Validate, train with a progress bar, print the summary table; return the run dir.

    ``loggers`` (``"tensorboard"``, ``"mlflow"``) receive the same rows as the run's table."""
    from noisescope.runs.build import prepare
    from noisescope.runs.lifecycle import run_experiment
    from noisescope.runs.run import load_run

    try:
        prepared = prepare(cfg)
    except ConfigError as exc:
        if source is not None:
            exc = locate(exc, resolve_path(source[0]), source[1])
        fail(str(exc).splitlines()[0])
    except FileNotFoundError as exc:
        fail(str(exc))
    d = prepared.data
    if getattr(d, "source", ""):
        console.print(f"source: {d.source}", highlight=False)
    console.print(
        f"data [bold]{d.name}[/]: {len(d.x_train)} train / {len(d.x_val)} noisy-val / "
        f"{len(d.x_test)} test, input {tuple(d.input_shape)}, {d.num_classes} classes; "
        f"noise {cfg.noise.model} "
        + {"transition": "(rate set by its matrix; realized ", "file": "(labels from its file; realized ",
           "none": "(realized "}.get(cfg.noise.model, f"rate {cfg.noise.rate:g} (realized ")
        + f"{float(d.noise_mask.float().mean()):.3f})"
    )
    console.print(f"model [bold]{cfg.model.arch}[/] {cfg.model.options} -> run {prepared.path}")
    columns = [
        TextColumn("[bold]epoch"), BarColumn(), MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}  clean {task.fields[clean]}  "
                   "noisy(mem) {task.fields[noisy]}  test {task.fields[test]}"),
        TimeRemainingColumn(),
    ]
    log_every = max(1, cfg.train.epochs // 10)  # plain lines when stdout is not a terminal (CI, logs)
    with Progress(*columns, console=console, disable=quiet or not console.is_terminal) as progress:
        task = progress.add_task("train", total=cfg.train.epochs, loss="-", clean="-", noisy="-", test="-")

        def on_epoch(r: EpochReport) -> None:
            acc = {row.subset: row.value for row in r.rows if row.probe == "dynamics" and row.metric == "acc"}
            fields = {"loss": cell(r.train_loss)}
            if acc:
                fields.update(clean=cell(acc.get("clean_train")), noisy=cell(acc.get("noisy_train_obs")),
                              test=cell(acc.get("test")))
            progress.update(task, completed=r.epoch, **fields)
            if not console.is_terminal and not quiet and (r.epoch % log_every == 0 or r.epoch == cfg.train.epochs):
                line = "  ".join(f"{k} {v}" for k, v in fields.items())
                console.print(f"epoch {r.epoch}/{cfg.train.epochs}  {line}")

        callbacks: list = [on_epoch]
        if loggers:
            from noisescope.runs.loggers import LOGGERS, make_loggers

            unknown = [n for n in loggers if n not in LOGGERS]
            if unknown:
                fail(f"--logger {unknown[0]!r}: choose from {', '.join(LOGGERS)}")
            try:
                callbacks.append(make_loggers(loggers, prepared.path, cfg))
            except ImportError as exc:
                fail(f"--logger: {exc}; install it with pip install 'noisescope[loggers]'")
        from noisescope.runs.loggers import LoggerGroup

        group = LoggerGroup(callbacks)
        try:
            path = run_experiment(cfg, on_epoch=group, prepared=prepared)
        except (ConfigError, LockedError, UserError) as exc:
            fail(str(exc).splitlines()[0])
        finally:
            group.close()
    print_summary(load_run(path).summary, title=str(path))
    return path


def _sample_count(s: dict, key: str) -> int | None:
    """n behind a summary accuracy: ``n_<subset>`` for ``final_<subset>_acc``, the test set's
    for the early-stopping and best test accuracies."""
    subset = key.removeprefix("final_").removesuffix("_acc") if key.startswith("final_") else "test"
    n = s.get(f"n_{subset}")
    return int(n) if n else None


def print_summary(s: dict, title: str = "") -> None:
    """The run's headline numbers; every accuracy with its 95% Wilson interval and n."""
    from noisescope.evidence.intervals import Accuracy

    table = Table(title=title or "summary", show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in s.items():
        if key.endswith("_acc") and isinstance(value, float) and value == value and _sample_count(s, key):
            value = str(Accuracy.from_value(value, _sample_count(s, key)))
        elif key in ("double_descent", "double_descent_loss"):
            value = (
                "none detected" if not value else
                f"min@{value['first_min_epoch']} peak@{value['peak_epoch']} "
                f"min@{value['second_min_epoch']} gain {value['gain']:.3f}"
            )
        elif isinstance(value, float):
            value = f"{value:.4f}"
        table.add_row(key, str(value))
    console.print(table)


def register(app: typer.Typer) -> None:
    @app.command()
    def run(
        config: Annotated[str, typer.Argument(help="TOML config file or preset name")],
        set_: Annotated[list[str] | None, typer.Option("--set", help="override: section.key=value")] = None,
        quiet: Annotated[bool, typer.Option(help="no progress bar")] = False,
        logger: Annotated[list[str] | None, typer.Option(help="also log to tensorboard / mlflow")] = None,
    ) -> None:
        """Train and probe one experiment; resumes an interrupted run with the same config."""
        try:
            cfg = load_config(config, set_ or [])
        except ConfigError as exc:
            fail(str(exc))
        path = execute(cfg, quiet=quiet, loggers=logger, source=(config, set_ or []))
        try:
            _figure(path)
        except UserError as exc:  # a full or read-only disk: the run itself is complete
            fail(str(exc))

    @app.command()
    def demo(
        root: Annotated[str, typer.Option(help="where the run directory goes")] = "runs",
        epochs: Annotated[int | None, typer.Option(help="override the preset's epochs")] = None,
        set_: Annotated[list[str] | None, typer.Option("--set", help="override: section.key=value")] = None,
        retrain_epochs: Annotated[int | None, typer.Option(
            help="epochs of the cleaning and oracle retrainings (default: 2 x early stop, >= 10)")] = None,
    ) -> None:
        """The main job: 40% label noise memorized on Fashion-MNIST; which labels are wrong, which
        model to use (every repair side by side), and the report.

        Uses the full Fashion-MNIST where installed, else the class-balanced subset shipped with
        noisescope (same training samples, 5,000 test images); the run says which."""
        preset = "fmnist_demo"
        overrides = [f"run.root={root!r}", *(set_ or [])] + ([f"train.epochs={epochs}"] if epochs is not None else [])
        if retrain_epochs is not None and retrain_epochs < 1:
            fail(f"--retrain-epochs must be >= 1, got {retrain_epochs}")
        try:
            cfg = load_config(preset, overrides)
        except ConfigError as exc:
            fail(str(exc).splitlines()[0])
        console.print(f"[bold]noisescope demo[/]: preset [cyan]{preset}[/]")
        path = execute(cfg, source=(preset, overrides))
        fig = _figure(path)
        console.print(f"figure: [bold]{fig}[/]", soft_wrap=True)
        _demo_finish(path, retrain_epochs)

    @app.command()
    def runs(root: Annotated[str, typer.Argument(help="directory holding runs")] = "runs") -> None:
        """List runs with their headline numbers."""
        from noisescope.runs.run import load_run

        dirs = sorted(p.parent for p in Path(root).glob("*/config.json"))
        if not dirs:
            fail(f"no runs under {root!r} (a run is a directory with config.json)", code=1)
        from rich.text import Text

        from noisescope.cli.sweep import HEADLINE_NOTE, STATE_WORDS, compact_table

        rows = []
        for d in dirs:
            r = load_run(d)
            s = r.summary
            dd = s.get("double_descent")
            state = str(r.status.get("state", "?"))
            rows.append([
                d.name, STATE_WORDS.get(state, state), str(r.status.get("epoch", "-")),
                f"{r.config.noise.model} {r.config.noise.rate:g}",
                cell(s.get("final_test_acc")), cell(s.get("early_stop_test_acc")),
                cell(s.get("final_noisy_train_obs_acc")),
                "yes" if dd else "no",
            ])
        console.print(compact_table(f"runs in {root}", ["run", "state", "ep", "noise", "test final", "test early",
                                                       "memorized", "dd"], rows, right=range(4, 7)))
        console.print(Text(HEADLINE_NOTE, style="dim"))


def _figure(path: Path) -> Path:
    from noisescope.report.figures import plot_dynamics
    from noisescope.runs.run import load_run

    run = load_run(path)
    cfg = run.config
    title = (f"{cfg.data.name}: {cfg.noise.model} noise {cfg.noise.rate:g}, {cfg.model.arch} "
             f"{cfg.model.options}, {cfg.train.optimizer} lr {cfg.train.lr:g}")
    return plot_dynamics(run.metrics, run.store.figure_dir / "dynamics.png", title=title)


def _demo_finish(path: Path, retrain: int | None) -> None:
    """After training: label issues, cleaning, the oracle, every repair (``cli.demo``), the
    report, and the three conclusion lines."""
    from rich import box

    from noisescope.cli.demo import finish_demo, leaderboard_rows, report_line
    from noisescope.report import build_report

    try:
        with console.status("label issues ...") as status:
            out = finish_demo(path, retrain, progress=lambda m: status.update(m[:76]))
    except (ValueError, FileNotFoundError, ConfigError, UserError) as exc:  # the trained run is kept
        fail(f"demo after training ({path}): {str(exc).splitlines()[0] if str(exc) else repr(exc)}")
    t = out.seconds
    console.print(f"seconds: label issues {t['label_issues']:.0f}, cleaning {t['cleaning']:.0f}, oracle "
                  f"{t['oracle']:.0f}, repairs {t['repair']:.0f}", highlight=False)
    if out.reduced:
        console.print(f"reduced cost: cleaning and oracle retrained {out.retrain_epochs} of {out.epochs} "
                      "epochs (see the report)", highlight=False)
    rows = leaderboard_rows(out.repair.table)
    n_val, n_test = int(out.repair.table["n_val"].max()), int(out.repair.table["n_test"].max())
    table = Table(title=f"which model to use (noisy val n={n_val}, clean test n={n_test})", box=box.SIMPLE_HEAD,
                  pad_edge=False, show_edge=False)
    table.add_column("model", no_wrap=True)
    table.add_column("val", justify="right", no_wrap=True, min_width=5)
    table.add_column("clean test [95% CI]", justify="right", no_wrap=True, min_width=20)
    table.add_column("outcome", no_wrap=True)
    for r in rows:
        table.add_row(*r)
    console.print(table)
    report = build_report(path, progress=console.is_terminal)
    for line in [*out.lines, report_line(report)]:
        console.print(line, highlight=False, markup=False, soft_wrap=True)
