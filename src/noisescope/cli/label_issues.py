"""``noisescope label-issues RUN``: which training labels of a run are wrong (every detector,
cleanlab beside them), the ranked table written into the run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from noisescope.cli.common import cell, console, fail

EVAL_COLUMNS = [("detector", "detector"), ("auroc", "AUROC"), ("ap", "AP"),
                ("precision_at_rate", "P@r"), ("recall_at_rate", "R@r"),
                ("precision_flagged", "P fl"), ("recall_flagged", "R fl"),
                ("estimated_rate", "est")]
EVAL_LEGEND = ("P@r / R@r: precision / recall of the top round(rate N) scores; P fl / R fl: of the detector's own "
               "flags; est: flagged fraction (estimated noise rate)")


def _methods(values: list[str]) -> list[str] | None:
    out = [m.strip() for v in values for m in v.split(",") if m.strip()]
    return out or None


def _checkpoint(text: str) -> str | int:
    t = text.strip().lower()
    if t in ("early", "final"):
        return t
    if t.isdigit():
        return int(t)
    fail(f"--checkpoint must be early, final or an epoch number, got {text!r}")


def _d(text: str) -> str | int:
    t = text.strip().lower()
    if t == "auto":
        return t
    if t.isdigit() and int(t) >= 1:
        return int(t)
    fail(f"--d must be auto or a positive integer, got {text!r}")


def print_top(table, top: int, classes: list[str] | None, methods: list[str]) -> None:
    out = Table(title=f"top {min(top, len(table))} suspects (of {len(table)} training samples)")
    for name in ("rank", "index", "observed", "predicted", "consensus", "flagged by"):
        out.add_column(name, justify="right" if name not in ("observed", "predicted", "flagged by") else "left")

    def label(c: int) -> str:
        return f"{c} {classes[c]}" if classes and 0 <= c < len(classes) else str(c)

    for _, r in table.head(top).iterrows():
        by = [m for m in methods if bool(r.get(f"flag_{m}", False))]
        out.add_row(str(r["rank"]), str(r["index"]), label(int(r["observed"])), label(int(r["predicted"])),
                    cell(float(r["score_consensus"])), f"{len(by)}/{len(methods)}")
    console.print(out)


def print_evaluation(evaluation, info: dict) -> None:
    noise = info.get("noise", {})
    out = Table(title=(f"detection quality against the known mask (noise {noise.get('model')}, "
                       f"{'synthetic' if noise.get('synthetic') else 'not synthetic'}, realized rate "
                       f"{cell(noise.get('realized_rate'))}, n {info.get('n')})"))
    out.box, out.pad_edge = box.SIMPLE_HEAD, False
    for _, name in EVAL_COLUMNS:
        out.add_column(name, justify="left" if name == "detector" else "right", no_wrap=True,
                       min_width=18 if name == "detector" else 5)
    for _, r in evaluation.iterrows():
        out.add_row(*[str(r[c]) if c == "detector" else cell(float(r[c]) if r[c] == r[c] else None)
                      for c, _ in EVAL_COLUMNS])
    console.print(out)
    console.print(EVAL_LEGEND, highlight=False)


def label_issues(
    run: Annotated[Path, typer.Argument(help="run directory")],
    method: Annotated[list[str], typer.Option(
        "--method", "-m", help="detector(s), repeatable or comma-separated (default: all the run supports)")] = [],  # noqa: B006
    checkpoint: Annotated[str, typer.Option(
        help="model the feature detectors read: early, final or an epoch")] = "early",
    cleanlab_cv: Annotated[int, typer.Option(
        "--cleanlab-cv", help="also cleanlab on K-fold cross-validated probabilities (K >= 2; 0 = off)")] = 0,
    top: Annotated[int, typer.Option(help="rows of the ranked table to print")] = 20,
    d: Annotated[str, typer.Option(
        "--d", help="kept principal components: auto (noisy validation) or an int")] = "auto",
    k: Annotated[int, typer.Option("--k", help="neighbours of knn")] = 10,
    seed: Annotated[int, typer.Option(help="seeds the CV folds and FINE's mixture")] = 0,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto")] = "cpu",
) -> None:
    """Score every training label of RUN (feature, dynamics and disagreement detectors, cleanlab
    beside them); write RUN/label_issues.parquet and .json; print the top suspects and, where
    the true labels are known, the detection quality."""
    from noisescope.config import ConfigError
    from noisescope.runs.label_issues import RUN_METHODS, find_label_issues

    if not (run / "config.json").exists():
        fail(f"{run} is not a noisescope run (no config.json inside)")
    if top < 0:
        fail(f"--top must be >= 0, got {top}")
    if cleanlab_cv < 0 or cleanlab_cv == 1:
        fail(f"--cleanlab-cv must be 0 (off) or a number of folds >= 2, got {cleanlab_cv}")
    if k < 1:
        fail(f"--k must be >= 1, got {k}")
    methods = _methods(method)
    if methods == ["all"]:
        methods = None
    for m in methods or []:
        if m not in RUN_METHODS:
            fail(f"--method {m!r}: choose from {', '.join(RUN_METHODS)} (or all)")
    ckpt, dd = _checkpoint(checkpoint), _d(d)
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    try:
        with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as progress:
            task = progress.add_task("label issues", total=None)

            def on_step(name: str, done: int, total: int) -> None:
                progress.update(task, description=name, completed=done, total=total)

            res = find_label_issues(run, methods, ckpt, dd, k, cleanlab_cv, seed, device=device, progress=on_step)
    except (ValueError, FileNotFoundError, ImportError, ConfigError) as exc:
        fail(str(exc).splitlines()[0] if str(exc) else repr(exc))
    info = res.info
    st = info["settings"]
    console.print(f"run {run}: {info['n']} training samples, features from epoch {st['checkpoint_epoch']} "
                  f"({st['checkpoint']}), early stopping at epoch {st['early_stop_epoch']}", highlight=False)
    for m, why in res.skipped.items():
        console.print(f"skipped {m}: {why}", highlight=False)
    if top:
        print_top(res.table, top, info.get("classes"), res.methods)
    if res.evaluation is not None:
        print_evaluation(res.evaluation, info)
    else:
        console.print("no evaluation: the run's labels hold no noise (the mask is empty)")
    times = ", ".join(f"{m} {v:.2f}s" for m, v in info["cost_seconds"].items())
    console.print(f"seconds per detector (with the shared steps each needs): {times}", highlight=False)
    console.print(f"wrote {run / 'label_issues.parquet'} and {run / 'label_issues.json'}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("label-issues")(label_issues)
