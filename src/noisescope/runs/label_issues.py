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
* ``consensus``: the mean over the computed detectors of each sample's percentile rank
  (ties averaged); flagged by at least half of them. The table is ranked by it unless
  ``rank_by`` names a detector.

Outputs, written atomically: ``RUN/label_issues.parquet`` (rank, index = row of the run's
training split, observed, predicted = the early-stopped model's argmax, ``score_<method>``
and ``flag_<method>`` for every method) and ``RUN/label_issues.json`` (settings, chosen
epochs and d, seconds per detector, and, where the run's true labels are known, the
:func:`~noisescope.detect.evaluate_scores` table: AUROC, AP, precision / recall / F1 at each
detector's own flags and at the realized noise rate, estimated vs realized noise rate).
The mask is read only after every score is computed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from noisescope.data.base import NoisyDataset
from noisescope.detect import (
    LabelIssueDetector,
    MarginRecorder,
    aum_issues,
    aum_score,
    cleanlab_issues,
    cleanlab_scores,
    cross_val_pred_probs,
    disagreement_issues,
    disagreement_score,
    evaluate_scores,
    first_fit_epoch_score,
    first_fit_issues,
)
from noisescope.detect.evaluate import finite_scores
from noisescope.evaluate import predict_logits
from noisescope.io import atomic_write, write_json
from noisescope.runs.build import prepare_model
from noisescope.runs.run import Run, load_run
from noisescope.runs.truncate import early_stop_epoch
from noisescope.taps import iter_taps
from noisescope.training.loop import Trainer, resolve_device

FEATURE_METHODS = ("truncated_distance", "knn", "fine", "tail_margin", "truncated_margin")
DYNAMICS_METHODS = ("aum", "aum_early", "first_fit")
RUN_METHODS = (*FEATURE_METHODS, "disagreement", *DYNAMICS_METHODS, "cleanlab", "cleanlab_cv")
#: noise models whose mask is injected by noisescope (``file`` labels are real annotators')
SYNTHETIC_NOISE = ("symmetric", "pairflip", "transition", "instance")
PARQUET = "label_issues.parquet"
JSON = "label_issues.json"
COMMAND = "noisescope label-issues RUN"

Progress = Callable[[str, int, int], None]


@dataclass
class LabelIssueResult:
    """What :func:`find_label_issues` computed.

    Attributes:
        table: the ranked table (most suspicious first; columns in the module docstring).
        scores / flags: method -> (N,) float64 scores / bool flags (``consensus`` included).
        evaluation: ``evaluate_scores`` rows (plus ``seconds`` and ``cost_seconds``) where the
            true labels are known, else None.
        info: the JSON written beside the table (settings, epochs, d, seconds, notes).
        path: the run directory.
    """

    table: pd.DataFrame
    scores: dict[str, np.ndarray]
    flags: dict[str, np.ndarray]
    evaluation: pd.DataFrame | None
    info: dict[str, Any]
    path: Path
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def methods(self) -> list[str]:
        return [m for m in self.scores if m != "consensus"]


def cleanlab_available() -> bool:
    try:
        import cleanlab  # noqa: F401
    except ImportError:
        return False
    return True


def _check_methods(methods: Sequence[str] | str | None, cleanlab_cv: int) -> tuple[list[str], bool]:
    """(methods in RUN_METHODS order, whether they were asked for explicitly)."""
    if cleanlab_cv < 0 or cleanlab_cv == 1:
        raise ValueError(f"cleanlab_cv must be 0 (off) or a number of folds >= 2, got {cleanlab_cv}")
    if methods is None or methods == "all" or (not isinstance(methods, str) and list(methods) in ([], ["all"])):
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


def resolve_checkpoint(run: Run, checkpoint: str | int) -> tuple[int, int]:
    """(epoch of the chosen checkpoint, epoch of the saved early-stopped checkpoint)."""
    saved = run.checkpoints()
    if not saved:
        raise FileNotFoundError(f"{run.path} has no checkpoints")
    early = run.early_stop[0] if run.early_stop is not None else None
    if early is None or early not in saved:
        early = early_stop_epoch(run)[0]
    if checkpoint == "early":
        return early, early
    if checkpoint == "final":
        return max(saved), early
    if isinstance(checkpoint, str):
        if not checkpoint.strip().isdigit():
            raise ValueError(f"checkpoint must be early, final or a saved epoch, got {checkpoint!r}")
        checkpoint = int(checkpoint)
    if isinstance(checkpoint, bool) or int(checkpoint) not in saved:
        raise ValueError(f"no checkpoint for epoch {checkpoint}; saved epochs: {sorted(saved)}")
    return int(checkpoint), early


@torch.no_grad()
def features_and_logits(model, x: torch.Tensor, batch_size: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(phi (N, D) float32, logits (N, C) float32) on the CPU, one eval-mode pass."""
    tap = model.feature_tap
    feats, logits = [], []
    for _sl, z, acts in iter_taps(model, x, [tap], batch_size, device):
        feats.append(acts[tap].flatten(1).float().cpu())
        logits.append(z.float().cpu())
    if not feats:
        raise ValueError("the run's training split is empty")
    return torch.cat(feats), torch.cat(logits)


def margins_of(run: Run, n: int) -> MarginRecorder | None:
    """The run's per-sample ``margins`` record as a recorder (float32), or None."""
    frame = run.store.record("margins")
    if frame.empty:
        return None
    return MarginRecorder.from_frame(frame, n, dtype=torch.float32)


def _aum(rec: MarginRecorder, last: int | None) -> torch.Tensor:
    ep = rec.epochs
    keep = ep >= 1
    if last is not None:
        keep &= ep <= last
    if not bool(keep.any()):
        raise ValueError("no recorded epoch in range")
    m, e = rec.margins[keep].to(torch.float64), ep[keep]
    consecutive = len(e) < 2 or bool((e[1:] - e[:-1] == 1).all())
    return aum_score(m) if consecutive else aum_score(m, e)


def consensus(scores: dict[str, np.ndarray], flags: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Mean percentile rank over detectors (ties averaged; label-free), and flagged by at
    least half of the detectors that flag."""
    from scipy.stats import rankdata

    n = len(next(iter(scores.values())))
    ranks = [rankdata(finite_scores(s), method="average") / n for s in scores.values()]
    votes = np.sum([f for f in flags.values()], axis=0) if flags else np.zeros(n)
    return np.mean(ranks, axis=0), votes >= math.ceil(len(flags) / 2) if flags else np.zeros(n, bool)


def fold_trainer(run: Run, epochs: int, device: torch.device, batch_size: int) -> tuple[Callable, Callable]:
    """(make_model, train_fn) for :func:`~noisescope.detect.cross_val_pred_probs`: the run's
    architecture (seeded with ``train.seed``), trained with :class:`Trainer` for ``epochs``
    epochs on the other folds' observed labels only."""
    cfg, data = run.config, run.data
    train_cfg = replace(cfg.train, epochs=max(1, int(epochs)), device=str(device))

    def make_model():
        return prepare_model(cfg, data)

    def train_fn(model, x_tr: torch.Tensor, y_tr: torch.Tensor):
        empty = slice(0, 0)
        fold = NoisyDataset(
            x_train=x_tr, y_train=y_tr, y_train_true=y_tr,  # observed labels only
            x_val=data.x_val[empty], y_val=data.y_val[empty], y_val_true=data.y_val[empty],
            x_test=data.x_test[empty], y_test=data.y_test[empty],
            num_classes=data.num_classes, name=data.name,
        )
        trained = Trainer(model, fold, train_cfg, probes=[], probe_at=[]).fit()

        def predict_proba(xs: torch.Tensor) -> torch.Tensor:
            return torch.softmax(predict_logits(trained, xs, batch_size, device).double(), 1)

        return predict_proba

    return make_model, train_fn


def _clean(obj: Any) -> Any:
    """JSON-safe: NaN / inf -> None, numpy scalars -> Python."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if obj is pd.NA:
        return None
    return obj


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
) -> LabelIssueResult:
    """Score every training sample of a stored run for a wrong label (module docstring).

    Args:
        run_path: the run directory.
        methods: names from ``RUN_METHODS`` (default: all that the run supports; cleanlab ones
            only when cleanlab is installed, ``cleanlab_cv`` only with ``cleanlab_cv > 0``).
            A method asked for explicitly that cannot be computed is an error.
        checkpoint: the model the feature detectors read: ``"early"``, ``"final"`` or a saved epoch.
        d: kept principal components of the ``d`` methods: ``"auto"`` (noisy validation) or an int.
        k: neighbours of ``knn``.
        cleanlab_cv: K >= 2 folds for ``cleanlab_cv`` (0 = off).
        seed: seeds the fold split, FINE's mixture and any held-out draw.
        rank_by: ``"consensus"`` or a method: the order of the table.
        device: where models run and folds train (``"auto"``: cuda if available).
        write: write ``label_issues.parquet`` / ``.json`` into the run.
        progress: called ``(step, done, total)`` before each step.
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
    skipped: dict[str, str] = {}

    def skip(method: str, why: str) -> None:
        if explicit:
            raise ValueError(f"method {method}: {why}")
        skipped[method] = why

    if not cleanlab_available():
        for m in ("cleanlab", "cleanlab_cv"):
            if m in chosen:
                skip(m, "cleanlab is not installed (pip install noisescope[cleanlab])")
    steps = ["load"] + [m for m in chosen if m not in skipped]
    total = len(steps) + 2 + (int(cleanlab_cv) if "cleanlab_cv" in steps else 0)
    done = [0]

    def step(name: str) -> None:
        if progress is not None:
            progress(name, done[0], total)
        done[0] += 1

    seconds: dict[str, float] = {}
    shared: dict[str, float] = {}
    step("loading the run's data and checkpoints")
    t = time.perf_counter()
    epoch, early = resolve_checkpoint(run, checkpoint)
    data = run.data
    x, y = data.x_train, data.y_train  # observed labels; the true ones are never read here
    n, c = len(y), data.num_classes
    shared["load"] = time.perf_counter() - t
    early_stop_any = run.early_stop[0] if run.early_stop is not None else early

    scores: dict[str, np.ndarray] = {}
    flags: dict[str, np.ndarray] = {}
    d_chosen: dict[str, int | None] = {}
    needs: dict[str, list[str]] = {}

    step(f"early-stopped model (epoch {early}): logits")
    t = time.perf_counter()
    early_model = run.model(early).to(dev)
    early_logits = predict_logits(early_model, x, batch_size, dev)
    predicted = early_logits.argmax(1).numpy()
    shared["early_logits"] = time.perf_counter() - t

    feats_needed = [m for m in FEATURE_METHODS if m in chosen and m not in skipped]
    step(f"features at epoch {epoch}" if feats_needed else "features: not needed")
    if feats_needed:
        t = time.perf_counter()
        model = early_model if epoch == early else run.model(epoch).to(dev)
        f_train, _ = features_and_logits(model, x, batch_size, dev)
        f_val = features_and_logits(model, data.x_val, batch_size, dev)[0] if len(data.y_val) else None
        head = (model.head.weight.detach().cpu(), None if model.head.bias is None else model.head.bias.detach().cpu())
        shared["features"] = time.perf_counter() - t
    for m in feats_needed:
        step(m)
        det = LabelIssueDetector(m, d=d, k=k, num_classes=c, seed=seed)
        t = time.perf_counter()
        det.fit(f_train, y, head=head if m in ("tail_margin", "truncated_margin") else None,
                X_val=f_val if d == "auto" and f_val is not None else None,
                y_val=data.y_val if d == "auto" and f_val is not None else None)
        seconds[m] = time.perf_counter() - t
        scores[m], flags[m] = det.score_samples().numpy(), det.find_issues().numpy()
        d_chosen[m] = None if det.d_ is None else int(det.d_)
        needs[m] = ["load", "features"]

    if "disagreement" in chosen:
        step("disagreement")
        t = time.perf_counter()
        scores["disagreement"] = disagreement_score(early_logits, y, kind="logits").numpy()
        flags["disagreement"] = disagreement_issues(early_logits, y).numpy()
        seconds["disagreement"] = time.perf_counter() - t
        needs["disagreement"] = ["load", "early_logits"]

    dyn = [m for m in DYNAMICS_METHODS if m in chosen]
    rec = None
    if dyn:
        t = time.perf_counter()
        rec = margins_of(run, n)
        shared["margins_record"] = time.perf_counter() - t
        if rec is None:
            for m in dyn:
                skip(m, "the run has no margins record (records/margins: the dynamics probe writes it)")
    for m in dyn:
        if m in skipped:
            continue
        step(m)
        t = time.perf_counter()
        try:
            if m == "aum":
                s = _aum(rec, None)
                fl = aum_issues(s)
            elif m == "aum_early":
                s = _aum(rec, early_stop_any)
                fl = aum_issues(s)
            else:
                s = first_fit_epoch_score(rec)
                fl = first_fit_issues(s, early_stop_any)
        except ValueError as exc:
            skip(m, f"{exc} (recorded epochs {rec.epochs.tolist()}, early stopping {early_stop_any})")
            continue
        if bool(torch.isnan(s).any()):
            skip(m, "some samples have no recorded margin")
            continue
        seconds[m] = time.perf_counter() - t
        scores[m], flags[m] = s.numpy(), fl.numpy()
        needs[m] = ["load", "margins_record"]

    cl_note = None
    if "cleanlab" in chosen and "cleanlab" not in skipped:
        step("cleanlab (early-stopped probabilities)")
        t = time.perf_counter()
        probs = torch.softmax(early_logits.double(), 1)
        scores["cleanlab"] = cleanlab_scores(y, probs).numpy()
        flags["cleanlab"] = cleanlab_issues(y, probs).numpy()
        seconds["cleanlab"] = time.perf_counter() - t
        needs["cleanlab"] = ["load", "early_logits"]
    cv_info: dict[str, Any] = {}
    if "cleanlab_cv" in chosen and "cleanlab_cv" not in skipped:
        folds = int(cleanlab_cv)
        cv_epochs = max(1, int(early_stop_any))
        make_model, train_fn = fold_trainer(run, cv_epochs, dev, batch_size)
        counter = [0]

        def timed_train(model, x_tr, y_tr):
            counter[0] += 1
            step(f"cleanlab CV: training fold {counter[0]}/{folds} ({cv_epochs} epochs)")
            return train_fn(model, x_tr, y_tr)

        step(f"cleanlab_cv ({folds} folds)")
        t = time.perf_counter()
        cv = cross_val_pred_probs(make_model, timed_train, x, y, k=folds, seed=seed, num_classes=c)
        t_cl = time.perf_counter()
        scores["cleanlab_cv"] = cleanlab_scores(y, cv.pred_probs).numpy()
        flags["cleanlab_cv"] = cleanlab_issues(y, cv.pred_probs).numpy()
        seconds["cleanlab_cv"] = time.perf_counter() - t
        needs["cleanlab_cv"] = ["load"]
        cv_info = {"folds": folds, "epochs_per_fold": cv_epochs, "fit_seconds": cv.fit_seconds.tolist(),
                   "predict_seconds": cv.predict_seconds.tolist(), "cleanlab_seconds": time.perf_counter() - t_cl}
        cl_note = "cleanlab_cv trains the run's architecture on K-1 folds per fold, for the early-stopping epochs"

    if not scores:
        raise ValueError(f"no detector could be computed on {run.path}: {skipped}")
    cons_s, cons_f = consensus(scores, flags)
    order_scores = cons_s if rank_by == "consensus" else scores[rank_by]
    all_scores = {**scores, "consensus": cons_s}
    all_flags = {**flags, "consensus": cons_f}
    order = np.argsort(-finite_scores(order_scores), kind="stable")
    table = pd.DataFrame({"rank": np.arange(1, n + 1), "index": order.astype(np.int64),
                          "observed": y.numpy()[order].astype(np.int64),
                          "predicted": predicted[order].astype(np.int64)})
    for m, s in all_scores.items():
        table[f"score_{m}"] = np.asarray(s, dtype=np.float64)[order]
    for m, f in all_flags.items():
        table[f"flag_{m}"] = np.asarray(f, dtype=bool)[order]

    cost = {m: seconds[m] + sum(shared.get(s, 0.0) for s in needs[m]) for m in seconds}
    # --- evaluation: the only place the true labels are read, after every score exists ---
    mask = data.noise_mask.numpy()
    noise_model = str(data.noise.get("model", "unknown"))
    evaluation = None
    if mask.any() and not mask.all():
        evaluation = evaluate_scores(all_scores, mask, flagged=all_flags)
        evaluation["seconds"] = [seconds.get(m, float("nan")) for m in evaluation["detector"]]
        evaluation["cost_seconds"] = [cost.get(m, float("nan")) for m in evaluation["detector"]]
    info = {
        "run": str(run.path),
        "settings": {"methods": list(scores), "checkpoint": str(checkpoint), "checkpoint_epoch": epoch,
                     "early_stop_epoch": early, "early_stop_probed_epoch": early_stop_any,
                     "final_epoch": max(run.checkpoints()), "d": d, "k": int(k), "cleanlab_cv": int(cleanlab_cv),
                     "seed": int(seed), "rank_by": rank_by, "device": str(dev)},
        "n": int(n), "num_classes": int(c), "classes": data.classes,
        "d_chosen": d_chosen,
        "seconds": seconds, "shared_seconds": shared, "cost_seconds": cost,
        "total_seconds": time.perf_counter() - t_all,
        "run_seconds_approx": run_seconds(run),
        "margins_epochs": None if rec is None else rec.epochs.tolist(),
        "cleanlab_cv": cv_info or None, "notes": [cl_note] if cl_note else [],
        "skipped": skipped,
        "noise": {"model": noise_model, "synthetic": noise_model in SYNTHETIC_NOISE,
                  "mask_known": True, "realized_rate": float(mask.mean()) if n else None},
        "estimated_rate": {m: float(np.mean(f)) for m, f in all_flags.items()},
        "evaluation": None if evaluation is None else evaluation.to_dict("records"),
    }
    info = _clean(info)
    if write:
        atomic_write(run.path / PARQUET, lambda p: table.to_parquet(p, index=False))
        write_json(run.path / JSON, info)
    if progress is not None:
        progress("done", total, total)
    return LabelIssueResult(table, all_scores, all_flags, evaluation, info, run.path, skipped)


def read_label_issues(run_path: str | Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """(the ranked table, the JSON beside it) of a run; FileNotFoundError naming the command."""
    p = Path(run_path)
    if not (p / PARQUET).exists():
        raise FileNotFoundError(f"{p} has no {PARQUET}: compute it with `noisescope label-issues {p}`")
    from noisescope.io import read_json

    info = read_json(p / JSON) if (p / JSON).exists() else {}
    return pd.read_parquet(p / PARQUET), info


def flagged_mask(run_path: str | Path, method: str = "consensus") -> np.ndarray:
    """(N,) bool in training-split order: the samples ``method`` flagged in ``label_issues.parquet``."""
    table, _ = read_label_issues(run_path)
    col = f"flag_{method}"
    if col not in table:
        have = sorted(c.removeprefix("flag_") for c in table if c.startswith("flag_"))
        raise ValueError(f"label_issues.parquet has no method {method!r}; it has {', '.join(have)}")
    out = np.zeros(len(table), dtype=bool)
    out[table["index"].to_numpy()] = table[col].to_numpy()
    return out
