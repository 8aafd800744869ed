"""``noisescope repair RUN [RUN ...] | SWEEP``: every post-hoc repair side by side (workflows/repair.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich import box
from rich.table import Table
from rich.text import Text

from noisescope.cli.common import cell, console, fail, interval, p_value


def _pts(v: float) -> str:
    return "-" if v != v else f"{100 * v:+.1f}"


CAPTION = ("choices on noisy validation only; rule: the most accurate candidate against each other "
           "(McNemar on noisy validation): kept / recommended / undecided / beaten / not beaten / = X "
           "(same validation predictions as X); vs early stop: clean-test difference in points and "
           "McNemar's exact p")
CAPTION_SHORT = ("rule: does the most accurate candidate beat this row on noisy validation (McNemar)? "
                 "vs early stop: clean-test points (McNemar p). --wide: every column")


def leaderboard_table(df: pd.DataFrame, title: str, recommended: str | None = None, wide: bool = False) -> Table:
    """One run's leaderboard (workflows.repair.COLUMNS) as a rich table. The default columns fit an
    80-column terminal (no cell holds a word longer than its column); ``wide`` adds the
    choices, the validation intervals, the gain over the final model, p against the most
    accurate, the gap closed and the seconds."""
    n_val = int(df["n_val"].max()) if len(df) else 0
    n_test = int(df["n_test"].max()) if len(df) else 0
    table = Table(title=title, caption=CAPTION if wide else CAPTION_SHORT, caption_justify="left",
                  box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                  padding=0, title_justify="left")
    cols: list[tuple[str, str]] = [("method", "left")]
    if wide:
        cols += [("choice (noisy val)", "left"), (f"noisy val [95% CI] n={n_val}", "right")]
    else:
        cols += [(f"noisy\nval\nn={n_val}", "right")]
    cols += [(f"clean test\n[95% CI]\nn={n_test}", "right"), ("\n\nrule", "left")]
    if wide:
        cols += [("val p vs best", "right"), ("val gain vs final (se), pts", "right")]
    cols += [("vs early\nstop, pts\n(p)", "right")]
    if wide:
        cols += [("gap closed", "right"), ("seconds", "right")]
    for col, just in cols:
        col = col.replace("\n", " ").strip() if wide else col
        if col == "method":
            table.add_column(col, justify=just, no_wrap=True)
        else:
            table.add_column(col, justify=just, overflow="fold" if wide else "ellipsis")
    for r in df.to_dict("records"):
        measured = r["n_test"] > 0
        name = r["method"]
        style = "bold" if name == recommended else None
        verdict = str(r.get("verdict") or "-")
        rule = verdict if wide or not verdict.startswith("= ") else "same"
        es = "-" if r["es_p"] != r["es_p"] else f"{_pts(r['es_diff'])} ({p_value(r['es_p'], 2 if wide else 1)})"
        if not measured:
            cells = ["-"] * (len(cols) - 1)
            if wide:
                cells[0] = Text(str(r["note"]), style="yellow")
            table.add_row(name, *cells, style=style)
            continue
        row: list[str | Text] = [name]
        if wide:
            row += [str(r["choice"]), interval(r["val_acc"], r["val_low"], r["val_high"], 4)]
        else:
            row += [f"{r['val_acc']:.3f}"]
        row += [interval(r["test_acc"], r["test_low"], r["test_high"], 4 if wide else 3), rule]
        if wide:
            gain = "-" if r["val_gain"] != r["val_gain"] else f"{_pts(r['val_gain'])} ({100 * r['val_gain_se']:.1f})"
            row += [p_value(r.get("val_p", float("nan"))), gain]
        row += [es]
        if wide:
            row += [cell(r["gap_closed"], 2), cell(r["seconds"], 1)]
        table.add_row(*row, style=style)
    return table


def aggregate_table(df: pd.DataFrame, title: str, wide: bool = False) -> Table:
    """The over-seeds aggregate (workflows.repair.AGG_COLUMNS) as a rich table (80 columns unless
    ``wide``: then also the t-interval, the validation gain over the final model and seconds)."""
    table = Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=0,
                  title_justify="left", caption_justify="left",
                  caption="ES: early stopping; chosen by rule: seeds on which the recommendation rule chose the "
                          "row; beats ES: seeds with a better clean test and McNemar p < 0.05")
    cols = ["method", "seeds", "clean test\nmean +- sd" + (" [95% t-CI]" if wide else "")]
    if wide:
        cols += ["val gain vs final, pts"]
    cols += ["chosen\nby rule", "beats\nES at\np<0.05", "vs ES,\npts", "gap\nclosed"]
    if wide:
        cols += ["seconds"]
    for col in cols:
        if col == "method":
            table.add_column(col, no_wrap=True)
        else:
            table.add_column(col, justify="right", overflow="fold" if wide else "ellipsis")
    for r in df.to_dict("records"):
        if r["n_seeds"] == 0:
            cells = ["-"] * (len(cols) - 2)
            if wide:
                cells[0] = Text(r["choices"], style="yellow")
            table.add_row(r["method"], "0", *cells)
            continue
        sd = "-" if r["test_sd"] != r["test_sd"] else f"{r['test_sd']:.3f}"
        ci = "" if r["test_low"] != r["test_low"] or not wide else f" [{r['test_low']:.3f}, {r['test_high']:.3f}]"
        row = [r["method"], str(r["n_seeds"]), f"{r['test_mean']:.3f} +- {sd}{ci}"]
        if wide:
            row += [_pts(r["val_gain_mean"])]
        row += [r["verdicts"] or "-", r["beats_es"] or "-", _pts(r["es_diff_mean"]), cell(r["gap_closed_mean"], 2)]
        if wide:
            row += [cell(r["seconds_mean"], 1)]
        table.add_row(*row)
    return table


def register(app: typer.Typer) -> None:
    @app.command()
    def repair(
        targets: Annotated[list[str], typer.Argument(help="run directories, checkpoint files or sweep directories")],
        oracle: Annotated[bool, typer.Option(
            help="train the clean-label oracle as RUN/oracle if missing (costly: one more training run)")] = False,
        oracle_cache: Annotated[str | None, typer.Option(
            help="directory of oracles shared by runs of the same samples and seeds")] = None,
        layers: Annotated[str, typer.Option(help="weight truncation on: hidden | all")] = "hidden",
        rank_strategy: Annotated[str, typer.Option(help="weight ranks: greedy | shared")] = "greedy",
        layer_strategy: Annotated[str, typer.Option(help="all-layer feature truncation: greedy | shared")] = "greedy",
        d_rule: Annotated[str, typer.Option(help="1se | argmax")] = "1se",
        clean: Annotated[str | None, typer.Option(
            help="retrain without (remove) or relabelling (relabel) the samples flagged in RUN/label_issues.parquet "
                 "(`noisescope label-issues RUN` first)")] = None,
        clean_method: Annotated[str, typer.Option(help="which detector's flags to clean")] = "consensus",
        export: Annotated[bool, typer.Option(help="write the recommended module to RUN/repaired")] = True,
        out: Annotated[str | None, typer.Option(
            help="one run: export directory; several runs: where the aggregate repair.json/.parquet go")] = None,
        reuse: Annotated[bool, typer.Option(help="several runs: reuse each run's stored repair.parquet")] = False,
        device: Annotated[str, typer.Option(help="cpu, cuda, ...")] = "cpu",
        wide: Annotated[bool, typer.Option(
            help="every column (choices, validation intervals, p against the best, gain over the final model, "
                 "gap closed, seconds): wider than 80 columns")] = False,
    ) -> None:
        """Every repair of a trained run side by side: choices on noisy validation only, clean test
        with Wilson intervals, the recommendation rule (a model replaces early stopping only when
        it beats every other candidate on noisy validation), McNemar against early stopping, the
        oracle gap closed. Several runs (or a sweep) are also aggregated over seeds."""
        from noisescope.config import ConfigError
        from noisescope.io import atomic_write, write_json
        from noisescope.workflows.repair import repair_run
        from noisescope.workflows.repair_many import find_runs, repair_many

        kw = dict(oracle=oracle, oracle_cache=oracle_cache, layers=layers, rank_strategy=rank_strategy,
                  layer_strategy=layer_strategy, d_rule=d_rule, clean=clean, clean_method=clean_method,
                  export=export, device=device)
        runs = find_runs(targets)
        if not runs:
            fail(f"no run found in {targets}")
        if len(runs) == 1 and not (Path(targets[0]) / "runs").is_dir():
            try:
                with console.status("repairs ...") as status:
                    rep = repair_run(runs[0] if Path(targets[0]).is_dir() else targets[0], out=out,
                                     progress=lambda m: status.update(f"repairs: {m}"), **kw)
            except (ValueError, FileNotFoundError, ConfigError) as exc:
                fail(str(exc))
            _print_report(rep, wide)
            return

        def on_run(path: Path, rep) -> None:
            if rep is None:
                console.print(f"{path}: stored leaderboard reused")
            else:
                _print_report(rep, wide)

        try:
            _tables, groups = repair_many(runs, reuse=reuse, on_run=on_run, **kw)
        except (ValueError, FileNotFoundError, ConfigError) as exc:
            fail(str(exc))
        if not groups:
            fail("no complete run to repair")
        frames = []
        for label, agg in groups.items():
            console.print(aggregate_table(agg, f"over seeds: {label}", wide))
            frames.append(agg)
        allagg = pd.concat(frames, ignore_index=True)
        dest = Path(out) if out else (Path(targets[0]) if len(targets) == 1 else None)
        if dest is not None:
            dest.mkdir(parents=True, exist_ok=True)
            atomic_write(dest / "repair.parquet", lambda p: allagg.to_parquet(p, index=False))
            write_json(dest / "repair.json", {"runs": [str(r) for r in runs],
                                              "aggregate": allagg.astype(object).where(allagg.notna(), None)
                                              .to_dict("records")})
            print_paths("aggregate written to:", dest / "repair.json", dest / "repair.parquet")


def print_paths(label: str, *paths: object) -> None:
    """``label``, then each path whole on a line of its own (to be copied; a path longer than the
    terminal is left for the terminal to wrap, never folded by rich)."""
    console.print(Text(label))
    for p in paths:
        console.print(Text(str(p)), soft_wrap=True)


def _print_report(rep, wide: bool = False) -> None:
    """One run's leaderboard, then the decision in a few word-wrapped lines (80 columns)."""
    console.print(leaderboard_table(rep.table, f"repairs of {rep.path.name} (final epoch {rep.final_epoch}, "
                                                f"early stopping epoch {rep.early_epoch})", rep.recommended, wide))
    if not wide:
        for r in rep.table.to_dict("records"):
            if r["n_test"] == 0 and r["note"]:
                console.print(Text(f"{r['method']}: {r['note']}", style="yellow"))
    decided = rep.decision is not None and rep.decision.decided
    console.print(Text(rep.verdict_line(), style="bold green" if decided else "bold yellow"))
    if rep.recommended is not None:
        r = rep.row(rep.recommended)
        line = (f"use {rep.recommended} ({r['choice']}): clean test "
                f"{interval(r['test_acc'], r['test_low'], r['test_high'], 4)} n={r['n_test']}")
        orc = rep.table[(rep.table.method == "oracle") & (rep.table.n_test > 0)]
        if len(orc) and r["gap_closed"] == r["gap_closed"]:
            line += f"; oracle {orc.test_acc.iloc[0]:.4f}, gap closed {r['gap_closed']:.2f}"
        console.print(Text(line))
    if rep.decision_posthoc is not None:
        console.print(Text("among repairs of the final model alone (no retraining, no other checkpoint; default "
                           f"the final model): {rep.decision_posthoc.line}"))
    if rep.warning:
        console.print(Text("warning: ", style="yellow") + Text(rep.warning))
    for n in rep.notes:
        console.print(Text("note: ", style="yellow") + Text(n))
    if rep.export is not None:
        print_paths(f"{rep.recommended} written to, and the leaderboard:", rep.export, rep.path / "repair.json")
