"""The shared probe pass: at a probed epoch, each split goes through the model once.

:func:`run_probes` starts a session of every active probe, streams train, then noisy
validation, then clean test through the model once each with the union of the taps the
sessions need (:func:`noisescope.taps.stream_splits`), and collects their rows. Float32
matrix products run at full precision (no TF32) for the whole pass, so class sums, cosines
and probe scores are float32-exact on every device.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from noisescope.data.base import NoisyDataset
from noisescope.metrics import Row
from noisescope.models.base import TappedModel
from noisescope.probes.base import Probe, ProbeContext, split_inputs
from noisescope.taps import stream_splits


@contextmanager
def full_precision_matmul() -> Iterator[None]:
    """Disable TF32 (and other reduced-precision float32 matmuls) inside the block; the
    previous setting is restored."""
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(previous)


@torch.no_grad()
def run_probes(probes: list[Probe], model: TappedModel, data: NoisyDataset, ctx: ProbeContext) -> list[Row]:
    """Every probe's rows at ``ctx.epoch`` from one pass over each split (see module docstring)."""
    if not probes:
        return []
    with full_precision_matmul():
        sessions = [p.start(model, data, ctx) for p in probes]
        stream_splits(model, split_inputs(data), sessions, ctx.batch_size, ctx.device)
        rows: list[Row] = []
        for s in sessions:
            rows.extend(s.rows())
    return rows
