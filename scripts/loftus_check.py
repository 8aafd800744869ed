"""The Loftus check: does the power-law exponent alpha of a layer's weights predict test accuracy
across label-noise rates better than the Frobenius norm or the feature effective rank?

Loftus (arXiv 2603.27885) reports a leave-one-out R^2 of 0.984 for alpha of the bottleneck layer
against 0.149 for the Frobenius norm (21 noise levels x 3 seeds). This script tests that claim on
noisescope's own runs:

1. ``--train``: a sweep (``sweeps/loftus``, resumable) of Fashion-MNIST MLPs over 7 symmetric
   noise rates x 3 seeds (train seed = noise seed), with the ``dynamics`` and ``weights`` probes.
   The MLP is 784-256-128-256-10; **the bottleneck layer is ``blocks.layer2.0``**, the Linear
   256 -> 128 that produces the narrowest representation (its weight matrix has M = 128
   singular values).
2. ``--analyse``: for every complete run, the final epoch's clean test accuracy, alpha and the
   Frobenius norm of every weight layer (the ``weights`` probe's rows at the final epoch), and
   the effective rank of the penultimate features (training split, covariance eigenvalues)
   computed from the final checkpoint. Then leave-one-run-out R^2 (``weights.loo_r2``) of the
   linear fit test_acc ~ a + b x for each predictor, and the stricter leave-one-noise-level-out
   R^2 (every run of the left-out rate predicted by the line fitted on the other rates).
   Written to ``docs/results/loftus.md`` (also with only part of the sweep done).

Usage::

    python scripts/loftus_check.py --train --workers 1     # ~20 min on one shared CPU core
    python scripts/loftus_check.py --analyse               # seconds
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "results" / "loftus.md"
RATES = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
SEEDS = [0, 1, 2]
BOTTLENECK = "blocks.layer2.0"
EPOCHS = 60

SPEC = {
    "data": {"name": "fashion_mnist", "subset": 4000, "val_fraction": 0.1, "seed": 0},
    "noise": {"model": "symmetric", "rate": 0.0, "seed": 0, "options": {"exact": True}},
    "model": {"arch": "mlp", "options": {"widths": [256, 128, 256]}},
    "train": {"optimizer": "adam", "lr": 1e-3, "batch_size": 128, "epochs": EPOCHS, "seed": 0, "device": "cpu"},
    "probe": {"schedule": "log", "points": 12, "probes": ["dynamics", "weights"]},
    "grid": {"noise": {"rate": RATES}},
    "zip": [{"train": {"seed": SEEDS}, "noise": {"seed": SEEDS}}],
    "sweep": {"name": "loftus", "root": str(ROOT / "sweeps"), "workers": 1, "threads_per_run": 1},
}


def train(workers: int) -> Path:
    from noisescope.sweep import run_sweep, sweep_from_dict

    raw = {**SPEC, "sweep": {**SPEC["sweep"], "workers": workers}}
    spec = sweep_from_dict(raw, "loftus")
    t0 = time.time()
    result = run_sweep(spec, on_result=lambda o: print(f"{o.id}: {o.state} ({o.seconds:.0f} s)", flush=True))
    print(f"sweep done in {time.time() - t0:.0f} s: {len(result.executed)} executed, "
          f"{len(result.ids('failed'))} failed", flush=True)
    return result.path


def feature_effective_rank(run) -> float:
    """Effective rank of the penultimate features of the final checkpoint on the training split."""
    from noisescope.spectral.rank import effective_rank
    from noisescope.spectral.stats import FeatureStats
    from noisescope.taps import iter_taps

    model = run.model()
    tap = model.feature_tap
    stats = None
    for _sl, _lg, acts in iter_taps(model, run.data.x_train, [tap], 2048, "cpu"):
        stats = stats or FeatureStats(acts[tap].shape[1])
        stats.update(acts[tap])
    return float(effective_rank(stats.spectrum().eigvals))


def collect(sweep_dir: Path) -> pd.DataFrame:
    from noisescope.runs.run import load_run
    from noisescope.sweep import sweep_params
    from noisescope.sweep.runner import run_dir

    params = sweep_params(sweep_dir)
    rows = []
    for rec in params.to_dict("records"):
        path = run_dir(sweep_dir, rec["run"])
        if not (path / "status.json").exists():
            continue
        run = load_run(path)
        if run.status.get("state") != "complete":
            continue
        m = run.metrics
        last = int(m["epoch"].max())
        test = run.curve("test")
        memo = run.curve("noisy_train_obs")
        row = {"run": rec["run"], "rate": float(rec["noise.rate"]), "seed": int(rec["train.seed"]),
               "epoch": last, "test_acc": float(test.loc[last]),
               "memorized": float(memo.loc[last]) if last in memo.index and rec["noise.rate"] > 0 else math.nan}
        w = m[(m.probe == "weights") & (m.epoch == last) & (m["index"] == -1)]
        for (tap, metric), v in w.set_index(["tap", "metric"])["value"].items():
            if metric in ("alpha", "frobenius_norm", "alpha_se", "alpha_n_tail"):
                row[f"{metric}:{tap}"] = float(v)
        row["frobenius_norm:global"] = math.sqrt(sum(v ** 2 for k, v in row.items() if k.startswith("frobenius_norm:")
                                                     and k != "frobenius_norm:global"))
        row["feature_effective_rank"] = feature_effective_rank(run)
        rows.append(row)
    return pd.DataFrame(rows)


def lono_r2(x: np.ndarray, y: np.ndarray, groups: np.ndarray) -> float:
    """Leave-one-noise-level-out R^2: each level's runs predicted by the line fitted on the others."""
    pred = np.empty_like(y)
    for g in np.unique(groups):
        out = groups == g
        xi, yi = x[~out], y[~out]
        if np.ptp(xi) == 0:
            return math.nan
        b = np.polyfit(xi, yi, 1)
        pred[out] = np.polyval(b, x[out])
    return 1.0 - float(np.sum((y - pred) ** 2)) / float(np.sum((y - y.mean()) ** 2))


def analyse(sweep_dir: Path, seconds: float | None = None) -> str:
    from noisescope.weights import loo_r2

    df = collect(sweep_dir)
    if len(df) < 3:
        return f"only {len(df)} complete runs: nothing to fit yet"
    y = df["test_acc"].to_numpy()
    groups = df["rate"].to_numpy()
    preds = [c for c in df.columns if c.startswith(("alpha:", "frobenius_norm:")) or c == "feature_effective_rank"]
    res = []
    for c in preds:
        x = df[c].to_numpy(dtype=float)
        ok = np.isfinite(x)
        r2 = loo_r2(x[ok], y[ok]) if ok.sum() >= 3 and np.ptp(x[ok]) > 0 else math.nan
        lono = lono_r2(x[ok], y[ok], groups[ok]) if len(np.unique(groups[ok])) >= 3 else math.nan
        pearson = float(np.corrcoef(x[ok], y[ok])[0, 1]) if ok.sum() >= 3 else math.nan
        res.append({"predictor": c, "n": int(ok.sum()), "pearson_r": pearson, "loo_r2": r2, "lono_r2": lono})
    table = pd.DataFrame(res).sort_values("loo_r2", ascending=False)
    per_rate = df.groupby("rate").agg(runs=("run", "size"), test_acc=("test_acc", "mean"),
                                      test_sd=("test_acc", "std"), memorized=("memorized", "mean"),
                                      alpha_bottleneck=(f"alpha:{BOTTLENECK}", "mean"),
                                      alpha_sd=(f"alpha:{BOTTLENECK}", "std"),
                                      alpha_se=(f"alpha_se:{BOTTLENECK}", "mean"),
                                      n_tail=(f"alpha_n_tail:{BOTTLENECK}", "mean"),
                                      frob_global=("frobenius_norm:global", "mean"),
                                      feature_erank=("feature_effective_rank", "mean")).reset_index()
    lines = [f"complete runs: {len(df)} of {len(RATES) * len(SEEDS)} "
             f"(rates {sorted(df.rate.unique().tolist())})"]
    if seconds is not None:
        lines.append(f"analysis: {seconds:.0f} s")
    lines += ["", "### Leave-one-out R^2 of final clean test accuracy, one predictor at a time", "",
              _md(table, {"pearson_r": "{:+.3f}", "loo_r2": "{:+.3f}", "lono_r2": "{:+.3f}"}),
              "", "### Per noise rate (mean over seeds)", "",
              _md(per_rate, {"rate": "{:.1f}", "test_acc": "{:.3f}", "test_sd": "{:.3f}", "memorized": "{:.3f}",
                             "alpha_bottleneck": "{:.2f}", "alpha_sd": "{:.2f}", "alpha_se": "{:.2f}",
                             "n_tail": "{:.0f}", "frob_global": "{:.1f}",
                             "feature_erank": "{:.1f}"}), "",
              "### Every run", "",
              _md(df[["rate", "seed", "epoch", "test_acc", "memorized", f"alpha:{BOTTLENECK}",
                      "frobenius_norm:global", "feature_effective_rank"]],
                  {"rate": "{:.1f}", "test_acc": "{:.4f}", "memorized": "{:.3f}", f"alpha:{BOTTLENECK}": "{:.3f}",
                   "frobenius_norm:global": "{:.2f}", "feature_effective_rank": "{:.2f}"})]
    df.to_csv(sweep_dir / "loftus_runs.csv", index=False)
    table.to_csv(sweep_dir / "loftus_r2.csv", index=False)
    return "\n".join(lines)


def _md(df: pd.DataFrame, fmt: dict[str, str]) -> str:
    cols = list(df.columns)
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in df.to_dict("records"):
        cells = []
        for c in cols:
            v = r[c]
            if isinstance(v, float) and math.isnan(v):
                cells.append("-")
            elif c in fmt and isinstance(v, (float, int, np.floating, np.integer)):
                cells.append(fmt[c].format(v))
            else:
                cells.append(str(v))
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", action="store_true", help="run (or resume) the sweep")
    ap.add_argument("--analyse", action="store_true", help="fit and print the R^2 table")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    sweep_dir = ROOT / "sweeps" / "loftus"
    if args.train:
        sweep_dir = train(args.workers)
    if args.analyse:
        t0 = time.time()
        text = analyse(sweep_dir)
        print(text.replace("analysis: ", f"analysis: {time.time() - t0:.0f} s ") if False else text)
        (sweep_dir / "loftus_analysis.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
