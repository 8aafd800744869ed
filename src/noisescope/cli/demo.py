"""What ``noisescope demo`` does after training: which labels are wrong, which model to use.

:func:`finish_demo` runs, on the trained demo run, the label-issue detectors (the default
ranking, ``workflows.label_issues.find_label_issues``), cleaning + retraining without the flagged
samples (``workflows.clean.retrain_cleaned``), the clean-label oracle (``workflows.oracle.ensure_oracle``;
the demo's labels are synthetic, so the true ones are known) and the repair leaderboard
(``workflows.repair.repair_run``), and writes ``RUN/demo.json``: the settings, the seconds of each
step and the three conclusion lines the terminal ends with (:func:`conclusion_lines`), which the
report shows first.

Reduced cost: retraining twice at the run's full length would push the demo past ~5 minutes
on 2 CPU cores, so cleaning and the oracle train for :func:`retrain_epochs` epochs (twice the
run's early-stopping epoch, at least 10, at most the run's epochs); each is early-stopped on
its own validation split within them, as every model of the leaderboard. ``demo.json`` and the
report say so.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from noisescope.cli.common import interval, p_value
from noisescope.evidence.intervals import Accuracy
from noisescope.io import write_json
from noisescope.report.demo_section import DEMO_JSON
from noisescope.workflows.repair_export import NOT_CANDIDATES

WIDTH = 80
FULL_LENGTH = ("full length: delete RUN/cleaned and RUN/oracle, then run `noisescope repair RUN "
               "--clean remove --oracle`")


@dataclass
class DemoOutcome:
    """What :func:`finish_demo` computed.

    Attributes:
        path: the run; labels: ``LabelIssueResult``; repair: ``RepairReport``.
        decision: the recommendation (``evidence.rules.recommend``) the repair leaderboard made.
        method: the ranking whose flags were cleaned (the label-issues default).
        epochs / retrain_epochs / early_stop_epoch: the run's, the retrainings', its early stop.
        seconds: step -> wall seconds; lines: the three conclusion lines.
    """

    path: Path
    labels: Any
    repair: Any
    decision: Any
    method: str
    epochs: int
    retrain_epochs: int
    early_stop_epoch: int
    seconds: dict[str, float] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)

    @property
    def reduced(self) -> bool:
        return self.retrain_epochs < self.epochs


def retrain_epochs(epochs: int, early_stop: int | None) -> int:
    """Epochs of the demo's cleaning and oracle retrainings: 2 x the run's early-stopping epoch,
    at least 10, at most the run's ``epochs`` (the run's epochs when it has no early stop)."""
    if early_stop is None or early_stop < 1:
        return int(epochs)
    return int(min(epochs, max(10, 2 * int(early_stop))))


def _fit(variants: list[str], width: int = WIDTH) -> str:
    """The first variant that fits ``width`` columns, else the shortest."""
    for v in variants:
        if len(v) <= width:
            return v
    return min(variants, key=len)


def model_line(decision, table: pd.DataFrame, width: int = WIDTH) -> str:
    """Line 1: the model to use with its clean-test accuracy (95% Wilson interval, n) and the
    comparison that decided (``Recommendation.decisive``, on noisy validation)."""
    row = table[table["method"] == decision.choice].iloc[0]
    acc = Accuracy.from_value(float(row["test_acc"]), int(row["n_test"]))
    short_acc = interval(acc.value, acc.low, acc.high)
    dec = decision.decisive
    if dec is None:
        long = short = "no other candidate"
    else:
        p = f"p={p_value(dec.p_value)}"
        gap = f"{dec.k_first} vs {dec.k_second} of {dec.n}"
        if decision.status == "recommended":
            long = f"beats every other; closest {dec.second} ({gap} val, {p})"
            short = f"beats {dec.second} ({p})"
        elif decision.status == "no decision":
            other = dec.first if dec.second == decision.choice else f"{dec.first} vs {dec.second}"
            long = f"no decision: {dec.first} vs {dec.second} {gap} val ({p})"
            short = f"no decision vs {other} ({p})"
        else:
            long = f"most accurate on val; {dec.second} not better ({gap}, {p})"
            short = f"{dec.second} not better ({p})"
    name = decision.choice
    tag = {"recommended": "use", "no decision": "kept"}.get(decision.status, "keep")
    tiny = "" if dec is None else (f"vs {dec.first if dec.second == name else dec.second} "
                                   f"p={p_value(dec.p_value, 1)}")
    return _fit([f"best model: {name}, clean test {acc}; {long}",
                 f"best: {name} {acc}; {long}",
                 f"best: {name} {acc}; {short}",
                 f"{tag} {name} {acc}; {tiny or short}",
                 f"{tag} {name} {short_acc}; {tiny or short}"], width)


def labels_line(labels, width: int = WIDTH) -> str:
    """Line 2: how many labels the default ranking flags, and its detection quality against the
    known noise mask (AUROC; precision / recall of its flags)."""
    method = labels.info.get("settings", {}).get("rank_by", "consensus")
    flags = np.asarray(labels.flags[method], dtype=bool)
    head = f"{int(flags.sum())} of {flags.size} labels flagged"
    ev = labels.evaluation
    if ev is None or method not in set(ev["detector"]):
        return _fit([f"{head} ({method}); no known noise mask to score them against", head], width)
    r = ev[ev["detector"] == method].iloc[0]
    a, p, rc = float(r["auroc"]), float(r["precision_flagged"]), float(r["recall_flagged"])
    se = float(r["auroc_se"]) if "auroc_se" in r and r["auroc_se"] == r["auroc_se"] else None
    a_se = f"AUROC {a:.3f} (SE {se:.3f})" if se is not None else f"AUROC {a:.3f}"
    return _fit([f"{head}; vs the known mask: {a_se}, precision {p:.2f}, recall {rc:.2f}",
                 f"{head}; known mask: {a_se}, precision {p:.2f}, recall {rc:.2f}",
                 f"{head}; known mask: AUROC {a:.3f}, precision {p:.2f}, recall {rc:.2f}",
                 f"{head}; known mask: AUROC {a:.3f}, P {p:.2f}, R {rc:.2f}"], width)


def report_line(report: Path) -> str:
    """Line 3: where the report is (never cut: a path is copied)."""
    return f"report: {report}"


def finish_demo(path: str | Path, retrain: int | None = None,
                progress: Callable[[str], None] | None = None) -> DemoOutcome:
    """Label issues, cleaning + retraining, the oracle and the repair leaderboard of the trained
    demo run ``path`` (module docstring); writes ``RUN/demo.json``. ``retrain``: epochs of the
    two retrainings (default :func:`retrain_epochs`)."""
    from noisescope.runs.run import load_run
    from noisescope.workflows.clean import retrain_cleaned
    from noisescope.workflows.label_issues import find_label_issues
    from noisescope.workflows.oracle import ensure_oracle
    from noisescope.workflows.repair import repair_run

    say = progress or (lambda _m: None)
    path = Path(path)
    run = load_run(path)
    epochs = int(run.config.train.epochs)
    es = run.early_stop[0] if run.early_stop is not None else None
    n_retrain = retrain_epochs(epochs, es) if retrain is None else int(min(max(1, retrain), epochs))
    seconds: dict[str, float] = {}

    say("label issues: every training label scored")
    t0 = time.perf_counter()
    labels = find_label_issues(path, progress=lambda step, _d, _t: say(f"label issues: {step}"))
    seconds["label_issues"] = time.perf_counter() - t0
    method = str(labels.info.get("settings", {}).get("rank_by", "consensus"))
    flagged = np.asarray(labels.flags[method], dtype=bool)

    say(f"cleaning: retraining without the {int(flagged.sum())} flagged samples ({n_retrain} epochs)")
    t0 = time.perf_counter()
    retrain_cleaned(path, flagged, mode="remove", seeds=(run.config.train.seed,), method=method,
                    epochs=n_retrain)
    seconds["cleaning"] = time.perf_counter() - t0

    say(f"oracle: retraining on the true labels ({n_retrain} epochs)")
    t0 = time.perf_counter()
    ensure_oracle(run, train=True, epochs=n_retrain)
    seconds["oracle"] = time.perf_counter() - t0

    say("repair: every repair side by side")
    t0 = time.perf_counter()
    repair = repair_run(path, oracle=True, clean="remove", clean_method=method,
                        progress=lambda m: say(f"repair: {m}"))
    seconds["repair"] = time.perf_counter() - t0
    out = DemoOutcome(path, labels, repair, repair.decision, method, epochs, n_retrain,
                      -1 if es is None else int(es), seconds)
    out.lines = [model_line(out.decision, repair.table), labels_line(labels)]
    write_demo_json(out)
    return out


def reduced_note(info: dict) -> str:
    """The sentence the report shows about the retrainings' length."""
    e, r, es = info.get("epochs"), info.get("retrain_epochs"), info.get("early_stop_epoch")
    if not r or r >= (e or 0):
        return f"Cleaning + retraining and the oracle trained for the run's full {e} epochs."
    return (f"Reduced cost (demo): cleaning + retraining and the clean-label oracle trained for {r} "
            f"epochs (twice the run's early-stopping epoch {es}, at least 10) instead of the run's {e}, "
            "to keep `noisescope demo` within ~5 minutes on 2 CPU cores; each is early-stopped on its own "
            f"validation split within them. For the full length: {FULL_LENGTH.removeprefix('full length: ')}.")


def write_demo_json(out: DemoOutcome) -> Path:
    """``RUN/demo.json``: settings, seconds and the conclusion lines (the report reads it)."""
    info = {"written": time.strftime("%Y-%m-%dT%H:%M:%S"), "method": out.method, "epochs": out.epochs,
            "retrain_epochs": out.retrain_epochs, "early_stop_epoch": out.early_stop_epoch,
            "reduced": out.reduced, "seconds": out.seconds, "lines": out.lines,
            "decision": getattr(out.decision, "line", str(out.decision))}
    info["note"] = reduced_note(info)
    path = out.path / DEMO_JSON
    write_json(path, info)
    return path


def leaderboard_rows(table: pd.DataFrame) -> list[tuple[str, str, str, str]]:
    """(method, noisy val, clean test with interval, outcome) per measured row of the repair
    table (``workflows.repair_export.COLUMNS``: its Wilson bounds and the recommendation's
    outcome, ``verdict``), for the terminal."""
    out = []
    for r in table.to_dict("records"):
        if not r.get("n_test"):
            continue
        outcome = r["kind"] if r["kind"] in NOT_CANDIDATES else r["verdict"]
        out.append((str(r["method"]), f"{float(r['val_acc']):.3f}",
                    interval(float(r["test_acc"]), float(r["test_low"]), float(r["test_high"])), outcome or "-"))
    return out
