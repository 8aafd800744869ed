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

QUALITY_COLUMNS = [("detector", "detector"), ("auroc", "AUROC"), ("auroc_se", "SE"), ("ap", "AP"),
                   ("precision_at_rate", "P=R@n"), ("precision_flagged", "P fl"),
                   ("recall_flagged", "R fl"), ("f1_flagged", "F1 fl")]
QUALITY_LEGEND = ("SE: DeLong's standard error of the AUROC. P=R@n: precision of the top n scores, n = the "
                  "number of noisy samples; at that "
                  "cut-off precision and recall are the same number (TP / n). P fl / R fl / F1 fl: of "
                  "the detector's own flags.")
DEFAULT_MARK = " *"


def _name(m: str, info: dict) -> str:
    """A detector's row name; the default ranking and flags (consensus) marked with ``*``."""
    return m + DEFAULT_MARK if m == info.get("default", {}).get("ranking", "consensus") else m


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


def print_top(table, top: int, classes: list[str] | None, members: list[str]) -> None:
    out = Table(title=f"top {min(top, len(table))} suspects of {len(table)} (ranked by consensus *)")
    out.box, out.pad_edge = box.SIMPLE_HEAD, False
    for name in ("rank", "index", "observed", "predicted", "consensus", "flagged by"):
        out.add_column(name, justify="right" if name not in ("observed", "predicted") else "left", no_wrap=True)

    def label(c: int) -> str:
        return f"{c} {classes[c]}" if classes and 0 <= c < len(classes) else str(c)

    for _, r in table.head(top).iterrows():
        by = [m for m in members if bool(r.get(f"flag_{m}", False))]
        out.add_row(str(r["rank"]), str(r["index"]), label(int(r["observed"])), label(int(r["predicted"])),
                    cell(float(r["score_consensus"])), f"{len(by)} of {len(members)}")
    console.print(out)


SHARED_NAMES = {"load": "data rebuild", "early_logits": "early-stopped pass", "features": "feature pass",
                "margins_record": "margins record"}


def print_detectors(info: dict, methods: list[str]) -> None:
    """Each detector's flag rule, its implied noise-rate estimate beside the others' (and the
    truth when known), and its own seconds, also as % of the training run."""
    noise = info.get("noise", {})
    truth = noise.get("realized_rate") if noise.get("mask_known") else None
    run_s = info.get("run_seconds_approx")
    own = info.get("seconds", {})
    est = info.get("estimated_rate", {})
    rules = info.get("flag_rules", {})
    title = "each detector's flags: estimated noise rate " + (
        f"(true {cell(truth)})" if truth is not None else "(true rate unknown)")
    out = Table(title=title)
    out.box, out.pad_edge = box.SIMPLE_HEAD, False
    for name in ("detector", "flag rule", "est.", "sec", "% run"):
        out.add_column(name, justify="left" if name in ("detector", "flag rule") else "right", no_wrap=True)

    def pct(s: float | None) -> str:
        return cell(100.0 * s / run_s, 1) if s is not None and run_s else "-"

    for m in methods:
        out.add_row(_name(m, info), rules.get(m, "-"), cell(est.get(m)), cell(own.get(m), 2), pct(own.get(m)))
    for step, s in info.get("shared_seconds", {}).items():
        out.add_row(f"({SHARED_NAMES.get(step, step)})", "shared step", "", cell(s, 2), pct(s))
    total = info.get("total_seconds")
    if not info.get("consensus_of"):
        out.add_row("(all steps)", "", "", cell(total, 2), pct(total))
        console.print(out)
        return
    out.add_row(_name("consensus", info), rules.get("consensus", "-"), cell(est.get("consensus")),
                cell(total, 2), pct(total))
    console.print(out)


def print_evaluation(evaluation, info: dict) -> None:
    noise = info.get("noise", {})
    out = Table(title=(f"detection quality against the known mask (noise {noise.get('model')}, "
                       f"{'synthetic' if noise.get('synthetic') else 'not synthetic'}, n {info.get('n')})"))
    out.box, out.pad_edge = box.SIMPLE_HEAD, False
    for _, name in QUALITY_COLUMNS:
        out.add_column(name, justify="left" if name == "detector" else "right", no_wrap=True)
    for _, r in evaluation.iterrows():
        out.add_row(*[_name(str(r[c]), info) if c == "detector"
                      else cell(float(r[c]) if c in r and r[c] == r[c] else None) for c, _ in QUALITY_COLUMNS])
    console.print(out)
    console.print(QUALITY_LEGEND, highlight=False)


def print_default(info: dict) -> None:
    """Which ranking and flags are the default, and what the consensus averages."""
    members = info.get("consensus_of", [])
    if not members:
        console.print("no consensus: only cleanlab_cv was computed, a peer shown beside the default ranking "
                      "(noisescope label-issues RUN computes the default)", highlight=False)
        return
    half = -(-len(members) // 2)
    same = "; ".join(f"{m} counts once, as {twin} (same ranking)" for m, twin in info.get("same_ranking", {}).items())
    state = ("the default detectors" if info.get("default", {}).get("is_default")
             else "not the default detectors (--method / --checkpoint / --d)")
    console.print(f"* default: ranking and flags of the consensus, the mean percentile rank over "
                  f"{len(members)} distinct rankings ({', '.join(members)}; {state}); flagged when "
                  f"{half} of {len(members)} flag." + (f" {same}." if same else ""), highlight=False)


def label_issues(
    run: Annotated[Path, typer.Argument(help="run directory")],
    method: Annotated[list[str], typer.Option(
        "--method", "-m", help="detector(s), repeatable or comma-separated, or all (default: truncated_distance, "
        "disagreement, aum_early)")] = [],  # noqa: B006
    checkpoint: Annotated[str, typer.Option(
        help="model the feature detectors read: early, final or an epoch")] = "early",
    cleanlab_cv: Annotated[int, typer.Option(
        "--cleanlab-cv", help="also cleanlab on K-fold cross-validated probabilities (K >= 2; 0 = off), "
        "written to label_issues_cleanlab_cv.parquet beside the default ranking")] = 0,
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
    from noisescope.workflows.label_issues import CV_PARQUET, JSON, PARQUET, RUN_METHODS, find_label_issues

    if not (run / "config.json").exists():
        fail(f"{run} is not a noisescope run (no config.json inside)")
    if top < 0:
        fail(f"--top must be >= 0, got {top}")
    if cleanlab_cv < 0 or cleanlab_cv == 1:
        fail(f"--cleanlab-cv must be 0 (off) or a number of folds >= 2, got {cleanlab_cv}")
    if k < 1:
        fail(f"--k must be >= 1, got {k}")
    methods = _methods(method)
    for m in [] if methods == ["all"] else methods or []:
        if m not in RUN_METHODS:
            fail(f"--method {m!r}: choose from {', '.join(RUN_METHODS)} (or all)")
    ckpt, dd = _checkpoint(checkpoint), _d(d)
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    try:
        with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as progress:
            task = progress.add_task("label issues", total=None)

            def on_step(name: str, done: int, total: int) -> None:
                progress.update(task, description=name, completed=done, total=total)

            res = find_label_issues(run, "all" if methods == ["all"] else methods, ckpt, dd, k, cleanlab_cv, seed,
                                    device=device, progress=on_step)
    except (ValueError, FileNotFoundError, ImportError, ConfigError) as exc:
        fail(str(exc).splitlines()[0] if str(exc) else repr(exc))
    info = res.info
    st = info["settings"]
    console.print(f"run {run}: {info['n']} training samples, features from epoch {st['checkpoint_epoch']} "
                  f"({st['checkpoint']}), early stopping at epoch {st['early_stop_epoch']}", highlight=False)
    for m, why in res.skipped.items():
        console.print(f"skipped {m}: {why}", highlight=False)
    print_default(info)
    if top and info.get("consensus_of"):
        print_top(res.table, top, info.get("classes"), info.get("consensus_of", []))
    print_detectors(info, res.methods)
    if res.evaluation is not None:
        print_evaluation(res.evaluation, info)
    else:
        console.print("no evaluation: the run's labels hold no noise (the mask is empty)")
    run_s = info.get("run_seconds_approx")
    total = info["total_seconds"]
    if run_s:
        console.print(f"training run {run_s:.1f} s (env.json start to the last status write); these "
                      f"detectors {total:.2f} s in all = {100 * total / run_s:.1f}% of it (the consensus "
                      "row: every step).", highlight=False)
    else:
        console.print(f"these detectors {total:.2f} s (the run's own time is not recorded: resumed or "
                      "incomplete run).", highlight=False)
    wrote = (f"wrote {run / PARQUET} and {JSON} (ranked by {st['rank_by']})" if info.get("consensus_of")
             else f"left {PARQUET} as it was (no detector for a consensus)")
    if res.cv_table is not None:
        wrote += (f"; cleanlab_cv to its own {CV_PARQUET} and .json (not in the consensus; the default "
                  "ranking is unchanged)")
    console.print(wrote, highlight=False)


def register(app: typer.Typer) -> None:
    app.command("label-issues")(label_issues)
