"""Reopen a finished (or running) run in Python: ``noisescope.load_run(path)``."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from noisescope.config import Config, from_dict
from noisescope.data.base import NoisyDataset
from noisescope.models.base import TappedModel
from noisescope.probes.dynamics import detect_double_descent
from noisescope.store import RunStore


def dynamics_curve(metrics: pd.DataFrame, subset: str, metric: str = "acc") -> pd.Series:
    """Epoch-indexed series of a dynamics metric for one subset."""
    sel = metrics[(metrics["probe"] == "dynamics") & (metrics["subset"] == subset)
                  & (metrics["metric"] == metric)]
    return sel.set_index("epoch")["value"].sort_index()


def best_val_epoch(metrics: pd.DataFrame) -> tuple[int, float] | None:
    """Early stopping: (epoch, accuracy) of the best noisy-validation accuracy, ties -> the
    earlier epoch; None when the dynamics probe has not run."""
    val = dynamics_curve(metrics, "val").dropna()
    if val.empty:
        return None
    i = int(val.to_numpy().argmax())
    return int(val.index[i]), float(val.iloc[i])


def summarize(metrics: pd.DataFrame, threshold: float = 0.03, smooth: int = 5) -> dict[str, Any]:
    """Headline numbers of a run from its metrics table.

    final_*: accuracies at the last probed epoch; best_val_epoch: early-stopping epoch (best
    noisy-validation accuracy, ties -> earlier); early_stop_test_acc: clean test accuracy there;
    double_descent: see :func:`detect_double_descent` (on test error).
    """
    out: dict[str, Any] = {}
    test = dynamics_curve(metrics, "test")
    if test.empty:
        return out
    last = int(test.index.max())
    out["epochs"] = last
    for subset in ("clean_train", "noisy_train_obs", "noisy_train_true", "val", "test"):
        curve = dynamics_curve(metrics, subset)
        if not curve.empty:
            out[f"final_{subset}_acc"] = float(curve.iloc[-1])
    best = best_val_epoch(metrics)
    if best is not None:
        out["best_val_epoch"] = best[0]
        out["early_stop_test_acc"] = float(test.get(best[0], np.nan))
    out["best_test_acc"] = float(test.max())
    out["double_descent"] = detect_double_descent(
        test.index.to_numpy(), 1 - test.to_numpy(), threshold, smooth
    )
    return out


@dataclass
class Run:
    """A run directory opened for analysis.

    Attributes:
        path: the run directory.
        config: the resolved Config it ran with.
        metrics: the tidy metrics table (see probes/base.py for the schema).
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
        from noisescope.experiment import prepare_data

        return prepare_data(self.config)

    def model(self, epoch: int | None = None) -> TappedModel:
        """The model with the weights saved at ``epoch`` (default: the last checkpoint)."""
        from noisescope.experiment import prepare_model

        ckpts = self.checkpoints()
        if not ckpts:
            raise FileNotFoundError(f"{self.path} has no checkpoints")
        epoch = max(ckpts) if epoch is None else epoch
        model = prepare_model(self.config, self.data)
        return self.store.load_weights(model, epoch).eval()

    def curve(self, subset: str, metric: str = "acc") -> pd.Series:
        return dynamics_curve(self.metrics, subset, metric)


def load_run(path: str | Path) -> Run:
    """Open a run directory; its metrics come back as a DataFrame."""
    store = RunStore(path)
    if not store.exists():
        raise FileNotFoundError(f"{path} is not a noisescope run (no config.json inside)")
    return Run(Path(path), from_dict(store.read_json("config.json")), store.metrics())
