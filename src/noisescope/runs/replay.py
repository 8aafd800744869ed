"""Replay: recompute any probe from a run's saved checkpoints into the run's own metrics.

``noisescope probe RUN --probe dynamics|spectral|signals [--epochs ...]`` calls :func:`replay`.
Each chosen checkpoint goes through one shared pass (every replayed probe together); the
epochs are replayed in order with one probe state, so state that spans epochs (the tracked
large-activation neuron) is carried as in training, starting at the first replayed epoch.
The replayed probes' rows at those epochs replace any earlier ones, and the report shows them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import torch

from noisescope.config import ConfigError
from noisescope.metrics import rows_to_frame
from noisescope.probes import REGISTRY, ProbeContext, make_probe, run_probes
from noisescope.runs.run import load_run


def replay(
    path: str | Path,
    probes: list[str],
    epochs: list[int] | None = None,
    options: dict[str, dict] | None = None,
    device: str | torch.device = "cpu",
    batch_size: int = 2048,
    on_epoch: Callable[[int], None] | None = None,
) -> pd.DataFrame:
    """Run ``probes`` (registry names) on the run's checkpoints at ``epochs`` (None = all
    saved) and store their rows in the run's metrics; returns the new rows.

    ``options``: per-probe options; default the run config's ``probe.options.<name>``.
    """
    unknown = [p for p in probes if p not in REGISTRY]
    if unknown:
        raise ConfigError(f"--probe: unknown probe(s) {unknown}; choose from {sorted(REGISTRY)}")
    run = load_run(path)
    chosen = run.checkpoint_epochs(epochs)
    made = []
    for name in probes:
        opts = dict(run.config.probe.options.get(name, {}))
        opts.update((options or {}).get(name, {}))
        try:
            made.append(make_probe(name, **opts))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"probe.options.{name}: {exc}") from None
    dev = torch.device(device)
    state: dict = {}
    rows = []
    for epoch in chosen:
        model = run.model(epoch).to(dev)
        ctx = ProbeContext(epoch=epoch, device=dev, batch_size=batch_size, state=state)
        rows += run_probes(made, model, run.data, ctx)
        for name, frame in ctx.records.items():
            run.store.write_record(name, epoch, frame)
        if on_epoch:
            on_epoch(epoch)
    run.store.replace_metrics([p.name for p in made], chosen, rows)
    return rows_to_frame(rows)
