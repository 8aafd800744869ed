"""The recorded Malignant Tail run: Fashion-MNIST, 10k-sample subset, 3x512 MLP, Adam.

Two noise settings, one seed each by default:
* 40% symmetric noise (stochastic): trained until the noisy training labels are memorized;
  then the converged model, early stopping (best noisy-validation epoch), spectral truncation
  with d from noisy validation, the probe on every tap and on the raw inputs are compared on
  the clean test set;
* 30% pairflip noise (systematic): the same, to compare how much the effective rank of the
  features grows while memorizing.

Only noisy validation chooses anything (epoch, d, tap). The printed output is also written to
``docs/results/malignant_tail.md``. Usage::

    python scripts/malignant_tail_fmnist.py [--seeds 0] [--max-epochs 150] [--threads 2]
"""

from __future__ import annotations

import argparse
import copy
import io
import os
import sys
import time
from contextlib import redirect_stdout
from pathlib import Path

import pandas as pd
import torch

from noisescope.config import TrainConfig
from noisescope.data import load_dataset, normalize
from noisescope.data.noisy import make_noisy_dataset
from noisescope.models import build_model
from noisescope.probes.dynamics import DynamicsProbe, early_stop_update
from noisescope.spectral.compare import compare_truncation, summarize_seeds
from noisescope.spectral.rank import effective_rank
from noisescope.spectral.stats import FeatureStats
from noisescope.taps import feature_source
from noisescope.training.loop import Trainer

OUT = Path(__file__).resolve().parents[1] / "docs" / "results" / "malignant_tail.md"


class _MemorizedStop(Exception):
    pass


def effective_ranks(model, data, batch_size: int = 2048) -> dict[str, float]:
    """Effective rank of every tap's training features (one streaming pass)."""
    taps = list(model.taps())
    stats: dict[str, FeatureStats] = {}
    for _sl, acts in feature_source(model, taps, batch_size)(data.x_train):
        for t in taps:
            stats.setdefault(t, FeatureStats(acts[t].shape[1])).update(acts[t])
    return {t: effective_rank(s.spectrum().eigvals) for t, s in stats.items()}


def run_one(noise: str, rate: float, seed: int, max_epochs: int, memorized: float, er_every: int) -> dict:
    ds = load_dataset("fashion_mnist", subset=10_000, seed=seed)
    data, _ = normalize(make_noisy_dataset(ds, noise, rate=rate, val_fraction=0.1, seed=seed))
    torch.manual_seed(seed)
    model = build_model("mlp", data.input_shape, data.num_classes, widths=[512, 512, 512])
    cfg = TrainConfig(optimizer="adam", lr=1e-3, batch_size=128, epochs=max_epochs, seed=seed, device="cpu")
    state = {"best": None, "best_epoch": 0, "best_weights": None, "er": {}, "last": 0, "acc": {}}

    def on_epoch(report) -> None:
        acc = {r.subset: r.value for r in report.rows if r.probe == "dynamics" and r.metric == "acc"}
        e = report.epoch
        state["last"] = e
        print(f"[{noise} {rate:g} seed {seed}] epoch {e}: memorized {acc.get('noisy_train_obs', 0):.3f} "
              f"val {acc.get('val', 0):.3f} test {acc.get('test', 0):.3f}", file=sys.stderr, flush=True)
        state["acc"][e] = acc
        best = early_stop_update(state["best"], e, acc.get("val", float("nan")))
        if best != state["best"]:  # early stopping, the one rule (noisescope.probes.dynamics)
            state.update(best=best, best_epoch=e, best_weights=copy.deepcopy(model.state_dict()))
        if e % er_every == 0:
            state["er"][e] = effective_ranks(model, data)
        if e > 0 and acc.get("noisy_train_obs", 0) >= memorized:
            state["er"][e] = effective_ranks(model, data)
            raise _MemorizedStop

    trainer = Trainer(model, data, cfg, probes=[DynamicsProbe()], probe_at=list(range(max_epochs + 1)),
                      on_epoch=on_epoch)
    t0 = time.perf_counter()
    try:
        trainer.fit()
    except _MemorizedStop:
        pass
    final_epoch = state["last"]
    if final_epoch not in state["er"]:
        state["er"][final_epoch] = effective_ranks(model, data)
    train_s = time.perf_counter() - t0
    early = build_model("mlp", data.input_shape, data.num_classes, widths=[512, 512, 512])
    early.load_state_dict(state["best_weights"])
    early.eval()
    model.eval()
    t1 = time.perf_counter()
    table = compare_truncation(model, data, early, final_epoch=final_epoch, early_epoch=state["best_epoch"])
    cmp_s = time.perf_counter() - t1
    return {"noise": noise, "rate": rate, "seed": seed, "data": data, "table": table, "state": state,
            "final_epoch": final_epoch, "train_s": train_s, "compare_s": cmp_s}


def report(res: dict) -> None:
    st = res["state"]
    fe, be = res["final_epoch"], st["best_epoch"]
    acc = st["acc"]
    print(f"\n## {res['noise']} {res['rate']:.0%} noise, seed {res['seed']}")
    print(f"realized noise rate {float(res['data'].noise_mask.double().mean()):.3f}; "
          f"trained {fe} epochs in {res['train_s']:.0f} s (stopped when noisy-label memorization "
          f"reached the threshold or at the epoch limit); comparison {res['compare_s']:.0f} s")
    nan = float("nan")
    print(f"memorization (noisy train vs observed label): epoch {be}: {acc[be].get('noisy_train_obs', nan):.3f}"
          f", epoch {fe}: {acc[fe].get('noisy_train_obs', nan):.3f}")
    with pd.option_context("display.width", 120, "display.max_columns", 10):
        print(res["table"].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    er = st["er"]
    epochs = sorted(er)
    taps = list(er[epochs[0]])
    print("effective rank of training features (covariance eigenvalues) by epoch:")
    print("epoch " + " ".join(f"{t:>8}" for t in taps))
    for e in epochs:
        mark = "  <- early stop (best noisy val)" if e == be else ("  <- final" if e == fe else "")
        print(f"{e:5d} " + " ".join(f"{er[e][t]:8.1f}" for t in taps) + mark)


def nearest(er: dict, epoch: int) -> dict:
    return er[min(er, key=lambda e: abs(e - epoch))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0", help="comma-separated seeds")
    ap.add_argument("--max-epochs", type=int, default=150)
    ap.add_argument("--memorized", type=float, default=0.95, help="stop when noisy-label train acc >= this")
    ap.add_argument("--er-every", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--settings", default="symmetric:0.4,pairflip:0.3", help="noise:rate pairs")
    ap.add_argument("--out", default=str(OUT), help="markdown file for the printed output")
    ap.add_argument("--no-write", action="store_true", help="do not write the markdown file")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    seeds = [int(s) for s in a.seeds.split(",")]
    buf = io.StringIO()

    class Tee(io.TextIOBase):
        def write(self, s: str) -> int:
            sys.__stdout__.write(s)
            sys.__stdout__.flush()
            return buf.write(s)

    with redirect_stdout(Tee()):
        print(f"# Malignant Tail: recorded run (Fashion-MNIST)\n\ncommand: `python scripts/malignant_tail_fmnist.py "
              f"--seeds {a.seeds} --max-epochs {a.max_epochs} --threads {a.threads} --settings {a.settings}`  ")
        print(f"machine: {os.cpu_count()}-core CPU container (shared), torch {torch.__version__}, "
              f"{a.threads} threads, no GPU  ")
        print("setup: 10k class-balanced training subset (9k train / 1k noisy validation), full clean test set "
              "(10k), MLP 784-512-512-512-10 (ReLU), Adam lr 1e-3, batch 128. ")
        print("d, tap and the early-stopping epoch are all chosen on noisy validation.\n")
        print("```")
        results = {}
        settings = [(k, float(v)) for k, v in (p.split(":") for p in a.settings.split(","))]
        for noise, rate in settings:
            frames = []
            for seed in seeds:
                res = run_one(noise, rate, seed, a.max_epochs, a.memorized, a.er_every)
                report(res)
                frames.append(res["table"])
                results[(noise, seed)] = res
            if len(seeds) > 1:
                print(f"\nmean and spread over seeds {seeds} ({noise}):")
                print(summarize_seeds(frames).to_string(index=False, float_format=lambda v: f"{v:.4f}"))
        print("\n## headline numbers")
        for noise, _rate in settings:
            for seed in seeds:
                res = results[(noise, seed)]
                t = res["table"].set_index("method")
                st = res["state"]
                er = st["er"]
                e_early, e_final = st["best_epoch"], res["final_epoch"]
                feat = list(er[e_final])[-1]
                acc = t["test_acc"]
                gain = 100 * (acc["truncated_final"] - acc["final"])
                gain_tap = 100 * (acc["probe_best_tap"] - acc["final"])
                print(f"{noise:9s} seed {seed}: final {acc['final']:.4f} | early stop {acc['early_stop']:.4f} | "
                      f"truncated final {acc['truncated_final']:.4f} (d={t.loc['truncated_final', 'd']}, "
                      f"{gain:+.1f} pts) | best-tap probe {acc['probe_best_tap']:.4f} "
                      f"({t.loc['probe_best_tap', 'tap']}, {gain_tap:+.1f} pts) | raw input {acc['raw_input']:.4f}")
                print(f"{'':9s}         effective rank of {feat}: epoch {e_early} (early stop) "
                      f"{nearest(er, e_early)[feat]:.1f} -> epoch {e_final} (final) {er[e_final][feat]:.1f} "
                      f"(x{er[e_final][feat] / nearest(er, e_early)[feat]:.2f})")
        print("```")
    if not a.no_write:
        from noisescope.io import atomic_write

        atomic_write(Path(a.out), lambda p: p.write_text(buf.getvalue()))
        print(f"written to {a.out}")


if __name__ == "__main__":
    main()
