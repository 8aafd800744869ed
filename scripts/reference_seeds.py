"""Reference numbers over seeds: a preset run with several (noise seed, training seed) pairs,
then `truncate` and `verdict` on each, aggregated as mean, sample sd and t-interval over seeds.

The README's demo numbers and docs/results/scorecards.md come from:

    python scripts/reference_seeds.py fmnist_demo --seeds 0 1 2 --set 'data.options={source="embedded"}'
    python scripts/reference_seeds.py fmnist_demo --seeds 0 1 2 --set 'data.options={source="embedded"}' \\
        --set 'noise.model="pairflip"' --name pairflip

``source="embedded"`` pins the class-balanced subset shipped with noisescope (what a fresh clone
trains on), also where the full Fashion-MNIST is installed. Runs go to ``runs/reference/``;
the markdown table is printed and written to ``runs/reference/<name>.md``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from noisescope.config import load_config
from noisescope.evidence.intervals import aggregate_seeds
from noisescope.runs.lifecycle import run_experiment
from noisescope.runs.run import load_run
from noisescope.workflows.truncate import truncate_run
from noisescope.workflows.verdict import run_verdict

HEADLINE = [
    ("early_stop_test_acc", "clean test at early stopping"),
    ("final_test_acc", "clean test, final (memorized)"),
    ("final_noisy_train_obs_acc", "noisy labels memorized (train acc vs observed)"),
    ("best_val_epoch", "early-stopping epoch"),
    ("truncated_test_acc", "clean test, truncated final model"),
    ("truncated_d", "truncation d (1se rule on noisy validation)"),
    ("raw_input_test_acc", "clean test, linear probe on raw pixels"),
    ("seconds", "wall time of the run (s)"),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("preset")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--name", default=None)
    ap.add_argument("--root", default="runs/reference")
    args = ap.parse_args()
    name = args.name or args.preset
    per_seed = []
    for seed in args.seeds:
        cfg = load_config(args.preset, [*args.overrides, f"noise.seed={seed}", f"train.seed={seed}",
                                        f"run.root={args.root}", f"run.name={name}-s{seed}"])
        t0 = time.perf_counter()
        path = run_experiment(cfg)
        seconds = time.perf_counter() - t0
        rep = truncate_run(path)
        verdict = run_verdict(path)
        s = dict(load_run(path).summary)
        table = rep.comparison.set_index("method")
        s.update(truncated_test_acc=float(table.loc["truncated_final", "test_acc"]),
                 truncated_d=int(table.loc["truncated_final", "d"]),
                 raw_input_test_acc=float(table.loc["raw_input", "test_acc"]) if "raw_input" in table.index else None,
                 seconds=seconds, truncation_verdict=rep.verdict.reason,
                 claims={c["key"]: c["status"] for c in verdict.to_json()["claims"]},
                 n_test=int(s.get("n_test", 0)), threads=torch.get_num_threads())
        per_seed.append(s)
        print(f"seed {seed}: {json.dumps({k: s.get(k) for k, _ in HEADLINE})}", flush=True)
    seeds = ", ".join(map(str, args.seeds))
    lines = [f"| {name}: {len(per_seed)} seeds ({seeds}) | mean | sd | 95% t-interval | per seed |",
             "| --- | --- | --- | --- | --- |"]
    for key, label in HEADLINE:
        vals = [s.get(key) for s in per_seed]
        vals = [float(v) for v in vals if v is not None]
        agg = aggregate_seeds(vals)
        lines.append(f"| {label} | {agg.mean:.3f} | {agg.std:.3f} | [{agg.low:.3f}, {agg.high:.3f}] | "
                     f"{', '.join(f'{v:.3f}' for v in vals)} |")
    lines.append("")
    lines.append(f"n_test = {per_seed[0]['n_test']}; torch threads {per_seed[0]['threads']}.")
    lines.append("Truncation verdicts: " + "; ".join(s["truncation_verdict"] for s in per_seed))
    keys = list(per_seed[0]["claims"])
    lines.append("")
    lines.append("| claim | " + " | ".join(f"seed {s}" for s in args.seeds) + " |")
    lines.append("| --- |" + " --- |" * len(args.seeds))
    for k in keys:
        lines.append(f"| {k} | " + " | ".join(s["claims"].get(k, "-") for s in per_seed) + " |")
    text = "\n".join(lines) + "\n"
    out = Path(args.root) / f"{name}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    (Path(args.root) / f"{name}.json").write_text(json.dumps(per_seed, indent=2, default=str))
    print(text)


if __name__ == "__main__":
    main()
