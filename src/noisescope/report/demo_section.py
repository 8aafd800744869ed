"""The demo's answer in a run's report: ``RUN/demo.json`` (written by ``noisescope demo``) holds
the three conclusion lines the terminal ended with (the model to use, the flagged labels and
their detection quality, where the report is) and how long the retrainings were.

:func:`conclusion_section` shows the lines first in the report; :func:`demo_notes` are the
sentences added to the repair section (the reduced-cost retrainings). A run without
``demo.json`` (not made by the demo) has neither.
"""

from __future__ import annotations

import json
from pathlib import Path

from noisescope.report.html import Section

DEMO_JSON = "demo.json"


def read_demo(run_path: str | Path) -> dict | None:
    """``RUN/demo.json`` as a dict, or None when absent or unreadable."""
    p = Path(run_path) / DEMO_JSON
    if not p.is_file():
        return None
    try:
        info = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def conclusion_section(info: dict) -> Section:
    """The answer first: the model to use and the flagged labels (``demo.json``'s lines)."""
    sec = Section("conclusion", "The answer",
                  "Which model to use (the recommendation rule of the repair leaderboard: a model replaces "
                  "early stopping only when it beats every other candidate on noisy validation by McNemar's "
                  "exact test) and which labels are wrong (the label-issues default ranking, scored against "
                  "the known noise mask). Details: the sections \"Repairs side by side\" and \"Which labels "
                  "are wrong\" below.")
    sec.notes.extend(str(line) for line in info.get("lines", []))
    if info.get("decision"):
        sec.notes.append(f"Decision: {info['decision']}")
    if info.get("note"):
        sec.notes.append(str(info["note"]))
    secs = info.get("seconds") or {}
    if secs:
        sec.notes.append("Seconds: " + ", ".join(f"{k.replace('_', ' ')} {float(v):.0f}" for k, v in secs.items())
                         + f" (written {info.get('written', '?')} by noisescope demo).")
    return sec


def demo_notes(info: dict) -> list[str]:
    """Sentences for the repair section: the retrainings' length (reduced in the demo)."""
    return [str(info["note"])] if info.get("note") else []
