"""Spectral truncation of a stored run: ``noisescope truncate RUN|CHECKPOINT``.

The comparison (final / early stopping / truncation / per-tap probes / raw inputs, each accuracy
with its Wilson interval and n) analyses each tap once; the exported truncated module is fitted
from that same analysis. Two statements, both on noisy validation and paired per sample
(docs/definitions.md): truncated against the final model (the gain over the model it repairs
and its standard error, ``evidence.rules.repair_verdict``), and the recommendation over final,
early stopping and truncation (``evidence.rules.recommend``, default early stopping, or the
final model with ``early=False``): truncation is recommended only when it beats both by
McNemar's exact test. The wording says which comparison is which ("better than the final
model; early stopping is better"). On the clean test set the truncated model is compared with
the final and the early-stopped model by McNemar's exact test (reported, never used to choose).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from noisescope.evaluate import correct, model_accuracy
from noisescope.evidence.paired import mcnemar, paired_difference
from noisescope.evidence.rules import (
    Recommendation,
    Verdict,
    compare_on_val,
    decision_warning,
    recommend,
    repair_verdict,
)
from noisescope.io import jsonable
from noisescope.probes.dynamics import early_stop_update
from noisescope.runs.run import Run, load_run
from noisescope.spectral.compare import compare
from noisescope.spectral.export import save_truncated
from noisescope.spectral.truncation import SpectralTruncation


def resolve_target(target: str | Path) -> tuple[Path, int | None]:
    """A run directory, or a checkpoint file ``RUN/checkpoints/epoch_XXXX.safetensors``
    -> (run directory, epoch or None)."""
    p = Path(target)
    if p.is_file() and p.suffix == ".safetensors":
        if not p.stem.startswith("epoch_") or p.parent.name != "checkpoints":
            raise ValueError(
                f"{p} is not a run checkpoint (expected RUN/checkpoints/epoch_XXXX.safetensors); "
                "for your own model use noisescope.spectral.SpectralTruncation in Python"
            )
        return p.parent.parent, int(p.stem.split("_")[1])
    if not (p / "config.json").is_file():
        raise FileNotFoundError(f"{p} is neither a run directory (with config.json) nor a checkpoint file")
    return p, None


def early_stop_epoch(run: Run, device: str | torch.device = "cpu") -> tuple[int, int | None]:
    """(saved checkpoint with the best noisy-validation accuracy, best probed epoch overall).

    Uses the dynamics probe's ``val`` accuracies where present, else evaluates each saved
    checkpoint. Ties -> the earlier epoch. The second number is the run's early-stopping
    epoch over every probed epoch (its checkpoint may not have been kept), or None.
    """
    val = run.curve("val")
    best_any = run.early_stop[0] if run.early_stop is not None else None
    best = None
    for e in sorted(run.checkpoints()):
        acc = float(val.loc[e]) if e in val.index else model_accuracy(run.model(e).to(device), run.data,
                                                                        device=device)[0]
        best = early_stop_update(best, e, acc)
    return best[0], best_any


PAIRED_COLUMNS = ["comparison", "n_test", "b", "c", "difference", "diff_low", "diff_high", "p_value"]


@dataclass
class TruncationReport:
    """What ``truncate_run`` produced.

    Attributes:
        comparison: spectral.compare COLUMNS (accuracies with Wilson intervals and n).
        estimator: the fitted SpectralTruncation; out: where the module was written.
        verdict: truncated vs final on noisy validation (``evidence.rules.repair_verdict``).
        decision: ``evidence.rules.recommend`` over final, early stopping and truncation on
            noisy validation (default early stopping; the final model without ``early``).
        warning: ``evidence.rules.decision_warning`` of that decision, or None.
        paired: PAIRED_COLUMNS, McNemar's exact test of the truncated model against the final
            and the early-stopped model on the clean test set (b: truncated right and the other
            wrong; difference: truncated minus other, with its paired 95% interval).
        correct: per-sample correctness {"val"/"test": {"final", "truncated", "early_stop"}}.
    """

    comparison: pd.DataFrame
    estimator: SpectralTruncation
    out: Path
    final_epoch: int
    early_epoch: int | None
    best_probed_epoch: int | None
    verdict: Verdict | None = None
    warning: str | None = None
    paired: pd.DataFrame | None = None
    correct: dict | None = None
    decision: Recommendation | None = None

    @property
    def recommended(self) -> bool:
        """True when the rule recommends the truncated model over final and early stopping."""
        return bool(self.decision is not None and self.decision.choice == "truncated")

    def comparison_line(self) -> str:
        """What truncation is compared with, in words: ``"truncation to d=12 (head original):
        better than the final model (+12.3 points, se 1.5); early stopping is better (596 vs
        562 of 1000 correct, McNemar p=0.004)"`` (noisy validation, paired)."""
        what = f"truncation to d={self.estimator.d_} (head {self.estimator.head})"
        if self.verdict is None:
            return f"{what}: no noisy-validation split to compare on"
        v = self.verdict
        gain = f"{100 * v.gain:+.1f} points, se {100 * v.se:.1f}"
        if v.recommended:
            text = f"{what}: better than the final model ({gain})"
        elif v.gain > 0:
            text = f"{what}: within one standard error of the final model ({gain})"
        else:
            text = f"{what}: not better than the final model ({gain})"
        val = (self.correct or {}).get("val", {})
        if "early_stop" not in val:
            return text
        tr, es = val["truncated"], val["early_stop"]
        c = compare_on_val("early_stop", es, "truncated", tr)
        if c.beats:
            return f"{text}; early stopping is better ({c.text()})"
        c = compare_on_val("truncated", tr, "early_stop", es)
        if c.beats:
            return f"{text}; better than early stopping ({c.text()})"
        return (f"{text}; within resolution of early stopping (they differ by {abs(c.b - c.c)} of {c.n} "
                f"validation samples, McNemar p={c.p_value:.2g})")

    def verdict_line(self) -> str:
        """The recommendation in one line (``Recommendation.line``)."""
        if self.decision is None:
            return "no decision: no noisy-validation split to decide on"
        return self.decision.line


def paired_tests(test_correct: dict[str, np.ndarray]) -> pd.DataFrame:
    """McNemar's exact test and the paired difference of the truncated model against each other
    model on the clean test set (PAIRED_COLUMNS)."""
    rows = []
    t = test_correct["truncated"]
    for other in ("final", "early_stop"):
        if other not in test_correct:
            continue
        o = test_correct[other]
        mc, diff = mcnemar(t, o), paired_difference(t, o)
        rows.append({"comparison": f"truncated vs {other}", "n_test": mc.n, "b": mc.b, "c": mc.c,
                     "difference": diff.diff, "diff_low": diff.low, "diff_high": diff.high, "p_value": mc.p_value})
    return pd.DataFrame(rows, columns=PAIRED_COLUMNS)


def truncate_run(
    target: str | Path,
    out: str | Path | None = None,
    head: str = "original",
    d: int | str = "auto",
    d_rule: str = "1se",
    early: bool = True,
    raw_input: bool = True,
    taps: str | list[str] = "auto",
    device: str | torch.device = "cpu",
    batch_size: int = 2048,
) -> TruncationReport:
    """Compare final / early stopping / truncation on a stored run and export the truncated model.

    Args:
        target: a run directory (final = last checkpoint) or one of its checkpoint files.
        out: directory for the truncated module (default ``RUN/truncated/epoch_XXXX``).
        head, d, d_rule: as in :class:`SpectralTruncation` (d chosen on noisy validation).
        early: also evaluate the saved checkpoint with the best noisy-validation accuracy.
        raw_input: add the raw-input reference to the comparison.
    """
    run_dir, epoch = resolve_target(target)
    run = load_run(run_dir)
    ckpts = run.checkpoints()
    if not ckpts:
        raise FileNotFoundError(f"{run.path} has no checkpoints")
    epoch = max(ckpts) if epoch is None else epoch
    dev = torch.device(device)
    final = run.model(epoch).to(dev)
    early_model, e_epoch, best_any = None, None, None
    if early:
        e_epoch, best_any = early_stop_epoch(run, dev)
        early_model = run.model(e_epoch).to(dev)
    data = run.data
    comparison = compare(
        final, data, early_model, final_epoch=epoch, early_epoch=e_epoch, taps=taps,
        raw_input=raw_input, d_rule=d_rule, batch_size=batch_size, device=dev,
    )
    est = SpectralTruncation(d=d, head=head, d_rule=d_rule).fit_analysis(comparison.final[final.feature_tap])
    module = est.to_module(final)
    out = Path(out) if out else run.path / "truncated" / f"epoch_{epoch:04d}"
    j = est.d_grid_.tolist().index(est.d_) if est.d_ in est.d_grid_ else None
    cfg = run.config
    meta = {
        "model": {"arch": cfg.model.arch, "input_shape": list(data.input_shape),
                  "num_classes": data.num_classes, "options": cfg.model.options,
                  "input_norm": data.noise.get("normalizer")},
        "head": head,
        "d_rule": d_rule if d == "auto" else "fixed",
        "source_run": str(run.path),
        "source_epoch": epoch,
        "val_acc": None if j is None or est.val_acc_ is None else float(est.val_acc_[j]),
        "test_acc": None if j is None or est.test_acc_ is None else float(est.test_acc_[j]),
    }
    models = {"final": final, "truncated": module.to(dev)}
    if early_model is not None:
        models["early_stop"] = early_model
    right = {split: {k: correct(mdl, x, y, batch_size, dev).numpy() for k, mdl in models.items()}
             for split, x, y in (("val", data.x_val, data.y_val), ("test", data.x_test, data.y_test))}
    verdict = warning = decision = None
    if len(data.y_val):
        verdict = repair_verdict(right["val"]["truncated"], right["val"]["final"])
        order = ("early_stop", "final", "truncated") if early_model is not None else ("final", "truncated")
        decision = recommend({k: right["val"][k] for k in order}, default=order[0])
        warning = decision_warning(decision)
    paired = paired_tests(right["test"]) if len(data.y_test) else pd.DataFrame(columns=PAIRED_COLUMNS)
    report = TruncationReport(comparison.table, est, out, epoch, e_epoch, best_any, verdict, warning, paired, right,
                              decision)
    meta.update({
        "recommended": report.recommended,
        "choice": None if decision is None else decision.choice,
        "reason": f"{report.comparison_line()}; {report.verdict_line()}",
        "val_gain": None if verdict is None else verdict.gain,
        "val_gain_se": None if verdict is None else verdict.se,
        "decision": None if decision is None else jsonable(dataclasses.asdict(decision)),
        "warning": warning,
        "paired_tests": paired.to_dict("records"),
    })
    if not meta["recommended"]:
        keep = "early stopping" if decision is None or decision.choice == "early_stop" else "the final model"
        meta["note"] = f"not recommended: exported for inspection only; {keep} stays the recommended model"
    save_truncated(module, out, meta)
    return report
