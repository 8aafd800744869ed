"""Which labels of a stored run are wrong: every detector of :mod:`noisescope.detect` on the
run's training set, in one ranked table (``noisescope label-issues RUN``).

Detectors and where their inputs come from (none reads the true labels or the noise mask):

* ``truncated_distance``, ``knn``, ``fine``, ``tail_margin``, ``truncated_margin``: the
  penultimate features phi (and the head) of the chosen checkpoint (``checkpoint="early"``
  by default: the saved epoch with the best noisy-validation accuracy; ``"final"``; or an
  epoch), through :class:`~noisescope.detect.LabelIssueDetector`'s features path; ``d="auto"``
  is chosen on the run's noisy-validation split (observed labels).
* ``disagreement``: 1 - p(observed label) of the early-stopped model; flag argmax != label.
* ``aum``: minus the observed-label margin averaged over every recorded epoch >= 1 of the
  run's ``margins`` record (written by the dynamics probe); ``aum_early``: the same over the
  epochs 1..early stopping. Plain mean when the recorded epochs are consecutive, else the
  time average of the piecewise-linear curve. Flag: average margin <= 0.
* ``first_fit``: the first recorded epoch from which a sample stays fitted; flag: fitted only
  after the early-stopping epoch (never-fitted samples included).
* ``cleanlab``: cleanlab's self-confidence label quality (``1 - quality``) and
  ``find_label_issues`` on the early-stopped model's probabilities (in-sample: the model saw
  these samples, but had not memorized them yet). Its score equals ``disagreement``'s by
  definition; only the flags differ. Needs cleanlab.
* ``cleanlab_cv`` (``cleanlab_cv=K``): cleanlab on K-fold cross-validated probabilities of the
  run's own architecture and training config, trained with noisescope's :class:`Trainer` on
  the other folds for the run's early-stopping epoch count (stratified folds seeded with
  ``seed``, the model seeded with ``train.seed``); the folds' training is timed.
* ``consensus`` (**the default ranking and the default flags**): the mean percentile rank (ties
  averaged) over the *distinct* rankings among the computed detectors, flagged by at least half
  of those detectors (:func:`~noisescope.workflows.label_issues_scores.consensus_members`: ``cleanlab``
  in-sample is ``disagreement``'s ranking and counts once, as ``disagreement``; ``cleanlab_cv`` is
  a peer beside the consensus, never in it). The table is ranked by it unless ``rank_by`` names a
  detector.

Default detectors (``methods=None``): ``DEFAULT_METHODS`` = truncated_distance, disagreement,
aum_early: the early-stopped state only, read from what the run already recorded (the
``margins`` record up to early stopping) plus one forward pass of the early-stopped checkpoint
(its logits and features together), so the default costs a few percent of the training run
and does not degrade when the run trains on past early stopping (``aum`` over all epochs and
``first_fit`` do). ``methods="all"`` adds knn, fine, tail_margin, truncated_margin, aum,
first_fit and cleanlab (when installed).

Outputs, written atomically: ``RUN/label_issues.parquet`` (rank, index = row of the run's
training split, observed, predicted = the early-stopped model's argmax, ``score_<method>``
and ``flag_<method>`` for every method) and ``RUN/label_issues.json`` (settings, chosen
epochs and d, seconds per detector, and, where the run's true labels are known, the
:func:`~noisescope.detect.evaluate_scores` table: AUROC, AP, precision / recall / F1 at each
detector's own flags and at the realized noise rate, estimated vs realized noise rate).
The mask is read only after every score is computed. ``cleanlab_cv`` is written to its own
files, ``RUN/label_issues_cleanlab_cv.parquet`` / ``.json``, so ``--cleanlab-cv`` neither changes
the default ranking nor overwrites it with another.

The detectors' steps are in :mod:`noisescope.workflows.label_issues_scores`, ``cleanlab_cv``'s
cross-validated training in :mod:`noisescope.workflows.label_issues_cv`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from noisescope.data.base import NoisyDataset
from noisescope.detect.evaluate import evaluate_scores, finite_scores
from noisescope.evaluate import predict_logits
from noisescope.io import atomic_write, jsonable, write_json
from noisescope.runs.run import Run, load_run
from noisescope.training.loop import resolve_device
from noisescope.workflows.label_issues_cv import fold_trainer, score_cleanlab_cv
from noisescope.workflows.label_issues_scores import (
    BESIDE,
    SAME_RANKING,
    Progress,
    Scoring,
    consensus,
    consensus_members,
    features_and_logits,
    margins_of,
    resolve_checkpoint,
    score_cleanlab,
    score_disagreement,
    score_dynamics,
    score_features,
)

__all__ = ["BESIDE", "COMMAND", "CV_JSON", "CV_PARQUET", "DEFAULT_METHODS", "DYNAMICS_METHODS", "FEATURE_METHODS",
           "FLAG_RULES", "JSON", "PARQUET", "RUN_METHODS", "SAME_RANKING", "SYNTHETIC_NOISE",
           "LabelIssueResult", "Progress", "cleanlab_available", "consensus", "consensus_members",
           "features_and_logits", "find_label_issues", "flagged_mask", "fold_trainer", "margins_of",
           "read_label_issues", "resolve_checkpoint", "run_seconds"]

FEATURE_METHODS = ("truncated_distance", "knn", "fine", "tail_margin", "truncated_margin")
DYNAMICS_METHODS = ("aum", "aum_early", "first_fit")
RUN_METHODS = (*FEATURE_METHODS, "disagreement", *DYNAMICS_METHODS, "cleanlab", "cleanlab_cv")
#: computed when no method is named: the run's records plus one early-stopped forward pass
DEFAULT_METHODS = ("truncated_distance", "disagreement", "aum_early")
#: each method's own flag rule, in words (its flagged fraction is its noise-rate estimate)
FLAG_RULES = {
    "truncated_distance": "nearer another class mean",
    "knn": "most of k neighbours differ",
    "fine": "low mode of a 2-GMM",
    "tail_margin": "tail carries > 1/2 margin",
    "truncated_margin": "top-d margin < 0",
    "disagreement": "prediction != label",
    "aum": "mean margin <= 0, all epochs",
    "aum_early": "mean margin <= 0 to early stop",
    "first_fit": "fitted after early stop",
    "cleanlab": "find_label_issues",
    "cleanlab_cv": "find_label_issues (CV)",
    "consensus": ">= half of the detectors",
}
#: noise models whose mask is injected by noisescope (``file`` labels are real annotators')
SYNTHETIC_NOISE = ("symmetric", "pairflip", "transition", "instance")
PARQUET = "label_issues.parquet"
JSON = "label_issues.json"
CV_PARQUET = "label_issues_cleanlab_cv.parquet"
CV_JSON = "label_issues_cleanlab_cv.json"
COMMAND = "noisescope label-issues RUN"


@dataclass
class LabelIssueResult:
    """What :func:`find_label_issues` computed.

    Attributes:
        table: the ranked table (most suspicious first; columns in the module docstring;
            ``cleanlab_cv`` is not in it: see ``cv_table``).
        scores / flags: method -> (N,) float64 scores / bool flags (``consensus`` and
            ``cleanlab_cv`` included).
        evaluation: ``evaluate_scores`` rows (plus ``seconds`` and ``cost_seconds``) where the
            true labels are known, else None.
        info: the JSON written beside the table (settings, epochs, d, seconds, notes).
        path: the run directory.
        skipped: method -> why it was not computed.
        cv_table: ``cleanlab_cv``'s own ranked table (written to ``CV_PARQUET``), or None.
    """

    table: pd.DataFrame
    scores: dict[str, np.ndarray]
    flags: dict[str, np.ndarray]
    evaluation: pd.DataFrame | None
    info: dict[str, Any]
    path: Path
    skipped: dict[str, str] = field(default_factory=dict)
    cv_table: pd.DataFrame | None = None

    @property
    def methods(self) -> list[str]:
        return [m for m in self.scores if m != "consensus"]

    @property
    def consensus_of(self) -> list[str]:
        """The detectors the consensus averages (the distinct rankings)."""
        return list(self.info.get("consensus_of", []))


def cleanlab_available() -> bool:
    """Whether cleanlab is installed (found, not imported: importing it costs seconds)."""
    from importlib.util import find_spec

    return find_spec("cleanlab") is not None


def _check_methods(methods: Sequence[str] | str | None, cleanlab_cv: int) -> tuple[list[str], bool]:
    """(methods in RUN_METHODS order, whether they were asked for explicitly): None or [] ->
    ``DEFAULT_METHODS``; ``"all"`` -> every method; ``cleanlab_cv`` added when ``cleanlab_cv``."""
    if cleanlab_cv < 0 or cleanlab_cv == 1:
        raise ValueError(f"cleanlab_cv must be 0 (off) or a number of folds >= 2, got {cleanlab_cv}")
    if methods is None or (not isinstance(methods, str) and list(methods) == []):
        return [m for m in RUN_METHODS if m in DEFAULT_METHODS or (m == "cleanlab_cv" and cleanlab_cv)], False
    if methods == "all" or (not isinstance(methods, str) and list(methods) == ["all"]):
        chosen = [m for m in RUN_METHODS if m != "cleanlab_cv" or cleanlab_cv]
        return chosen, False
    asked = [methods] if isinstance(methods, str) else list(methods)
    unknown = [m for m in asked if m not in RUN_METHODS]
    if unknown:
        raise ValueError(f"unknown method {unknown[0]!r}; choose from {', '.join(RUN_METHODS)} (or all)")
    if "cleanlab_cv" in asked and not cleanlab_cv:
        raise ValueError("method cleanlab_cv needs a number of folds: cleanlab_cv=K (--cleanlab-cv K), K >= 2")
    if cleanlab_cv and "cleanlab_cv" not in asked:
        asked.append("cleanlab_cv")
    return [m for m in RUN_METHODS if m in asked], True


def run_seconds(run: Run) -> float | None:
    """Wall time of a completed run, roughly: env.json's start to status.json's last write
    (includes probing; wrong for a resumed or copied run)."""
    env, status = run.env, run.path / "status.json"
    if run.status.get("state") != "complete" or "started" not in env or not status.exists():
        return None
    try:
        start = datetime.fromisoformat(env["started"]).timestamp()
    except ValueError:
        return None
    return max(0.0, status.stat().st_mtime - start)


def find_label_issues(
    run_path: str | Path,
    methods: Sequence[str] | str | None = None,
    checkpoint: str | int = "early",
    d: int | str = "auto",
    k: int = 10,
    cleanlab_cv: int = 0,
    seed: int = 0,
    *,
    rank_by: str = "consensus",
    device: str | torch.device = "cpu",
    batch_size: int = 2048,
    write: bool = True,
    progress: Progress | None = None,
    data: NoisyDataset | None = None,
) -> LabelIssueResult:
    """Score every training sample of a stored run for a wrong label (module docstring).

    Args:
        run_path: the run directory.
        methods: names from ``RUN_METHODS``; None: ``DEFAULT_METHODS`` (those the run supports);
            ``"all"``: every method the run supports (cleanlab only when installed).
            ``cleanlab_cv`` is added with ``cleanlab_cv > 0``. A method asked for explicitly
            that cannot be computed is an error.
        checkpoint: the model the feature detectors read: ``"early"``, ``"final"`` or a saved epoch.
        d: kept principal components of the ``d`` methods: ``"auto"`` (noisy validation) or an int.
        k: neighbours of ``knn``.
        cleanlab_cv: K >= 2 folds for ``cleanlab_cv`` (0 = off).
        seed: seeds the fold split, FINE's mixture and any held-out draw.
        rank_by: ``"consensus"`` or a method: the order of the table.
        device: where models run and folds train (``"auto"``: cuda if available).
        write: write ``label_issues.parquet`` / ``.json`` into the run (and ``cleanlab_cv``'s
            own ``label_issues_cleanlab_cv.parquet`` / ``.json``).
        progress: called ``(step, done, total)`` before each step.
        data: the run's dataset when the caller already holds it (e.g. the process that just
            trained the run): then it is not rebuilt from the config (the ``load`` step). It
            must be the run's own data: only its name is checked against the config (a
            training split of another size fails on the margins record or the checkpoint).
    """
    t_all = time.perf_counter()
    chosen, explicit = _check_methods(methods, int(cleanlab_cv))
    if d != "auto" and (isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1):
        raise ValueError(f"d must be 'auto' or a positive int, got {d!r}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    if rank_by != "consensus" and rank_by not in chosen:
        raise ValueError(f"rank_by must be 'consensus' or one of the computed methods {chosen}, got {rank_by!r}")
    run = load_run(run_path)
    dev = resolve_device(str(device))
    sc = Scoring(explicit, progress)

    if not cleanlab_available():
        for m in ("cleanlab", "cleanlab_cv"):
            if m in chosen:
                sc.skip(m, "cleanlab is not installed (pip install noisescope[cleanlab])")
    steps = ["load"] + [m for m in chosen if m not in sc.skipped]
    sc.total = len(steps) + 2 + (int(cleanlab_cv) if "cleanlab_cv" in steps else 0)

    sc.step("loading the run's data and checkpoints")
    t = time.perf_counter()
    epoch, early = resolve_checkpoint(run, checkpoint)
    if data is None:
        data = run.data
    else:
        run.__dict__["data"] = data  # run.model() builds on it: no rebuild there either
        if data.name != run.config.data.name:
            raise ValueError(f"data is {data.name!r}, but the run was trained on {run.config.data.name!r}")
    x, y = data.x_train, data.y_train  # observed labels; the true ones are never read here
    n, c = len(y), data.num_classes
    sc.shared["load"] = time.perf_counter() - t
    early_stop_any = run.early_stop[0] if run.early_stop is not None else early

    feats_needed = [m for m in FEATURE_METHODS if m in chosen and m not in sc.skipped]
    same_pass = bool(feats_needed) and epoch == early  # one pass gives the logits and the features
    sc.step(f"early-stopped model (epoch {early}): logits" + (" and features" if same_pass else ""))
    t = time.perf_counter()
    early_model = run.model(early).to(dev)
    if same_pass:
        f_train, early_logits = features_and_logits(early_model, x, batch_size, dev)
    else:
        f_train, early_logits = None, predict_logits(early_model, x, batch_size, dev)
    predicted = early_logits.argmax(1).numpy()
    sc.shared["early_logits"] = time.perf_counter() - t

    sc.step(f"features at epoch {epoch}" if feats_needed else "features: not needed")
    if feats_needed:
        def load_model():
            return early_model if epoch == early else run.model(epoch).to(dev)

        score_features(sc, feats_needed, load_model, data, d=d, k=k, seed=seed, batch_size=batch_size, device=dev,
                       f_train=f_train)
        if same_pass:
            for m in feats_needed:
                sc.needs[m] = [*sc.needs[m], "early_logits"]
    if "disagreement" in chosen:
        score_disagreement(sc, early_logits, y)
    dyn = [m for m in DYNAMICS_METHODS if m in chosen]
    rec = score_dynamics(sc, dyn, run, n, early_stop_any) if dyn else None
    cl_note = None
    if "cleanlab" in chosen and "cleanlab" not in sc.skipped:
        score_cleanlab(sc, early_logits, y)
    cv_info: dict[str, Any] = {}
    if "cleanlab_cv" in chosen and "cleanlab_cv" not in sc.skipped:
        cv_epochs = max(1, int(early_stop_any))
        cv_info = score_cleanlab_cv(sc, run, x, y, c, int(cleanlab_cv), cv_epochs, dev, batch_size, seed)
        cl_note = "cleanlab_cv trains the run's architecture on K-1 folds per fold, for the early-stopping epochs"

    scores, flags, seconds, shared, skipped = sc.scores, sc.flags, sc.seconds, sc.shared, sc.skipped
    needs, d_chosen = sc.needs, sc.d_chosen
    if not scores:
        raise ValueError(f"no detector could be computed on {run.path}: {skipped}")
    members = consensus_members(scores)
    cons_s, cons_f = consensus(scores, flags)
    if rank_by == "cleanlab_cv":
        rank_by = "consensus"  # a peer beside the consensus: it has its own table
    order_scores = cons_s if rank_by == "consensus" else scores[rank_by]
    all_scores = {**scores, "consensus": cons_s}
    all_flags = {**flags, "consensus": cons_f}
    obs = y.numpy().astype(np.int64)
    main = {m: s for m, s in all_scores.items() if m not in BESIDE}
    table = _ranked_table(order_scores, obs, predicted, main, {m: all_flags[m] for m in main})
    cv_table = None
    if "cleanlab_cv" in scores:
        cv_table = _ranked_table(scores["cleanlab_cv"], obs, predicted, {"cleanlab_cv": scores["cleanlab_cv"]},
                                 {"cleanlab_cv": flags["cleanlab_cv"]})

    cost = {m: seconds[m] + sum(shared.get(s, 0.0) for s in needs[m]) for m in seconds}
    # --- evaluation: the only place the true labels are read, after every score exists ---
    mask = data.noise_mask.numpy()
    noise_model = str(data.noise.get("model", "unknown"))
    evaluation = None
    if mask.any() and not mask.all():
        shown = {m: s for m, s in all_scores.items() if members or m != "consensus"}
        evaluation = evaluate_scores(shown, mask, flagged={m: all_flags[m] for m in shown})
        evaluation["seconds"] = [seconds.get(m, float("nan")) for m in evaluation["detector"]]
        evaluation["cost_seconds"] = [cost.get(m, float("nan")) for m in evaluation["detector"]]
    run_s = run_seconds(run)
    total = time.perf_counter() - t_all
    default_set = [m for m in DEFAULT_METHODS if m not in skipped]
    info = {
        "run": str(run.path),
        "default": {"ranking": "consensus", "flags": "consensus",
                    "methods": list(DEFAULT_METHODS),
                    "is_default": rank_by == "consensus" and [m for m in scores if m not in BESIDE] == default_set
                    and checkpoint == "early" and d == "auto"},
        "consensus_of": members,
        "same_ranking": {m: twin for m, twin in SAME_RANKING.items() if m in scores and twin in scores},
        "flag_rules": {m: FLAG_RULES[m] for m in all_flags},
        "settings": {"methods": list(scores), "checkpoint": str(checkpoint), "checkpoint_epoch": epoch,
                     "early_stop_epoch": early, "early_stop_probed_epoch": early_stop_any,
                     "final_epoch": max(run.checkpoints()), "d": d, "k": int(k), "cleanlab_cv": int(cleanlab_cv),
                     "seed": int(seed), "rank_by": rank_by, "device": str(dev)},
        "n": int(n), "num_classes": int(c), "classes": data.classes,
        "d_chosen": d_chosen,
        "seconds": seconds, "shared_seconds": shared, "cost_seconds": cost,
        "total_seconds": total,
        "run_seconds_approx": run_s,
        "percent_of_run": None if not run_s else 100.0 * total / run_s,
        "margins_epochs": None if rec is None else rec.epochs.tolist(),
        "cleanlab_cv": cv_info or None, "notes": [cl_note] if cl_note else [],
        "skipped": skipped,
        "noise": {"model": noise_model, "synthetic": noise_model in SYNTHETIC_NOISE,
                  "mask_known": True, "realized_rate": float(mask.mean()) if n else None},
        "estimated_rate": {m: float(np.mean(f)) for m, f in all_flags.items()},
        "evaluation": None if evaluation is None else evaluation.to_dict("records"),
        "files": {**({"table": PARQUET, "info": JSON} if members else {}),
                  **({"cleanlab_cv_table": CV_PARQUET, "cleanlab_cv_info": CV_JSON} if cv_table is not None else {})},
    }
    info = jsonable(info)
    if write:
        if members:  # only cleanlab_cv asked for: the default ranking's files are left as they are
            atomic_write(run.path / PARQUET, lambda p: table.to_parquet(p, index=False))
            write_json(run.path / JSON, info)
        if cv_table is not None:
            cv_eval = None if evaluation is None else evaluation[evaluation["detector"] == "cleanlab_cv"]
            cv_info = jsonable({
                "run": str(run.path), "settings": info["settings"], "cleanlab_cv": cv_info, "n": int(n),
                "seconds": seconds["cleanlab_cv"], "estimated_rate": float(np.mean(flags["cleanlab_cv"])),
                "noise": info["noise"], "run_seconds_approx": run_s,
                "evaluation": None if cv_eval is None else cv_eval.to_dict("records")})
            atomic_write(run.path / CV_PARQUET, lambda p: cv_table.to_parquet(p, index=False))
            write_json(run.path / CV_JSON, cv_info)
    if progress is not None:
        progress("done", sc.total, sc.total)
    return LabelIssueResult(table, all_scores, all_flags, evaluation, info, run.path, skipped, cv_table)


def _ranked_table(order_scores: np.ndarray, observed: np.ndarray, predicted: np.ndarray,
                  scores: dict[str, np.ndarray], flags: dict[str, np.ndarray]) -> pd.DataFrame:
    """rank, index, observed, predicted, score_<m>, flag_<m>, most suspicious first (ties ->
    lower index)."""
    order = np.argsort(-finite_scores(order_scores), kind="stable")
    table = pd.DataFrame({"rank": np.arange(1, len(order) + 1), "index": order.astype(np.int64),
                          "observed": observed[order], "predicted": predicted[order].astype(np.int64)})
    for m, s in scores.items():
        table[f"score_{m}"] = np.asarray(s, dtype=np.float64)[order]
    for m, f in flags.items():
        table[f"flag_{m}"] = np.asarray(f, dtype=bool)[order]
    return table


def read_label_issues(run_path: str | Path, cleanlab_cv: bool = False) -> tuple[pd.DataFrame, dict[str, Any]]:
    """(the ranked table, the JSON beside it) of a run (``cleanlab_cv``: the cross-validated
    cleanlab's own files); FileNotFoundError naming the command."""
    p = Path(run_path)
    table_name, info_name = (CV_PARQUET, CV_JSON) if cleanlab_cv else (PARQUET, JSON)
    if not (p / table_name).exists():
        how = f"noisescope label-issues {p}" + (" --cleanlab-cv 5" if cleanlab_cv else "")
        raise FileNotFoundError(f"{p} has no {table_name}: compute it with `{how}`")
    from noisescope.io import read_json

    info = read_json(p / info_name) if (p / info_name).exists() else {}
    return pd.read_parquet(p / table_name), info


def flagged_mask(run_path: str | Path, method: str = "consensus") -> np.ndarray:
    """(N,) bool in training-split order: the samples ``method`` flagged in ``label_issues.parquet``
    (``cleanlab_cv``: in ``label_issues_cleanlab_cv.parquet``)."""
    table, _ = read_label_issues(run_path, cleanlab_cv=method in BESIDE)
    col = f"flag_{method}"
    if col not in table:
        have = sorted(c.removeprefix("flag_") for c in table if c.startswith("flag_"))
        raise ValueError(f"label_issues.parquet has no method {method!r}; it has {', '.join(have)}")
    out = np.zeros(len(table), dtype=bool)
    out[table["index"].to_numpy()] = table[col].to_numpy()
    return out
