"""``noisescope methods RUN [RUN ...] | --root DIR``: the training-method leaderboard
(``workflows.methods_board``) of a set of runs, in the terminal (80 columns).

Runs are grouped by (noise, seed) from their configs: ``train.method`` names the method
(``ce``: cross-entropy, whose early-stopped checkpoint is the baseline), a run with
``noise.model = "none"`` is the clean-label oracle of its ``train.seed``. ``--root DIR`` reads
``DIR/timings.json`` when it exists (``scripts/robust_training.py``'s directory: measured
compute, cleaning rows), else takes every run directory directly inside DIR. Nothing is written but ``--html PATH``: the
table and ``report.methods_section`` (the recorded curves, method beside method) as one page.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich import box
from rich.table import Table
from rich.text import Text

from noisescope.cli.common import cell, console, fail, interval, p_value

CAPTION = ("ES: early stopping (cross-entropy). Each model at its own early-stopping epoch. "
           "vs ES: clean-test points (McNemar's exact p). noisy fit: noisy training samples "
           "fitted to their wrong labels. gap: share of the ES -> oracle gap "
           "closed. compute: nominal passes per sample (x one run; measured in parentheses when "
           "timings.json has it). The recommendation: docs/definitions.md, one rule.")


def noise_label(model: str, rate: float) -> str:
    """The group name of a noise config, e.g. ``symmetric40`` (rate in percent)."""
    return f"{model}{round(100 * rate)}"


def timings_of(paths: list[Path]) -> dict[str, dict]:
    """``timings.json``-like entries (``workflows.methods_board``) for run directories, read from
    their configs; seconds unknown (NaN). Raises ValueError naming a duplicate or a non-run."""
    from noisescope.runs.run import load_run

    out: dict[str, dict] = {}
    seen: dict[tuple[str, int, str], Path] = {}
    for p in paths:
        try:
            run = load_run(p)
        except FileNotFoundError:
            raise ValueError(f"{p} is not a noisescope run (no config.json inside); pass run directories") from None
        if not run.checkpoints():
            raise ValueError(f"{p} has no checkpoints yet; let it train an epoch or leave it out")
        cfg = run.config
        oracle = cfg.noise.model == "none" or cfg.noise.rate == 0
        method = "oracle" if oracle else cfg.train.method
        noise = "none" if oracle else noise_label(cfg.noise.model, cfg.noise.rate)
        key = (noise, int(cfg.train.seed), method)
        if key in seen:
            raise ValueError(f"{p} and {seen[key]} are both {method} on {noise} noise with seed {key[1]}; "
                             "pass one run per method, noise and seed")
        seen[key] = p
        out[str(p.resolve())] = {"seconds": float("nan"), "noise": noise, "seed": key[1], "method": method}
    return out


def _vs_es(r: dict, es: float) -> str:
    if r["method"] == "early_stop" or r["es_p"] != r["es_p"]:
        return "-"
    return f"{100 * (r['test_acc'] - es):+.1f} ({p_value(r['es_p'], 1, below=-4)})"


def _compute(r: dict, measured: bool) -> str:
    nominal = cell(r["compute_nominal"], 0) + "x"
    return nominal if not measured or r["compute"] != r["compute"] else f"{nominal} ({r['compute']:.1f})"


def group_table(g: pd.DataFrame, title: str, recommended: str | None, measured: bool = False) -> Table:
    """One (noise, seed) group of ``workflows.methods_board.COLUMNS`` rows as an 80-column table;
    ``measured``: also the measured compute (wall seconds / the cross-entropy run's).
    ``noisy fit``: the model's accuracy on the noisy training samples against their observed
    (wrong) labels (memorization; ``methods_board.COLUMNS``' ``memorized``)."""
    n_test = int(g["n_test"].max())
    table = Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 0, 0, 1),
                  title_justify="left")
    table.add_column("method", no_wrap=True)
    table.add_column(f"clean test\n[95% CI]\nn={n_test}", justify="right", no_wrap=True)
    table.add_column("vs ES,\npts (p)", justify="right", no_wrap=True)
    table.add_column("gap\nclosed", justify="right", no_wrap=True)
    table.add_column("noisy\nfit", justify="right", no_wrap=True)
    table.add_column("compute", justify="right", no_wrap=True)
    es = float(g.loc[g["method"] == "early_stop", "test_acc"].iloc[0])
    for r in g.to_dict("records"):
        style = "bold" if r["method"] == recommended else None
        table.add_row(r["method"], interval(r["test_acc"], r["test_low"], r["test_high"]), _vs_es(r, es),
                      cell(r["gap_closed"], 2), cell(r["memorized"], 2), _compute(r, measured), style=style)
    return table


def html_report(path: Path, out: Path, timings: dict[str, dict], table: pd.DataFrame, decisions: dict) -> Path:
    """Write the leaderboard (every group's rows, with the tail shares of ``methods_board``) and
    ``report.methods_section`` (the recorded curves, method beside method) as one HTML page."""
    import tempfile

    from noisescope.report.html import Section, table_html, write_page
    from noisescope.report.methods_section import methods_section
    from noisescope.runs.store import RunStore

    entries = {n: t for n, t in timings.items() if t["method"] != "clean"}
    noises = {t["noise"] for t in entries.values() if t["method"] != "oracle"}
    groups: dict[tuple[str, str], list[pd.DataFrame]] = {}
    for name, t in entries.items():
        noise = "" if t["method"] == "oracle" or len(noises) < 2 else t["noise"]
        groups.setdefault((t["method"], noise), []).append(RunStore(out / name).metrics())
    board_sec = Section("board", "Training methods against early stopping", CAPTION)
    cols = ["noise", "seed", "method", "epoch", "test_acc", "test_low", "test_high", "n_test", "es_p", "gap_closed",
            "memorized", "tail_clean", "tail_noisy", "compute_nominal"]
    board_sec.tables.append(table_html(table[cols], formats={"es_p": "{:.2g}", "compute_nominal": "{:.0f}"}))
    board_sec.notes.append("test_low / test_high: Wilson 95% interval; es_p: McNemar's exact p against early stopping; "
                           "memorized: noisy training samples fitted to their wrong labels; tail_clean / tail_noisy: "
                           "the model's share of centred penultimate-feature energy beyond the top-C principal "
                           "directions, clean vs noisy training samples (workflows.methods_board).")
    board_sec.notes += [f"{k}: recommended {d['choice']} ({d['status']}); {d['line']}" for k, d in decisions.items()]
    n_test = int(table["n_test"].max()) if len(table) else None
    with tempfile.TemporaryDirectory(prefix="noisescope-methods-") as tmp:
        sec = methods_section(groups, Path(tmp), n_test)
        return write_page(path, "noisescope training methods", [f"{len(entries)} runs"], [board_sec, sec])


def register(app: typer.Typer) -> None:
    @app.command()
    def methods(
        runs: Annotated[list[str] | None, typer.Argument(
            help="run directories: cross-entropy (the baseline), other train.method runs, an oracle")] = None,
        root: Annotated[str | None, typer.Option(
            help="a directory of runs (scripts/robust_training.py's, with timings.json, or any)")] = None,
        html: Annotated[str | None, typer.Option(
            help="also write this HTML page: the table and the recorded curves, method beside method")] = None,
    ) -> None:
        """The training-method leaderboard: every method's clean-test accuracy beside early
        stopping, with McNemar, the gap closed and the compute; the one recommendation rule."""
        from noisescope.workflows.methods_board import board

        if bool(runs) == (root is not None):
            fail("give run directories or --root DIR (one of them)")
        timings = None
        out = Path(root) if root is not None else Path(".")
        try:
            if root is not None:
                if not out.is_dir():
                    fail(f"--root {root} is not a directory; pass a directory of runs")
                if not (out / "timings.json").exists():
                    paths = sorted(p for p in out.iterdir() if (p / "config.json").exists())
                    if not paths:
                        fail(f"--root {root} holds no run directories (no */config.json); train runs first")
                    timings = timings_of(paths)
            else:
                timings = timings_of([Path(r) for r in runs or []])
            table, _summary, _curves, decisions = board(out, timings=timings, export=False)
        except (ValueError, FileNotFoundError) as exc:
            fail(str(exc).splitlines()[0])
        if table.empty:
            fail("no (noise, seed) group has a finished cross-entropy run (train.method = \"ce\"); "
                 "add the baseline run")
        for (noise, seed), g in table.groupby(["noise", "seed"], sort=True):
            dec = decisions.get(f"{noise}-s{seed}", {})
            console.print(group_table(g, f"{noise} noise, seed {seed}", dec.get("choice"), measured=timings is None))
            console.print(Text(f"recommended: {dec.get('choice', '-')} ({dec.get('status', '-')}); "
                               f"{dec.get('line', '')}"), highlight=False)
            console.print()
        console.print(Text(CAPTION), highlight=False)
        if html is not None:
            from noisescope.io import read_json

            given = timings if timings is not None else read_json(out / "timings.json")
            written = html_report(Path(html), out, given, table, decisions)
            console.print(Text(f"report: {written}"), highlight=False)
