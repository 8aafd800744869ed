"""Train the runs behind docs/results/robust_training.md, one after another, resumably.

Each (noise, seed, method) is one run ``OUT/<noise>-<method>-s<seed>`` of the preset
``robust_fmnist_<noise>`` with ``train.method``, ``train.seed = noise.seed = seed``; the oracle
is the same config with ``noise.model = "none"`` (cross-entropy on the true labels), one run
``OUT/oracle-s<seed>`` per seed. Runs go in
priority order (``PHASES``: cross-entropy, the oracle and ELR on every noise and seed first;
"clean" is iterative cleaning, ``workflows.clean.iterative_clean`` of the cross-entropy run, at most
2 rounds); a finished run is skipped, a killed one resumes (its time is then only the resumed part).
``OUT/timings.json`` records each run's training wall time (seconds) as it finishes. Then
``--board`` writes the leaderboard (``noisescope.workflows.methods_board``) from whatever finished.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python scripts/robust_training.py --out runs/robust
    .venv/bin/python scripts/robust_training.py --out runs/robust --board
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from noisescope.config import load_config
from noisescope.io import read_json, write_json
from noisescope.runs.lifecycle import run_experiment

NOISES = ("sym40", "pair40", "human35")
LATER = ("gce", "sce", "mixup", "rank_tail", "bootstrap_hard", "bootstrap_soft")


#: the priority order: (noises, seeds, methods) phases; a method already planned is not repeated
PHASES = (
    (("sym40",), (0,), ("ce", "oracle", "elr", "coteaching", "clean")),
    (("pair40", "human35"), (0,), ("ce", "elr")),
    (("sym40",), (0,), ("gce", "sce", "mixup", "rank_tail")),
    (("sym40",), (1, 2), ("ce", "oracle", "elr")),
    (("pair40", "human35"), (1, 2), ("ce", "elr")),
    (("sym40",), (1, 2), ("gce", "sce")),
    (NOISES, (0, 1, 2), ("clean",)),
    (NOISES, (0, 1, 2), ("coteaching",)),
    (NOISES, (0, 1, 2), LATER),
)


def plan(noises: list[str], seeds: list[int], methods: list[str] | None = None) -> list[tuple[str, int, str]]:
    """(noise, seed, method) in the priority order of ``PHASES``, restricted to ``noises``,
    ``seeds`` and ``methods`` (None: all). The oracle (no noise) is one run per seed, shared
    by the noises."""
    out = [(n, s, m) for ns, ss, ms in PHASES for n in ns for s in ss for m in ms
           if n in noises and s in seeds and (methods is None or m in methods)]
    seen, kept = set(), []
    for n, s, m in out:
        key = ("oracle", s) if m == "oracle" else (n, s, m)
        if key not in seen:
            seen.add(key)
            kept.append((n, s, m))
    return kept


def config(noise: str, seed: int, method: str, out: Path, epochs: int | None) -> object:
    name = f"oracle-s{seed}" if method == "oracle" else f"{noise}-{method}-s{seed}"
    sets = [f"train.seed={seed}", f"noise.seed={seed}", f'run.root="{out}"', f'run.name="{name}"']
    if method == "oracle":
        noise = NOISES[0]
        sets += ['noise.model="none"', "noise.rate=0.0", "noise.options={}"]
    else:
        sets += [f'train.method="{method}"']
    if epochs is not None:
        sets.append(f"train.epochs={epochs}")
    return load_config(f"robust_fmnist_{noise}", sets)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/robust_training"))
    ap.add_argument("--noises", nargs="+", default=list(NOISES))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--methods", nargs="+", default=None, help="only these (default: every method)")
    ap.add_argument("--epochs", type=int, default=None, help="override train.epochs (default: the preset's)")
    ap.add_argument("--board", action="store_true", help="write the leaderboard from the finished runs")
    ap.add_argument("--doc", type=Path, default=None, help="with --board: also write this results page")
    args = ap.parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.board:
        from noisescope.workflows.methods_board import write_board
        write_board(args.out)
        if args.doc is not None:
            write_doc(args.out, args.doc, plan(args.noises, args.seeds, args.methods))
        return
    timings_path = args.out / "timings.json"
    for noise, seed, method in plan(args.noises, args.seeds, args.methods):
        cfg = config(noise, seed, "ce" if method == "clean" else method, args.out, args.epochs)
        name = f"{noise}-clean-s{seed}" if method == "clean" else cfg.run.name
        timings = read_json(timings_path) if timings_path.exists() else {}
        if name in timings:
            continue
        extra: dict = {}
        t0 = time.perf_counter()
        if method == "clean":  # iterative cleaning of the cross-entropy run (trained first)
            from noisescope.workflows.clean import iterative_clean
            res = iterative_clean(args.out / cfg.run.name, max_rounds=2)
            extra = {"chosen": res.chosen, "trained_runs": res.trained_runs, "detector": res.detector,
                     "path": None if res.path is None else str(res.path.relative_to(args.out)),
                     "rounds": [{"round": r.round, "n_flagged": r.n_flagged, "kept": r.kept, "reason": r.reason,
                                 "path": None if r.path is None else str(r.path.relative_to(args.out))}
                                for r in res.rounds]}
        else:
            run_experiment(cfg)
        seconds = time.perf_counter() - t0
        timings = read_json(timings_path) if timings_path.exists() else {}
        timings[name] = {"seconds": seconds, "noise": noise, "seed": seed, "method": method, **extra}
        write_json(timings_path, timings)
        print(f"{name}: {seconds:.0f} s", flush=True)


HEADER = """# Training-time methods against early stopping, with the probes attached (issue 19)

Produced by `scripts/robust_training.py` (commands at the end); rewritten from whatever runs
finished. Machine: 2 CPU cores shared by ~8 jobs, torch CPU, 1 thread, niced; no GPU.

## Setup

* Data: the embedded Fashion-MNIST subset (`data.name = "fashion_mnist"`, `subset = 10000`:
  9000 training, 1000 noisy-validation samples; the full clean 10k test set). MLP 3x512, Adam
  lr 1e-3, batch 128, **40 epochs** (the cross-entropy runs memorize: 84% of the noisy samples
  fitted to their wrong labels at epoch 40 under symmetric noise); the dynamics probe every 2nd
  epoch (the memorization curve; early stopping on noisy validation, so every model is chosen
  among the even epochs). Seed s sets `train.seed` and `noise.seed`; the data subset is fixed.
* Noise (presets in the package): `robust_fmnist_sym40` (40% symmetric), `robust_fmnist_pair40`
  (40% pairflip, y -> y + 1), `robust_fmnist_human35` (`noise.model = "transition"`: 35% of
  T-shirt/pullover/coat/shirt go uniformly to the other three, 35% of sandal/sneaker/ankle boot
  to the other two; trouser, dress, bag clean; realized rate 0.243).
* Baseline: the cross-entropy run's early-stopped checkpoint. Oracle: the same config on the
  true labels, early-stopped on its (clean) validation; one per seed, shared by the noises.
* Methods (`[train] method`, hyperparameters from the papers, none tuned here, see
  docs/definitions.md "Noisy-label training methods"): `gce` (q = 0.7), `sce` (alpha 0.1,
  beta 1, A = -4), `elr` (lambda 3, beta 0.7: the paper's CIFAR-10 values), `bootstrap_soft`
  (beta 0.95), `bootstrap_hard` (beta 0.8), `mixup` (alpha 8), `coteaching` (forget rate = the
  nominal noise rate, linear ramp over T_k = 10 epochs; both networks in one process, the
  plain loop: the packed engine was not used), `rank_tail` (CE + 1 x the share of the batch's
  feature energy beyond the top C = 10 directions). DivideMix was not implemented (budget).
* Cleaning (`workflows.clean.iterative_clean`): `truncated_distance` flags (the detector with the
  best mean AUROC in docs/results/label_issues.md), removed, retrained; a second round
  re-detects on the retrained model; a round is kept only if it beats the previous model on
  noisy validation by more than one standard error; at most 2 rounds (compute <= 3 runs).
* Runs go in priority order (cross-entropy, oracle, ELR, Co-teaching, cleaning for every seed,
  noise by noise, then the other methods); what did not finish is listed at the end.
"""

NOISE_TEXT = {"sym40": "40% symmetric", "pair40": "40% pairflip", "human35": "human-like (35%, similar classes)"}


def _f(x: float, nd: int = 3) -> str:
    return "-" if x != x else f"{x:.{nd}f}"


def write_doc(out: Path, doc: Path, planned: list[tuple[str, int, str]]) -> None:
    """The results page from OUT's board files (whatever finished) and two figures."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from noisescope.metrics import save_figure
    from noisescope.workflows import methods_board as mb

    table = pd.read_parquet(out / mb.BOARD)
    summary = pd.read_parquet(out / mb.SUMMARY)
    curves = pd.read_parquet(out / mb.CURVES)
    decisions = read_json(out / mb.DECISIONS)
    timings = read_json(out / "timings.json")
    fig_dir = doc.parent / "figures"
    lines = [HEADER.rstrip(), ""]
    lines += ["## The goal, noise by noise", "",
              "Goal (issue 19): a method closes >= 60% of the early-stopping -> oracle gap under 40% symmetric "
              "noise and >= 40% under pairflip and human-like noise, McNemar p < 0.05 in its favour on every "
              "seed, at <= 3x the compute of one run. *Gap closed*: mean over seeds (min); *sig*: seeds with "
              "p < 0.05 in favour of the method / seeds.", "",
              "| noise | seeds | early stopping | oracle | best method | its test acc | gap closed (min) | sig "
              "| compute | goal met |", "|---|---|---|---|---|---|---|---|---|---|"]
    for noise in NOISES:
        s = summary[summary.noise == noise].set_index("method")
        if "early_stop" not in s.index:
            lines.append(f"| {NOISE_TEXT[noise]} | 0 | not run | | | | | | | |")
            continue
        cand = s[~s.index.isin(["early_stop", "final", "oracle"])]
        es, orc = s.loc["early_stop"], s.loc["oracle"] if "oracle" in s.index else None
        best = cand["gap_closed"].idxmax() if len(cand) else None
        b = cand.loc[best] if best else None
        lines.append(
            f"| {NOISE_TEXT[noise]} | {int(es.n_seeds)} | {_f(es['mean'])} "
            f"| {_f(orc['mean']) if orc is not None else '-'} "
            f"| {best or '-'} | {_f(b['mean']) if b is not None else '-'} "
            f"| {_f(b.gap_closed, 2) + ' (' + _f(b.gap_min, 2) + ')' if b is not None else '-'} "
            f"| {int(b.seeds_sig) if b is not None else '-'}/{int(b.n_seeds) if b is not None else '-'} "
            f"| {_f(b.compute_nominal, 0) if b is not None else '-'}x "
            f"| {'yes' if b is not None and b.goal else 'no'} |")
    lines += ["", "## Leaderboard (mean over seeds)", "",
              "Test accuracy: mean over seeds with its 95% t-interval (clean test, n = 10000 per seed). Every "
              "model at its own early-stopping checkpoint (best noisy-validation epoch); `final` is the "
              "cross-entropy run's last epoch. Compute: training wall time / the cross-entropy run's (same "
              "noise and seed, probes included; the machine's load changed 2-3x during the grid, so these "
              "ratios are rough); nominal: passes per sample as a multiple of one run (the goal uses it).", ""]
    for noise in NOISES:
        s = summary[summary.noise == noise]
        if s.empty:
            continue
        lines += [f"### {NOISE_TEXT[noise]}", "",
                  "| method | seeds | test acc [95% CI] | gap closed (min) | sig | compute (nominal) | goal |",
                  "|---|---|---|---|---|---|---|"]
        for _, r in s.sort_values("mean", ascending=False).iterrows():
            ci = f"{_f(r['mean'])} [{_f(r.low)}, {_f(r.high)}]"
            lines.append(f"| {r.method} | {int(r.n_seeds)} | {ci} | {_f(r.gap_closed, 2)} ({_f(r.gap_min, 2)}) "
                         f"| {int(r.seeds_sig)}/{int(r.n_seeds)} | {_f(r.compute, 2)} ({_f(r.compute_nominal, 0)}) "
                         f"| {'yes' if r.goal else 'no'} |")
        lines.append("")
    lines += ["## Every run", "",
              "Per seed: clean-test accuracy with its Wilson 95% interval (n = 10000), McNemar's exact test "
              "against early stopping of the same seed (b: this right and early stopping wrong, c: the "
              "reverse), gap closed, the last epoch's test accuracy, and where the noise went: *memorized* "
              "= accuracy on the noisy training samples against their wrong labels at the reported epoch "
              "(*last*: at the last epoch); *tail clean / noisy* = mean share of a training sample's centred "
              "penultimate energy outside the top-10 principal directions (reported model).", "",
              "| noise | seed | method | epoch | test acc [95% CI] | b / c | p | gap closed | last-epoch acc "
              "| memorized (last) | tail clean / noisy | compute |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for _, r in table.iterrows():
        lines.append(
            f"| {r.noise} | {r.seed} | {r.method} | {r.epoch} | {_f(r.test_acc)} [{_f(r.test_low)}, {_f(r.test_high)}] "
            f"| {r.es_b} / {r.es_c} | {r.es_p:.2g} | {_f(r.gap_closed, 2)} | {_f(r.final_test_acc)} "
            f"| {_f(r.memorized, 2)} ({_f(r.final_memorized, 2)}) | {_f(r.tail_clean, 2)} / {_f(r.tail_noisy, 2)} "
            f"| {_f(r.compute, 2)} |")
    lines += ["", "## Recommendation (the rule of every leaderboard)", "",
              "`evidence.rules.recommend` over every model but the oracle on noisy validation (n = 1000), "
              "default early stopping; the recommended model is exported to `OUT/recommended/<noise>-s<seed>` "
              "(safetensors + JSON) and reloaded.", "",
              "| setting | decision | exported test acc | reloaded |", "|---|---|---|---|"]
    for k, d in decisions.items():
        lines.append(f"| {k} | {d['line']} | {_f(d['test_acc'], 4)} | {_f(d['reloaded_test_acc'], 4)} |")
    cleaning = {k: v for k, v in timings.items() if v["method"] == "clean"}
    if cleaning:
        lines += ["", "## Iterative cleaning, round by round", "",
                  "Flagged: training samples removed (of 9000). Test accuracy of the round's early-stopped "
                  "model, reported only (the rule reads noisy validation).", "",
                  "| setting | round | flagged | test acc | kept | reason |", "|---|---|---|---|---|---|"]
        for k, v in cleaning.items():
            for r in v["rounds"][1:]:
                acc = float("nan")
                if r["path"]:
                    sub = out / r["path"]
                    mode, label = sub.name.split("-")[0], sub.name.split("-")[1]
                    comp = pd.read_parquet(sub.parent / f"comparison-{label}.parquet")
                    hit = comp[comp.model == f"cleaned_{mode}_early_stop"]
                    acc = float(hit.test_acc.iloc[0]) if len(hit) else acc
                lines.append(f"| {k} | {r['round']} | {r['n_flagged']} | {_f(acc)} | {'yes' if r['kept'] else 'no'} "
                             f"| {r['reason']} |")
    # figures: memorization curves (seed 0) and tail shares
    noises = [n for n in NOISES if (curves.noise == n).any()]
    if noises:
        fig, axes = plt.subplots(1, len(noises), figsize=(5 * len(noises), 3.6), squeeze=False)
        for ax, noise in zip(axes[0], noises, strict=True):
            c = curves[(curves.noise == noise) & (curves.seed == curves[curves.noise == noise].seed.min())]
            for m, g in c.groupby("method"):
                if m == "clean" and g.memorized.equals(c[c.method == "early_stop"].memorized.set_axis(g.index)):
                    continue  # no cleaning round kept: the cross-entropy run itself
                label = "cross-entropy" if m == "early_stop" else m
                ax.plot(g.epoch, g.memorized, label=label, lw=2.5 if m == "early_stop" else 1.2)
            ax.set_title(f"{NOISE_TEXT[noise]}: memorization")
            ax.set_xlabel("epoch")
            ax.set_ylabel("noisy samples fitted to wrong label")
            ax.set_ylim(0, 1)
        axes[0][0].legend(fontsize=7)
        fig.tight_layout()
        save_figure(fig, fig_dir / "robust_training_memorization.png")
        fig, axes = plt.subplots(1, len(noises), figsize=(5 * len(noises), 3.6), squeeze=False)
        for ax, noise in zip(axes[0], noises, strict=True):
            t = table[(table.noise == noise) & (table.kind != "oracle")].groupby("method", sort=False)
            t = t[["tail_clean", "tail_noisy"]].mean()
            pos = range(len(t))
            ax.bar([i - 0.2 for i in pos], t.tail_clean, 0.4, label="clean samples")
            ax.bar([i + 0.2 for i in pos], t.tail_noisy, 0.4, label="noisy samples")
            ax.set_xticks(list(pos), list(t.index), rotation=45, ha="right", fontsize=7)
            ax.set_title(f"{NOISE_TEXT[noise]}: energy beyond top-C", fontsize=9)
        axes[0][0].set_ylabel("tail share (reported model)")
        axes[0][0].legend(fontsize=7)
        fig.tight_layout()
        save_figure(fig, fig_dir / "robust_training_tail.png")
        lines += ["", "## Figures", "",
                  "Memorization curves (seed 0; `early_stop` is the cross-entropy run's whole curve):", "",
                  "![memorization](figures/robust_training_memorization.png)", "",
                  "Where the noise sits in the penultimate spectrum (mean over seeds; `final` is the memorized "
                  "cross-entropy model):", "", "![tail shares](figures/robust_training_tail.png)"]
    done = set(timings)
    missing = []
    for n, s_, m in planned:
        name = f"oracle-s{s_}" if m == "oracle" else f"{n}-{m}-s{s_}"
        if name not in done:
            missing.append(name)
    lines += ["", "## Not finished", ""]
    if missing:
        lines.append(f"{len(missing)} planned runs did not finish in the session's CPU budget (method: seeds):")
        lines.append("")
        for noise in NOISES:
            left: dict[str, list[str]] = {}
            for n, s_, m in planned:
                name = f"oracle-s{s_}" if m == "oracle" else f"{n}-{m}-s{s_}"
                if n == noise and name in missing and not (m == "oracle" and noise != NOISES[0]):
                    left.setdefault(m, []).append(str(s_))
            if left:
                lines.append(f"* {NOISE_TEXT[noise]}: " + "; ".join(f"{m}: {', '.join(v)}" for m, v in left.items()))
    else:
        lines.append("Every planned run finished.")
    lines.append("")
    lines += ["## Commands", "", "```",
              "OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python scripts/robust_training.py --out runs/robust_training",
              ".venv/bin/python scripts/robust_training.py --out runs/robust_training --board \\",
              "    --doc docs/results/robust_training.md", "```", ""]
    doc.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
