"""Summarize the long-horizon search for Kubo et al.'s epoch-wise double descent.

Reads every run of the given sweep folders (finished or still running: each is read as far as
it got) and writes what docs/results/double_descent.md shows:

* a markdown table, one row per run: the cell (arch, width, noise rate, Adam lr, seed), the
  epochs reached, the double-descent claim as ``noisescope verdict`` scores it (read on the
  clean test loss; the test error beside it: first minimum -> peak -> second minimum and the
  re-generalization gain with its SE), the noisy-label fit at the end and at the second
  minimum (benign overfitting: >= 0.99), and the largest-activation ratio (max / median |a|,
  Kubo's "large activation") of the shallowest tap at early stopping and at the end;
* ``--figure PATH``: clean test loss and test error (solid) with the noisy-label fit (dotted,
  right axis) against epoch (log scale), per (noise rate, arch), one colour per (lr, seed);
* ``--activation-figure PATH``: for each run of one cell (``--cell arch,rate,lr``), the
  large-activation ratio of every tap against epoch, beside the test loss (re-generalization).

    .venv/bin/python scripts/double_descent_search.py sweeps/kubo_dd_search \\
        --figure docs/results/figures/dd_search.png
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import pandas as pd

from noisescope import load_run
from noisescope.evidence.claims_common import _early_stop
from noisescope.evidence.claims_kubo import claim_double_descent
from noisescope.metrics import curve, select


def run_rows(sweeps: list[Path]) -> list[dict]:
    """One dict per run folder under ``SWEEP/runs``: config, curves and the claim."""
    out = []
    for sweep in sweeps:
        for path in sorted((sweep / "runs").iterdir()):
            if not (path / "config.json").exists():
                continue
            run = load_run(path)
            m, cfg = run.metrics, run.config
            if m.empty:
                continue
            claim = claim_double_descent(m)
            loss = curve(m, "dynamics", "loss", subset="test").dropna()
            noisy = curve(m, "dynamics", "acc", subset="noisy_train_obs").dropna()
            ratio = select(m, probe="signals", metric="large_act_ratio", subset="train")
            taps = list(dict.fromkeys(ratio["tap"]))
            out.append({
                "path": path, "arch": cfg.model.arch, "width": cfg.model.options.get("width"),
                "rate": cfg.noise.rate, "lr": cfg.train.lr, "seed": cfg.train.seed,
                "epochs": int(loss.index.max()), "planned": cfg.train.epochs, "claim": claim,
                "loss": loss, "error": 1 - curve(m, "dynamics", "acc", subset="test").dropna(),
                "noisy": noisy, "early_stop": _early_stop(m, None), "taps": taps,
                "ratio": {t: curve(m, "signals", "large_act_ratio", subset="train", tap=t).dropna() for t in taps},
            })
    return out


def _triple(r: dict | None) -> str:
    if not r or "peak_epoch" not in r:
        return "none"
    return (f"{r['first_min']:.3f}@{r['first_min_epoch']} -> {r['peak']:.3f}@{r['peak_epoch']} -> "
            f"{r['second_min']:.3f}@{r['second_min_epoch']}, gain {r['gain']:.3f} (SE {r['fall_se']:.3f}): "
            f"{r['status']}")


def _at(series: pd.Series, epoch: int | None) -> float:
    if series.empty or epoch is None:
        return math.nan
    idx = min(series.index, key=lambda e: (abs(int(e) - epoch), e))
    return float(series[idx])


def table(rows: list[dict]) -> str:
    """The markdown table of the module docstring."""
    head = ("| arch | width | noise | lr | seed | last probe / planned epochs | double descent | "
            "test loss: min -> peak -> min | test error: min -> peak -> min | noisy fit end (at 2nd min) | "
            "large act. ratio, shallowest tap: early stop / end |")
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    for r in sorted(rows, key=lambda r: (r["arch"], r["rate"], -r["lr"], r["seed"])):
        nums = r["claim"].numbers
        loss, err = nums.get("loss"), nums.get("error")
        at2 = (loss or {}).get("noisy_fit_at_second_min", math.nan)
        shallow = r["ratio"][r["taps"][0]] if r["taps"] else pd.Series(dtype=float)
        lines.append(
            f"| {r['arch']} | {r['width']} | {r['rate']:.0%} | {r['lr']:g} | {r['seed']} | "
            f"{r['epochs']}/{r['planned']} | {r['claim'].status} | {_triple(loss)} | {_triple(err)} | "
            f"{_at(r['noisy'], r['epochs']):.3f} ({at2:.3f}) | "
            f"{_at(shallow, r['early_stop']):.0f} / {_at(shallow, r['epochs']):.0f} |")
    return "\n".join(lines)


def plot_curves(rows: list[dict], path: Path) -> Path:
    """Clean test loss and test error (solid) with the noisy-label fit (dotted, right axis) per
    (noise rate, arch): two rows of panels per noise rate, one colour per (lr, seed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates = sorted({r["rate"] for r in rows})
    archs = sorted({r["arch"] for r in rows})
    styles = sorted({(r["lr"], r["seed"]) for r in rows}, key=lambda t: (-t[0], t[1]))
    colours = dict(zip(styles, plt.rcParams["axes.prop_cycle"].by_key()["color"], strict=False))
    fig, axes = plt.subplots(2 * len(rates), len(archs), figsize=(4.6 * len(archs), 2.9 * 2 * len(rates)),
                             squeeze=False, sharex=True)
    for i, rate in enumerate(rates):
        for j, arch in enumerate(archs):
            for row, (what, label) in enumerate((("loss", "clean test loss (nats)"), ("error", "clean test error"))):
                ax = axes[2 * i + row][j]
                twin = ax.twinx()
                for r in rows:
                    if (r["rate"], r["arch"]) != (rate, arch):
                        continue
                    c = colours[(r["lr"], r["seed"])]
                    curve_ = r[what]
                    ax.plot(curve_.index.to_numpy().clip(min=0.5), curve_.to_numpy(), color=c, lw=1.3,
                            label=f"lr {r['lr']:g}, seed {r['seed']}: {r['claim'].status}" if row == 0 else None)
                    twin.plot(r["noisy"].index.to_numpy().clip(min=0.5), r["noisy"].to_numpy(), color=c, ls=":",
                              lw=1.1)
                ax.set_xscale("log")
                twin.set_ylim(0, 1.02)
                if j == len(archs) - 1:
                    twin.set_ylabel("noisy-label fit (dotted)")
                if j == 0:
                    ax.set_ylabel(label)
                if row == 0:
                    ax.set_title(f"{arch}, {rate:.0%} symmetric noise", fontsize=10)
                    ax.legend(fontsize=7, loc="upper left")
                if 2 * i + row == 2 * len(rates) - 1:
                    ax.set_xlabel("epoch")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_activation(rows: list[dict], cell: tuple[str, float, float], path: Path) -> Path:
    """Large-activation ratio of every tap beside the test loss, for the runs of one cell."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chosen = [r for r in rows if (r["arch"], r["rate"], r["lr"]) == cell]
    if not chosen:
        raise SystemExit(f"no run of cell {cell}")
    fig, axes = plt.subplots(1, len(chosen), figsize=(5.0 * len(chosen), 3.6), squeeze=False)
    for ax, r in zip(axes[0], chosen, strict=True):
        for t in r["taps"]:
            s = r["ratio"][t]
            ax.plot(s.index.to_numpy().clip(min=0.5), s.to_numpy(), lw=1.1, label=t)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_ylabel("max / median |activation|")
        ax.set_xlabel("epoch")
        twin = ax.twinx()
        twin.plot(r["loss"].index.to_numpy().clip(min=0.5), r["loss"].to_numpy(), color="black", lw=1.6,
                  label="test loss")
        twin.set_ylabel("clean test loss (black)")
        ax.set_title(f"{r['arch']}, {r['rate']:.0%}, lr {r['lr']:g}, seed {r['seed']}", fontsize=10)
        ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sweeps", nargs="+", type=Path, help="sweep folders (each with runs/)")
    ap.add_argument("--figure", type=Path, help="write the test-loss / noisy-fit figure here")
    ap.add_argument("--activation-figure", type=Path, help="write the large-activation figure here")
    ap.add_argument("--cell", default="mlp7,0.3,0.001", help="arch,rate,lr of the activation figure")
    args = ap.parse_args()
    for s in args.sweeps:
        if not (s / "runs").is_dir():
            ap.error(f"{s} is not a sweep folder (no runs/ inside): give the folder `noisescope sweep` wrote")
    rows = run_rows(args.sweeps)
    print(table(rows))
    if args.figure:
        print(f"figure: {plot_curves(rows, args.figure)}")
    if args.activation_figure:
        arch, rate, lr = args.cell.split(",")
        print(f"figure: {plot_activation(rows, (arch, float(rate), float(lr)), args.activation_figure)}")


if __name__ == "__main__":
    main()
