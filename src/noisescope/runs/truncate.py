"""Spectral truncation of a stored run: ``noisescope truncate RUN|CHECKPOINT``.

The comparison (final / early stopping / truncation / per-tap probes / raw inputs) analyses each
tap once; the exported truncated module is fitted from that same analysis.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from noisescope.evaluate import model_accuracy
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


@dataclass
class TruncationReport:
    """What ``truncate_run`` produced."""

    comparison: pd.DataFrame
    estimator: SpectralTruncation
    out: Path
    final_epoch: int
    early_epoch: int | None
    best_probed_epoch: int | None


def truncate_run(
    target: str | Path,
    out: str | Path | None = None,
    head: str = "original",
    d: int | str = "auto",
    d_rule: str = "argmax",
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
    save_truncated(module, out, meta)
    return TruncationReport(comparison.table, est, out, epoch, e_epoch, best_any)
