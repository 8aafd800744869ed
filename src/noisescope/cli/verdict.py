"""``noisescope verdict RUN_OR_SWEEP``: every claim of the two papers, scored with its evidence."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from noisescope.cli.common import console, fail

STATUS_STYLE = {"supported": "bold green", "not supported": "bold red", "inconclusive": "bold yellow",
                "not measured": "dim"}
PAPER = {"kubo": "Kubo et al.", "malignant_tail": "Malignant Tail (withdrawn)"}


def one_line(text: str) -> str:
    """A docstring as one paragraph."""
    return re.sub(r"\s+", " ", text or "").strip()


def claims_table(claims, title: str, rules: bool = True) -> Table:
    """One row per claim: claim, paper, status (coloured), summary (and, when not measured, the
    command that would measure it), the rule."""
    table = Table(title=title, show_lines=True)
    table.add_column("claim", ratio=2)
    table.add_column("paper")
    table.add_column("status")
    table.add_column("summary", ratio=4)
    if rules:
        table.add_column("rule", ratio=4)
    for c in claims:
        summary = Text(c.summary)
        if c.status == "not measured" and c.command:
            summary += Text("\nmeasure: ", style="bold") + Text(c.command)
        row = [Text(c.text), PAPER.get(c.paper, c.paper), Text(c.status, style=STATUS_STYLE.get(c.status, "")),
               summary]
        if rules:
            row.append(Text(one_line(c.rule), style="dim"))
        table.add_row(*row)
    return table


def sweep_claims_table(df, title: str) -> Table:
    """The sweep aggregate (report.verdict.aggregate): statuses counted per claim, and per
    configuration the key number's mean and spread over seeds."""
    table = Table(title=title, show_lines=True)
    for col, ratio in (("claim", 2), ("paper", 1), ("runs by status", 2), ("by configuration (over seeds)", 5)):
        table.add_column(col, ratio=ratio)
    for r in df.to_dict("records"):
        status = Text()
        for s, style in STATUS_STYLE.items():
            if r.get(s):
                if len(status):
                    status += Text(", ")
                status += Text(f"{r[s]} {s}", style=style)
        table.add_row(r["claim"], PAPER.get(r["paper"], r["paper"]), status, r["by_configuration"])
    return table


def register(app: typer.Typer) -> None:
    @app.command()
    def verdict(
        target: Annotated[str, typer.Argument(help="a run directory or a sweep directory")],
        models: Annotated[bool, typer.Option(
            help="load the checkpoints: tap order, feature tap, paired test of truncation vs early stopping")] = True,
        rules: Annotated[bool, typer.Option(help="show each claim's rule")] = True,
        device: Annotated[str, typer.Option(help="cpu, cuda, ...")] = "cpu",
    ) -> None:
        """Score every claim of the two papers on a run (or each run of a sweep, then count the
        statuses and summarize the seeds); writes verdict.json."""
        from noisescope.sweep import is_sweep

        p = Path(target)
        if not p.is_dir():
            fail(f"{target!r} is not a directory; give a run directory (config.json) or a sweep (sweep.json)")
        if is_sweep(p):
            from noisescope.report.verdict import sweep_verdict

            with console.status("scoring the sweep's runs ...") as status:
                try:
                    sv = sweep_verdict(p, models=models, device=device,
                                       on_run=lambda r: status.update(f"scored {r}"))
                except (ValueError, FileNotFoundError) as exc:
                    fail(str(exc))
            if sv.table.empty:
                fail(f"no run of {target} has metrics yet")
            console.print(sweep_claims_table(sv.table, f"claims over {len(sv.per_run)} runs: {target}"))
            for note in sv.notes:
                console.print(Text("note: ", style="yellow") + Text(note), soft_wrap=True)
            console.print(f"verdicts written to [bold]{p / 'verdict.json'}[/] and each run's verdict.json")
            return
        if not (p / "config.json").exists():
            fail(f"{target} is neither a run (config.json) nor a sweep (sweep.json)")
        from noisescope.runs.verdict import VERDICT_FILE, run_verdict

        with console.status("scoring the claims ..."):
            try:
                rv = run_verdict(p, models=models, device=device)
            except (ValueError, FileNotFoundError) as exc:
                fail(str(exc))
        console.print(claims_table(rv.claims, f"claims: {target}", rules=rules))
        for note in rv.notes:
            console.print(Text("note: ", style="yellow") + Text(note), soft_wrap=True)
        counts = {s: sum(c.status == s for c in rv.claims) for s in STATUS_STYLE}
        console.print(", ".join(f"{n} {s}" for s, n in counts.items() if n) + f"; written to {p / VERDICT_FILE}")
