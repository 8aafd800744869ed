"""The training-method leaderboard: early stopping, every training-time method
(``noisescope.methods``), iterative cleaning (``workflows.clean.iterative_clean``) and the
clean-label oracle, over seeds, with the probes' picture of where the noise went.

Input: a directory of runs written by ``scripts/robust_training.py``: ``<noise>-<method>-s<seed>``
(``method = "ce"``: cross-entropy, whose early-stopped checkpoint is the baseline),
``oracle-s<seed>`` (the same config on the true labels) and ``timings.json`` (each run's training
wall seconds; the cleaning entries name the kept round's sub-run).

Per (noise, seed), one row per model (``COLUMNS``), every model at its own early-stopping
checkpoint (the saved epoch with the best noisy-validation accuracy, the same rule as the
baseline; the oracle: its clean validation):

* ``val_acc`` (noisy validation, observed labels) and ``test_acc`` with its Wilson 95% interval
  and n (clean test); ``final_test_acc``: the method's last epoch.
* ``es_b`` / ``es_c`` / ``es_p``: McNemar's exact test against early stopping on clean test
  (b: this right, early stopping wrong).
* ``gap_closed``: ``workflows.repair.gap_closed`` (the share of the early-stopping -> oracle gap
  closed on clean test).
* ``compute``: training wall seconds / the cross-entropy run's (same noise and seed, probes
  included); ``compute_nominal``: forward-backward passes per sample as a multiple of one run
  (``methods.COMPUTE``; cleaning: 1 + retrained rounds).
* ``memorized`` / ``final_memorized``: accuracy of the reported (last) model on the noisy
  training samples against their observed (wrong) labels (the dynamics probe's
  ``noisy_train_obs``; ``curves``: the whole memorization curve). ``tail_clean`` /
  ``tail_noisy``: the reported model's per-sample share of
  centred penultimate-feature energy outside the top-C principal directions of the training
  features (C classes), averaged over clean and over noisy training samples: where in the
  spectrum the noisy labels are held.

Per (noise, seed) the recommendation is :func:`evidence.rules.recommend` over every row but
the oracle, default early stopping (the rule of every other leaderboard); the recommended model
is exported (``workflows.repair_export.export_module``: safetensors + JSON) to
``OUT/recommended/<noise>-s<seed>`` and reloaded (``load_repair``) to check its test accuracy. The summary
(``SUMMARY_COLUMNS``) gives per (noise, method) the mean test accuracy with its t-interval over
seeds (``evidence.intervals.aggregate_seeds``), the mean gap closed, the seeds with McNemar
p < 0.05 in its favour, the mean measured and the nominal compute, and whether the issue's goal
is met (gap closed >= ``GOAL_GAP[noise]`` on average, p < 0.05 in favour on every seed of at
least 3, nominal compute <= 3 runs: wall-time ratios on a shared machine move with its load).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from noisescope.evaluate import correct
from noisescope.evidence.intervals import UNIT, Accuracy, aggregate_seeds
from noisescope.evidence.paired import mcnemar
from noisescope.evidence.rules import recommend
from noisescope.io import atomic_write, read_json, write_json
from noisescope.methods import COMPUTE
from noisescope.runs.run import Run, load_run
from noisescope.taps import iter_taps
from noisescope.workflows.repair import gap_closed
from noisescope.workflows.repair_export import export_module, load_repair, model_spec
from noisescope.workflows.truncate import early_stop_epoch

COLUMNS = ["noise", "seed", "method", "kind", "epoch", "val_acc", "n_val", "test_acc", "test_low", "test_high",
           "n_test", "es_b", "es_c", "es_p", "gap_closed", "final_test_acc", "memorized", "final_memorized",
           "tail_clean", "tail_noisy", "compute", "compute_nominal"]
SUMMARY_COLUMNS = ["noise", "method", "n_seeds", "mean", "low", "high", "gap_closed", "gap_min", "seeds_sig",
                   "compute", "compute_nominal", "goal"]
#: the issue's goal: mean fraction of the early-stopping -> oracle gap closed, per noise
GOAL_GAP = {"sym40": 0.6, "pair40": 0.4, "human35": 0.4}
GOAL_COMPUTE = 3.0
ALPHA = 0.05
BOARD, SUMMARY, CURVES, DECISIONS = "board.parquet", "board_summary.parquet", "curves.parquet", "decisions.json"
EXPORT_DIR = "recommended"


def tail_shares(run: Run, epoch: int, batch_size: int = 2048) -> tuple[float, float]:
    """(clean, noisy) mean per-sample share of centred penultimate energy outside the top-C
    principal directions of the training features, for ``run``'s model at ``epoch``."""
    model = run.model(epoch)
    data = run.data
    tap = model.feature_tap
    feats = torch.cat([acts[tap].float().cpu() for _s, _z, acts in iter_taps(model, data.x_train, [tap], batch_size)])
    f = feats - feats.mean(0, keepdim=True)
    _, _, vh = torch.linalg.svd(f.double(), full_matrices=False)
    top = f.double() @ vh[: data.num_classes].T
    total = (f.double() ** 2).sum(1).clamp_min(1e-30)
    share = (1 - (top ** 2).sum(1) / total).numpy()
    wrong = (data.y_train != data.y_train_true).numpy()
    return float(share[~wrong].mean()), float(share[wrong].mean()) if wrong.any() else float("nan")


def _memorized(run: Run, epoch: int) -> float:
    c = run.curve("noisy_train_obs")
    return float(c.loc[epoch]) if epoch in c.index and c.notna().any() else float("nan")


def _once(memo: dict, key: tuple, fn: Callable, *args) -> Any:
    """``fn(*args)``, computed once per ``key`` in ``memo``."""
    if key not in memo:
        memo[key] = fn(*args)
    return memo[key]


def _correct_once(memo: dict, run: Run, epoch: int, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> np.ndarray:
    """(n,) correctness of ``run``'s model at ``epoch`` on (x, y), computed once per ``memo``."""
    key = ("correct", str(run.path), int(epoch), id(x))
    return _once(memo, key, lambda: correct(run.model(epoch), x, y, batch_size).numpy())


def _group(out: Path, timings: dict | None = None) -> tuple[dict, dict]:
    if timings is None:
        timings = read_json(out / "timings.json") if (out / "timings.json").exists() else {}
    groups: dict[tuple[str, int], dict[str, dict]] = {}
    for name, t in timings.items():
        if t["method"] == "oracle":
            continue
        groups.setdefault((t["noise"], int(t["seed"])), {})[t["method"]] = {"name": name, **t}
    oracles = {int(t["seed"]): {"name": name, **t} for name, t in timings.items() if t["method"] == "oracle"}
    return groups, oracles


def board(out: str | Path, batch_size: int = 2048, timings: dict | None = None,
          export: bool = True) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict]:
    """(COLUMNS table, SUMMARY_COLUMNS summary, memorization curves, decisions) of the runs in
    ``out`` (module docstring). Groups without a finished cross-entropy run are skipped.
    ``timings``: the ``timings.json`` entries to use instead of the file (names may be absolute
    run paths; ``seconds`` NaN when unknown); ``export=False``: nothing is written (no
    ``recommended/`` export; the decisions carry no ``export`` / ``reloaded_test_acc``)."""
    out = Path(out)
    groups, oracles = _group(out, timings)
    rows, curves, decisions = [], [], {}
    for (noise, seed), entries in sorted(groups.items()):
        if "ce" not in entries:
            continue
        base = load_run(out / entries["ce"]["name"])
        data = base.data
        x, y, xv, yv = data.x_test, data.y_test, data.x_val, data.y_val
        base_seconds = float(entries["ce"]["seconds"])
        models: dict[str, tuple[Run, int, str, float, float]] = {}  # method -> run, epoch, kind, compute, nominal
        e_es = early_stop_epoch(base)[0]
        models["early_stop"] = (base, e_es, "baseline", 1.0, 1.0)
        models["final"] = (base, max(base.checkpoints()), "baseline", 1.0, 1.0)
        for method, t in entries.items():
            if method in ("ce", "clean"):
                continue
            run = load_run(out / t["name"])
            models[method] = (run, early_stop_epoch(run)[0], "training", float(t["seconds"]) / base_seconds,
                              COMPUTE[method])
        if "clean" in entries:
            t = entries["clean"]
            path = out / t["path"] if t.get("path") else None
            run = load_run(path) if path is not None else base
            epoch = early_stop_epoch(run)[0] if path is not None else e_es
            models["clean"] = (run, epoch, "cleaning", (base_seconds + float(t["seconds"])) / base_seconds,
                               float(t["trained_runs"]))
        if seed in oracles:
            orun = load_run(out / oracles[seed]["name"])
            o_comp = float(oracles[seed]["seconds"]) / base_seconds
            models["oracle"] = (orun, early_stop_epoch(orun)[0], "oracle", o_comp, 1.0)
        memo: dict[tuple, object] = {}  # a model listed twice (same run and epoch) is measured once
        right = {m: _correct_once(memo, r, e, x, y, batch_size) for m, (r, e, *_rest) in models.items()}
        val = {m: _correct_once(memo, r, e, xv, yv, batch_size) for m, (r, e, *_rest) in models.items()}
        acc_es = right["early_stop"].mean()
        acc_or = right["oracle"].mean() if "oracle" in right else float("nan")
        for m, (run, e, kind, comp, nominal) in models.items():
            acc = Accuracy.from_correct(right[m])
            mc = mcnemar(right[m], right["early_stop"])
            final = max(run.checkpoints())
            f_right = _correct_once(memo, run, final, x, y, batch_size)
            tc, tn = _once(memo, ("tail", str(run.path), e), tail_shares, run, e, batch_size) \
                if kind != "oracle" else (float("nan"), float("nan"))
            rows.append({"noise": noise, "seed": seed, "method": m, "kind": kind, "epoch": e,
                         "val_acc": float(val[m].mean()), "n_val": int(val[m].size), "test_acc": acc.value,
                         "test_low": acc.low, "test_high": acc.high, "n_test": acc.n, "es_b": mc.b, "es_c": mc.c,
                         "es_p": mc.p_value,
                         "gap_closed": gap_closed(acc.value, acc_es, acc_or),
                         "final_test_acc": float(f_right.mean()), "memorized": _memorized(run, e),
                         "final_memorized": _memorized(run, final),
                         "tail_clean": tc, "tail_noisy": tn, "compute": comp, "compute_nominal": nominal})
            if m not in ("final", "oracle"):
                c = run.curve("noisy_train_obs")
                for epoch, v in c.items():
                    curves.append({"noise": noise, "seed": seed, "method": m, "epoch": int(epoch), "memorized": v})
        dec = recommend({m: v for m, v in val.items() if m != "oracle"}, default="early_stop")
        if not export:
            decisions[f"{noise}-s{seed}"] = {"choice": dec.choice, "status": dec.status, "line": dec.line,
                                             "test_acc": float(right[dec.choice].mean())}
            continue
        run, e = models[dec.choice][0], models[dec.choice][1]
        where = export_module(run.model(e), out / EXPORT_DIR / f"{noise}-s{seed}",
                              {"model": model_spec(run), "method": dec.choice, "epoch": int(e),
                               "source": str(run.path.relative_to(out)), "test_acc": float(right[dec.choice].mean())})
        reloaded = float(correct(load_repair(where), x, y, batch_size).numpy().mean())
        decisions[f"{noise}-s{seed}"] = {"choice": dec.choice, "status": dec.status, "line": dec.line,
                                         "export": str(where.relative_to(out)),
                                         "test_acc": float(right[dec.choice].mean()), "reloaded_test_acc": reloaded}
    table = pd.DataFrame(rows, columns=COLUMNS)
    return table, summarize(table), pd.DataFrame(curves, columns=["noise", "seed", "method", "epoch", "memorized"]), \
        decisions


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """SUMMARY_COLUMNS per (noise, method) over seeds (module docstring)."""
    out = []
    for (noise, method), g in table.groupby(["noise", "method"], sort=False):
        s = aggregate_seeds(g["test_acc"].to_numpy(), domain=UNIT)
        sig = int(((g["es_p"] < ALPHA) & (g["es_b"] > g["es_c"])).sum())
        gap = float(g["gap_closed"].mean())
        comp, nominal = float(g["compute"].mean()), float(g["compute_nominal"].max())
        goal = bool(method not in ("early_stop", "oracle") and gap >= GOAL_GAP.get(noise, 0.6)
                    and sig == len(g) and len(g) >= 3 and nominal <= GOAL_COMPUTE)
        out.append({"noise": noise, "method": method, "n_seeds": len(g), "mean": s.mean, "low": s.low,
                    "high": s.high, "gap_closed": gap, "gap_min": float(g["gap_closed"].min()),
                    "seeds_sig": sig, "compute": comp, "compute_nominal": nominal, "goal": goal})
    return pd.DataFrame(out, columns=SUMMARY_COLUMNS)


def write_board(out: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Compute :func:`board` and write ``BOARD``, ``SUMMARY``, ``CURVES`` and ``DECISIONS`` into
    ``out``; returns (table, summary)."""
    out = Path(out)
    table, summary, curves, decisions = board(out)
    atomic_write(out / BOARD, lambda p: table.to_parquet(p, index=False))
    atomic_write(out / SUMMARY, lambda p: summary.to_parquet(p, index=False))
    atomic_write(out / CURVES, lambda p: curves.to_parquet(p, index=False))
    write_json(out / DECISIONS, decisions)
    return table, summary
