"""The probe protocol and the one tidy metrics schema every probe writes.

Metrics schema (one row per number; the run's ``metrics.parquet``):

======== ======= ==============================================================
column   dtype   meaning
======== ======= ==============================================================
epoch    int64   training epoch the model had completed (0 = untrained)
probe    string  probe name: ``dynamics``, ``spectral``, ``signals``, ...
tap      string  tap name, ``""`` when the metric is about the whole model
subset   string  data subset: ``clean_train``, ``noisy_train_obs``,
                 ``noisy_train_true``, ``val``, ``test``, ``train``, ``""``
metric   string  metric name, e.g. ``loss``, ``acc``, ``eigval``, ``probe_acc``
index    int64   position for vector metrics (class c, component k, dim d), else -1
value    float64 the number
======== ======= ==============================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import pandas as pd
import torch

from noisescope.data.base import NoisyDataset
from noisescope.models.base import TappedModel

COLUMNS = ["epoch", "probe", "tap", "subset", "metric", "index", "value"]
KEY = COLUMNS[:-1]  # each number is identified by these columns
DTYPES = {
    "epoch": "int64",
    "probe": "string",
    "tap": "string",
    "subset": "string",
    "metric": "string",
    "index": "int64",
    "value": "float64",
}


@dataclass(frozen=True)
class Row:
    """One number in the tidy metrics table (see the module docstring)."""

    epoch: int
    probe: str
    metric: str
    value: float
    subset: str = ""
    tap: str = ""
    index: int = -1


@dataclass
class ProbeContext:
    """What a probe needs besides the model and the data.

    Attributes:
        epoch: completed training epochs (0 = untrained control).
        device: where to run forward passes.
        batch_size: evaluation batch size.
        state: a dict the probe may use to carry information across epochs (e.g. the
            identity of the largest-activation neuron); persisted by nothing.
    """

    epoch: int
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    batch_size: int = 2048
    state: dict = field(default_factory=dict)


class Probe(Protocol):
    name: str

    def __call__(self, model: TappedModel, data: NoisyDataset, ctx: ProbeContext) -> list[Row]:
        ...


def rows_to_frame(rows: list[Row]) -> pd.DataFrame:
    """Rows -> DataFrame with exactly the documented columns and dtypes."""
    frame = pd.DataFrame(
        [(r.epoch, r.probe, r.tap, r.subset, r.metric, r.index, float(r.value)) for r in rows],
        columns=COLUMNS,
    )
    return frame.astype(DTYPES)
