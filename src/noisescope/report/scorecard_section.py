"""The report's first section: the claims scorecard (the same content as ``noisescope verdict``).

For a run: each claim with its paper, status, summary (numbers and intervals), the command that
would measure it when it is not measured, and its rule. The claims come from the run's
``verdict.json`` when it was computed from the current metrics (it then includes the paired
test of truncation against early stopping on the checkpoints), else from the metrics alone.
For a sweep: per claim the runs counted by status and, per configuration, the key number's
mean and spread over seeds (``noisescope.report.verdict``).
"""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

from noisescope.evidence.claims import STATUSES, Claim, scorecard
from noisescope.report.html import Section

PAPER = {"kubo": "Kubo et al.", "malignant_tail": "Malignant Tail (withdrawn)"}
BLURB = ("Every claim of the two papers (Kubo et al.; The Malignant Tail, withdrawn by its author: its claims are "
         "hypotheses tested here) scored on this run's measurements by the rule shown with it "
         "(docs/definitions.md). \"not measured\" says which command would measure it.")


def _status(s: str) -> str:
    return f'<span class="st-{s.replace(" ", "-")}">{html.escape(s)}</span>'


def claims_html(claims: list[Claim], rules: bool = True) -> str:
    """The claims as one HTML table (claim, paper, status, summary, rule)."""
    head = "<tr><th>claim</th><th>paper</th><th>status</th><th>summary</th>" + ("<th>rule</th>" if rules else "")
    rows = [head + "</tr>"]
    for c in claims:
        summary = html.escape(c.summary)
        if c.status == "not measured" and c.command:
            summary += f"<br><b>measure:</b> <code>{html.escape(c.command)}</code>"
        rule = f'<td class="rule">{html.escape(" ".join(c.rule.split()))}</td>' if rules else ""
        rows.append(f"<tr><td>{html.escape(c.text)}</td><td>{html.escape(PAPER.get(c.paper, c.paper))}</td>"
                    f"<td>{_status(c.status)}</td><td>{summary}</td>{rule}</tr>")
    return '<table class="data claims">' + "\n".join(rows) + "</table>"


def counts_line(claims: list[Claim]) -> str:
    n = {s: sum(c.status == s for c in claims) for s in STATUSES}
    return ", ".join(f"{k} {s}" for s, k in n.items() if k) + f" (of {len(claims)} claims)."


def run_claims(path: str | Path, metrics: pd.DataFrame, summary: dict, config) -> tuple[list[Claim], str]:
    """(claims, where they came from) for one run, without loading any model."""
    from noisescope.workflows.verdict import claims_from_json, metrics_context, read_verdict

    data = read_verdict(path, metrics)
    if data is not None and data.get("claims"):
        return claims_from_json(data), (f"From verdict.json (written {data.get('written', '?')} by `noisescope "
                                        "verdict`, from these metrics and the run's checkpoints).")
    ctx = metrics_context(metrics, summary, config)
    return scorecard(metrics, **ctx), ("Computed from the metrics alone; `noisescope verdict RUN` adds the tap order "
                                       "of the model and the paired test of truncation against early stopping on "
                                       "the checkpoints.")


def run_scorecard(claims: list[Claim], source: str = "", key: str = "scorecard") -> Section:
    sec = Section(key, "Claims scorecard", BLURB)
    if not claims:
        sec.missing = "no metrics to score"
        return sec
    sec.notes.append(counts_line(claims))
    if source:
        sec.notes.append(source)
    sec.tables.append(claims_html(claims))
    return sec


def sweep_scorecard(table: pd.DataFrame, n_runs: int, notes: list[str] | None = None) -> Section:
    """The sweep aggregate (``report.verdict.aggregate``) as a section."""
    sec = Section("sweep-scorecard", "Claims scorecard over the runs",
                  "Each claim scored on every run (from the metrics, or the run's current verdict.json): the runs "
                  "counted by status, never averaged, and per configuration the claim's key number as mean ± "
                  "sample standard deviation over its seeds with a 95% t-interval (a single seed shows no spread).")
    if table.empty:
        sec.missing = "no run has metrics yet"
        return sec
    rows = ["<tr><th>claim</th><th>paper</th><th>runs by status</th><th>key number</th>"
            "<th>by configuration (over seeds)</th></tr>"]
    for r in table.to_dict("records"):
        status = ", ".join(f"{r[s]} {_status(s)}" for s in STATUSES if r.get(s))
        rows.append(f"<tr><td>{html.escape(r['claim'])}</td><td>{html.escape(PAPER.get(r['paper'], r['paper']))}</td>"
                    f"<td>{status}</td><td>{html.escape(r['number'])}</td>"
                    f"<td>{html.escape(r['by_configuration'])}</td></tr>")
    sec.notes.append(f"{n_runs} runs scored.")
    sec.notes.extend(notes or [])
    sec.tables.append('<table class="data claims">' + "\n".join(rows) + "</table>")
    return sec
