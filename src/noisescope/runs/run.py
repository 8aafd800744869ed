"""Reopen a finished (or running) run in Python: ``noisescope.load_run(path)``."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from noisescope.config import Config, from_dict
from noisescope.data.base import NoisyDataset
from noisescope.metrics import dynamics_curve
from noisescope.models.base import TappedModel
from noisescope.probes.dynamics import best_val_epoch, summarize
from noisescope.runs.build import prepare_data, prepare_model
from noisescope.runs.store import RunStore


@dataclass
class Run:
    """A run directory opened for analysis.

    Attributes:
        path: the run directory.
        config: the resolved Config it ran with.
        metrics: the tidy metrics table (schema in noisescope/metrics.py).
    """

    path: Path
    config: Config
    metrics: pd.DataFrame

    @property
    def store(self) -> RunStore:
        return RunStore(self.path)

    @property
    def status(self) -> dict[str, Any]:
        return self.store.status()

    @property
    def env(self) -> dict[str, Any]:
        return self.store.read_json("env.json", {})

    @property
    def summary(self) -> dict[str, Any]:
        return self.store.read_json("summary.json") or summarize(self.metrics)

    def checkpoints(self) -> dict[int, Path]:
        return self.store.checkpoints()

    def checkpoint_epochs(self, epochs: list[int] | None = None) -> list[int]:
        """The saved epochs to recompute a probe on: all (None) or the given ones, validated."""
        saved = self.checkpoints()
        if not saved:
            raise FileNotFoundError(f"{self.path} has no checkpoints to probe")
        chosen = sorted(saved) if epochs is None else sorted(set(epochs))
        missing = [e for e in chosen if e not in saved]
        if missing:
            raise ValueError(f"no checkpoint for epoch(s) {missing}; saved epochs: {sorted(saved)}")
        return chosen

    @cached_property
    def data(self) -> NoisyDataset:
        """The run's noisy dataset, rebuilt deterministically from its config."""
        return prepare_data(self.config)

    def model(self, epoch: int | None = None) -> TappedModel:
        """The model with the weights saved at ``epoch`` (default: the last checkpoint)."""
        ckpts = self.checkpoints()
        if not ckpts:
            raise FileNotFoundError(f"{self.path} has no checkpoints")
        epoch = max(ckpts) if epoch is None else epoch
        model = prepare_model(self.config, self.data)
        return self.store.load_weights(model, epoch).eval()

    def curve(self, subset: str, metric: str = "acc") -> pd.Series:
        return dynamics_curve(self.metrics, subset, metric)

    @property
    def early_stop(self) -> tuple[int, float] | None:
        """(epoch, noisy-validation accuracy) of early stopping, or None without dynamics rows."""
        return best_val_epoch(self.metrics)

    def reload_metrics(self) -> pd.DataFrame:
        """Re-read the metrics table from disk (after a replay wrote new rows)."""
        self.metrics = self.store.metrics()
        return self.metrics


def load_run(path: str | Path) -> Run:
    """Open a run directory; its metrics come back as a DataFrame."""
    store = RunStore(path)
    if not store.exists():
        raise FileNotFoundError(f"{path} is not a noisescope run (no config.json inside)")
    return Run(Path(path), from_dict(store.read_json("config.json")), store.metrics())
