"""``noisescope report RUN_OR_SWEEP``: one self-contained HTML file with every figure.

For a run: first the demo's answer when ``noisescope demo`` made the run (``demo.json``: the
model to use and the flagged labels, ``report.demo_section``), then the claims scorecard (every
claim of the two papers with its status, numbers and rule, as ``noisescope verdict``), then the
four-subset dynamics and detected double descent, the separation heatmap, large activations,
test alignment, spectrum and effective rank (at initialization, early stopping and the end),
rank-risk curves, and the truncation vs
early-stopping table with the raw-input reference, which labels are wrong (with the top
suspects' thumbnails) and the repair leaderboard. Every accuracy carries its 95% Wilson
interval and n; a single seed shows no spread. For a sweep: the scorecard over the runs
(statuses counted, key numbers over seeds), the runs table, headline metrics against each swept
field (mean and spread over seeds), the truncation table per configuration with its spread over
seeds, failed runs with their tracebacks, then every run's own sections (collapsible; the first
run with noisy labels expanded). Sections whose metrics are absent say so.

Figures are PNGs embedded as base64: the file opens offline, and can be mailed or archived.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from importlib.util import find_spec
from pathlib import Path

import pandas as pd

from noisescope.metrics import select
from noisescope.report.html import Section, write_page

__all__ = ["build_report", "run_report_sections", "sweep_report_sections"]


def _describe(cfg) -> str:
    return (f"{cfg.data.name}, {cfg.noise.model} noise {cfg.noise.rate:g}, {cfg.model.arch} "
            f"{cfg.model.options or ''}, {cfg.train.optimizer} lr {cfg.train.lr:g}, {cfg.train.epochs} epochs")


def _prefix(sections: list[Section], prefix: str) -> list[Section]:
    for s in sections:
        s.key = f"{prefix}-{s.key}"
        _prefix(s.children, prefix)
    return sections


def _has_noisy(m: pd.DataFrame) -> bool:
    """Whether a run's metrics show noisy training samples (a finite noisy-subset accuracy)."""
    sel = select(m, probe="dynamics", subset="noisy_train_obs")
    return bool(sel["value"].notna().any())


def _config_section(config: dict, key: str = "config") -> Section:
    import html

    sec = Section(key, "Configuration", "The fully resolved config the run was trained with.")
    sec.tables.append(f"<pre>{html.escape(json.dumps(config, indent=2))}</pre>")
    return sec


def run_report_sections(path: str | Path, scratch: Path,
                        progress: Callable[[str], None] | None = None) -> tuple[str, list[str], list[Section]]:
    """(title, facts, sections) of one run's report."""
    from noisescope.report.demo_section import conclusion_section, demo_notes, read_demo
    from noisescope.report.label_issues_section import label_issues_section
    from noisescope.report.scorecard_section import run_claims
    from noisescope.report.sections import run_sections
    from noisescope.runs.run import load_run

    run = load_run(path)
    title = f"noisescope run {Path(path).name}"
    facts = [_describe(run.config), f"state: {run.status.get('state', '?')} at epoch {run.status.get('epoch', '-')}"]
    summary = run.summary
    claims, source = run_claims(path, run.metrics, summary, run.config)
    sections = run_sections(run.metrics, summary, scratch, _describe(run.config), progress, claims, source)
    sections.append(label_issues_section(path, scratch))
    demo = read_demo(path)
    if find_spec("noisescope.report.repair_section") is not None:
        from noisescope.report.repair_section import repair_section

        repair = repair_section(path, scratch)
        if demo is not None and not repair.missing:
            repair.notes.extend(demo_notes(demo))
        sections.append(repair)
    sections.append(_config_section(run.config.to_dict()))
    if demo is not None:
        sections.insert(0, conclusion_section(demo))
    return title, facts, sections


def sweep_report_sections(path: str | Path, scratch: Path, progress: Callable[[str], None] | None = None,
                          max_runs: int | None = None,
                          on_total: Callable[[int], None] | None = None) -> tuple[str, list[str], list[Section]]:
    """(title, facts, sections) of a sweep's report (see the module docstring)."""
    from noisescope.config import from_dict
    from noisescope.probes.dynamics import summarize
    from noisescope.report import sweep_sections as ss
    from noisescope.report.headline import comparison_rows, headline
    from noisescope.report.scorecard_section import run_claims, sweep_scorecard
    from noisescope.report.sections import run_sections
    from noisescope.report.verdict import aggregate, config_groups, width_claims
    from noisescope.runs.store import RunStore
    from noisescope.sweep import read_manifest, sweep_table
    from noisescope.sweep.runner import run_dir

    manifest = read_manifest(path)
    keys = manifest.get("keys", [])
    table = sweep_table(path)
    metrics: dict[str, pd.DataFrame] = {}
    summaries: dict[str, dict] = {}
    tracebacks: dict[str, str] = {}
    claims: dict[str, tuple[list, str]] = {}
    for rec in table.to_dict("records"):
        store = RunStore(run_dir(path, rec["run"]))
        m = store.metrics()
        tracebacks[rec["run"]] = store.status().get("traceback", "")
        if len(m):
            metrics[rec["run"]] = m
            summaries[rec["run"]] = store.read_json("summary.json") or summarize(m)
            try:
                cfg = from_dict(store.read_json("config.json"))
            except Exception:  # noqa: BLE001 - a config that no longer loads: score without it
                cfg = None
            claims[rec["run"]] = run_claims(store.path, m, summaries[rec["run"]], cfg)
    heads = pd.DataFrame([{"run": r, **headline(m, summaries[r])} for r, m in metrics.items()])
    if len(heads):
        table = table.drop(columns=[c for c in heads.columns if c != "run" and c in table.columns])
        table = table.merge(heads, on="run", how="left")
    detailed = [r for r in table["run"] if r in metrics][: max_runs if max_runs is not None else None]
    if on_total:
        on_total(5 + 8 * len(detailed))
    tick = progress or (lambda _name: None)
    frames = {r: comparison_rows(m) for r, m in metrics.items()}
    per_run = {r: c for r, (c, _src) in claims.items()}
    swept = table[["run", *keys]]
    sections = [sweep_scorecard(aggregate(per_run, config_groups(swept, per_run), width_claims(swept, metrics)),
                                len(per_run))]
    tick("scorecard")
    sections.append(ss.overview(table, keys))
    tick("runs table")
    sections.append(ss.headline_vs_params(table, keys))
    tick("headline figures")
    sections.append(ss.truncation_by_config(frames, table, keys))
    tick("truncation table")
    if find_spec("noisescope.report.methods_section") is not None:
        from noisescope.report.methods_section import sweep_methods_section

        methods = sweep_methods_section(path, list(table["run"]), metrics, scratch)
        if methods is not None:  # runs with more than one train.method: side by side
            sections.append(methods)
    fail = ss.failures(table, tracebacks)
    if fail is not None:
        sections.append(fail)
    params = {r["id"]: r["params"] for r in manifest["runs"]}
    # expand the first run that has noisy samples (with none, half the sections are undefined)
    noisy = [r for r in detailed if _has_noisy(metrics[r])]
    first_open = noisy[0] if noisy else (detailed[0] if detailed else None)
    children = []
    for run_id in detailed:
        from noisescope.sweep.grid import describe

        label = describe(params.get(run_id, {}))
        secs = run_sections(metrics[run_id], summaries[run_id], scratch / run_id, label, progress,
                            *claims[run_id])
        children.append(Section(f"run-{run_id}", f"run {run_id}: {label}", children=_prefix(secs, run_id),
                                open=run_id == first_open))
    runs = Section("runs", "Runs in detail", "Every run's own sections (click a run to expand it).",
                   children=children)
    if not children:
        runs.missing = "no run has metrics yet"
    elif max_runs is not None and len(detailed) < len(metrics):
        runs.notes.append(f"Showing {len(detailed)} of {len(metrics)} runs in detail "
                          "(`noisescope report --max-runs 0` shows all).")
    sections.append(runs)
    tick("assemble")
    base = manifest.get("base", {})
    n_state = table["state"].value_counts().to_dict()
    axes = " x ".join("+".join(a["keys"]) + f" ({len(a['values'])})" for a in manifest.get("axes", []))
    facts = [f"{len(table)} runs: {axes or 'no axes'}", ", ".join(f"{n} {s}" for s, n in n_state.items()),
             f"base: {base.get('data', {}).get('name', '?')} data, {base.get('model', {}).get('arch', 'mlp')}"]
    return f"noisescope sweep {manifest.get('name', Path(path).name)}", facts, sections


def build_report(target: str | Path, out: str | Path | None = None, progress: bool = True,
                 max_runs: int | None = None) -> Path:
    """Write the HTML report of a run or sweep directory; returns the file's path.

    Args:
        target: a run directory (``config.json`` inside) or a sweep directory (``sweep.json``).
        out: output file (default ``TARGET/report.html``).
        progress: show a progress bar (rich) while figures are drawn.
        max_runs: for sweeps, the most runs given detailed sections (None = all).
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from noisescope.sweep import is_sweep

    target = Path(target)
    sweep = is_sweep(target)
    if not sweep and not (target / "config.json").exists():
        raise FileNotFoundError(f"{target} is neither a run (config.json) nor a sweep (sweep.json)")
    out = Path(out) if out is not None else target / "report.html"
    columns = [TextColumn("[bold]report"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[step]}"), TimeElapsedColumn()]
    with tempfile.TemporaryDirectory(prefix="noisescope-report-") as tmp, \
            Progress(*columns, disable=not progress, transient=True) as bar:
        task = bar.add_task("report", total=8, step="")

        def tick(name: str) -> None:
            bar.update(task, advance=1, step=name)

        if sweep:
            title, facts, sections = sweep_report_sections(
                target, Path(tmp), tick, max_runs, on_total=lambda n: bar.update(task, total=n))
        else:
            title, facts, sections = run_report_sections(target, Path(tmp), tick)
    return write_page(out, title, facts, sections)
