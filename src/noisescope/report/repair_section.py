"""The report section of the repair leaderboard (``noisescope repair RUN``, ``workflows/repair.py``).

Reads ``RUN/repair.parquet`` and ``RUN/repair.json`` (no model is loaded); without them the
section says which command computes it.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import pandas as pd

from noisescope.evidence.paired import p_value
from noisescope.report.html import Section

BLURB = ("Every post-hoc repair of the converged network side by side (and early stopping, cleaning + "
         "retraining, the raw-input reference and the clean-label oracle). Every d, rank, tap and epoch is "
         "chosen on noisy validation; clean test accuracy is only reported, with its 95% Wilson interval. "
         "Rule (the one recommendation rule, docs/definitions.md): early stopping is kept unless the most "
         "accurate candidate on noisy validation beats every other candidate by McNemar's exact test "
         "(p < 0.05); each row says whether the most accurate candidate beats it (val p: that test's p). "
         "Val gain: the paired gain over the final model. vs early stop: clean-test difference and "
         "McNemar's exact p. Gap closed: share of the gap between early stopping and the oracle.")


def _acc(v: float, lo: float, hi: float) -> str:
    return "-" if v != v else f"{v:.4f} [{lo:.3f}, {hi:.3f}]"


def leaderboard_html(table: pd.DataFrame, recommended: str | None = None) -> str:
    """The leaderboard (``workflows.repair.COLUMNS``) as one HTML table."""
    n_val = int(table["n_val"].max()) if len(table) else 0
    n_test = int(table["n_test"].max()) if len(table) else 0
    head = (f"<tr><th>method</th><th>choice (noisy val)</th><th>noisy val [95% CI], n={n_val}</th>"
            f"<th>clean test [95% CI], n={n_test}</th><th>val gain vs final (se), pts</th><th>rule</th>"
            "<th>val p vs best</th>"
            "<th>vs early stop, pts (McNemar p)</th><th>gap closed</th><th>seconds</th></tr>")
    rows = [head]
    for r in table.to_dict("records"):
        name = html.escape(r["method"]) + (" <b>(use this)</b>" if r["method"] == recommended else "")
        if r["n_test"] == 0:
            rows.append(f"<tr><td>{name}</td><td colspan=9>{html.escape(str(r['note']))}</td></tr>")
            continue
        gain = "-" if r["val_gain"] != r["val_gain"] else f"{100 * r['val_gain']:+.1f} ({100 * r['val_gain_se']:.1f})"
        es = "-" if r["es_p"] != r["es_p"] else f"{100 * r['es_diff']:+.1f} ({p_value(r['es_p'])})"
        gap = "-" if r["gap_closed"] != r["gap_closed"] else f"{r['gap_closed']:.2f}"
        vp = r.get("val_p", float("nan"))
        vp = "-" if vp is None else p_value(vp)
        secs = "-" if r["seconds"] != r["seconds"] else f"{r['seconds']:.1f}"
        rows.append(f"<tr><td>{name}</td><td>{html.escape(str(r['choice']))}</td>"
                    f"<td>{_acc(r['val_acc'], r['val_low'], r['val_high'])}</td>"
                    f"<td>{_acc(r['test_acc'], r['test_low'], r['test_high'])}</td><td>{gain}</td>"
                    f"<td>{html.escape(r['verdict'] or '-')}</td><td>{vp}</td><td>{es}</td><td>{gap}</td>"
                    f"<td>{secs}</td></tr>")
    return '<table class="data">' + "\n".join(rows) + "</table>"


def repair_section(run_path: str | Path, scratch: Path | None = None) -> Section:
    """The leaderboard of ``run_path`` when ``repair.parquet`` exists, else a missing message.
    ``scratch`` is unused (the section has no figure); it keeps the sections' signature."""
    path = Path(run_path)
    sec = Section("repair", "Repairs side by side", BLURB)
    table_path = path / "repair.parquet"
    if not table_path.is_file():
        sec.missing = f"no repair leaderboard yet: compute it with `noisescope repair {path}` (add --oracle for " \
                      "the clean-label upper bound)"
        return sec
    table = pd.read_parquet(table_path)
    info = {}
    if (path / "repair.json").is_file():
        info = json.loads((path / "repair.json").read_text())
    if info.get("verdict_line"):
        sec.notes.append(info["verdict_line"])
    post = info.get("decision_posthoc")
    if post:
        sec.notes.append(f"Without retraining or another checkpoint: {post['line']}")
    if info.get("export"):
        sec.notes.append(f"The recommended model ({info.get('recommended')}) is exported to {info['export']} "
                         "(safetensors + JSON).")
    if info.get("warning"):
        sec.notes.append(f"Warning: {info['warning']}")
    sec.notes.extend(f"Note: {n}" for n in info.get("notes", []))
    sec.tables.append(leaderboard_html(table, info.get("recommended")))
    return sec
