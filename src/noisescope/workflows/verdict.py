"""The claims scorecard of one stored run (``noisescope verdict RUN``), with the context the
claims need gathered from the run directory.

Context (``evidence.claims.scorecard``):

* from the metrics and the run summary (always): the early-stopping epoch
  (``probes.dynamics.best_val_epoch``), the double-descent detection of the summary, the
  sample counts n of the dynamics ``n`` rows, the noise model of the config, and k* for
  synthetic data (``data.options.k_star``, else the loader's default);
* from the checkpoints (``models=True``, when the run kept any): the feature tap and the tap
  order (shallow -> deep) of the model, and per-sample clean-test correctness of the truncated
  final model (original head, d by the one-standard-error rule on noisy validation) and of the
  early-stopped model (the saved checkpoint with the best noisy-validation accuracy), for the
  paired McNemar test of truncation against early stopping.

``verdict.json`` in the run directory holds the claims, the context (correctness vectors as
counts) and a fingerprint of the metrics table it was computed from
(:func:`metrics_fingerprint`): the report reuses it only while the metrics are unchanged.
"""

from __future__ import annotations

import inspect
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from noisescope.evidence.claims import Claim, jsonable, scorecard
from noisescope.io import read_json
from noisescope.metrics import select
from noisescope.probes.dynamics import best_val_epoch
from noisescope.runs.run import Run, load_run

VERDICT_FILE = "verdict.json"


@dataclass
class RunVerdict:
    """The scorecard of one run.

    Attributes:
        path: the run directory; claims: one :class:`Claim` per claim of the two papers;
        context: what the claims were given (JSON-able; correctness vectors as counts);
        notes: what could not be gathered, and why.
    """

    path: Path
    claims: list[Claim]
    context: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_json(self, metrics: pd.DataFrame | None = None) -> dict:
        return {"run": str(self.path), "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "metrics_fingerprint": None if metrics is None else metrics_fingerprint(metrics),
                "claims": [jsonable(asdict(c)) for c in self.claims], "context": jsonable(self.context),
                "notes": list(self.notes)}


def metrics_fingerprint(metrics: pd.DataFrame) -> str:
    """A cheap fingerprint of a metrics table (row count and a hash of its rows)."""
    if metrics.empty:
        return "0:0"
    h = int(pd.util.hash_pandas_object(metrics.reset_index(drop=True), index=False).sum()) & (2**64 - 1)
    return f"{len(metrics)}:{h:016x}"


def k_star_of(config: Any) -> int | None:
    """The planted signal dimension of synthetic data: ``data.options.k_star`` or the loader's
    default; None for other data."""
    if config.data.name != "synthetic":
        return None
    k = config.data.options.get("k_star")
    if k is None:
        from noisescope.data.synthetic import make_spiked

        k = inspect.signature(make_spiked).parameters["k_star"].default
    return int(k)


def metrics_context(metrics: pd.DataFrame, summary: dict, config: Any) -> dict:
    """The context that needs no model: early stopping, double descent, n, noise model, k*."""
    ctx: dict[str, Any] = {}
    best = best_val_epoch(metrics)
    if best is not None:
        ctx["early_stop_epoch"] = int(best[0])
    if "double_descent" in summary:
        ctx["double_descent"] = summary["double_descent"]
    n = {}
    for subset in ("clean_train", "noisy_train_obs", "val", "test"):
        rows = select(metrics, probe="dynamics", metric="n", subset=subset, index=-1)
        if len(rows):
            n[subset] = int(rows.sort_values("epoch")["value"].iloc[-1])
    if n:
        ctx["n_by_subset"] = n
    if config is not None:
        ctx["noise_model"] = config.noise.model if config.noise.rate > 0 or config.noise.model == "file" else "none"
        k = k_star_of(config)
        if k is not None:
            ctx["k_star"] = k
    return ctx


def _tap_order(model: torch.nn.Module, metrics: pd.DataFrame) -> list[str]:
    """The signals taps of the metrics, ordered as the model's modules are (shallow -> deep)."""
    seen = [t for t in dict.fromkeys(select(metrics, probe="signals")["tap"].astype(str)) if t]
    order = {name: i for i, (name, _m) in enumerate(model.named_modules())}
    for i, t in enumerate(model.taps()):
        order.setdefault(t, len(order) + i)
    return sorted(seen, key=lambda t: (order.get(t, len(order) + seen.index(t)), seen.index(t)))


def model_context(run: Run, device: str | torch.device = "cpu", batch_size: int = 2048) -> tuple[dict, list[str]]:
    """The context read from the checkpoints (module docstring) and notes; ({}, [why]) when the
    run has none."""
    from noisescope.evaluate import correct
    from noisescope.spectral.truncation import SpectralTruncation
    from noisescope.workflows.truncate import early_stop_epoch

    if not run.checkpoints():
        return {}, ["no checkpoints: tap order, feature tap and the paired test of truncation vs early stopping "
                    "were not measured (keep some with run.checkpoint_every)"]
    dev = torch.device(device)
    data = run.data
    final_epoch = max(run.checkpoints())
    final = run.model(final_epoch).to(dev)
    ctx: dict[str, Any] = {"feature_tap": final.feature_tap, "final_checkpoint": final_epoch}
    taps = _tap_order(final, run.metrics)
    if taps:
        ctx["taps"] = taps
    notes = []
    if len(data.y_val) == 0 or len(data.y_test) == 0:
        return ctx, notes + ["no validation or no test split: no paired test of truncation vs early stopping"]
    est = SpectralTruncation(head="original", d_rule="1se").fit_model(final, data, batch_size=batch_size,
                                                                       device=dev)
    truncated = correct(est.to_module(final), data.x_test, data.y_test, batch_size, dev).numpy()
    e_epoch, best_any = early_stop_epoch(run, dev)
    early = correct(run.model(e_epoch).to(dev), data.x_test, data.y_test, batch_size, dev).numpy()
    ctx["test_correct"] = {"truncated": truncated, "early_stop": early}
    ctx["truncation"] = {"epoch": final_epoch, "d": int(est.d_), "d_rule": "1se", "early_stop_checkpoint": e_epoch}
    if best_any is not None and best_any != e_epoch:
        notes.append(f"the best noisy-validation epoch was {best_any} but its weights were not kept: the paired "
                     f"test uses the saved checkpoint of epoch {e_epoch}")
    return ctx, notes


def run_verdict(target: str | Path | Run, models: bool = True, device: str | torch.device = "cpu",
                batch_size: int = 2048, write: bool = True) -> RunVerdict:
    """Score every claim on a run (module docstring); writes ``verdict.json`` unless ``write`` is False.

    A failure while reading the checkpoints (e.g. weights that no longer match the config) is
    recorded as a note and the claims that need them stay "not measured" or fall back to the
    metrics; it never hides the rest of the scorecard.
    """
    run = target if isinstance(target, Run) else load_run(target)
    ctx = metrics_context(run.metrics, run.summary, run.config)
    notes: list[str] = []
    if models:
        try:
            more, notes = model_context(run, device, batch_size)
            ctx.update(more)
        except Exception as exc:  # noqa: BLE001 - reported, not hidden
            notes.append(f"checkpoints not used ({type(exc).__name__}: {exc}); claims read the metrics only")
    else:
        notes.append("models not loaded (--no-models): truncation vs early stopping compares Wilson intervals "
                     "instead of the paired test")
    known = ("n_by_subset", "early_stop_epoch", "double_descent", "taps", "feature_tap", "k_star", "test_correct",
             "noise_model")
    claims = scorecard(run.metrics, **{k: v for k, v in ctx.items() if k in known})
    shown = {k: v for k, v in ctx.items() if k != "test_correct"}
    if "test_correct" in ctx:
        shown["test_correct"] = {k: {"correct": int(np.sum(v)), "n": int(np.size(v))}
                                 for k, v in ctx["test_correct"].items()}
    verdict = RunVerdict(run.path, claims, shown, notes)
    if write:
        run.store.write_json(VERDICT_FILE, verdict.to_json(run.metrics))
    return verdict


def read_verdict(path: str | Path, metrics: pd.DataFrame | None = None) -> dict | None:
    """The run's ``verdict.json``, or None when absent, unreadable, or (given ``metrics``)
    computed from a different metrics table."""
    try:
        data = read_json(Path(path) / VERDICT_FILE)
    except (OSError, ValueError):
        return None
    if metrics is not None and data.get("metrics_fingerprint") != metrics_fingerprint(metrics):
        return None
    return data


def claims_from_json(data: dict) -> list[Claim]:
    """The claims of a ``verdict.json``, each with the current reader's rule
    (``evidence.claim_rules``; a file written by an older version holds another text)."""
    from noisescope.evidence.claim_rules import claim_rule

    claims = [Claim(**{k: c.get(k, "" if k not in ("numbers",) else {}) for k in
                       ("key", "text", "paper", "status", "numbers", "rule", "command", "summary")})
              for c in data.get("claims", [])]
    for c in claims:
        c.rule = claim_rule(c.key, c.rule)
    return claims
