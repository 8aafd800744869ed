"""Cleaning as a repair: retrain a run's config without its flagged training samples
(``mode="remove"``) or with their labels replaced by the early-stopped model's predictions
(``mode="relabel"``), and compare with the original run.

Each retraining is a sub-run with its own :class:`~noisescope.runs.store.RunStore` under
``RUN/cleaned/<mode>-<method>-s<seed>/``, trained by :func:`~noisescope.runs.lifecycle.run_experiment`
(so it resumes like any run) with the parent's config except ``train.seed`` (= the seed),
``probe.probes = ["dynamics"]`` and, optionally, ``train.epochs``. Its training split is the
parent's, filtered or relabelled; the noisy-validation and clean test splits are the parent's,
unchanged. ``cleaning.json`` in the sub-run records the mode, the method label and the flagged
indices (rows of the parent's training split); :func:`cleaned_data` rebuilds the sub-run's data
from it (``load_run(sub).data`` would rebuild the parent's unfiltered data from the config).

The comparison (:func:`cleaning_comparison`) scores on the clean test set: the parent's final
and early-stopped models, and each sub-run's final and early-stopped (its own best
noisy-validation epoch) models. Each accuracy comes with its Wilson 95% interval and n; each
model is compared with the parent's early-stopped model by McNemar's exact test
(``evidence.paired``); the sub-runs' accuracies are summarized over seeds
(``evidence.intervals.aggregate_seeds``: mean, sd, t-interval).

**Cleaning that chooses for itself** (:func:`iterative_clean`):

* The flag set: ``DEFAULT_DETECTOR`` = ``truncated_distance``, by the stated rule
  ``DETECTOR_RULE`` (the single detector with the highest mean AUROC over the 18 settings of
  docs/results/label_issues.md: 0.900, against consensus 0.899 and aum_early 0.899), flagged by
  its own rule (nearer another class mean than its own in the top-d principal subspace, d on
  noisy validation), not the consensus.
* Iterative: round 1 flags with the label-issues API
  (:func:`noisescope.workflows.label_issues.find_label_issues` on the parent run); round r > 1 adds
  the flags of the same detector on the round r - 1 retrained model (its early-stopped
  checkpoint, over the parent's whole training split: the samples it never saw included).
  Each round retrains from scratch on the parent's split minus (or relabelled at) every flag
  so far (:func:`retrain_cleaned`).
* Stopping rule, on noisy validation only: round r is kept only if its early-stopped model's
  noisy-validation accuracy beats the best earlier model (round 0 = the parent's early
  stopping) by :func:`evidence.rules.repair_verdict` (paired gain > one standard error);
  the first round that fails, adds no flag or reaches ``max_rounds`` stops the loop, and
  the last kept round is the result. Compute: 1 + rounds trained training runs.
* Relabelling with a confidence (:func:`relabel_suggestions`): for every training sample,
  the suggested label (argmax of the early-stopped model's softmax) and its probability, and
  the probability of the observed label; ``mode="relabel"`` relabels the flagged samples to
  the suggestion.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from noisescope.config import ConfigError, from_dict
from noisescope.data.base import NoisyDataset
from noisescope.detect.estimator import LabelIssueDetector
from noisescope.evaluate import correct, predict_logits
from noisescope.evidence.intervals import UNIT, Accuracy, aggregate_seeds
from noisescope.evidence.paired import mcnemar
from noisescope.evidence.rules import repair_verdict
from noisescope.io import atomic_write, read_json, write_json
from noisescope.models.base import TappedModel
from noisescope.runs.build import Prepared, prepare_model
from noisescope.runs.lifecycle import run_experiment
from noisescope.runs.run import Run, load_run
from noisescope.training.loop import EpochReport
from noisescope.workflows.truncate import early_stop_epoch

MODES = ("remove", "relabel")
#: the detector whose flags :func:`iterative_clean` uses by default, and why
DEFAULT_DETECTOR = "truncated_distance"
DETECTOR_RULE = ("the single detector with the highest mean AUROC over the 18 settings of "
                 "docs/results/label_issues.md (truncated_distance 0.900; consensus 0.899, aum_early 0.899)")
#: detectors that can score a retrained model's features (rounds > 1)
FEATURE_DETECTORS = ("truncated_distance", "knn", "fine", "tail_margin", "truncated_margin")
SUGGESTION_COLUMNS = ["index", "observed", "suggested", "probability", "p_observed"]
TABLE_COLUMNS = ["model", "mode", "seed", "epoch", "n_train", "test_acc", "test_low", "test_high", "n_test",
                 "b", "c", "p_value"]
SUMMARY_COLUMNS = ["model", "mode", "n_seeds", "mean", "std", "low", "high", "note"]


@dataclass
class CleaningResult:
    """Sub-runs and the comparison.

    Attributes:
        runs: (mode, seed) -> sub-run directory.
        table: TABLE_COLUMNS, one row per model (parent final, parent early stopping, each
            sub-run's final and early-stopped model): clean test accuracy with its Wilson
            interval and n; b / c / p_value: McNemar's exact test against the parent's
            early-stopped model (b: this model right and that one wrong).
        summary: SUMMARY_COLUMNS, the cleaned models' accuracies over seeds.
    """

    runs: dict[tuple[str, int], Path]
    table: pd.DataFrame
    summary: pd.DataFrame


def _modes(mode: str | Sequence[str]) -> list[str]:
    modes = [mode] if isinstance(mode, str) else list(mode)
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise ValueError(f"mode must be one of {MODES} (or a list of them), got {mode!r}")
    return modes


def _flag_mask(flagged: object, n: int) -> np.ndarray:
    f = flagged.detach().cpu().numpy() if isinstance(flagged, torch.Tensor) else np.asarray(flagged)
    if f.dtype != bool:
        raise ValueError(f"flagged must be an (N,) bool mask over the training split, got dtype {f.dtype}")
    if f.shape != (n,):
        raise ValueError(f"flagged must have shape ({n},) (the run's training split), got {f.shape}")
    return f


def early_predictions(run: Run, batch_size: int = 2048) -> np.ndarray:
    """(N,) the run's early-stopped model's predicted classes on its training split."""
    epoch = early_stop_epoch(run)[0]
    return predict_logits(run.model(epoch), run.data.x_train, batch_size).argmax(1).numpy()


def clean_dataset(data: NoisyDataset, flagged: np.ndarray, mode: str,
                  predictions: np.ndarray | None = None) -> NoisyDataset:
    """The training split without the flagged rows (``remove``) or with their observed labels
    replaced by ``predictions`` (``relabel``); validation and test unchanged. The true labels
    follow their rows (for the analysis side only)."""
    noise = {**data.noise, "cleaning": {"mode": mode, "n_flagged": int(flagged.sum())}}
    if mode == "remove":
        keep = torch.from_numpy(~flagged)
        return replace(data, x_train=data.x_train[keep], y_train=data.y_train[keep],
                       y_train_true=data.y_train_true[keep], noise=noise)
    if predictions is None:
        raise ValueError("relabel needs the early-stopped model's predictions")
    y = data.y_train.clone()
    f = torch.from_numpy(flagged)
    y[f] = torch.as_tensor(predictions, dtype=y.dtype)[f]
    return replace(data, y_train=y, noise=noise)


def _fingerprint(flagged: np.ndarray) -> str:
    return hashlib.sha256(np.packbits(flagged).tobytes() + str(len(flagged)).encode()).hexdigest()[:16]


def cleaned_data(sub_path: str | Path) -> NoisyDataset:
    """The training data of a cleaning sub-run, rebuilt from its parent and ``cleaning.json``."""
    sub = Path(sub_path)
    info = read_json(sub / "cleaning.json")
    parent = load_run(info["parent"] if Path(info["parent"]).is_absolute() else sub / info["parent"])
    flagged = np.zeros(len(parent.data.y_train), dtype=bool)
    flagged[np.asarray(info["flagged_index"], dtype=np.int64)] = True
    preds = None
    if info["mode"] == "relabel":
        preds = np.zeros(len(flagged), dtype=np.int64)
        preds[flagged] = np.asarray(info["relabel_to"], dtype=np.int64)
    return clean_dataset(parent.data, flagged, info["mode"], preds)


def retrain_cleaned(
    run_path: str | Path,
    flagged: object,
    mode: str | Sequence[str] = "remove",
    seeds: Sequence[int] = (0,),
    method: str = "flagged",
    epochs: int | None = None,
    on_epoch: Callable[[str, EpochReport], None] | None = None,
    predictions: np.ndarray | None = None,
) -> CleaningResult:
    """Retrain the run's config on its cleaned training split, one sub-run per mode and seed,
    and compare (module docstring).

    Args:
        run_path: the parent run.
        flagged: (N,) bool over the parent's training split (e.g.
            :func:`noisescope.workflows.label_issues.flagged_mask`).
        mode: ``"remove"``, ``"relabel"`` or both (a list).
        seeds: training seeds of the sub-runs (``train.seed``).
        method: a label for the flagged set, used in the sub-run names (letters, digits, ``_``).
        epochs: training epochs of the sub-runs (default: the parent's).
        on_epoch: called ``(sub-run name, report)`` after each epoch.
        predictions: (N,) the parent's early-stopped predictions on its training split, when
            already computed (``relabel``; default: :func:`early_predictions`).

    An existing sub-run with the same name is resumed / reused when its config and flagged
    set match, and is an error otherwise.
    """
    run = load_run(run_path)
    modes = _modes(mode)
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds must hold at least one seed")
    if not method or not all(ch.isalnum() or ch == "_" for ch in method):
        raise ValueError(f"method must be a non-empty label of letters, digits and _, got {method!r}")
    if epochs is not None and (isinstance(epochs, bool) or int(epochs) < 1):
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")
    data = run.data
    flags = _flag_mask(flagged, len(data.y_train))
    if flags.all():
        raise ValueError("every training sample is flagged: nothing would be left to train on")
    preds = None if "relabel" not in modes else (
        early_predictions(run) if predictions is None else np.asarray(predictions, dtype=np.int64))
    fp = _fingerprint(flags)
    base = run.config.to_dict()
    subs: dict[tuple[str, int], Path] = {}
    for m in modes:
        cleaned = clean_dataset(data, flags, m, preds)
        for seed in seeds:
            name = f"{m}-{method}-s{seed}"
            raw = {**base, "train": {**base["train"], "seed": seed,
                                     **({"epochs": int(epochs)} if epochs is not None else {})},
                   "probe": {**base["probe"], "probes": ["dynamics"],
                             "options": {k: v for k, v in base["probe"].get("options", {}).items()
                                         if k == "dynamics"}},
                   "run": {**base["run"], "root": str(run.path / "cleaned"), "name": name}}
            cfg = from_dict(raw)
            path = run.path / "cleaned" / name
            info = {"parent": "../..", "mode": m, "method": method, "seed": seed, "fingerprint": fp,
                    "n_flagged": int(flags.sum()), "n_train": int(len(cleaned.y_train)),
                    "flagged_index": np.flatnonzero(flags).tolist(),
                    "relabel_to": preds[flags].tolist() if m == "relabel" else None}
            old = read_json(path / "cleaning.json") if (path / "cleaning.json").exists() else None
            if old is not None and old.get("fingerprint") != fp:
                raise ConfigError(f"{path} already holds a cleaning run with a different flagged set; "
                                  "remove it or choose another method label")
            write_json(path / "cleaning.json", info)
            model = prepare_model(cfg, cleaned)
            cb = None if on_epoch is None else (lambda r, _n=name: on_epoch(_n, r))
            run_experiment(cfg, on_epoch=cb, prepared=Prepared(cfg, cleaned, model, path))
            subs[(m, seed)] = path
    table, summary = cleaning_comparison(run, subs)
    out = run.path / "cleaned"
    atomic_write(out / f"comparison-{method}.parquet", lambda p: table.to_parquet(p, index=False))
    atomic_write(out / f"summary-{method}.parquet", lambda p: summary.to_parquet(p, index=False))
    return CleaningResult(subs, table, summary)


def cleaning_comparison(run: Run, subs: dict[tuple[str, int], Path],
                        batch_size: int = 2048) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(TABLE_COLUMNS, SUMMARY_COLUMNS) on the clean test set (module docstring)."""
    data = run.data
    x, y = data.x_test, data.y_test
    final_epoch = max(run.checkpoints())
    early = early_stop_epoch(run)[0]
    right_early = correct(run.model(early), x, y, batch_size).numpy()
    rows = []

    def add(model: str, mode: str, seed: int, epoch: int, n_train: int, right: np.ndarray) -> None:
        acc = Accuracy.from_correct(right)
        mc = mcnemar(right, right_early)
        rows.append({"model": model, "mode": mode, "seed": seed, "epoch": epoch, "n_train": n_train,
                     "test_acc": acc.value, "test_low": acc.low, "test_high": acc.high, "n_test": acc.n,
                     "b": mc.b, "c": mc.c, "p_value": mc.p_value})

    n0 = len(data.y_train)
    seed0 = run.config.train.seed
    add("final", "original", seed0, final_epoch, n0, correct(run.model(final_epoch), x, y, batch_size).numpy())
    add("early_stop", "original", seed0, early, n0, right_early)
    for (mode, seed), path in sorted(subs.items()):
        sub = load_run(path)
        n_train = int(read_json(path / "cleaning.json")["n_train"])
        f_epoch, e_epoch = max(sub.checkpoints()), early_stop_epoch(sub)[0]
        add(f"cleaned_{mode}_final", mode, seed, f_epoch, n_train,
            correct(sub.model(f_epoch), x, y, batch_size).numpy())
        add(f"cleaned_{mode}_early_stop", mode, seed, e_epoch, n_train,
            correct(sub.model(e_epoch), x, y, batch_size).numpy())
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    summary = []
    for (model, mode), g in table.groupby(["model", "mode"], sort=False):
        s = aggregate_seeds(g["test_acc"].to_numpy(), domain=UNIT)
        summary.append({"model": model, "mode": mode, "n_seeds": s.n_seeds, "mean": s.mean, "std": s.std,
                        "low": s.low, "high": s.high, "note": s.note})
    return table, pd.DataFrame(summary, columns=SUMMARY_COLUMNS)


def relabel_suggestions(model: torch.nn.Module, data: NoisyDataset, batch_size: int = 2048) -> pd.DataFrame:
    """SUGGESTION_COLUMNS, one row per training sample (row ``index`` of the training split):
    the observed label, the suggested label (argmax of ``model``'s softmax), its probability
    and the probability of the observed label (both in [0, 1])."""
    prob = torch.softmax(predict_logits(model, data.x_train, batch_size).double(), 1)
    top, arg = prob.max(1)
    y = data.y_train.cpu()
    return pd.DataFrame({"index": np.arange(len(y)), "observed": y.numpy(), "suggested": arg.numpy(),
                         "probability": top.numpy(), "p_observed": prob[torch.arange(len(y)), y].numpy()},
                        columns=SUGGESTION_COLUMNS)


@dataclass
class CleaningRound:
    """One round of :func:`iterative_clean`: the flags so far, the sub-run, its early-stopped
    model's noisy-validation correctness, and the verdict against the best earlier round."""

    round: int
    n_flagged: int
    path: Path | None
    epoch: int
    val_correct: np.ndarray
    kept: bool
    reason: str


@dataclass
class IterativeCleaning:
    """What :func:`iterative_clean` did.

    Attributes:
        rounds: every round tried (round 0: the parent's early stopping).
        chosen: the last kept round (0 = cleaning did not help on noisy validation).
        flagged: (N,) bool, the chosen round's flags over the parent's training split.
        suggestions: :func:`relabel_suggestions` of the parent's early-stopped model.
        detector / rule: the flag detector and why it is the default.
        trained_runs: training runs paid for (the parent and every retrained round).
    """

    rounds: list[CleaningRound]
    chosen: int
    flagged: np.ndarray
    suggestions: pd.DataFrame
    detector: str
    rule: str
    mode: str

    @property
    def path(self) -> Path | None:
        return self.rounds[self.chosen].path

    @property
    def trained_runs(self) -> int:
        return 1 + sum(r.path is not None for r in self.rounds[1:])


def _detector_flags(model: TappedModel, data: NoisyDataset, detector: str, seed: int) -> np.ndarray:
    """(N,) bool: ``detector``'s own flags on ``model``'s features of the training split
    (d on the noisy-validation split)."""
    det = LabelIssueDetector(detector, num_classes=data.num_classes, seed=seed).fit(model, data)
    return det.find_issues().numpy().astype(bool)


def iterative_clean(
    run_path: str | Path,
    detector: str = DEFAULT_DETECTOR,
    mode: str = "remove",
    max_rounds: int = 2,
    seed: int | None = None,
    epochs: int | None = None,
    batch_size: int = 2048,
) -> IterativeCleaning:
    """Clean, retrain, re-detect, until noisy validation stops improving (module docstring).

    Args:
        run_path: the parent run (trained on the noisy labels, with the dynamics probe).
        detector: a label-issue detector (``workflows.label_issues.RUN_METHODS``); rounds > 1 need
            one of ``FEATURE_DETECTORS``.
        mode: ``"remove"`` or ``"relabel"``.
        max_rounds: at most this many retrainings (compute: 1 + rounds runs).
        seed: the retrainings' ``train.seed`` (default: the parent's).
        epochs: training epochs of the retrainings (default: the parent's).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if isinstance(max_rounds, bool) or int(max_rounds) < 1:
        raise ValueError(f"max_rounds must be a positive int, got {max_rounds!r}")
    from noisescope.workflows.label_issues import find_label_issues

    run = load_run(run_path)
    data = run.data
    seed = run.config.train.seed if seed is None else int(seed)
    early = early_stop_epoch(run)[0]
    model = run.model(early)
    suggestions = relabel_suggestions(model, data, batch_size)
    val0 = correct(model, data.x_val, data.y_val, batch_size).numpy()
    rounds = [CleaningRound(0, 0, None, early, val0, True, "the parent's early stopping")]
    flagged = np.zeros(len(data.y_train), dtype=bool)
    best, chosen = val0, 0
    for r in range(1, int(max_rounds) + 1):
        if r == 1:
            flags = find_label_issues(run.path, methods=[detector], write=False, seed=seed).flags[detector]
        elif detector in FEATURE_DETECTORS:
            flags = _detector_flags(model, data, detector, seed)
        else:
            break
        new = flagged | np.asarray(flags, dtype=bool)
        if new.sum() == flagged.sum() or new.all():
            rounds.append(CleaningRound(r, int(new.sum()), None, -1, best, False, "no new flags"))
            break
        res = retrain_cleaned(run.path, new, mode, seeds=[seed], method=f"{detector}_r{r}", epochs=epochs,
                              predictions=suggestions["suggested"].to_numpy())
        path = res.runs[(mode, seed)]
        sub = load_run(path)
        e = early_stop_epoch(sub)[0]
        sub_model = sub.model(e)
        val = correct(sub_model, data.x_val, data.y_val, batch_size).numpy()
        verdict = repair_verdict(val, best, name=f"round {r}")
        rounds.append(CleaningRound(r, int(new.sum()), path, e, val, verdict.recommended, verdict.reason))
        if not verdict.recommended:
            break
        best, chosen, flagged, model = val, r, new, sub_model
    flagged_chosen = flagged if chosen else np.zeros(len(data.y_train), dtype=bool)
    return IterativeCleaning(rounds, chosen, flagged_chosen, suggestions, detector, DETECTOR_RULE, mode)
