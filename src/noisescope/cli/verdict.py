"""``noisescope verdict RUN_OR_SWEEP``: every claim of the two papers, scored with its evidence.

Printed to fit an 80-column terminal: per paper, each claim as its status and its text, with
the summary (the numbers) under it; the commands that would measure what is not measured
follow, each whole on its own line, ready to copy. ``--rules`` adds each claim's rule
(docs/definitions.md, "Claim rules").
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from noisescope.cli.common import console, fail

STATUS_STYLE = {"supported": "bold green", "not supported": "bold red", "inconclusive": "bold yellow",
                "not measured": "dim"}
PAPER = {"kubo": "Kubo et al.", "malignant_tail": "Malignant Tail (withdrawn: hypotheses)"}
STATUS_WIDTH = max(len(s) for s in STATUS_STYLE)
COMMAND_WIDTH = 78  # commands are broken to fit 80 columns whatever the terminal, so they read the same


def _grid() -> Table:
    """Two columns without borders: the status (never wrapped) and the text (wrapped at
    spaces, a word longer than the line folded)."""
    t = Table(box=None, show_header=False, pad_edge=False, padding=(0, 1, 0, 0), expand=True)
    t.add_column("status", no_wrap=True, width=STATUS_WIDTH)
    t.add_column("claim", ratio=1, overflow="fold")
    return t


def _status(status: str) -> Text:
    return Text(status, style=STATUS_STYLE.get(status, ""))


def measure_command(command: str, target: str) -> str:
    """A "not measured" claim's command with RUN replaced by the run directory (quoted for
    the shell when needed)."""
    return command.replace(" RUN", " " + shlex.quote(target)) if command else ""


def command_lines(command: str, width: int) -> list[str]:
    """A shell command as lines of at most ``width`` columns, broken between arguments with a
    trailing backslash (pasted into a shell, the lines run as the one command); one line when
    it fits, or when it cannot be parsed as shell words."""
    if len(command) <= width:
        return [command]
    try:
        words = shlex.split(command)
    except ValueError:
        return [command]
    words = [shlex.quote(w) if shlex.quote(w) != w else w for w in words]
    lines, line = [], ""
    for w in words:
        if line and len(line) + 1 + len(w) + 2 > width:
            lines.append(line + " \\")
            line = "    " + w
        else:
            line = f"{line} {w}" if line else w
    return [*lines, line]


def print_claims(claims, target: str, rules: bool = False) -> None:
    """The claims of one run, grouped by paper (module docstring)."""
    papers = list(dict.fromkeys(c.paper for c in claims))
    commands: dict[str, list[str]] = {}
    for paper in papers:
        console.print(Text(PAPER.get(paper, paper), style="bold underline"))
        t = _grid()
        for c in (c for c in claims if c.paper == paper):
            body = Text(c.text, style="bold") + Text("\n") + Text(c.summary)
            if c.status == "not measured" and c.command:
                for cmd in measure_command(c.command, target).split(", then "):
                    commands.setdefault(cmd, []).append(c.key)
                body += Text(" (command below)", style="dim")
            if rules and c.rule:
                body += Text("\nrule: ", style="italic") + Text(" ".join(c.rule.split()), style="dim")
            t.add_row(_status(c.status), body)
        console.print(t)
    if commands:
        console.print(Text("to measure what is not measured:", style="bold"))
        for cmd in commands:
            # whole, on lines of its own: never wrapped or cut by rich, ready to copy
            for line in command_lines(cmd, COMMAND_WIDTH):
                console.print(Text(line), soft_wrap=True, highlight=False)


def short_config(label: str) -> str:
    """``noise.rate=0.1, model.options.widths=[32]`` -> ``rate=0.1, widths=[32]`` (the swept
    keys by their last dotted part, more where two would share it)."""
    from noisescope.cli.sweep import short_names

    keys = re.findall(r"(?:^|, )([\w.]+)=", label)
    names = short_names(keys)
    for k in sorted(keys, key=len, reverse=True):
        label = re.sub(rf"(^|, ){re.escape(k)}=", rf"\g<1>{names[k]}=", label)
    return label


def _sweep_claim_row(r: dict) -> tuple[Text, Text]:
    """(status, body) of one claim of the sweep aggregate."""
    counts = {s: int(r.get(s) or 0) for s in STATUS_STYLE}
    n = sum(counts.values())
    unanimous = next((s for s, k in counts.items() if k == n), None) if n else None
    body = Text(r["claim"], style="bold")
    if unanimous is None:
        status = Text("mixed", style="bold")
        runs = Text()
        for s, k in counts.items():
            if k:
                runs += Text(", " if len(runs) else "") + Text(f"{k} {s}", style=STATUS_STYLE[s])
        body += Text("\nruns: ") + runs
    else:
        status = _status(unanimous)
        body += Text(f"\nall {n} runs" if n > 1 else "\n1 run", style="dim")
    configs = r.get("configs") or []
    numbers = any(c.get("number") for c in configs)
    if numbers and r.get("number"):
        body += Text(f"\n{r['number']}: mean +- sd over seeds [95% t-interval]", style="italic")
    if numbers or unanimous is None or any(c.get("summary") for c in configs):
        for c in configs:
            line = short_config(c["config"]) + ": " if c.get("config") else ""
            parts = [c["status"]] if unanimous is None else []
            parts += [x for x in (c.get("number"), c.get("summary")) if x]
            body += Text("\n") + Text(line + ("; ".join(parts) or "-"))
    return status, body


def print_sweep_claims(df, title: str) -> None:
    """The sweep aggregate (``report.verdict.aggregate``), per claim: the status when every run
    agrees (else "mixed" and the counts), then per configuration the key number over its seeds
    as mean +- sd [95% t-interval] (and its statuses when the runs disagree)."""
    console.print(Text(title, style="bold"), soft_wrap=True)
    records = df.to_dict("records")
    for paper in dict.fromkeys(r["paper"] for r in records):
        console.print(Text(PAPER.get(paper, paper), style="bold underline"))
        t = _grid()
        for r in (r for r in records if r["paper"] == paper):
            t.add_row(*_sweep_claim_row(r))
        console.print(t)
    console.print(Text("a configuration's interval is clipped to the number's domain (docs/definitions.md)",
                       style="dim"))


def register(app: typer.Typer) -> None:
    @app.command()
    def verdict(
        target: Annotated[str, typer.Argument(help="a run directory or a sweep directory")],
        models: Annotated[bool, typer.Option(
            help="load the checkpoints: tap order, feature tap, paired test of truncation vs early stopping")] = True,
        rules: Annotated[bool, typer.Option(help="also print each claim's rule (docs/definitions.md)")] = False,
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
            print_sweep_claims(sv.table, f"claims over {len(sv.per_run)} runs of\n{target}")
            for note in sv.notes:
                console.print(Text("note: ", style="yellow") + Text(note))
            console.print(Text("written: ") + Text(str(p / "verdict.json")) + Text(" and each run's verdict.json"))
            return
        if not (p / "config.json").exists():
            fail(f"{target} is neither a run (config.json) nor a sweep (sweep.json)")
        from noisescope.workflows.verdict import VERDICT_FILE, run_verdict

        with console.status("scoring the claims ..."):
            try:
                rv = run_verdict(p, models=models, device=device)
            except (ValueError, FileNotFoundError) as exc:
                fail(str(exc))
        sep = " " if len(target) + 10 <= console.width else "\n"  # the path whole, never folded
        console.print(Text("claims of" + sep, style="bold") + Text(target), soft_wrap=True)
        print_claims(rv.claims, target, rules=rules)
        for note in rv.notes:
            console.print(Text("note: ", style="yellow") + Text(note))
        counts = {s: sum(c.status == s for c in rv.claims) for s in STATUS_STYLE}
        console.print(f"{len(rv.claims)} claims: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n),
                      highlight=False)
        console.print(Text(f"written: {p / VERDICT_FILE}"), soft_wrap=True, highlight=False)
        if not rules:
            console.print("--rules: the rule behind each status", highlight=False)
