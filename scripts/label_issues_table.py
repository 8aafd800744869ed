"""The label-issue results table (issue 11): every detector of ``noisescope.detect`` against
cleanlab on the same networks, written to ``docs/results/label_issues.md``.

For each setting (dataset x noise model x rate) and seed: one ``noisescope run`` (dynamics
probe every epoch, so the margins record holds every epoch), timed; then
``find_label_issues(run, cleanlab_cv=K)`` on it (feature detectors on the early-stopped
checkpoint, AUM / first-fit from the margins record, cleanlab on the early-stopped
probabilities and on K-fold cross-validated probabilities of the same architecture trained
for the early-stopping epoch count). Per-run rows go to ``RESULTS`` (JSON lines) as they come
and the markdown is rewritten after each run, so a partial grid is always readable; a rerun
skips the settings already in ``RESULTS`` (runs themselves resume).

Usage::

    nice python scripts/label_issues_table.py [--grid reduced|full] [--threads 1] [--cv 5]
    nice python scripts/label_issues_table.py --clean     # cleaning comparison on the headline runs
    python scripts/label_issues_table.py --table-only     # rewrite the markdown from RESULTS

Grids (``GRIDS``): ``full`` is the issue's grid (3 datasets x {symmetric, pairflip, instance}
x {20%, 40%} x 3 seeds); ``reduced`` keeps every setting of synthetic and digits at 3 seeds
and Fashion-MNIST's headline (40% symmetric) at 3 seeds, its other five settings at seed 0,
with 15 epochs (12 for Fashion-MNIST; see the markdown for why).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "runs" / "label_issues"
RESULTS = RUNS / "results.jsonl"
CLEAN_RESULTS = RUNS / "cleaning.jsonl"
OUT = ROOT / "docs" / "results" / "label_issues.md"

NOISES = [("symmetric", 0.2), ("symmetric", 0.4), ("pairflip", 0.2), ("pairflip", 0.4),
          ("instance", 0.2), ("instance", 0.4)]
DATASETS = {
    "synthetic": {"data": {"name": "synthetic", "options": {"n": 3000, "n_test": 2000, "dim": 100, "k_star": 10,
                                                             "num_classes": 10}},
                  "widths": [256, 256], "batch_size": 64},
    "digits": {"data": {"name": "digits"}, "widths": [256, 256], "batch_size": 64},
    "fashion_mnist": {"data": {"name": "fashion_mnist", "subset": 10000}, "widths": [512, 512, 512],
                      "batch_size": 128},
}
HEADLINE = ("fashion_mnist", "symmetric", 0.4)
REDUCED_FMNIST = [("symmetric", 0.2), ("pairflip", 0.4), ("instance", 0.4)]  # run first among the others
EPOCHS = {"synthetic": 15, "digits": 15, "fashion_mnist": 12}
SINGLE_RUN = ("truncated_distance", "knn", "fine", "tail_margin", "truncated_margin", "disagreement",
              "aum", "aum_early", "first_fit")
DECLARED = "aum_early"  # the single-run detector named before the grid ran (best on the anchors)


def grid(name: str) -> list[tuple[str, str, float, int]]:
    """(dataset, noise, rate, seed) in the order they run: the headline's first seed, synthetic,
    the headline's other seeds, digits, then Fashion-MNIST's other settings (the reduced grid
    runs those at seed 0, the ones named in ``REDUCED_FMNIST`` first)."""
    syn, dig = ([(ds, noise, rate, s) for noise, rate in NOISES for s in (0, 1, 2)] for ds in ("synthetic", "digits"))
    head = [(*HEADLINE, s) for s in (0, 1, 2)]
    others = [("fashion_mnist", noise, rate) for noise, rate in NOISES if ("fashion_mnist", noise, rate) != HEADLINE]
    if name == "reduced":
        others.sort(key=lambda r: (r[1:] not in REDUCED_FMNIST, r[1], r[2]))
        rest = [(*o, 0) for o in others]
    else:
        rest = [(*o, s) for o in others for s in (0, 1, 2)]
    return [head[0], *syn, *head[1:], *dig, *rest]


def config(ds: str, noise: str, rate: float, seed: int, epochs: int):
    from noisescope.config import from_dict

    spec = DATASETS[ds]
    data = {**spec["data"], "val_fraction": 0.1, "seed": seed}
    return from_dict({
        "data": data,
        "noise": {"model": noise, "rate": rate, "seed": seed},
        "model": {"arch": "mlp", "options": {"widths": spec["widths"]}},
        "train": {"optimizer": "adam", "lr": 1e-3, "batch_size": spec["batch_size"], "epochs": epochs,
                  "seed": seed, "device": "cpu"},
        "probe": {"schedule": "every", "probes": ["dynamics"]},
        "run": {"root": str(RUNS), "name": f"{ds}-{noise}{int(rate * 100)}-s{seed}"},
    })


def done_keys(path: Path) -> set[tuple]:
    if not path.exists():
        return set()
    return {(r["dataset"], r["noise"], r["rate"], r["seed"]) for r in map(json.loads, path.read_text().splitlines())}


def one(ds: str, noise: str, rate: float, seed: int, epochs: int | None, cv: int) -> dict:
    from noisescope.runs.lifecycle import run_experiment
    from noisescope.runs.run import load_run
    from noisescope.workflows.label_issues import find_label_issues

    epochs = epochs or EPOCHS[ds]
    cfg = config(ds, noise, rate, seed, epochs)
    t = time.perf_counter()
    path = run_experiment(cfg)
    train_s = time.perf_counter() - t
    timing_file = path / "train_seconds.json"  # the first (uninterrupted) training's wall time
    if not timing_file.exists():
        timing_file.write_text(json.dumps({"train_seconds": train_s}))
    train_s = json.loads(timing_file.read_text())["train_seconds"]
    res = find_label_issues(path, "all", cleanlab_cv=cv, seed=seed)  # every detector, not the default three
    summ = load_run(path).summary
    return {
        "dataset": ds, "noise": noise, "rate": rate, "seed": seed, "epochs": epochs, "cv": cv,
        "run": str(path.relative_to(ROOT)), "train_seconds": train_s,
        "early_stop_epoch": res.info["settings"]["early_stop_epoch"],
        "early_stop_test_acc": summ.get("early_stop_test_acc"), "final_test_acc": summ.get("final_test_acc"),
        "realized_rate": res.info["noise"]["realized_rate"], "n": res.info["n"],
        "d_chosen": res.info["d_chosen"], "cleanlab_cv": res.info["cleanlab_cv"],
        "evaluation": res.info["evaluation"],
    }


def clean_setting(setting: tuple[str, str, float], seeds: list[int], epochs: int, method: str) -> None:
    """Cleaning as a repair on one setting's runs: remove / relabel the flagged set, retrain
    (one sub-run per mode, with the source run's seed)."""
    from noisescope.workflows.clean import retrain_cleaned
    from noisescope.workflows.label_issues import flagged_mask

    ds, noise, rate = setting
    for seed in seeds:
        path = RUNS / f"{ds}-{noise}{int(rate * 100)}-s{seed}"
        flagged = flagged_mask(path, method)
        res = retrain_cleaned(path, flagged, mode=("remove", "relabel"), seeds=[seed], method=method,
                              epochs=epochs)
        with CLEAN_RESULTS.open("a") as f:
            for row in res.table.to_dict("records"):
                f.write(json.dumps({"setting": f"{ds} {noise} {rate:.0%}", "source_seed": seed, "method": method,
                                    **row}, default=str) + "\n")
        write_markdown()


# ----------------------------------------------------------------------------- markdown
def _fmt(mean: float, sd: float, n: int, digits: int = 3) -> str:
    if mean != mean:
        return "-"
    if n < 2 or sd != sd:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"


def write_markdown() -> None:
    import numpy as np
    import pandas as pd

    rows = [json.loads(x) for x in RESULTS.read_text().splitlines()] if RESULTS.exists() else []
    ev = []
    for r in rows:
        for e in r["evaluation"] or []:
            ev.append({**{k: r[k] for k in ("dataset", "noise", "rate", "seed", "train_seconds")}, **e})
    ev = pd.DataFrame(ev)
    runs = pd.DataFrame(rows)
    lines = [
        "# Which labels are wrong: detectors vs cleanlab (issue 11)",
        "",
        "Produced by `scripts/label_issues_table.py` (see *Commands* below); rewritten after every run, so",
        "a partial grid shows what has finished. Machine: 2 shared CPU cores, torch CPU, 1 thread, no GPU.",
        "",
    ]
    if ev.empty:
        OUT.write_text("\n".join(lines + ["No run has finished yet."]) + "\n")
        return
    for c in ("auroc", "ap", "precision_flagged", "recall_flagged", "estimated_rate", "cost_seconds", "seconds"):
        ev[c] = pd.to_numeric(ev[c], errors="coerce")
    key = ["dataset", "noise", "rate"]
    agg = ev.groupby(key + ["detector"]).agg(
        auroc=("auroc", "mean"), auroc_sd=("auroc", "std"), n=("seed", "nunique"), ap=("ap", "mean"),
        p=("precision_flagged", "mean"), r=("recall_flagged", "mean"), est=("estimated_rate", "mean"),
        cost=("cost_seconds", "mean"), train=("train_seconds", "mean")).reset_index()
    settings = agg[key].drop_duplicates()
    settings = settings.assign(order=settings.dataset.map({d: i for i, d in enumerate(DATASETS)}))
    settings = settings.sort_values(["order", "noise", "rate"])

    lines += _setup_text(runs)
    # --- goal
    lines += ["## The goal, setting by setting", "",
              "Goal (issue 11): *the best single-run detector beats cleanlab's AUROC in every setting, at an extra "
              "cost below 5% of the training run; and the flagged set's precision and recall both above cleanlab's "
              "`find_label_issues` at its own threshold.* cleanlab here is the proper peer: 5-fold "
              "cross-validated probabilities (`cleanlab_cv`). \"Best single-run\" is chosen per setting with the "
              f"true mask (optimistic); `{DECLARED}` is the detector named before the grid ran (no selection).",
              "",
              "| setting | seeds | cleanlab_cv AUROC | best single-run (AUROC) | beats? | Δ AUROC, paired over seeds | "
              "extra cost / train | "
              f"P / R flagged (best) | P / R flagged (cleanlab_cv) | P and R both above? | {DECLARED} AUROC | "
              f"{DECLARED} P / R | goal met ({DECLARED}) |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    from noisescope.evidence.intervals import aggregate_seeds

    verdicts = []
    for _, s in settings.iterrows():
        a = agg[(agg.dataset == s.dataset) & (agg.noise == s.noise) & (agg.rate == s.rate)].set_index("detector")
        if "cleanlab_cv" not in a.index:
            continue
        cl = a.loc["cleanlab_cv"]
        single = a.loc[[m for m in SINGLE_RUN if m in a.index]]
        best = single["auroc"].idxmax()
        b = a.loc[best]
        dd = a.loc[DECLARED] if DECLARED in a.index else None
        beats = b.auroc > cl.auroc
        cheap = b.cost / b.train < 0.05
        pr = b.p > cl.p and b.r > cl.r
        met_decl = dd is not None and dd.auroc > cl.auroc and dd.cost / dd.train < 0.05 and dd.p > cl.p and dd.r > cl.r
        verdicts.append((beats and cheap and pr, met_decl, beats, dd is not None and dd.auroc > cl.auroc))
        e = ev[(ev.dataset == s.dataset) & (ev.noise == s.noise) & (ev.rate == s.rate)]
        per_seed = e.pivot_table(index="seed", columns="detector", values="auroc")
        delta = aggregate_seeds((per_seed[best] - per_seed["cleanlab_cv"]).to_numpy())
        dtext = (f"{delta.mean:+.3f}" if delta.n_seeds < 2 else
                 f"{delta.mean:+.3f} [{delta.low:+.3f}, {delta.high:+.3f}]")
        lines.append(
            f"| {s.dataset} {s.noise} {s.rate:.0%} | {int(cl.n)} | {_fmt(cl.auroc, cl.auroc_sd, cl.n)} | "
            f"{best} {_fmt(b.auroc, b.auroc_sd, b.n)} | {'yes' if beats else 'no'} | {dtext} | "
            f"{b.cost / b.train:.1%} | "
            f"{b.p:.3f} / {b.r:.3f} | {cl.p:.3f} / {cl.r:.3f} | {'yes' if pr else 'no'} | "
            + (f"{_fmt(dd.auroc, dd.auroc_sd, dd.n)} | {dd.p:.3f} / {dd.r:.3f} | {'yes' if met_decl else 'no'} |"
               if dd is not None else "- | - | - |"))
    n_set = len(verdicts)
    lines += ["",
              f"**AUROC part**: the best single-run detector beats cleanlab_cv's AUROC in "
              f"{sum(v[2] for v in verdicts)} of {n_set} settings (`{DECLARED}` alone: {sum(v[3] for v in verdicts)} "
              f"of {n_set}); Δ is that best detector's AUROC minus cleanlab_cv's on the same run, mean and 95% "
              "t-interval over seeds (selection with the mask makes it optimistic). **Whole goal** (AUROC, "
              "cost < 5%, precision and recall): met by the best single-run detector in "
              f"{sum(v[0] for v in verdicts)} of {n_set} settings, "
              f"by `{DECLARED}` in {sum(v[1] for v in verdicts)} of {n_set}. "
              + ("The goal as stated (every setting) is **met**." if n_set and all(v[0] for v in verdicts)
                 else "The goal as stated (every setting) is **not met**."),
              "",
              "Reading (this recording): the AUROC part holds everywhere for the best detector, but by margins "
              "inside the seeds' spread in most settings; the clear wins are pairflip (systematic) noise, where "
              "the feature detectors on the early-stopped network (`truncated_distance`) beat cleanlab by "
              "0.03-0.20. The precision-and-recall part fails mostly on precision: the single-run detectors' "
              "own rules flag more samples than the realized rate (see the estimated rates below), buying "
              "recall with precision, while `find_label_issues` prunes by its own noise-rate estimate. The cost "
              "part fails where training takes only a few seconds (digits, synthetic: fixed costs of 0.1-0.5 s, "
              "rebuilding the data and reading the per-epoch margin files, dominate) and for FINE's Gaussian "
              "mixture; the dynamics scores (`aum`, `aum_early`, "
              "`first_fit`) read a record the run already wrote and cost 2-6% of the run. cleanlab_cv costs "
              "about one training run (5 folds x the early-stopping epochs).",
              ""]
    lines += _anchors_text(agg)
    # --- AUROC table
    shown = [*SINGLE_RUN, "cleanlab", "cleanlab_cv", "consensus"]
    lines += ["## AUROC of every detector (mean ± sd over seeds)", "",
              "| setting | n seeds | " + " | ".join(shown) + " |",
              "|---|---|" + "---|" * len(shown)]
    for _, s in settings.iterrows():
        a = agg[(agg.dataset == s.dataset) & (agg.noise == s.noise) & (agg.rate == s.rate)].set_index("detector")
        nseed = int(a["n"].max())
        cells = [_fmt(a.loc[m].auroc, a.loc[m].auroc_sd, a.loc[m].n) if m in a.index else "-" for m in shown]
        lines.append(f"| {s.dataset} {s.noise} {s.rate:.0%} | {nseed} | " + " | ".join(cells) + " |")
    lines += ["", "`consensus` averages the percentile ranks of every detector, cleanlab's included, so it is not "
              "a single-run detector.", ""]
    # --- flags table
    lines += ["## Own flags: precision / recall, estimated vs realized noise rate (mean over seeds)", "",
              "| setting | realized rate | " + " | ".join(shown) + " |", "|---|---|" + "---|" * len(shown)]
    for _, s in settings.iterrows():
        a = agg[(agg.dataset == s.dataset) & (agg.noise == s.noise) & (agg.rate == s.rate)].set_index("detector")
        rr = runs[(runs.dataset == s.dataset) & (runs.noise == s.noise) & (runs.rate == s.rate)]["realized_rate"].mean()
        cells = [f"{a.loc[m].p:.2f} / {a.loc[m].r:.2f} ({a.loc[m].est:.2f})" if m in a.index else "-" for m in shown]
        lines.append(f"| {s.dataset} {s.noise} {s.rate:.0%} | {rr:.2f} | " + " | ".join(cells) + " |")
    lines += ["", "Cells: precision / recall of the detector's own flagged set (estimated noise rate = flagged "
              "fraction).", ""]
    # --- timing
    lines += ["## Compute time (seconds, mean over the runs of each dataset)", "",
              "Each detector's cost includes the shared steps it needs (rebuilding the run's data, the "
              "early-stopped model's logits or the features pass, reading the margins record). The training "
              "run's wall time includes its dynamics probe.", "",
              "| dataset | training run | " + " | ".join(shown[:-1]) + " |", "|---|---|" + "---|" * (len(shown) - 1)]
    for ds in [d for d in DATASETS if d in set(ev.dataset)]:
        e = ev[ev.dataset == ds]
        t = e.groupby("detector")["cost_seconds"].mean()
        train = runs[runs.dataset == ds]["train_seconds"].mean()
        cells = [f"{t[m]:.2f} ({t[m] / train:.1%})" if m in t.index else "-" for m in shown[:-1]]
        lines.append(f"| {ds} | {train:.1f} | " + " | ".join(cells) + " |")
    lines += ["", "(percent: of the training run's wall time.)", ""]
    # --- per-run facts
    lines += ["## Runs", "", "| run | early stop epoch | clean test at early stop | final clean test | "
              "realized rate | d chosen (truncated_distance) | train s | cleanlab_cv s |",
              "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        cvs = ev[(ev.dataset == r["dataset"]) & (ev.noise == r["noise"]) & (ev.rate == r["rate"])
                 & (ev.seed == r["seed"]) & (ev.detector == "cleanlab_cv")]["cost_seconds"]
        lines.append(f"| {r['run'].split('/')[-1]} | {r['early_stop_epoch']} | {_num(r['early_stop_test_acc'])} | "
                     f"{_num(r['final_test_acc'])} | {r['realized_rate']:.3f} | "
                     f"{(r['d_chosen'] or {}).get('truncated_distance', '-')} | {r['train_seconds']:.1f} | "
                     f"{float(cvs.iloc[0]) if len(cvs) else float('nan'):.1f} |")
    lines += [""] + _cleaning_text() + _commands_text()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    tmp = OUT.with_suffix(".md.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, OUT)
    del np


ANCHORS = [("cleanlab_cv", "cleanlab 5-fold CV label quality", "0.977 ± 0.002"),
           ("aum_early", "margin averaged over epochs 1..early stop", "0.983"),
           ("fine", "FINE on early-stopped features", "0.979"),
           ("disagreement", "early-stopped loss (same ranking as 1 - p(label))", "0.974")]


def _anchors_text(agg) -> list[str]:
    ds, noise, rate = HEADLINE
    a = agg[(agg.dataset == ds) & (agg.noise == noise) & (agg.rate == rate)].set_index("detector")
    if a.empty:
        return []
    lines = ["## Headline setting against the anchors measured before", "",
             "Fashion-MNIST 10k subset, 40% symmetric, MLP 3x512, Adam (the anchors: outside the project, same "
             "setting; their final memorized model scored 0.61-0.82, not repeated here: 12 epochs do not "
             "memorize).", "",
             "| score | anchor AUROC | here (mean ± sd, n seeds) |", "|---|---|---|"]
    for m, what, anchor in ANCHORS:
        if m in a.index:
            r = a.loc[m]
            lines.append(f"| {what} (`{m}`) | {anchor} | {_fmt(r.auroc, r.auroc_sd, r.n)} (n = {int(r.n)}) |")
    lines.append("")
    return lines


def _num(v) -> str:
    return "-" if v is None else f"{float(v):.3f}"


def _setup_text(runs) -> list[str]:
    return [
        "## Setup", "",
        "* Data: `synthetic` (spiked covariance, n = 3000, 100 dims, k* = 10, 10 classes), `digits` "
        "(scikit-learn 8x8), `fashion_mnist` (10k class-balanced training subset, full 10k clean test set); "
        "10% of the training samples held out as noisy validation. Noise: symmetric, pairflip (y -> y+1), "
        "instance (flips to the nearest other class mean, low-margin samples first), at 20% and 40%.",
        "* Networks: MLP 2x256 (synthetic, digits; batch 64), MLP 3x512 (Fashion-MNIST; batch 128); Adam "
        "lr 1e-3, **15 epochs** (synthetic, digits) / **12 epochs** (Fashion-MNIST); seed s sets the data split, "
        "the noise draw and the training seed; dynamics probe every epoch (it writes the margins record).",
        "* Detectors on the early-stopped checkpoint (best noisy-validation epoch); d chosen on noisy "
        "validation; AUM / first-fit from the run's margins record (every epoch); `aum_early` = AUM over "
        "epochs 1..early stopping. cleanlab 2.x, `get_label_quality_scores` (self-confidence) and "
        "`find_label_issues` (prune by noise rate), on the early-stopped model's probabilities (`cleanlab`, "
        "in-sample; its AUROC equals `disagreement`'s by construction) and on 5-fold cross-validated "
        "probabilities of the same architecture trained with noisescope's Trainer for the run's early-stopping "
        "epoch count (`cleanlab_cv`).",
        "* **Reduced grid** (the machine's 2 cores are shared with the lead; the budget was ~40 minutes of "
        "wall time, and this script ran niced at about 15-40% of one core): 12-15 epochs instead of the "
        "presets' 40-50 (early stopping happens by epoch ~10, and that is what the detectors read; `aum` and "
        "`first_fit` see only these epochs of memorization); MLP 2x256 and n = 3000 for synthetic; "
        "Fashion-MNIST at 3 seeds only in the headline setting (40% symmetric); its five other settings at "
        "seed 0 only (one seed: no spread) unless `--grid full` ran them. Full grid: `--grid full`.",
        "* Timings are wall seconds on a machine shared with other jobs whose load changed during the grid "
        "(the first Fashion-MNIST run trained in 233 s, the next ones in 40-80 s), so ratios are rough; "
        "each detector and its training run were timed in the same process within minutes of each other.",
        f"* Runs finished: {len(runs)}.",
        "",
    ]


def _cleaning_text() -> list[str]:
    import pandas as pd

    if not CLEAN_RESULTS.exists():
        return []
    t = pd.DataFrame([json.loads(x) for x in CLEAN_RESULTS.read_text().splitlines()])
    lines = ["## Cleaning as a repair", "",
             "Flagged set of the method below removed from (or relabelled by the early-stopped model's "
             "prediction in) the training split; the same config retrained (validation and test unchanged). "
             "Clean test accuracy with its Wilson 95% interval and n; McNemar's exact test against the "
             "original run's early-stopped model.", "",
             "| setting | source seed | method | model | epoch | n train | clean test [95% CI] | n | "
             "b / c vs early stop | McNemar p |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for _, r in t.iterrows():
        lines.append(f"| {r.setting} | {r.source_seed} | {r.method} | {r.model} | {r.epoch} | {r.n_train} | "
                     f"{r.test_acc:.4f} "
                     f"[{r.test_low:.4f}, {r.test_high:.4f}] | {r.n_test} | "
                     f"{_intish(r.b)} / {_intish(r.c)} | {_num(r.p_value) if r.p_value == r.p_value else '-'} |")
    from noisescope.evidence.intervals import aggregate_seeds

    lines += ["", "Over the source runs (one seed each; `evidence.aggregate_seeds`: mean, sd, 95% t-interval):", "",
              "| setting | method | model | clean test over seeds |", "|---|---|---|---|"]
    for (setting, method, model), g in t.groupby(["setting", "method", "model"], sort=False):
        lines.append(f"| {setting} | {method} | {model} | {aggregate_seeds(g['test_acc'].astype(float))} |")
    lines.append("")
    return lines


def _intish(v) -> str:
    return "-" if v != v else str(int(v))


def _commands_text() -> list[str]:
    return ["## Commands", "", "```bash",
            "cd noisescope   # the repository root",
            "OMP_NUM_THREADS=1 nice .venv/bin/python scripts/label_issues_table.py --grid reduced --threads 1 --cv 5",
            "OMP_NUM_THREADS=1 nice .venv/bin/python scripts/label_issues_table.py --clean "
            "--clean-setting synthetic:symmetric:0.4 --clean-seeds 0,1,2 --clean-method aum_early",
            ".venv/bin/python scripts/label_issues_table.py --table-only   # this file, from runs/label_issues/*.jsonl",
            "# one run by hand: noisescope run CONFIG; noisescope label-issues RUN --cleanlab-cv 5",
            "```", ""]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grid", choices=("reduced", "full"), default="reduced")
    ap.add_argument("--epochs", type=int, default=0, help="training epochs (default: EPOCHS per dataset)")
    ap.add_argument("--cv", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", default="", help="comma-separated datasets to run")
    ap.add_argument("--table-only", action="store_true")
    ap.add_argument("--clean", action="store_true", help="cleaning comparison on one setting's runs")
    ap.add_argument("--clean-setting", default="fashion_mnist:symmetric:0.4", help="DATASET:NOISE:RATE")
    ap.add_argument("--clean-seeds", default="0")
    ap.add_argument("--clean-method", default="aum_early")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    RUNS.mkdir(parents=True, exist_ok=True)
    if args.table_only:
        write_markdown()
        return
    if args.clean:
        ds, noise, rate = args.clean_setting.split(":")
        clean_setting((ds, noise, float(rate)), [int(s) for s in args.clean_seeds.split(",")],
                      args.epochs or EPOCHS[ds], args.clean_method)
        return
    only = {s for s in args.only.split(",") if s}
    done = done_keys(RESULTS)
    for ds, noise, rate, seed in grid(args.grid):
        if (only and ds not in only) or (ds, noise, rate, seed) in done:
            continue
        t = time.perf_counter()
        row = one(ds, noise, rate, seed, args.epochs or None, args.cv)
        with RESULTS.open("a") as f:
            f.write(json.dumps(row) + "\n")
        write_markdown()
        best = max((e for e in row["evaluation"] if e["detector"] != "consensus"), key=lambda e: e["auroc"] or 0)
        print(f"{ds} {noise} {rate} s{seed}: {time.perf_counter() - t:.0f}s, train {row['train_seconds']:.0f}s, "
              f"best {best['detector']} {best['auroc']:.3f}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
