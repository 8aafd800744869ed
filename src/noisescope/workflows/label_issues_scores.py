"""The per-detector steps of :func:`~noisescope.workflows.label_issues.find_label_issues`: which
checkpoint, the features / logits / margins they read, each detector's scores and flags, and
the consensus over them (the module docstring of :mod:`noisescope.workflows.label_issues` says what
each detector reads). Every step records into one :class:`Scoring`; none reads the true labels.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from noisescope.data.base import NoisyDataset
from noisescope.detect import (
    LabelIssueDetector,
    MarginRecorder,
    aum_issues,
    aum_score,
    cleanlab_issues,
    cleanlab_scores,
    disagreement_issues,
    disagreement_score,
    first_fit_epoch_score,
    first_fit_issues,
)
from noisescope.detect.evaluate import average_ranks
from noisescope.runs.run import Run
from noisescope.taps import iter_taps
from noisescope.workflows.truncate import early_stop_epoch

Progress = Callable[[str, int, int], None]


@dataclass
class Scoring:
    """What the detectors computed so far, and the progress of the steps.

    Attributes:
        explicit: the methods were asked for by name (then a method that cannot be computed is
            an error, else it is skipped with the reason).
        progress: called ``(step, done, total)`` before each step.
        total: the number of steps (set once the methods to compute are known).
        scores / flags / seconds / needs / d_chosen: per method: (N,) scores, (N,) flags, seconds of
            its own step, the shared steps it needs, the chosen d (feature detectors).
        shared: seconds of each shared step (load, early_logits, features, margins_record).
        skipped: method -> why it was not computed.
    """

    explicit: bool
    progress: Progress | None = None
    total: int = 0
    done: int = 0
    scores: dict[str, np.ndarray] = field(default_factory=dict)
    flags: dict[str, np.ndarray] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    shared: dict[str, float] = field(default_factory=dict)
    needs: dict[str, list[str]] = field(default_factory=dict)
    d_chosen: dict[str, int | None] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def skip(self, method: str, why: str) -> None:
        if self.explicit:
            raise ValueError(f"method {method}: {why}")
        self.skipped[method] = why

    def step(self, name: str) -> None:
        if self.progress is not None:
            self.progress(name, self.done, self.total)
        self.done += 1

    def add(self, method: str, score: np.ndarray, flag: np.ndarray, seconds: float, needs: list[str]) -> None:
        self.scores[method], self.flags[method] = score, flag
        self.seconds[method] = seconds
        self.needs[method] = needs


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


def margins_of(run: Run, n: int, last: int | None = None) -> MarginRecorder | None:
    """The run's per-sample ``margins`` record as a recorder (float32), or None; read file by
    file with pyarrow (the same numbers as ``MarginRecorder.from_frame(run.store.record(...))``),
    only the epochs <= ``last`` when given."""
    files = sorted((run.store.records_dir / "margins").glob("epoch_*.parquet"))
    if last is not None:
        files = [f for f in files if int(f.stem.split("_")[1]) <= last]
    if not files:
        return None
    return MarginRecorder.from_parquet(files, n, dtype=torch.float32)


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


#: a detector whose score is by definition another's (the same ranking): counted once, as the other
SAME_RANKING = {"cleanlab": "disagreement"}
#: peers shown beside the consensus, never in it (written to their own files)
BESIDE = ("cleanlab_cv",)


def consensus_members(scores: dict[str, np.ndarray]) -> list[str]:
    """The distinct rankings among ``scores`` that the consensus averages (docs/definitions.md,
    "Label issues"): every method except the peers in ``BESIDE``, a method of ``SAME_RANKING``
    whose twin was computed, and a method whose average ranks equal an earlier member's."""
    members: list[str] = []
    ranks: list[np.ndarray] = []
    for m, s in scores.items():
        if m in BESIDE or SAME_RANKING.get(m) in scores:
            continue
        r = average_ranks(s)
        if any(np.array_equal(r, other) for other in ranks):
            continue
        members.append(m)
        ranks.append(r)
    return members


def consensus(scores: dict[str, np.ndarray], flags: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(N,) mean percentile rank over the distinct rankings of :func:`consensus_members` (ties
    averaged; label-free), and (N,) flagged by at least half of those same detectors."""
    members = consensus_members(scores)
    n = len(next(iter(scores.values())))
    if not members:
        return np.zeros(n), np.zeros(n, bool)
    ranks = [average_ranks(scores[m]) / n for m in members]
    voters = [m for m in members if m in flags]
    if not voters:
        return np.mean(ranks, axis=0), np.zeros(n, bool)
    votes = np.sum([np.asarray(flags[m], bool) for m in voters], axis=0)
    return np.mean(ranks, axis=0), votes >= math.ceil(len(voters) / 2)


def score_features(sc: Scoring, methods: Sequence[str], load_model: Callable, data: NoisyDataset, *,
                   d: int | str, k: int, seed: int, batch_size: int, device: torch.device,
                   f_train: torch.Tensor | None = None) -> None:
    """The feature detectors ``methods`` on phi of ``load_model()`` (called inside the timed
    ``features`` step); ``f_train``: the training split's (N, D) phi when already computed by the
    same model's pass; ``d="auto"`` is chosen on the noisy-validation split when it has samples
    (and only when a method uses d)."""
    x, y = data.x_train, data.y_train
    t = time.perf_counter()
    model = load_model()
    if f_train is None:
        f_train, _ = features_and_logits(model, x, batch_size, device)
    uses_d = d == "auto" and any(m != "fine" for m in methods)
    f_val = features_and_logits(model, data.x_val, batch_size, device)[0] if uses_d and len(data.y_val) else None
    head = (model.head.weight.detach().cpu(), None if model.head.bias is None else model.head.bias.detach().cpu())
    sc.shared["features"] = time.perf_counter() - t
    for m in methods:
        sc.step(m)
        det = LabelIssueDetector(m, d=d, k=k, num_classes=data.num_classes, seed=seed)
        t = time.perf_counter()
        det.fit(f_train, y, head=head if m in ("tail_margin", "truncated_margin") else None,
                X_val=f_val if d == "auto" and f_val is not None and m != "fine" else None,
                y_val=data.y_val if d == "auto" and f_val is not None and m != "fine" else None)
        seconds = time.perf_counter() - t
        sc.add(m, det.score_samples().numpy(), det.find_issues().numpy(), seconds, ["load", "features"])
        sc.d_chosen[m] = None if det.d_ is None else int(det.d_)


def score_disagreement(sc: Scoring, early_logits: torch.Tensor, y: torch.Tensor) -> None:
    """``disagreement``: 1 - p(observed label) of the early-stopped model; flag argmax != label."""
    sc.step("disagreement")
    t = time.perf_counter()
    score = disagreement_score(early_logits, y, kind="logits").numpy()
    flag = disagreement_issues(early_logits, y).numpy()
    sc.add("disagreement", score, flag, time.perf_counter() - t, ["load", "early_logits"])


def score_dynamics(sc: Scoring, methods: Sequence[str], run: Run, n: int, early_stop: int) -> MarginRecorder | None:
    """``aum``, ``aum_early``, ``first_fit`` (those in ``methods``) from the run's margins
    record; returns the record (None when the run has none: then they are skipped)."""
    t = time.perf_counter()
    rec = margins_of(run, n, last=early_stop if set(methods) <= {"aum_early"} else None)
    sc.shared["margins_record"] = time.perf_counter() - t
    if rec is None:
        for m in methods:
            sc.skip(m, "the run has no margins record (records/margins: the dynamics probe writes it)")
    for m in methods:
        if m in sc.skipped:
            continue
        sc.step(m)
        t = time.perf_counter()
        try:
            if m == "aum":
                s = _aum(rec, None)
                fl = aum_issues(s)
            elif m == "aum_early":
                s = _aum(rec, early_stop)
                fl = aum_issues(s)
            else:
                s = first_fit_epoch_score(rec)
                fl = first_fit_issues(s, early_stop)
        except ValueError as exc:
            sc.skip(m, f"{exc} (recorded epochs {rec.epochs.tolist()}, early stopping {early_stop})")
            continue
        if bool(torch.isnan(s).any()):
            sc.skip(m, "some samples have no recorded margin")
            continue
        sc.add(m, s.numpy(), fl.numpy(), time.perf_counter() - t, ["load", "margins_record"])
    return rec


def score_cleanlab(sc: Scoring, early_logits: torch.Tensor, y: torch.Tensor) -> None:
    """``cleanlab``: self-confidence quality and ``find_label_issues`` on the early-stopped
    model's (in-sample) probabilities."""
    sc.step("cleanlab (early-stopped probabilities)")
    t = time.perf_counter()
    probs = torch.softmax(early_logits.double(), 1)
    score = cleanlab_scores(y, probs).numpy()
    flag = cleanlab_issues(y, probs).numpy()
    sc.add("cleanlab", score, flag, time.perf_counter() - t, ["load", "early_logits"])
