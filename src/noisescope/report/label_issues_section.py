"""The report section "Which labels are wrong": detection quality of every detector (from
``RUN/label_issues.json``), a thumbnail grid of the top suspects for image data, and the
cleaning comparison when ``RUN/cleaned/`` holds one.

Register it in a run's report with ``sections.append(label_issues_section(path, scratch))``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from noisescope.metrics import save_figure
from noisescope.report.html import Figure, Section, table_html
from noisescope.workflows.label_issues import JSON, PARQUET

MISSING = (f"no {PARQUET} in this run: compute it with `noisescope label-issues RUN` "
           "(add `--cleanlab-cv 5` for cleanlab on cross-validated probabilities)")
FEATURE_DATASETS = ("synthetic",)  # no images to show
EVAL_COLUMNS = ["detector", "auroc", "auroc_se", "ap", "precision_at_rate", "precision_flagged",
                "recall_flagged", "f1_flagged", "n_flagged", "estimated_rate", "seconds"]
#: shown names of the columns (precision = recall at n = the number of noisy samples)
EVAL_NAMES = {"auroc_se": "AUROC SE (DeLong)",
              "precision_at_rate": "P=R@n", "precision_flagged": "P flagged", "recall_flagged": "R flagged",
              "f1_flagged": "F1 flagged", "n_flagged": "flagged", "estimated_rate": "est. noise rate"}


def _label(c: int, classes: list[str] | None) -> str:
    return classes[c] if classes and 0 <= c < len(classes) else str(c)


def suspects_figure(table: pd.DataFrame, data, path: Path, top: int = 24, cols: int = 8) -> Path | None:
    """A grid of the ``top`` most suspicious training images (observed / predicted / true label);
    None when the inputs are not images."""
    x = data.x_train
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        return None
    import matplotlib.pyplot as plt

    rows = table.head(top)
    n = len(rows)
    if n == 0:
        return None
    r = math.ceil(n / cols)
    fig, axes = plt.subplots(r, cols, figsize=(1.5 * cols, 2.0 * r), squeeze=False)
    classes = getattr(data, "classes", None)
    truth = data.y_train_true  # the analysis side: shown, never used to rank
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (_, row) in zip(axes.ravel(), rows.iterrows(), strict=False):
        i = int(row["index"])
        img = x[i].detach().cpu().float().numpy()
        img = img[0] if img.shape[0] == 1 else np.transpose(img, (1, 2, 0))
        lo, hi = float(img.min()), float(img.max())
        img = (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None, interpolation="nearest")
        obs, pred, true = int(row["observed"]), int(row["predicted"]), int(truth[i])
        wrong = obs != true
        ax.set_title(f"#{int(row['rank'])} obs {_label(obs, classes)}\npred {_label(pred, classes)}\n"
                     f"true {_label(true, classes)}", fontsize=6, color="#b00020" if wrong else "#1d6b2f",
                     pad=2, linespacing=1.05)
    fig.suptitle("top suspects (red: the observed label is wrong; green: it is right)", fontsize=8)
    fig.tight_layout(h_pad=0.6, w_pad=0.3)
    return save_figure(fig, path)


def _evaluation_table(info: dict) -> str | None:
    ev = info.get("evaluation")
    if not ev:
        return None
    frame = pd.DataFrame(ev)
    frame = frame[[c for c in EVAL_COLUMNS if c in frame]].copy()
    for c in frame.columns:
        if c != "detector":
            frame[c] = pd.to_numeric(frame[c], errors="coerce").astype(float)
    if "seconds" in frame and "consensus" in set(frame["detector"]):
        frame.loc[frame["detector"] == "consensus", "seconds"] = info.get("total_seconds", float("nan"))
    frame["detector"] = [f"{d} (default)" if d == "consensus" else d for d in frame["detector"]]
    return table_html(frame.rename(columns=EVAL_NAMES), formats={"seconds": "{:.2f}", "flagged": "{:.0f}"})


def _cleaning_tables(run_path: Path) -> list[str]:
    out = []
    for p in sorted((run_path / "cleaned").glob("comparison-*.parquet")):
        t = pd.read_parquet(p)
        for c in ("test_acc", "test_low", "test_high", "p_value"):
            t[c] = t[c].astype(float)
        out.append(f"<p class=\"note\">Cleaning with the flagged set of <code>{p.stem.split('-', 1)[1]}</code>"
                   "</p>" + table_html(t, formats={"p_value": "{:.3g}"}))
    return out


def label_issues_section(run_path: str | Path, scratch: str | Path, data=None) -> Section:
    """The "Which labels are wrong" section of a run (module docstring). ``data``: the run's
    NoisyDataset when the caller has it (else rebuilt from the config for image datasets)."""
    run_path, scratch = Path(run_path), Path(scratch)
    sec = Section("label-issues", "Which labels are wrong",
                  "Every training label scored by each detector (features of the early-stopped network, "
                  "training dynamics, disagreement; cleanlab beside them); detection quality against the "
                  "known noise mask, and the top suspects.")
    if not (run_path / PARQUET).exists():
        sec.missing = MISSING
        return sec
    from noisescope.io import read_json
    from noisescope.runs.run import load_run

    table = pd.read_parquet(run_path / PARQUET)
    info = read_json(run_path / JSON) if (run_path / JSON).exists() else {}
    st = info.get("settings", {})
    noise = info.get("noise", {})
    if info.get("consensus_of"):
        members = info["consensus_of"]
        sec.notes.append(
            f"Default ranking and flags: the consensus, the mean percentile rank over {len(members)} distinct "
            f"rankings ({', '.join(members)}), flagged when at least half of them flag.")
    if st:
        sec.notes.append(
            f"{info.get('n')} training samples; feature detectors on the checkpoint of epoch "
            f"{st.get('checkpoint_epoch')} ({st.get('checkpoint')}); early stopping at epoch "
            f"{st.get('early_stop_epoch')}; d = {st.get('d')} (chosen: {info.get('d_chosen')}); "
            f"cleanlab CV folds: {st.get('cleanlab_cv') or 'off'}.")
    html = _evaluation_table(info)
    if html:
        sec.notes.append(
            f"Noise {noise.get('model')} ({'synthetic' if noise.get('synthetic') else 'not synthetic'}), realized "
            f"rate {noise.get('realized_rate', float('nan')):.3f}. AUROC / AP of each score against the mask; "
            "P=R@n: precision of the top n scores, n = the number of noisy samples, where precision and "
            "recall are the same number; precision / recall at the detector's own flags; est. noise rate = "
            "the flagged fraction (each flag rule's estimate of the noise rate); seconds: each detector's own "
            "step (the consensus row: every step, the shared data rebuild and passes included)"
            + (f", against a training run of {info['run_seconds_approx']:.1f} s."
               if info.get("run_seconds_approx") else "."))
        sec.tables.append(html)
    else:
        sec.notes.append("No evaluation: the run's labels hold no noise, so there is no mask to score against.")
    if info.get("skipped"):
        sec.notes.append("Skipped: " + "; ".join(f"{m}: {why}" for m, why in info["skipped"].items()))
    if data is None:
        try:
            run = load_run(run_path)
            data = run.data if run.config.data.name not in FEATURE_DATASETS else None
        except (FileNotFoundError, ValueError) as exc:
            sec.notes.append(f"No thumbnails: the run's data could not be rebuilt ({exc}).")
    if data is not None:
        fig = suspects_figure(table, data, scratch / "label_issues_top.png")
        if fig is not None:
            sec.figures.append(Figure(Path(fig).read_bytes(),
                                      "the most suspicious training images (consensus rank), with observed, "
                                      "predicted (early-stopped model) and true labels"))
    sec.tables.extend(_cleaning_tables(run_path))
    return sec
