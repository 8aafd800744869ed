"""Train the runs behind docs/results/robust_training.md, one after another, resumably.

Each (noise, seed, method) is one run ``OUT/<noise>-<method>-s<seed>`` of the preset
``robust_fmnist_<noise>`` with ``train.method``, ``train.seed = noise.seed = seed``; the oracle
is the same config with ``noise.model = "none"`` (cross-entropy on the true labels), one run
``OUT/oracle-s<seed>`` per seed. Runs go in
priority order (every noise's early stopping, oracle, ELR, Co-teaching and iterative cleaning
(``runs.clean.iterative_clean`` of the cross-entropy run, at most 2 rounds) first); a finished
run is skipped, a killed one resumes (its time is then only the resumed part).
``OUT/timings.json`` records each run's training wall time (seconds) as it finishes. Then
``--board`` writes the leaderboard (``noisescope.runs.methods_board``) from whatever finished.

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
FIRST = ("ce", "oracle", "elr", "coteaching", "clean")
LATER = ("gce", "sce", "mixup", "rank_tail", "bootstrap_hard", "bootstrap_soft")


def plan(noises: list[str], seeds: list[int], first: list[str], later: list[str]) -> list[tuple[str, int, str]]:
    """(noise, seed, method) in priority order: ``first`` methods for every seed, noise by noise,
    then ``later`` ones. The oracle (no noise) is one run per seed, shared by the noises."""
    out = [(n, s, m) for n in noises for s in seeds for m in first]
    out += [(n, s, m) for n in noises for s in seeds for m in later]
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
    ap.add_argument("--first", nargs="+", default=list(FIRST))
    ap.add_argument("--later", nargs="*", default=list(LATER))
    ap.add_argument("--epochs", type=int, default=None, help="override train.epochs (default: the preset's)")
    ap.add_argument("--board", action="store_true", help="write the leaderboard from the finished runs")
    args = ap.parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.board:
        from noisescope.runs.methods_board import write_board
        write_board(args.out)
        return
    timings_path = args.out / "timings.json"
    for noise, seed, method in plan(args.noises, args.seeds, args.first, args.later):
        cfg = config(noise, seed, "ce" if method == "clean" else method, args.out, args.epochs)
        name = f"{noise}-clean-s{seed}" if method == "clean" else cfg.run.name
        timings = read_json(timings_path) if timings_path.exists() else {}
        if name in timings:
            continue
        extra: dict = {}
        t0 = time.perf_counter()
        if method == "clean":  # iterative cleaning of the cross-entropy run (trained first)
            from noisescope.runs.clean import iterative_clean
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


if __name__ == "__main__":
    main()
