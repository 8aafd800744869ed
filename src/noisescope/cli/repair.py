"""``noisescope repair RUN [RUN ...] | SWEEP``: every post-hoc repair side by side (runs/repair.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.table import Table
from rich.text import Text

from noisescope.cli.common import cell, console, fail


def _acc(v: float, lo: float, hi: float) -> str:
    if v != v:
        return "-"
    return f"{v:.4f} [{lo:.3f}, {hi:.3f}]"


def _pts(v: float) -> str:
    return "-" if v != v else f"{100 * v:+.1f}"


def leaderboard_table(df: pd.DataFrame, title: str, recommended: str | None = None) -> Table:
    """One run's leaderboard (runs.repair.COLUMNS) as a rich table."""
    n_val = int(df["n_val"].max()) if len(df) else 0
    n_test = int(df["n_test"].max()) if len(df) else 0
    table = Table(title=title, caption="choices on noisy validation only; verdict: paired validation gain over the "
                  "final model > 1 se; vs early stop: clean-test difference and McNemar's exact p; gap closed: share "
                  "of the early-stopping-to-oracle gap; * = recommended")
    for col, just in (("method", "left"), ("choice (noisy val)", "left"), (f"noisy val [95% CI] n={n_val}", "right"),
                      (f"clean test [95% CI] n={n_test}", "right"), ("val gain (se), pts", "right"),
                      ("verdict", "left"), ("vs early stop: diff pts, McNemar p", "right"), ("gap closed", "right"),
                      ("seconds", "right")):
        if col == "method":
            table.add_column(col, justify=just, no_wrap=True, min_width=24)
        else:
            table.add_column(col, justify=just, overflow="fold")
    for r in df.to_dict("records"):
        measured = r["n_test"] > 0
        name = r["method"] + (" *" if r["method"] == recommended else "")
        gain = "-" if r["val_gain"] != r["val_gain"] else f"{_pts(r['val_gain'])} ({100 * r['val_gain_se']:.1f})"
        es = "-" if r["es_p"] != r["es_p"] else f"{_pts(r['es_diff'])}, p={r['es_p']:.2g}"
        table.add_row(name, r["choice"] if measured else Text(r["note"], style="yellow"),
                      _acc(r["val_acc"], r["val_low"], r["val_high"]),
                      _acc(r["test_acc"], r["test_low"], r["test_high"]), gain, r["verdict"] or "-", es,
                      cell(r["gap_closed"], 2), cell(r["seconds"], 1))
    return table


def aggregate_table(df: pd.DataFrame, title: str) -> Table:
    """The over-seeds aggregate (runs.repair.AGG_COLUMNS) as a rich table."""
    table = Table(title=title)
    for col in ("method", "seeds", "clean test mean +- sd [95% t-CI]", "val gain, pts", "verdicts",
                "beats early stop (p<0.05)", "vs early stop, pts", "gap closed", "seconds"):
        if col == "method":
            table.add_column(col, no_wrap=True, min_width=24)
        else:
            table.add_column(col, justify="left" if col == "verdicts" else "right", overflow="fold")
    for r in df.to_dict("records"):
        if r["n_seeds"] == 0:
            table.add_row(r["method"], "0", Text(r["choices"], style="yellow"), "-", "-", "-", "-", "-", "-")
            continue
        sd = "-" if r["test_sd"] != r["test_sd"] else f"{r['test_sd']:.3f}"
        ci = "" if r["test_low"] != r["test_low"] else f" [{r['test_low']:.3f}, {r['test_high']:.3f}]"
        table.add_row(r["method"], str(r["n_seeds"]), f"{r['test_mean']:.4f} +- {sd}{ci}", _pts(r["val_gain_mean"]),
                      r["verdicts"] or "-", r["beats_es"] or "-", _pts(r["es_diff_mean"]),
                      cell(r["gap_closed_mean"], 2), cell(r["seconds_mean"], 1))
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
    ) -> None:
        """Every repair of a trained run side by side: choices on noisy validation only, clean test
        with Wilson intervals, verdicts, McNemar against early stopping, the oracle gap closed.
        Several runs (or a sweep) are also aggregated over seeds."""
        from noisescope.config import ConfigError
        from noisescope.io import atomic_write, write_json
        from noisescope.runs.repair import repair_run
        from noisescope.runs.repair_many import find_runs, repair_many

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
            _print_report(rep)
            return

        def on_run(path: Path, rep) -> None:
            if rep is None:
                console.print(f"{path}: stored leaderboard reused")
            else:
                _print_report(rep)

        try:
            _tables, groups = repair_many(runs, reuse=reuse, on_run=on_run, **kw)
        except (ValueError, FileNotFoundError, ConfigError) as exc:
            fail(str(exc))
        if not groups:
            fail("no complete run to repair")
        frames = []
        for label, agg in groups.items():
            console.print(aggregate_table(agg, f"over seeds: {label}"))
            frames.append(agg)
        allagg = pd.concat(frames, ignore_index=True)
        dest = Path(out) if out else (Path(targets[0]) if len(targets) == 1 else None)
        if dest is not None:
            dest.mkdir(parents=True, exist_ok=True)
            atomic_write(dest / "repair.parquet", lambda p: allagg.to_parquet(p, index=False))
            write_json(dest / "repair.json", {"runs": [str(r) for r in runs],
                                              "aggregate": allagg.astype(object).where(allagg.notna(), None)
                                              .to_dict("records")})
            console.print(f"aggregate written to {dest / 'repair.json'} and {dest / 'repair.parquet'}")


def _print_report(rep) -> None:
    console.print(leaderboard_table(rep.table, f"repairs: {rep.path} (final epoch {rep.final_epoch}, "
                                                f"early stopping epoch {rep.early_epoch})", rep.recommended))
    style = "bold green" if rep.recommended else "bold yellow"
    console.print(Text(rep.verdict_line(), style=style), soft_wrap=True)
    if rep.verdict_posthoc is not None:
        line = (f"best repair of the converged network without retraining: {rep.recommended_posthoc}"
                if rep.recommended_posthoc else f"no post-hoc repair of the converged network: {rep.verdict_posthoc}")
        console.print(Text(line), soft_wrap=True)
    if rep.warning:
        console.print(Text("warning: ", style="yellow") + Text(rep.warning), soft_wrap=True)
    for n in rep.notes:
        console.print(Text("note: ", style="yellow") + Text(n), soft_wrap=True)
    if rep.export is not None:
        console.print(f"recommended module written to [bold]{rep.export}[/] "
                      f"({rep.recommended or 'final: no repair'}); leaderboard in {rep.path / 'repair.json'}")
