"""The probe protocol: measurements taken on the probe schedule (epoch 0 = the untrained control).

A probe is an object with a ``name`` and ``start(model, data, ctx) -> Session``. A session is
one probe's work at one epoch: a :class:`noisescope.taps.Consumer` (it names the taps and the
splits it reads and is fed their batches by the shared pass, see :mod:`noisescope.probes.engine`)
that finally returns its :class:`~noisescope.metrics.Row` s. Every probe can also be called
alone: ``probe(model, data, ctx)`` runs the shared pass for it only.

The rows follow the one tidy schema of :mod:`noisescope.metrics`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import pandas as pd
import torch

from noisescope.data.base import NoisyDataset
from noisescope.metrics import Row
from noisescope.models.base import TappedModel
from noisescope.taps import Consumer

SPLITS = ("train", "val", "test")


@dataclass
class ProbeContext:
    """What a probe needs besides the model and the data.

    Attributes:
        epoch: completed training epochs (0 = untrained control).
        device: where to run forward passes.
        batch_size: evaluation batch size.
        state: per-probe state carried across epochs (e.g. the identity of the tracked
            large-activation neuron), keyed by probe name. It holds only JSON-serialisable
            values and tensors, is saved with the run's resume state, and is carried through a
            replay (``noisescope probe RUN``) in epoch order.
        records: per-sample tables a probe produces at this epoch (name -> DataFrame with
            ``epoch`` and ``index`` columns, e.g. the dynamics probe's ``margins``); the run
            store keeps them beside the metrics (``records/NAME/``), not in the tidy table.
    """

    epoch: int
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    batch_size: int = 2048
    state: dict = field(default_factory=dict)
    records: dict[str, pd.DataFrame] = field(default_factory=dict)


class Session(Consumer, Protocol):
    """One probe's work at one epoch (see the module docstring)."""

    def rows(self) -> list[Row]:
        """The probe's rows, once every split it reads has been streamed."""


class Probe(Protocol):
    name: str

    def start(self, model: TappedModel, data: NoisyDataset, ctx: ProbeContext) -> Session:
        ...

    def __call__(self, model: TappedModel, data: NoisyDataset, ctx: ProbeContext) -> list[Row]:
        ...


def split_inputs(data: NoisyDataset) -> dict[str, torch.Tensor]:
    """Split name -> inputs, in the order the shared pass streams them."""
    return {"train": data.x_train, "val": data.x_val, "test": data.x_test}
